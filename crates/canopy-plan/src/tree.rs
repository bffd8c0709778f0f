//! The shape of a speculation tree, in the breadth-first layout the engine decodes.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::Acceptance;

/// One node of a planned tree.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlanNode {
    /// Index of the parent node; `None` for the root.
    pub parent: Option<usize>,
    /// 0 for the root; 1.. for children: the k-th candidate drawn from the draft at the parent.
    pub rank: u32,
    /// Speculated tokens above this node on its path (the root is depth 0).
    pub depth: u32,
    /// Number of children (ranks 1..=children).
    pub children: u32,
}

/// A speculation tree.
///
/// Invariant: `nodes` is breadth-first with node 0 the root; the children of a node are contiguous and in
/// rank order, and the blocks of children follow the order of their parents.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TreePlan {
    pub nodes: Vec<PlanNode>,
    /// Expected tokens produced per verification pass (the root's bonus token counts 1).
    pub expected_tokens: f64,
}

/// The nodes at one depth that get children, and how many each gets: one draft decode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    pub depth: usize,
    /// `(node index, number of children)` in breadth-first order.
    pub expand: Vec<(usize, u32)>,
}

impl TreePlan {
    /// Expected accepted nodes per pass that lie off the first-choice chain (the root, its first
    /// child, that child's first child, …). The engine lays a tree out depth first, so that chain
    /// fills the tree's first KV cells; any other accepted node is decoded again in the next pass
    /// to keep the cache in position order.
    pub fn expected_redecoded(&self, acc: &Acceptance) -> f64 {
        let n = self.nodes.len();
        let mut reach = vec![1.0; n];
        let mut first_choice = vec![true; n];
        let mut off_chain = 0.0;
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            let Some(p) = node.parent else { continue };
            reach[i] = reach[p] * acc.get(node.rank as usize);
            first_choice[i] = first_choice[p] && node.rank == 1;
            if !first_choice[i] {
                off_chain += reach[i];
            }
        }
        off_chain
    }

    /// Plain decoding: the root alone, one token per pass.
    pub fn plain() -> TreePlan {
        TreePlan {
            nodes: vec![PlanNode {
                parent: None,
                rank: 0,
                depth: 0,
                children: 0,
            }],
            expected_tokens: 1.0,
        }
    }

    /// Builds the breadth-first layout from the number of children of every node in breadth-first order
    /// and evaluates it under `acc`. Returns `None` when the counts do not describe one tree
    /// (empty, or children announced that never come, or nodes left over).
    pub fn from_children_counts(counts: &[u32], acc: &Acceptance) -> Option<TreePlan> {
        if counts.is_empty() {
            return None;
        }
        let mut nodes = Vec::with_capacity(counts.len());
        nodes.push(PlanNode {
            parent: None,
            rank: 0,
            depth: 0,
            children: counts[0],
        });
        let mut next = 0;
        while next < nodes.len() {
            let depth = nodes[next].depth;
            for rank in 1..=nodes[next].children {
                let index = nodes.len();
                let children = *counts.get(index)?;
                nodes.push(PlanNode {
                    parent: Some(next),
                    rank,
                    depth: depth + 1,
                    children,
                });
            }
            next += 1;
        }
        if nodes.len() != counts.len() {
            return None;
        }
        let mut plan = TreePlan {
            nodes,
            expected_tokens: 0.0,
        };
        plan.expected_tokens = plan.expected_tokens_with(acc);
        Some(plan)
    }

    /// Tokens in one target pass (the number of nodes, root included).
    pub fn budget(&self) -> usize {
        self.nodes.len()
    }

    /// The deepest node's depth (0 for plain decoding).
    pub fn depth(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| n.depth as usize)
            .max()
            .unwrap_or(0)
    }

    /// Nodes without children (the root alone counts as one leaf).
    pub fn leaves(&self) -> usize {
        self.nodes.iter().filter(|n| n.children == 0).count()
    }

    /// For each depth `0..depth()`, the nodes that get children there: the draft decodes one level at a time.
    pub fn levels(&self) -> Vec<Level> {
        let mut levels: Vec<Level> = (0..self.depth())
            .map(|depth| Level {
                depth,
                expand: Vec::new(),
            })
            .collect();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.children > 0 {
                levels[node.depth as usize].expand.push((i, node.children));
            }
        }
        levels
    }

    /// Number of nodes per depth (`[1, ...]`).
    pub fn width_per_depth(&self) -> Vec<usize> {
        let mut widths = vec![0; self.depth() + 1];
        for node in &self.nodes {
            widths[node.depth as usize] += 1;
        }
        widths
    }

    /// Indices of the children of `node` (empty for a leaf or an index past the end).
    pub fn children(&self, node: usize) -> Range<usize> {
        if node >= self.nodes.len() {
            return 0..0;
        }
        let start = 1 + self.nodes[..node]
            .iter()
            .map(|n| n.children as usize)
            .sum::<usize>();
        start..start + self.nodes[node].children as usize
    }

    /// Expected tokens per pass of this fixed shape under another acceptance vector
    /// (ranks beyond the vector's length count as probability 0).
    pub fn expected_tokens_with(&self, acc: &Acceptance) -> f64 {
        let mut weight = vec![0.0; self.nodes.len()];
        let mut total = 0.0;
        for (i, node) in self.nodes.iter().enumerate() {
            weight[i] = match node.parent {
                None => 1.0,
                Some(parent) => weight[parent] * acc.get(node.rank as usize),
            };
            total += weight[i];
        }
        total
    }
}

/// A planned tree and a proven upper bound on the expected tokens of any tree within the same limits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BoundedPlan {
    pub plan: TreePlan,
    /// No tree within the limits the plan was made under has more expected tokens per pass; equal to
    /// `plan.expected_tokens` when the plan is proven optimal.
    pub upper_bound: f64,
}

impl BoundedPlan {
    /// A plan proven optimal: its bound is its value.
    pub fn exact(plan: TreePlan) -> BoundedPlan {
        let upper_bound = plan.expected_tokens;
        BoundedPlan { plan, upper_bound }
    }

    /// How far the plan may fall short of the optimum, as a fraction of the bound:
    /// `(upper_bound - expected_tokens) / upper_bound`, 0 when the plan is proven optimal.
    pub fn gap(&self) -> f64 {
        ((self.upper_bound - self.plan.expected_tokens) / self.upper_bound).max(0.0)
    }
}
