// Lays out a speculation tree (nodes listed parents first) for drawing: depth downwards,
// leaves spread evenly across, each parent centred over its children.

import type { Node as TreeNode } from "../types";

export interface PlacedNode {
  index: number;
  x: number;
  y: number;
  depth: number;
  rank: number;
  parent: number | null;
}

export interface TreeLayout {
  nodes: PlacedNode[];
  edges: { from: number; to: number }[];
  width: number;
  height: number;
  leaves: number;
  depth: number;
}

/**
 * Positions each node in a `width` × `height` box with `pad` margins.
 * Nodes whose parent index is out of range are treated as roots rather than dropped.
 */
export function layoutTree(nodes: readonly TreeNode[], width = 600, height = 260, pad = 14): TreeLayout {
  const n = nodes.length;
  if (n === 0) return { nodes: [], edges: [], width, height, leaves: 0, depth: 0 };
  const kids: number[][] = nodes.map(() => []);
  const roots: number[] = [];
  nodes.forEach((node, i) => {
    const p = node.parent;
    if (p === null || p < 0 || p >= n || p === i) roots.push(i);
    else kids[p].push(i);
  });
  for (const list of kids) list.sort((a, b) => nodes[a].rank - nodes[b].rank || a - b);

  const slot = new Array<number>(n).fill(0);
  const depthOf = new Array<number>(n).fill(0);
  let nextLeaf = 0;
  let maxDepth = 0;
  // Iterative post-order so deep chains cannot overflow the stack.
  const visited = new Array<boolean>(n).fill(false);
  for (const root of roots) {
    const stack: { i: number; d: number; expanded: boolean }[] = [{ i: root, d: 0, expanded: false }];
    while (stack.length) {
      const top = stack[stack.length - 1];
      if (!top.expanded) {
        top.expanded = true;
        if (visited[top.i]) {
          stack.pop();
          continue;
        }
        visited[top.i] = true;
        depthOf[top.i] = top.d;
        maxDepth = Math.max(maxDepth, top.d);
        for (let k = kids[top.i].length - 1; k >= 0; k--) stack.push({ i: kids[top.i][k], d: top.d + 1, expanded: false });
        continue;
      }
      stack.pop();
      const children = kids[top.i].filter((c) => depthOf[c] === top.d + 1);
      if (children.length === 0) slot[top.i] = nextLeaf++;
      else slot[top.i] = (slot[children[0]] + slot[children[children.length - 1]]) / 2;
    }
  }
  const leaves = Math.max(nextLeaf, 1);
  const innerW = width - 2 * pad;
  const innerH = height - 2 * pad;
  const placed: PlacedNode[] = nodes.map((node, i) => ({
    index: i,
    x: pad + (leaves === 1 ? innerW / 2 : (slot[i] / (leaves - 1)) * innerW),
    y: pad + (maxDepth === 0 ? innerH / 2 : (depthOf[i] / maxDepth) * innerH),
    depth: depthOf[i],
    rank: node.rank,
    parent: roots.includes(i) ? null : node.parent,
  }));
  const edges = placed.filter((p) => p.parent !== null).map((p) => ({ from: p.parent as number, to: p.index }));
  return { nodes: placed, edges, width, height, leaves: nextLeaf, depth: maxDepth };
}
