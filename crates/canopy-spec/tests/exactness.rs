//! Exactness of the speculation loop with deterministic fake models: greedy output equals the
//! target's greedy output token for token, and sampled output follows the target's distribution
//! (chi-square over the joint distribution of the first tokens), for every sampling setting, under
//! chains and trees. The mutation control proves the chi-square test can fail: deliberately broken
//! verifiers must not pass it.

mod common;

use std::collections::HashMap;

use canopy_plan::{chain, optimal_tree, Acceptance, Limits, TreePlan};
use canopy_spec::mutants::{self, Mutant};
use canopy_spec::sampling::{Penalties, SamplingConfig};
use canopy_spec::{generate, FixedPolicy, GenConfig, Source, Token, TreeModel};
use common::{assert_possible, chi_square, Collect, FakeModel};

const VOCAB: usize = 6;

fn target() -> FakeModel {
    FakeModel::new(VOCAB, 11, 3.0)
}

fn draft() -> FakeModel {
    FakeModel::new(VOCAB, 11, 3.0).with_noise(2.5, 99)
}

fn tree(budget: usize, depth: usize, branch: usize) -> TreePlan {
    let acc = Acceptance::new(vec![0.5, 0.2, 0.1, 0.05]).unwrap();
    let limits = Limits {
        budget,
        max_depth: depth,
        max_branch: branch,
        max_leaves: 255,
    };
    optimal_tree(&acc, &limits).unwrap()
}

const PROMPT: [Token; 3] = [1, 2, 3];

fn sampling(temperature: f32, top_k: u32, top_p: f32) -> SamplingConfig {
    SamplingConfig {
        temperature,
        top_k,
        top_p,
        ..SamplingConfig::GREEDY
    }
}

fn run(
    plan: &TreePlan,
    speculate: bool,
    sampling: SamplingConfig,
    seed: u64,
    max: usize,
) -> Collect {
    run_with(plan, speculate, sampling, seed, max, None)
}

/// One generation, with the real verifier or a broken one.
fn run_with(
    plan: &TreePlan,
    speculate: bool,
    sampling: SamplingConfig,
    seed: u64,
    max: usize,
    mutant: Option<Mutant>,
) -> Collect {
    let mut t = target();
    let mut d = draft();
    let mut policy = FixedPolicy::new(plan.clone(), "test");
    let mut sink = Collect::default();
    let cfg = GenConfig {
        sampling,
        max_tokens: max,
        seed,
    };
    let draft: Option<&mut dyn TreeModel> = if speculate { Some(&mut d) } else { None };
    match mutant {
        None => generate(&mut t, draft, &PROMPT, &cfg, &mut policy, &mut sink),
        Some(m) => mutants::generate(&mut t, draft, &PROMPT, &cfg, &mut policy, &mut sink, m),
    }
    .unwrap();
    sink
}

#[test]
fn greedy_speculation_equals_target_greedy() {
    let plain = run(&TreePlan::plain(), false, SamplingConfig::GREEDY, 0, 200);
    assert_eq!(plain.tokens.len(), 200);
    let acc = Acceptance::new(vec![0.5, 0.2]).unwrap();
    for plan in [
        chain(&acc, 1),
        chain(&acc, 5),
        tree(8, 3, 3),
        tree(32, 6, 4),
        tree(64, 12, 6),
    ] {
        let spec = run(&plan, true, SamplingConfig::GREEDY, 0, 200);
        assert_eq!(
            spec.tokens,
            plain.tokens,
            "plan with {} nodes",
            plan.nodes.len()
        );
        let drafted = spec.sources.iter().filter(|s| **s == Source::Draft).count();
        // The noisy draft really gets rejected sometimes, and accepted sometimes.
        assert!(drafted > 0 && drafted < 200, "{drafted} drafted tokens");
    }
}

/// The exact distribution of the target's first `len` tokens after [`PROMPT`].
fn exact_joint(sampling: &SamplingConfig, len: usize) -> HashMap<Vec<Token>, f64> {
    common::exact_joint(&target(), &PROMPT, sampling, len)
}

