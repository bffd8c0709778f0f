//! The limits, the baselines, the cost model and the cache, on hand-checked cases.

use canopy_plan::{
    chain, choose, choose_ladder, fixed_budget, optimal_tree, optimal_tree_bounded, Acceptance,
    CostTable, Costs, Limits, PlanError, Planner, TreePlan,
};

fn acc(p: &[f64]) -> Acceptance {
    Acceptance::new(p.to_vec()).unwrap()
}

fn limits(budget: usize, max_depth: usize, max_branch: usize, max_leaves: usize) -> Limits {
    Limits {
        budget,
        max_depth,
        max_branch,
        max_leaves,
    }
}

#[test]
fn depth_one_is_one_level_of_siblings() {
    let a = acc(&[0.5, 0.2, 0.1, 0.05]);
    let plan = optimal_tree(&a, &limits(64, 1, 64, 255)).unwrap();
    assert_eq!(plan.budget(), 5);
    assert_eq!(plan.nodes[0].children, 4);
    assert!((plan.expected_tokens - 1.85).abs() < 1e-12);
    let plan = optimal_tree(&a, &limits(3, 1, 64, 255)).unwrap();
    assert_eq!(plan.nodes[0].children, 2);
    assert!((plan.expected_tokens - 1.7).abs() < 1e-12);
}

#[test]
fn max_branch_one_is_a_chain() {
    let a = acc(&[0.8, 0.1]);
    let plan = optimal_tree(&a, &limits(6, 32, 1, 255)).unwrap();
    assert_eq!(plan, chain(&a, 5));
    let expected: f64 = (0..6).map(|i| 0.8f64.powi(i)).sum();
    assert!((plan.expected_tokens - expected).abs() < 1e-12);
    assert_eq!((plan.depth(), plan.leaves()), (5, 1));
}

#[test]
fn max_leaves_binds_and_is_honoured() {
    let a = acc(&[0.5, 0.3, 0.1]);
    let free = optimal_tree(&a, &limits(12, 4, 3, 255)).unwrap();
    assert!(
        free.leaves() > 2,
        "the unconstrained optimum is bushy: {} leaves",
        free.leaves()
    );
    let bound = optimal_tree(&a, &limits(12, 4, 3, 2)).unwrap();
    assert!(bound.leaves() <= 2);
    assert!(bound.expected_tokens < free.expected_tokens);
    // Two leaves, depth 4: the best is a chain of 4 with a second chain hanging from it.
    let one = optimal_tree(&a, &limits(12, 4, 3, 1)).unwrap();
    assert_eq!(one, chain(&a, 4));
    assert!(bound.expected_tokens > one.expected_tokens);
}

#[test]
fn leaf_limit_at_large_budgets_is_planned_with_a_proven_bound() {
    let a = acc(&[0.6, 0.2, 0.1, 0.05]);
    let l = limits(1024, 32, 4, 64);
    let bounded = optimal_tree_bounded(&a, &l).unwrap();
    assert!(bounded.plan.leaves() <= 64 && bounded.plan.budget() <= 1024);
    assert!(bounded.gap() < 1e-3, "gap {}", bounded.gap());
    assert_eq!(optimal_tree(&a, &l).unwrap(), bounded.plan);
    // A limit that cannot bind costs nothing extra, and the plan is exact.
    let free = optimal_tree_bounded(&a, &limits(1024, 32, 4, 1024)).unwrap();
    assert_eq!(free.plan.budget(), 1024);
    assert_eq!(free.upper_bound, free.plan.expected_tokens);
    assert!(bounded.upper_bound <= free.upper_bound);
}

#[test]
fn plain_decoding_edges() {
    let a = acc(&[0.9]);
    assert_eq!(
        optimal_tree(&a, &limits(1, 8, 8, 1)).unwrap(),
        TreePlan::plain()
    );
    assert_eq!(
        optimal_tree(&a, &limits(8, 0, 8, 8)).unwrap(),
        TreePlan::plain()
    );
    assert_eq!(
        optimal_tree(&a, &limits(8, 8, 0, 8)).unwrap(),
        TreePlan::plain()
    );
    assert_eq!(
        optimal_tree(&acc(&[0.0, 0.0]), &limits(8, 8, 8, 8)).unwrap(),
        TreePlan::plain()
    );
    assert_eq!(TreePlan::plain().levels(), vec![]);
}

