//! Large budgets under llama.cpp's leaf limit: the plan is a valid tree within every limit, its value is
//! its own re-evaluation, and it lies within the reported gap of a proven upper bound.

use canopy_plan::{
    choose, optimal_tree_bounded, Acceptance, BoundedPlan, CostTable, Costs, Limits, TreePlan,
    LLAMA_MAX_LEAVES,
};
use proptest::prelude::*;

fn limits(budget: usize) -> Limits {
    Limits {
        budget,
        max_depth: 32,
        max_branch: 32,
        max_leaves: LLAMA_MAX_LEAVES,
    }
}

/// Vectors like those measured on real draft/target pairs.
fn realistic() -> Vec<Vec<f64>> {
    let geometric: Vec<f64> = (0..32).map(|k| 0.6f64.powi(k)).collect();
    let sum: f64 = geometric.iter().sum();
    vec![
        vec![0.6, 0.1, 0.05, 0.03, 0.02, 0.01],
        vec![0.8, 0.1, 0.05],
        vec![0.5, 0.2, 0.1, 0.05, 0.03, 0.02],
        vec![0.03; 32],
        geometric.iter().map(|x| x / sum * 0.9).collect(),
    ]
}

/// Checks everything a caller relies on and returns the gap.
fn check(acc: &Acceptance, limits: &Limits, bounded: &BoundedPlan) -> f64 {
    let plan = &bounded.plan;
    let counts: Vec<u32> = plan.nodes.iter().map(|n| n.children).collect();
    let rebuilt = TreePlan::from_children_counts(&counts, acc).expect("the counts describe a tree");
    assert_eq!(rebuilt.nodes, plan.nodes, "breadth-first layout round trip");
    for (i, node) in plan.nodes.iter().enumerate() {
        for (r, c) in plan.children(i).enumerate() {
            assert_eq!(plan.nodes[c].parent, Some(i));
            assert_eq!(plan.nodes[c].rank as usize, r + 1);
            assert_eq!(plan.nodes[c].depth, node.depth + 1);
        }
    }
    let leaves = plan.nodes.iter().filter(|n| n.children == 0).count();
    assert_eq!(leaves, plan.leaves());
    assert_eq!(
        plan.nodes
            .iter()
            .map(|n| n.children as usize)
            .sum::<usize>(),
        plan.budget() - 1
    );
    assert!(plan.budget() <= limits.budget, "{} nodes", plan.budget());
    assert!(plan.depth() <= limits.max_depth, "depth {}", plan.depth());
    assert!(
        plan.leaves() <= limits.max_leaves,
        "{} leaves",
        plan.leaves()
    );
    assert!(plan
        .nodes
        .iter()
        .all(|n| n.children as usize <= limits.max_branch));
    let value = plan.expected_tokens_with(acc);
    assert!(
        (plan.expected_tokens - value).abs() <= 1e-12 * value,
        "{} vs re-evaluated {value}",
        plan.expected_tokens
    );
    assert!(bounded.upper_bound >= plan.expected_tokens);
    let gap = bounded.gap();
    assert!(
        plan.expected_tokens >= bounded.upper_bound * (1.0 - gap) * (1.0 - 1e-12),
        "value within the reported gap"
    );
    gap
}

#[test]
fn realistic_vectors_plan_within_a_tenth_of_a_percent() {
    for budget in [512, 1024, 2048] {
        let l = limits(budget);
        for p in realistic() {
            let acc = Acceptance::new(p.clone()).unwrap();
            let bounded = optimal_tree_bounded(&acc, &l).unwrap();
            let gap = check(&acc, &l, &bounded);
            assert!(gap < 1e-3, "budget {budget}, p {p:?}: gap {gap}");
        }
    }
}

#[test]
fn the_leaf_limit_binds_at_large_budgets() {
    // Without the limit, the optimum of the flat vector at 1024 nodes has far more leaves.
    let acc = Acceptance::new(vec![0.03; 32]).unwrap();
    let free = optimal_tree_bounded(
        &acc,
        &Limits {
            max_leaves: 1024,
            ..limits(1024)
        },
    )
    .unwrap();
    assert!(free.plan.leaves() > LLAMA_MAX_LEAVES);
    let bound = optimal_tree_bounded(&acc, &limits(1024)).unwrap();
    assert_eq!(bound.plan.leaves(), LLAMA_MAX_LEAVES);
    assert!(bound.upper_bound < free.plan.expected_tokens);
}

#[test]
fn choose_plans_large_budgets_under_the_leaf_limit() {
    let costs = Costs {
        target: CostTable::new(vec![(1, 3.0), (128, 3.05), (512, 3.2), (1024, 3.5)]).unwrap(),
        draft: CostTable::new(vec![(1, 0.01), (64, 0.012), (1024, 0.05)]).unwrap(),
    };
    let l = limits(1024);
    for p in realistic() {
        let acc = Acceptance::new(p).unwrap();
        let c = choose(&acc, &costs, &l).unwrap();
        let bounded = BoundedPlan {
            plan: c.plan.clone(),
            upper_bound: c.upper_bound,
        };
        check(&acc, &l, &bounded);
        assert!(c.speedup >= 1.0);
        assert!((c.step_seconds - costs.step_seconds(&c.plan, &acc).unwrap()).abs() < 1e-12);
        assert!(
            (c.predicted_tokens_per_second - c.plan.expected_tokens / c.step_seconds).abs() < 1e-9
        );
        // Nearly flat pass times: a large tree pays, and it needs the leaf limit.
        assert!(c.plan.budget() > 256, "{} nodes", c.plan.budget());
    }
}

/// A valid acceptance vector of up to 32 entries, decreasing or not.
fn acceptance() -> impl Strategy<Value = Vec<f64>> {
    (
        prop::collection::vec(prop_oneof![1 => Just(0.0), 4 => 0.0f64..1.0], 1..=32),
        0.3f64..=1.0,
        any::<bool>(),
    )
        .prop_map(|(mut w, total, sorted)| {
            if sorted {
                w.sort_by(|a, b| b.total_cmp(a));
            }
            let sum: f64 = w.iter().sum();
            if sum == 0.0 {
                w
            } else {
                w.iter().map(|x| x / sum * total * 0.999_999).collect()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn generated_vectors_give_valid_bounded_plans(
        p in acceptance(),
        budget in prop_oneof![Just(512usize), Just(1024), 300usize..=1100],
        depth in 4usize..=32,
        branch in 2usize..=32,
    ) {
        let acc = Acceptance::new(p).unwrap();
        let l = Limits { budget, max_depth: depth, max_branch: branch, max_leaves: LLAMA_MAX_LEAVES };
        let bounded = optimal_tree_bounded(&acc, &l).unwrap();
        let gap = check(&acc, &l, &bounded);
        prop_assert!(gap < 1e-2, "gap {}", gap);
    }
}
