import "./styles.css";
import "highlight.js/styles/github-dark.css";

import { api } from "./api";
import { mountBanners, showError } from "./banner";
import { h, icon } from "./lib/dom";
import { ChatScreen } from "./screens/chat";
import { LibraryScreen } from "./screens/library";
import { ProfileScreen } from "./screens/profile";
import type { AppInfo } from "./types";

export interface Screen {
  readonly root: HTMLElement;
  /** Called each time the screen is shown. */
  show(): void | Promise<void>;
}

type ScreenName = "chat" | "library" | "profile";

async function start(): Promise<void> {
  const app = document.getElementById("app");
  if (!app) return;
  let info: AppInfo | null = null;
  try {
    info = await api.appInfo();
  } catch (err) {
    showError(err);
  }
  const content = h("main", { class: "content" });
  const banners = h("div", { class: "banners", "aria-live": "polite" });
  mountBanners(banners);

  const screens: Record<ScreenName, Screen> = {
    chat: new ChatScreen(() => go("library")),
    library: new LibraryScreen(info),
    profile: new ProfileScreen(),
  };
  const buttons = new Map<ScreenName, HTMLButtonElement>();
  const nav = h("nav", { class: "rail", "aria-label": "Screens" },
    h("div", { class: "brand", title: "Canopy" }, h("img", { src: "./icon.png", alt: "" }), h("span", {}, "Canopy")),
    ...(["chat", "library", "profile"] as ScreenName[]).map((name) => {
      const label = { chat: "Chat", library: "Library", profile: "Profile" }[name];
      const b = h("button", { class: "nav-item", type: "button", "data-screen": name, "data-testid": `nav-${name}`, onclick: () => go(name) },
        icon(name), h("span", {}, label));
      buttons.set(name, b);
      return b;
    }),
    h("div", { class: "rail-foot", title: info ? `GPU: ${info.gpu}` : "", "data-testid": "app-version" }, info ? `v${info.version}` : ""),
  );

  let current: ScreenName | null = null;
  async function go(name: ScreenName): Promise<void> {
    if (current === name) return;
    current = name;
    for (const [n, b] of buttons) b.classList.toggle("active", n === name);
    content.replaceChildren(screens[name].root);
    document.body.dataset.screen = name;
    delete document.body.dataset.shown;
    try {
      await screens[name].show();
    } catch (err) {
      showError(err);
    }
    // Tests wait for this: the screen has loaded its data.
    if (current === name) document.body.dataset.shown = name;
  }

  app.replaceChildren(h("div", { class: "shell" }, nav, h("div", { class: "main" }, banners, content)));
  await go("chat");
  document.body.dataset.ready = "true";
}

// Links inside messages must never navigate the app window away.
document.addEventListener("click", (event) => {
  const link = (event.target as Element | null)?.closest?.("a[href]");
  if (link) event.preventDefault();
});

window.addEventListener("unhandledrejection", (event) => {
  showError(event.reason);
  event.preventDefault();
});

void start();