#[test]
fn zero_entries_are_never_padded_with_useless_nodes() {
    // p[2] = 0: a rank-2 child is only worth having as the way to rank 3.
    let a = acc(&[0.5, 0.0, 0.4]);
    let plan = optimal_tree(&a, &limits(4, 1, 8, 8)).unwrap();
    assert_eq!(plan.nodes[0].children, 3);
    let plan = optimal_tree(&a, &limits(3, 1, 8, 8)).unwrap();
    assert_eq!(plan.budget(), 2, "a useless rank-2 leaf is left out");
}

#[test]
fn invalid_vectors_name_the_entry() {
    assert_eq!(Acceptance::new(vec![]), Err(PlanError::EmptyAcceptance));
    assert_eq!(
        Acceptance::new(vec![0.5, -0.1]),
        Err(PlanError::InvalidAcceptance {
            index: 2,
            value: -0.1
        })
    );
    assert!(matches!(
        Acceptance::new(vec![f64::NAN]),
        Err(PlanError::InvalidAcceptance { index: 1, .. })
    ));
    assert!(matches!(
        Acceptance::new(vec![0.5, f64::INFINITY]),
        Err(PlanError::InvalidAcceptance { index: 2, .. })
    ));
    let err = Acceptance::new(vec![0.6, 0.3, 0.2]).unwrap_err();
    assert!(
        matches!(err, PlanError::AcceptanceSumAboveOne { index: 3, value, .. } if value == 0.2)
    );
    assert!(err.to_string().contains("p[3] = 0.2"), "{err}");
    assert!(
        Acceptance::new(vec![0.5, 0.5 + 1e-10]).is_ok(),
        "rounding within 1e-9 is accepted"
    );
    assert!(serde_json::from_str::<Acceptance>("[0.9, 0.2]").is_err());
}

#[test]
fn invalid_limits_are_errors() {
    let a = acc(&[0.5]);
    assert!(matches!(
        optimal_tree(&a, &limits(0, 4, 4, 4)),
        Err(PlanError::InvalidLimit { name: "budget", .. })
    ));
    assert!(matches!(
        optimal_tree(&a, &limits(9000, 4, 4, 4)),
        Err(PlanError::InvalidLimit { name: "budget", .. })
    ));
    assert!(matches!(
        optimal_tree(&a, &limits(4, 4, 4, 0)),
        Err(PlanError::InvalidLimit {
            name: "max_leaves",
            ..
        })
    ));
}

#[test]
fn layout_levels_and_children() {
    let a = acc(&[0.6, 0.3]);
    let plan = TreePlan::from_children_counts(&[2, 2, 1, 0, 0, 0], &a).unwrap();
    assert_eq!(plan.children(0), 1..3);
    assert_eq!(plan.children(1), 3..5);
    assert_eq!(plan.children(2), 5..6);
    assert_eq!(plan.children(3), 6..6);
    assert_eq!(plan.nodes[5].parent, Some(2));
    let levels = plan.levels();
    assert_eq!(levels.len(), 2);
    assert_eq!(levels[0].expand, vec![(0, 2)]);
    assert_eq!(levels[1].expand, vec![(1, 2), (2, 1)]);
    assert_eq!(plan.width_per_depth(), vec![1, 2, 3]);
    let expected = 1.0 + 0.6 + 0.3 + 0.36 + 0.18 + 0.18;
    assert!((plan.expected_tokens - expected).abs() < 1e-12);
    assert!((plan.expected_tokens_with(&acc(&[1.0])) - 3.0).abs() < 1e-12);
    assert!(TreePlan::from_children_counts(&[2, 0], &a).is_none());
    assert!(TreePlan::from_children_counts(&[1, 0, 0], &a).is_none());
    let round: TreePlan = serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
    assert_eq!(round.nodes, plan.nodes);
    assert!((round.expected_tokens - plan.expected_tokens).abs() < 1e-12);
}

#[test]
fn fixed_budget_and_chain_baselines() {
    let a = acc(&[0.62, 0.11, 0.05]);
    let l = limits(1024, 10, 3, 255);
    let small = fixed_budget(&a, 16, &l).unwrap();
    assert!(small.budget() <= 16);
    assert_eq!(small, optimal_tree(&a, &limits(16, 10, 3, 255)).unwrap());
    assert!(small.expected_tokens >= chain(&a, 15).expected_tokens);
    assert_eq!(chain(&a, 0), TreePlan::plain());
}