/// How often each sequence of the first `len` tokens came out of `n` speculative generations.
fn observe(
    plan: &TreePlan,
    sampling: SamplingConfig,
    len: usize,
    n: u64,
    mutant: Option<Mutant>,
) -> HashMap<Vec<Token>, u64> {
    let mut counts: HashMap<Vec<Token>, u64> = HashMap::new();
    for seed in 0..n {
        let out = run_with(plan, true, sampling, seed, len, mutant);
        *counts.entry(out.tokens).or_insert(0) += 1;
    }
    counts
}

fn check_distribution(plan: &TreePlan, sampling: SamplingConfig, len: usize, n: u64) {
    let expected = exact_joint(&sampling, len);
    let counts = observe(plan, sampling, len, n, None);
    assert_possible(&counts, &expected);
    let (stat, crit) = chi_square(&counts, &expected, n);
    assert!(
        stat < crit,
        "chi-square {stat:.1} >= {crit:.1} for a {}-node tree with {sampling:?}",
        plan.nodes.len(),
    );
}

/// A chain and a tree with branching at every level: the two shapes every setting is checked under.
fn chain_and_tree() -> [TreePlan; 2] {
    let acc = Acceptance::new(vec![0.5, 0.2]).unwrap();
    [chain(&acc, 3), tree(10, 3, 3)]
}

#[test]
fn sampled_speculation_follows_target_distribution() {
    let acc = Acceptance::new(vec![0.5, 0.2]).unwrap();
    let cases = [
        (tree(8, 3, 3), 1.0, 3),
        (tree(16, 4, 4), 0.7, 3),
        (chain(&acc, 3), 1.3, 3),
        (tree(6, 1, 5), 1.0, 2),
    ];
    for (plan, temperature, len) in cases {
        check_distribution(&plan, sampling(temperature, 0, 1.0), len, 20_000);
    }
}

#[test]
fn sampled_speculation_respects_top_k_and_top_p() {
    check_distribution(&tree(12, 3, 3), sampling(0.9, 4, 0.9), 2, 20_000);
}

#[test]
fn sampled_speculation_respects_min_p() {
    let min_p = SamplingConfig {
        min_p: 0.3,
        ..sampling(1.2, 0, 1.0)
    };
    // Min-p really removes tokens here: the support is smaller than without it.
    assert!(exact_joint(&min_p, 2).len() < exact_joint(&sampling(1.2, 0, 1.0), 2).len());
    for plan in chain_and_tree() {
        check_distribution(&plan, min_p, 3, 20_000);
    }
}

