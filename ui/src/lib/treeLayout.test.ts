import type { Node as TreeNode } from "../types";
import { layoutTree } from "./treeLayout";

function node(parent: number | null, rank: number, depth: number, children = 0): TreeNode {
  return { parent, rank, depth, children };
}

describe("layoutTree", () => {
  it("places a root over two chains", () => {
    // 0 → 1 (rank 0) → 3 ; 0 → 2 (rank 1)
    const nodes = [node(null, 0, 0, 2), node(0, 0, 1, 1), node(0, 1, 1), node(1, 0, 2)];
    const l = layoutTree(nodes, 100, 100, 0);
    expect(l.leaves).toBe(2);
    expect(l.depth).toBe(2);
    expect(l.nodes[3].x).toBe(0);
    expect(l.nodes[2].x).toBe(100);
    expect(l.nodes[1].x).toBe(0);
    expect(l.nodes[0].x).toBe(50);
    expect(l.nodes[0].y).toBe(0);
    expect(l.nodes[3].y).toBe(100);
    expect(l.edges).toEqual([{ from: 0, to: 1 }, { from: 0, to: 2 }, { from: 1, to: 3 }]);
  });

  it("orders children by rank, not by index", () => {
    const nodes = [node(null, 0, 0), node(0, 1, 1), node(0, 0, 1)];
    const l = layoutTree(nodes, 100, 100, 0);
    expect(l.nodes[2].x).toBeLessThan(l.nodes[1].x);
  });

  it("handles a single node, an empty tree and a bad parent", () => {
    expect(layoutTree([node(null, 0, 0)], 100, 50, 0).nodes[0]).toMatchObject({ x: 50, y: 25 });
    expect(layoutTree([]).nodes).toEqual([]);
    const l = layoutTree([node(null, 0, 0), node(42, 0, 1)], 100, 100, 0);
    expect(l.nodes[1].parent).toBeNull();
    expect(l.edges).toEqual([]);
  });

  it("lays out a long chain without recursion", () => {
    const chain = Array.from({ length: 5000 }, (_, i) => node(i === 0 ? null : i - 1, 0, i));
    const l = layoutTree(chain, 100, 100, 0);
    expect(l.depth).toBe(4999);
    expect(l.leaves).toBe(1);
  });
});
