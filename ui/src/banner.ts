// One-line error and notice banners at the top of the window.

import { h } from "./lib/dom";
import type { CommandError } from "./types";

export interface BannerAction {
  label: string;
  run: () => void | Promise<void>;
}

let host: HTMLElement | null = null;

export function mountBanners(el: HTMLElement): void {
  host = el;
}

/** Shows `message` (one line) until dismissed; an optional action button runs `action`. */
export function showBanner(message: string, tone: "error" | "info" = "error", action?: BannerAction): void {
  if (!host) return;
  // The same message twice is shown once.
  for (const existing of Array.from(host.children)) {
    if ((existing as HTMLElement).dataset.message === message) existing.remove();
  }
  const banner = h("div", { class: `banner ${tone}`, role: tone === "error" ? "alert" : "status", "data-testid": `banner-${tone}` },
    h("span", { class: "banner-text" }, message));
  banner.dataset.message = message;
  if (action) {
    banner.append(h("button", { class: "banner-action", type: "button", onclick: async () => {
      banner.remove();
      await action.run();
    } }, action.label));
  }
  banner.append(h("button", { class: "banner-close", type: "button", "aria-label": "Dismiss", onclick: () => banner.remove() }, "×"));
  host.append(banner);
  // Notices go away by themselves; errors stay until dismissed.
  if (tone === "info") window.setTimeout(() => banner.remove(), 4000);
  while (host.children.length > 3) host.firstElementChild?.remove();
}

export function showError(err: CommandError | unknown, action?: BannerAction): void {
  const e = err as Partial<CommandError>;
  const message = typeof e?.message === "string" ? e.message : String(err);
  showBanner(capitalise(message), "error", action);
}

export function clearBanners(): void {
  host?.replaceChildren();
}

function capitalise(s: string): string {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}