/// Each penalty alone, over a short window so that tokens also leave it.
fn penalty_cases() -> [(&'static str, Penalties); 3] {
    let none = Penalties {
        last_n: 4,
        repeat: 1.0,
        frequency: 0.0,
        presence: 0.0,
    };
    [
        (
            "repeat",
            Penalties {
                repeat: 2.0,
                ..none
            },
        ),
        (
            "frequency",
            Penalties {
                frequency: 1.5,
                ..none
            },
        ),
        (
            "presence",
            Penalties {
                presence: 2.0,
                ..none
            },
        ),
    ]
}

#[test]
fn sampled_speculation_respects_each_penalty() {
    let n = 20_000;
    for (name, penalties) in penalty_cases() {
        let with = SamplingConfig {
            penalties,
            ..sampling(1.0, 0, 1.0)
        };
        let expected = exact_joint(&with, 3);
        let ignoring = exact_joint(&sampling(1.0, 0, 1.0), 3);
        for plan in chain_and_tree() {
            let counts = observe(&plan, with, 3, n, None);
            assert_possible(&counts, &expected);
            let (stat, crit) = chi_square(&counts, &expected, n);
            assert!(
                stat < crit,
                "{name}: chi-square {stat:.1} >= {crit:.1} with a {}-node plan",
                plan.nodes.len()
            );
            // The same counts are far from the output without the penalty: the check would see
            // a penalty that was ignored.
            let (stat, crit) = chi_square(&counts, &ignoring, n);
            assert!(stat > crit, "{name}: the penalty changes nothing here");
        }
    }
}

#[test]
fn greedy_speculation_with_penalties_equals_target_greedy() {
    let acc = Acceptance::new(vec![0.5, 0.2]).unwrap();
    let plain_unpenalised = run(&TreePlan::plain(), false, SamplingConfig::GREEDY, 0, 60);
    for (name, penalties) in penalty_cases() {
        let cfg = SamplingConfig {
            penalties,
            ..SamplingConfig::GREEDY
        };
        let plain = run(&TreePlan::plain(), false, cfg, 0, 60);
        assert_ne!(
            plain.tokens, plain_unpenalised.tokens,
            "{name} changes nothing"
        );
        for plan in [chain(&acc, 4), tree(16, 4, 4), tree(32, 6, 4)] {
            let spec = run(&plan, true, cfg, 0, 60);
            assert_eq!(
                spec.tokens,
                plain.tokens,
                "{name}, {} nodes",
                plan.nodes.len()
            );
        }
    }
}

#[test]
fn the_chi_square_test_rejects_broken_verifiers() {
    // The same check that passes the real verifier fails each broken one: skipping the residual
    // after a rejection (chains and trees), and keeping a rejected candidate in the draft
    // distribution, as drawing candidates with replacement would (trees: a chain has one
    // candidate per node, so there is nothing to keep).
    let [chain, tree] = chain_and_tree();
    let s = sampling(1.0, 0, 1.0);
    let n = 20_000;
    let expected = exact_joint(&s, 3);
    let cases = [
        (&chain, vec![Mutant::SkipResidual]),
        (&tree, vec![Mutant::SkipResidual, Mutant::KeepRejected]),
    ];
    for (plan, mutants) in cases {
        let counts = observe(plan, s, 3, n, None);
        let (stat, crit) = chi_square(&counts, &expected, n);
        assert!(
            stat < crit,
            "the real verifier failed: {stat:.1} >= {crit:.1}"
        );
        for mutant in mutants {
            let counts = observe(plan, s, 3, n, Some(mutant));
            let (stat, crit) = chi_square(&counts, &expected, n);
            assert!(
                stat > crit,
                "{mutant:?} passed with a {}-node plan: {stat:.1} < {crit:.1}",
                plan.nodes.len()
            );
        }
    }
}

#[test]
fn the_chi_square_check_can_fail() {
    // A distribution that differs from the target's must be rejected: counts drawn from the
    // *draft* model instead of the target.
    let sampling = sampling(1.0, 0, 1.0);
    let expected = exact_joint(&sampling, 2);
    let n = 20_000u64;
    let mut counts: HashMap<Vec<Token>, u64> = HashMap::new();
    for seed in 0..n {
        let mut d = draft();
        let mut t2 = draft();
        let mut policy = FixedPolicy::new(TreePlan::plain(), "draft-only");
        let mut sink = Collect::default();
        let cfg = GenConfig {
            sampling,
            max_tokens: 2,
            seed,
        };
        let _ = &mut t2;
        generate(&mut d, None, &[1, 2, 3], &cfg, &mut policy, &mut sink).unwrap();
        *counts.entry(sink.tokens).or_insert(0) += 1;
    }
    let (stat, crit) = chi_square(&counts, &expected, n);
    assert!(
        stat > crit,
        "a wrong distribution passed: {stat:.1} < {crit:.1}"
    );
}

#[test]
fn stops_at_eos_inside_an_accepted_path_and_respects_max_tokens() {
    let plain = run(&TreePlan::plain(), false, SamplingConfig::GREEDY, 0, 50);
    let eos = plain.tokens[7];
    let first = plain.tokens.iter().position(|&t| t == eos).unwrap();
    let mut t = target();
    let mut d = draft();
    let mut policy = FixedPolicy::new(tree(32, 8, 4), "t");
    let mut sink = Collect {
        eos: Some(eos),
        ..Collect::default()
    };
    let cfg = GenConfig {
        sampling: SamplingConfig::GREEDY,
        max_tokens: 50,
        seed: 0,
    };
    let stats = generate(
        &mut t,
        Some(&mut d),
        &[1, 2, 3],
        &cfg,
        &mut policy,
        &mut sink,
    )
    .unwrap();
    assert_eq!(sink.tokens, plain.tokens[..first]);
    assert_eq!(stats.stop_reason, Some(canopy_spec::StopReason::Eos));
    for max in [1, 2, 3, 7] {
        let out = run(&tree(32, 8, 4), true, SamplingConfig::GREEDY, 0, max);
        assert_eq!(out.tokens, plain.tokens[..max]);
    }
}

#[test]
fn context_full_ends_generation_cleanly() {
    let mut t = target();
    t.n_ctx = 20;
    let mut d = draft();
    d.n_ctx = 20;
    let mut policy = FixedPolicy::new(tree(16, 6, 3), "t");
    let mut sink = Collect::default();
    let cfg = GenConfig {
        sampling: SamplingConfig::GREEDY,
        max_tokens: 100,
        seed: 0,
    };
    let stats = generate(
        &mut t,
        Some(&mut d),
        &[1, 2, 3],
        &cfg,
        &mut policy,
        &mut sink,
    )
    .unwrap();
    assert_eq!(
        stats.stop_reason,
        Some(canopy_spec::StopReason::ContextFull)
    );
    let plain = run(&TreePlan::plain(), false, SamplingConfig::GREEDY, 0, 100);
    assert_eq!(sink.tokens, plain.tokens[..sink.tokens.len()]);
    assert!(sink.tokens.len() >= 16, "{}", sink.tokens.len());
}

#[test]
fn kv_state_after_each_step_matches_committed_tokens() {
    // After generation the fake target's prefix must be exactly prompt + output minus the last
    // (bonus) token, which is decoded only at the next step.
    let mut t = target();
    let mut d = draft();
    let mut policy = FixedPolicy::new(tree(24, 5, 4), "t");
    let mut sink = Collect::default();
    let cfg = GenConfig {
        sampling: SamplingConfig::GREEDY,
        max_tokens: 40,
        seed: 0,
    };
    generate(
        &mut t,
        Some(&mut d),
        &[1, 2, 3],
        &cfg,
        &mut policy,
        &mut sink,
    )
    .unwrap();
    let mut all = vec![1, 2, 3];
    all.extend(&sink.tokens);
    assert!(t.prefix.len() < all.len());
    assert_eq!(t.prefix[..], all[..t.prefix.len()]);
    assert_eq!(t.pending_len(), 0);
    assert_eq!(d.prefix[..], all[..d.prefix.len()]);
}

#[test]
fn a_draft_with_a_larger_vocabulary_never_proposes_ids_the_target_lacks() {
    // The draft's extra ids (padding in real pairs) dominate its logits here; the target must
    // still only ever see ids of its own vocabulary, and greedy output stays the target's.
    let plain = run(&TreePlan::plain(), false, SamplingConfig::GREEDY, 0, 40);
    let mut t = target();
    let mut d = FakeModel::new(VOCAB + 4, 11, 3.0).with_noise(2.5, 99);
    d.boost_above = Some(VOCAB);
    let mut policy = FixedPolicy::new(tree(16, 4, 4), "t");
    let mut sink = Collect::default();
    let cfg = GenConfig {
        sampling: SamplingConfig::GREEDY,
        max_tokens: 40,
        seed: 0,
    };
    generate(
        &mut t,
        Some(&mut d),
        &[1, 2, 3],
        &cfg,
        &mut policy,
        &mut sink,
    )
    .unwrap();
    assert_eq!(sink.tokens, plain.tokens);
    assert!(t.max_token_seen < VOCAB as Token);
}
