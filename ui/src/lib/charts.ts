// Inline SVG charts for the profile wizard, drawn with the scales of chart.ts.

import type { Bandwidth, Node as TreeNode, Point } from "../types";
import { extent, linePath, linearScale, log2Scale, tickLabel } from "./chart";
import { svg } from "./dom";
import { layoutTree } from "./treeLayout";

const W = 360;
const H = 200;
const M = { top: 12, right: 12, bottom: 30, left: 50 };

function frame(title: string): SVGElement {
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
}

function axes(root: SVGElement, xTicks: [number, string][], yTicks: [number, string][], xLabel: string, yLabel: string): void {
  const g = svg("g", { class: "axes" });
  for (const [y, label] of yTicks) {
    g.append(svg("line", { x1: M.left, x2: W - M.right, y1: y, y2: y, class: "grid" }));
    g.append(svg("text", { x: M.left - 6, y: y + 3, "text-anchor": "end" }, label));
  }
  for (const [x, label] of xTicks) {
    g.append(svg("text", { x, y: H - M.bottom + 14, "text-anchor": "middle" }, label));
  }
  g.append(svg("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, class: "axis" }));
  g.append(svg("text", { x: (M.left + W - M.right) / 2, y: H - 3, "text-anchor": "middle", class: "axis-label" }, xLabel));
  g.append(svg("text", { x: 12, y: (M.top + H - M.bottom) / 2, class: "axis-label", "text-anchor": "middle", transform: `rotate(-90 12 ${(M.top + H - M.bottom) / 2})` }, yLabel));
  root.append(g);
}

/** Seconds per pass against the number of tokens in the pass, log₂ x axis. */
export function curveChart(series: { name: string; points: Point[]; cls: string }[], xLabel: string, empty = "not measured"): SVGElement {
  const all = series.flatMap((s) => s.points);
  const root = frame(`${series.map((s) => s.name).join(", ")} against ${xLabel}`);
  if (all.length === 0) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, empty));
    return root;
  }
  const ns = all.map((p) => p.n);
  const x = log2Scale([Math.max(1, Math.min(...ns)), Math.max(2, ...ns)], [M.left, W - M.right]);
  const ms = all.map((p) => p.seconds * 1000);
  const y = linearScale(extent(ms), [H - M.bottom, M.top]);
  axes(root, x.ticks().map((t) => [x(t), tickLabel(t)]), y.ticks(4).map((t) => [y(t), tickLabel(t)]), xLabel, "ms");
  for (const s of series) {
    const pts = [...s.points].sort((a, b) => a.n - b.n).map((p) => [x(p.n), y(p.seconds * 1000)] as [number, number]);
    root.append(svg("path", { d: linePath(pts), class: `line ${s.cls}` }));
    for (const [px, py] of pts) root.append(svg("circle", { cx: px, cy: py, r: 2.5, class: `dot ${s.cls}` }));
  }
  return root;
}

/** Vertical bars, one per value, with labels under them. */
export function barChart(values: { label: string; value: number }[], yLabel: string, format = tickLabel, empty = "not measured"): SVGElement {
  const root = frame(yLabel);
  if (values.length === 0) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, empty));
    return root;
  }
  const y = linearScale(extent(values.map((v) => v.value)), [H - M.bottom, M.top]);
  const slot = (W - M.left - M.right) / values.length;
  const every = Math.ceil(values.length / 12);
  axes(root, values.map((v, i) => [M.left + slot * (i + 0.5), i % every === 0 ? v.label : ""] as [number, string]),
    y.ticks(4).map((t) => [y(t), format(t)]), "", yLabel);
  values.forEach((v, i) => {
    const top = y(Math.max(v.value, 0));
    const bar = svg("rect", {
      x: M.left + slot * i + slot * 0.15, y: top, width: Math.max(slot * 0.7, 1), height: Math.max(H - M.bottom - top, 0), class: "bar",
    });
    bar.append(svg("title", {}, `${v.label}: ${format(v.value)}`));
    root.append(bar);
  });
  return root;
}

export function bandwidthChart(points: Bandwidth[], empty?: string): SVGElement {
  return barChart(points.map((p) => ({ label: p.label, value: p.gb_per_second })), "GB/s", tickLabel, empty);
}

export function acceptanceChart(acceptance: number[], empty?: string): SVGElement {
  return barChart(acceptance.map((p, i) => ({ label: String(i + 1), value: p })), "p[k]", (v) => v.toFixed(2), empty);
}

/** The speculation tree: one dot per drafted token, the root being the last committed token. */
export function treePicture(nodes: TreeNode[]): SVGElement {
  const layout = layoutTree(nodes, 720, 220, 16);
  const root = svg("svg", { viewBox: `0 0 ${layout.width} ${layout.height}`, class: "tree", role: "img", "aria-label": `speculation tree of ${nodes.length} nodes` });
  for (const e of layout.edges) {
    const a = layout.nodes[e.from];
    const b = layout.nodes[e.to];
    root.append(svg("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: "edge" }));
  }
  const r = nodes.length > 300 ? 2 : nodes.length > 80 ? 3 : 4.5;
  for (const n of layout.nodes) {
    root.append(svg("circle", { cx: n.x, cy: n.y, r: n.parent === null ? r + 1.5 : r, class: `node rank-${Math.min(n.rank, 3)}` }));
  }
  return root;
}