#[test]
fn cost_tables_interpolate_and_never_extrapolate_silently() {
    let t = CostTable::new(vec![(16, 0.4), (1, 0.1), (4, 0.2)]).unwrap();
    assert_eq!(t.points(), &[(1, 0.1), (4, 0.2), (16, 0.4)]);
    assert!((t.at(10).unwrap() - 0.3).abs() < 1e-12);
    assert_eq!(t.at(4).unwrap(), 0.2);
    assert!(matches!(
        t.at(17),
        Err(PlanError::OutOfRange {
            n: 17,
            min: 1,
            max: 16,
            ..
        })
    ));
    assert!((t.extrapolate(28) - 0.6).abs() < 1e-12);
    assert!(matches!(
        CostTable::new(vec![]),
        Err(PlanError::EmptyCostTable { .. })
    ));
    assert!(matches!(
        CostTable::new(vec![(1, 0.1), (1, 0.2)]),
        Err(PlanError::DuplicateCostPoint { n: 1, .. })
    ));
    assert!(matches!(
        CostTable::new(vec![(0, 0.1)]),
        Err(PlanError::InvalidCostPoint { .. })
    ));
    assert!(matches!(
        CostTable::new(vec![(1, f64::NAN)]),
        Err(PlanError::InvalidCostPoint { .. })
    ));
}

fn costs(target: &[(usize, f64)], draft: &[(usize, f64)]) -> Costs {
    Costs {
        target: CostTable::new(target.to_vec()).unwrap(),
        draft: CostTable::new(draft.to_vec()).unwrap(),
    }
}

#[test]
fn choose_is_never_slower_than_plain_and_beats_every_optimal_tree() {
    let a = acc(&[0.62, 0.11, 0.05]);
    let l = limits(48, 6, 3, 255);
    let flat = costs(
        &[(1, 1.0), (32, 1.02), (40, 1.03)],
        &[(1, 0.01), (64, 0.02)],
    );
    let c = choose(&a, &flat, &l).unwrap();
    assert!(c.plan.budget() <= 40, "budget stays in the measured range");
    assert!(c.speedup > 2.0);
    assert!((c.step_seconds - flat.step_seconds(&c.plan, &a).unwrap()).abs() < 1e-12);
    assert!((c.predicted_tokens_per_second - c.plan.expected_tokens / c.step_seconds).abs() < 1e-9);
    // Independently: no optimal tree of any budget and depth within the limits predicts more.
    for budget in 1..=40 {
        for depth in 0..=6 {
            let plan = optimal_tree(&a, &limits(budget, depth, 3, 255)).unwrap();
            let tps = plan.expected_tokens / flat.step_seconds(&plan, &a).unwrap();
            assert!(
                tps <= c.predicted_tokens_per_second + 1e-9,
                "budget {budget} depth {depth}: {tps}"
            );
        }
    }
    let steep = costs(&[(1, 0.1), (2, 0.2), (32, 3.2)], &[(1, 0.05), (32, 1.0)]);
    let c = choose(&a, &steep, &l).unwrap();
    assert_eq!(c.plan, TreePlan::plain());
    assert_eq!(c.speedup, 1.0);
    let no_one = costs(&[(2, 0.1)], &[(1, 0.05)]);
    assert!(matches!(
        choose(&a, &no_one, &l),
        Err(PlanError::OutOfRange { n: 1, .. })
    ));
}

#[test]
fn the_ladder_holds_the_best_tree_of_every_budget_range() {
    let a = acc(&[0.62, 0.11, 0.05]);
    let l = limits(48, 6, 3, 255);
    let flat = costs(
        &[(1, 1.0), (32, 1.02), (40, 1.03)],
        &[(1, 0.01), (64, 0.02)],
    );
    let ladder = choose_ladder(&a, &flat, &l).unwrap();
    assert_eq!(ladder[0].plan, TreePlan::plain());
    let best = choose(&a, &flat, &l).unwrap();
    let top = ladder
        .iter()
        .map(|c| c.predicted_tokens_per_second)
        .fold(0.0, f64::max);
    assert!((top - best.predicted_tokens_per_second).abs() < 1e-12);
    // Ranges: 2, 3, 4, 5, 6, 7-8, 9-10, 11-12, 13-16, 17-20, 21-24, 25-32, 33-40.
    let tops = [2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40];
    assert_eq!(ladder.len(), 1 + tops.len());
    for (c, (&hi, &lo)) in ladder[1..]
        .iter()
        .zip(tops.iter().zip([1].iter().chain(&tops)))
    {
        assert!(
            c.plan.budget() > lo && c.plan.budget() <= hi,
            "{} in {lo}..={hi}",
            c.plan.budget()
        );
        assert!(c.speedup > 1.0);
        // Nothing in its range does better.
        for budget in lo + 1..=hi {
            for depth in 0..=6 {
                let plan = optimal_tree(&a, &limits(budget, depth, 3, 255)).unwrap();
                let tps = plan.expected_tokens / flat.step_seconds(&plan, &a).unwrap();
                assert!(tps <= c.predicted_tokens_per_second + 1e-9);
            }
        }
    }
    // Where no tree pays, plain decoding alone.
    let steep = costs(&[(1, 0.1), (2, 0.2), (32, 3.2)], &[(1, 0.05), (32, 1.0)]);
    assert_eq!(choose_ladder(&a, &steep, &l).unwrap().len(), 1);
}

