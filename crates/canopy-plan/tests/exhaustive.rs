//! Optimality proof by exhaustion: for small budgets, every tree is enumerated and the planner's value
//! must equal the best one under the same limits.

use canopy_plan::{optimal_tree, Acceptance, Limits, TreePlan};
use proptest::prelude::*;

/// An ordered tree: children in rank order.
#[derive(Clone, Debug)]
struct Tree(Vec<Tree>);

impl Tree {
    fn size(&self) -> usize {
        1 + self.0.iter().map(Tree::size).sum::<usize>()
    }
    fn depth(&self) -> usize {
        self.0.iter().map(|c| 1 + c.depth()).max().unwrap_or(0)
    }
    fn leaves(&self) -> usize {
        if self.0.is_empty() {
            1
        } else {
            self.0.iter().map(Tree::leaves).sum()
        }
    }
    fn max_branch(&self) -> usize {
        self.0
            .iter()
            .map(Tree::max_branch)
            .max()
            .unwrap_or(0)
            .max(self.0.len())
    }
    fn value(&self, p: &[f64]) -> f64 {
        1.0 + self
            .0
            .iter()
            .enumerate()
            .map(|(i, c)| p.get(i).copied().unwrap_or(0.0) * c.value(p))
            .sum::<f64>()
    }
}

/// All ordered trees with exactly `n` nodes.
fn trees(n: usize) -> Vec<Tree> {
    if n == 1 {
        return vec![Tree(vec![])];
    }
    forests(n - 1).into_iter().map(Tree).collect()
}

/// All ordered forests with exactly `n` nodes.
fn forests(n: usize) -> Vec<Vec<Tree>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for first in 1..=n {
        for head in trees(first) {
            for tail in forests(n - first) {
                let mut forest = vec![head.clone()];
                forest.extend(tail);
                out.push(forest);
            }
        }
    }
    out
}

fn brute_force(p: &[f64], limits: &Limits) -> f64 {
    (1..=limits.budget)
        .flat_map(trees)
        .filter(|t| {
            t.depth() <= limits.max_depth
                && t.max_branch() <= limits.max_branch
                && t.leaves() <= limits.max_leaves
        })
        .map(|t| t.value(p))
        .fold(f64::NEG_INFINITY, f64::max)
}

fn check_shape(plan: &TreePlan, limits: &Limits) {
    assert!(
        plan.budget() <= limits.budget,
        "budget {} > {}",
        plan.budget(),
        limits.budget
    );
    assert!(plan.depth() <= limits.max_depth);
    assert!(plan.leaves() <= limits.max_leaves);
    assert!(plan
        .nodes
        .iter()
        .all(|n| n.children as usize <= limits.max_branch));
    for (i, node) in plan.nodes.iter().enumerate() {
        for (r, c) in plan.children(i).enumerate() {
            assert_eq!(plan.nodes[c].parent, Some(i));
            assert_eq!(plan.nodes[c].rank as usize, r + 1);
            assert_eq!(plan.nodes[c].depth, node.depth + 1);
        }
    }
}

/// A valid acceptance vector: random weights scaled to a random total <= 1, sometimes with zeros and
/// out of order (non-increasing is common, not assumed).
fn acceptance() -> impl Strategy<Value = Vec<f64>> {
    (
        prop::collection::vec(prop_oneof![Just(0.0), 0.0f64..1.0], 1..6),
        0.0f64..=1.0,
    )
        .prop_map(|(w, total)| {
            let sum: f64 = w.iter().sum();
            if sum == 0.0 {
                w
            } else {
                w.iter().map(|x| x / sum * total * 0.999_999).collect()
            }
        })
}

fn limits() -> impl Strategy<Value = Limits> {
    (1usize..=8, 0usize..=7, 0usize..=5, 1usize..=8).prop_map(
        |(budget, max_depth, max_branch, max_leaves)| Limits {
            budget,
            max_depth,
            max_branch,
            max_leaves,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn planner_equals_exhaustive_search(p in acceptance(), limits in limits()) {
        let acc = Acceptance::new(p.clone()).unwrap();
        let plan = optimal_tree(&acc, &limits).unwrap();
        check_shape(&plan, &limits);
        let best = brute_force(&p, &limits);
        prop_assert!((plan.expected_tokens - best).abs() < 1e-12, "planner {} vs exhaustive {}", plan.expected_tokens, best);
        prop_assert!((plan.expected_tokens_with(&acc) - plan.expected_tokens).abs() < 1e-12);
    }

    #[test]
    fn leaf_limit_is_exact_when_it_binds(p in acceptance(), budget in 5usize..=8, depth in 1usize..=4, leaves in 1usize..=3) {
        let limits = Limits { budget, max_depth: depth, max_branch: 8, max_leaves: leaves };
        let acc = Acceptance::new(p.clone()).unwrap();
        let plan = optimal_tree(&acc, &limits).unwrap();
        check_shape(&plan, &limits);
        let best = brute_force(&p, &limits);
        prop_assert!((plan.expected_tokens - best).abs() < 1e-12, "planner {} vs exhaustive {}", plan.expected_tokens, best);
    }
}

#[test]
fn enumeration_counts_catalan_trees() {
    let counts: Vec<usize> = (1..=8).map(|n| trees(n).len()).collect();
    assert_eq!(counts, [1, 1, 2, 5, 14, 42, 132, 429]);
    assert!((1..=8).all(|n| trees(n).iter().all(|t| t.size() == n)));
}
