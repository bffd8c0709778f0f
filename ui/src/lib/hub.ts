// How hub search results and file lists read in the library's hub panel.

import type { HubFileView, HubRepoView } from "../types";

/** The files grouped by quantization, in the order they come (smallest quantization first). */
export function groupByQuant(files: readonly HubFileView[]): [string, HubFileView[]][] {
  const groups = new Map<string, HubFileView[]>();
  for (const f of files) {
    const quant = f.quant ?? "Other";
    const group = groups.get(quant);
    if (group) group.push(f); else groups.set(quant, [f]);
  }
  return [...groups];
}

function count(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1).replace(/\.0$/, "")}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1).replace(/\.0$/, "")}k`;
  return String(n);
}

/** "12.3k downloads · 45 likes", leaving out what the hub did not say. */
export function hubRepoLabel(r: HubRepoView): string {
  const parts = [];
  if (r.downloads !== null) parts.push(`${count(r.downloads)} downloads`);
  if (r.likes !== null) parts.push(`${count(r.likes)} likes`);
  return parts.join(" · ");
}