#[test]
fn choose_draft_cost_counts_only_expanded_nodes() {
    let a = acc(&[0.5, 0.3]);
    let plan = TreePlan::from_children_counts(&[2, 2, 0, 0, 0], &a).unwrap();
    let c = costs(&[(1, 1.0), (8, 1.0)], &[(1, 0.1), (2, 0.2), (3, 0.3)]);
    // Depth 0 expands 1 node, depth 1 expands 1 node (the leaf at depth 1 needs no draft pass);
    // the draft's first pass also decodes the 1.2 expected accepted tokens again, at 0.1 s each.
    assert!((plan.expected_tokens - 2.2).abs() < 1e-12);
    assert!((c.step_seconds(&plan, &a).unwrap() - 1.32).abs() < 1e-12);
}

#[test]
fn step_cost_charges_the_redecoded_tokens() {
    let a = acc(&[0.5, 0.3]);
    // Root with children of rank 1 and 2; the rank-1 child has children of rank 1 and 2.
    let plan = TreePlan::from_children_counts(&[2, 2, 0, 0, 0], &a).unwrap();
    // Off the first-choice chain: the root's rank-2 child (0.3) and its sibling's (0.5 · 0.3).
    assert!((plan.expected_redecoded(&a) - 0.45).abs() < 1e-12);
    assert_eq!(chain(&a, 4).expected_redecoded(&a), 0.0);
    assert_eq!(TreePlan::plain().expected_redecoded(&a), 0.0);
    // A target pass that costs 0.1 s more per token pays for the 0.45 tokens decoded again.
    let c = costs(&[(1, 1.0), (8, 1.7)], &[(1, 0.1), (8, 0.1)]);
    let expected = 1.0 + 0.4 + 0.45 * 0.1 + 0.1 + 0.1;
    assert!((c.step_seconds(&plan, &a).unwrap() - expected).abs() < 1e-12);
}

#[test]
fn choose_respects_a_binding_leaf_limit() {
    let a = acc(&[0.5, 0.3, 0.1]);
    let flat = costs(&[(1, 1.0), (24, 1.0)], &[(1, 0.001), (24, 0.001)]);
    let c = choose(&a, &flat, &limits(24, 6, 3, 3)).unwrap();
    assert!(c.plan.leaves() <= 3);
    assert_eq!(
        c.plan,
        optimal_tree(&a, &limits(c.plan.budget(), 6, 3, 3)).unwrap()
    );
}

#[test]
fn planner_caches_by_input() {
    let mut planner = Planner::new();
    let a = acc(&[0.62, 0.11, 0.05]);
    let l = limits(64, 8, 3, 255);
    let first = planner.optimal_tree(&a, &l).unwrap();
    assert_eq!(planner.optimal_tree(&a, &l).unwrap(), first);
    assert_eq!(planner.cached(), 1);
    planner.optimal_tree(&acc(&[0.62, 0.11, 0.06]), &l).unwrap();
    assert_eq!(planner.cached(), 2);
    let c = costs(&[(1, 1.0), (64, 1.1)], &[(1, 0.01), (64, 0.02)]);
    let choice = planner.choose(&a, &c, &l).unwrap();
    assert_eq!(planner.choose(&a, &c, &l).unwrap(), choice);
    assert_eq!(planner.cached(), 3);
    assert!(planner.optimal_tree(&a, &limits(0, 1, 1, 1)).is_err());
    assert_eq!(planner.cached(), 3);
}
