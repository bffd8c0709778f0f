//! Exactness with lookup candidates (matches in the conversation, verified as point masses): greedy
//! output equals the target's greedy output with lookup alone, the draft alone and both merged in
//! one tree (lookup under the root, under the draft's leaves, or both), under chains and trees,
//! fixed and `auto` policies; sampled output follows the target's
//! distribution (chi-square over the joint distribution of the first tokens); and the mutation
//! control: verifiers that keep a rejected lookup candidate in the target's distribution, or verify
//! it as if it had been drawn from the draft, fail the same check.
//!
//! The prompt repeats itself, so that lookup proposes from the first step on (both the latest
//! match and an older one, as siblings), and the fake target's greedy output falls into cycles, so
//! that lookup is accepted as well as rejected.

mod common;

use std::collections::HashMap;

use canopy_plan::{chain, optimal_tree, Acceptance, CostTable, Costs, Limits, TreePlan};
use canopy_spec::mutants::{self, Mutant};
use canopy_spec::sampling::{Penalties, SamplingConfig};
use canopy_spec::{
    generate, AutoPolicy, FixedPolicy, GenConfig, GenStats, LookupConfig, LookupIndex, PlanPolicy,
    Source, Token, TreeModel,
};
use common::{assert_possible, chi_square, exact_joint, Collect, FakeModel};

const VOCAB: usize = 6;

/// "1 2" appears twice before the end, followed by 3 and by 5: the latest match proposes 5 3 1 2,
/// the older one 3 4 0 1 as a sibling.
const PROMPT: [Token; 11] = [1, 2, 3, 4, 0, 1, 2, 5, 3, 1, 2];

fn target() -> FakeModel {
    FakeModel::new(VOCAB, 11, 3.0)
}

fn draft() -> FakeModel {
    FakeModel::new(VOCAB, 11, 3.0).with_noise(2.5, 99)
}

/// One-token matches included: with six tokens, lookup proposes at nearly every step.
fn lookup() -> LookupConfig {
    LookupConfig::new(1, 3, 4, 3, 16).unwrap()
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

fn sampling(temperature: f32, top_k: u32, top_p: f32) -> SamplingConfig {
    SamplingConfig {
        temperature,
        top_k,
        top_p,
        ..SamplingConfig::GREEDY
    }
}

/// What a step's tree holds.
#[derive(Clone, Debug)]
enum Kind {
    /// Target alone.
    Plain,
    /// Up to this many lookup candidates, no draft model.
    Lookup(usize),
    /// The draft's tree alone.
    Draft(TreePlan),
    /// Both: lookup candidates first, the draft's tree beside them.
    Both(TreePlan, usize),
    /// Both, and up to this many lookup candidates under every leaf of the draft's tree.
    Leaves(TreePlan, usize, usize),
}

fn policy(kind: &Kind) -> FixedPolicy {
    match kind {
        Kind::Plain => FixedPolicy::new(TreePlan::plain(), "none"),
        Kind::Lookup(n) => FixedPolicy::new(TreePlan::plain(), "none").with_lookup(lookup(), *n),
        Kind::Draft(plan) => FixedPolicy::new(plan.clone(), "draft"),
        Kind::Both(plan, n) => FixedPolicy::new(plan.clone(), "both").with_lookup(lookup(), *n),
        Kind::Leaves(plan, n, under) => FixedPolicy::new(plan.clone(), "leaves")
            .with_lookup(lookup(), *n)
            .with_lookup_under_leaves(*under),
    }
}

fn has_draft(kind: &Kind) -> bool {
    matches!(kind, Kind::Draft(_) | Kind::Both(..) | Kind::Leaves(..))
}

/// One generation after `prompt`, with the real verifier or a broken one.
fn run_with(
    prompt: &[Token],
    policy: &mut dyn PlanPolicy,
    speculate_with_draft: bool,
    sampling: SamplingConfig,
    seed: u64,
    max: usize,
    mutant: Option<Mutant>,
) -> (Collect, GenStats) {
    let mut t = target();
    let mut d = draft();
    let mut sink = Collect::default();
    let cfg = GenConfig {
        sampling,
        max_tokens: max,
        seed,
    };
    let draft: Option<&mut dyn TreeModel> = if speculate_with_draft {
        Some(&mut d)
    } else {
        None
    };
    let stats = match mutant {
        None => generate(&mut t, draft, prompt, &cfg, policy, &mut sink),
        Some(m) => mutants::generate(&mut t, draft, prompt, &cfg, policy, &mut sink, m),
    }
    .unwrap();
    (sink, stats)
}

fn run(kind: &Kind, sampling: SamplingConfig, seed: u64, max: usize) -> (Collect, GenStats) {
    run_with(
        &PROMPT,
        &mut policy(kind),
        has_draft(kind),
        sampling,
        seed,
        max,
        None,
    )
}

fn count(out: &Collect, source: Source) -> usize {
    out.sources.iter().filter(|&&s| s == source).count()
}

#[test]
fn the_prompt_makes_lookup_propose_siblings() {
    let mut index = LookupIndex::new(lookup());
    index.extend(&PROMPT);
    let p = index.propose(&[]);
    assert_eq!(p.first_chain(), vec![5, 3, 1, 2]);
    let root_kids: Vec<Token> = p
        .shape()
        .iter()
        .zip(p.tokens())
        .filter(|(n, _)| n.parent.is_none())
        .map(|(_, &t)| t)
        .collect();
    assert_eq!(&root_kids[..2], &[5, 3]);
}

#[test]
fn greedy_output_is_the_targets_with_lookup_draft_or_both() {
    let plain = run(&Kind::Plain, SamplingConfig::GREEDY, 0, 200).0;
    assert_eq!(plain.tokens.len(), 200);
    let acc = Acceptance::new(vec![0.5, 0.2]).unwrap();
    let kinds = [
        Kind::Lookup(1),
        Kind::Lookup(4),
        Kind::Lookup(16),
        Kind::Draft(chain(&acc, 4)),
        Kind::Draft(tree(16, 4, 4)),
        Kind::Both(chain(&acc, 1), 8),
        Kind::Both(chain(&acc, 4), 4),
        Kind::Both(tree(16, 4, 4), 8),
        Kind::Both(tree(32, 6, 4), 16),
        Kind::Leaves(chain(&acc, 1), 0, 4),
        Kind::Leaves(tree(16, 4, 4), 4, 3),
    ];
    for kind in kinds {
        let (out, stats) = run(&kind, SamplingConfig::GREEDY, 0, 200);
        assert_eq!(out.tokens, plain.tokens, "{kind:?}");
        let (drafted, looked_up) = (count(&out, Source::Draft), count(&out, Source::Lookup));
        if matches!(kind, Kind::Lookup(_) | Kind::Both(..) | Kind::Leaves(..)) {
            // Lookup was accepted, and rejected too.
            assert!(looked_up > 0, "{kind:?}: no lookup token accepted");
            assert_eq!(looked_up, stats.lookup_accepted);
            assert!(
                stats.lookup_tokens > stats.lookup_accepted,
                "{kind:?}: no lookup candidate was rejected"
            );
        } else {
            assert_eq!(looked_up + stats.lookup_tokens, 0);
        }
        if has_draft(&kind) {
            assert!(drafted > 0 && drafted < 200, "{kind:?}: {drafted} drafted");
        } else {
            assert_eq!(drafted, 0);
        }
        assert!(
            stats.steps < 200,
            "{kind:?}: {} steps for 200 tokens",
            stats.steps
        );
    }
}

#[test]
fn greedy_output_with_penalties_is_the_targets_with_lookup() {
    let penalties = Penalties {
        last_n: 4,
        repeat: 1.5,
        frequency: 0.3,
        presence: 0.2,
    };
    let cfg = SamplingConfig {
        penalties,
        ..SamplingConfig::GREEDY
    };
    let plain = run(&Kind::Plain, cfg, 0, 80).0;
    let acc = Acceptance::new(vec![0.5, 0.2]).unwrap();
    for kind in [
        Kind::Lookup(8),
        Kind::Both(tree(16, 4, 4), 8),
        Kind::Both(chain(&acc, 3), 4),
    ] {
        let (out, _) = run(&kind, cfg, 0, 80);
        assert_eq!(out.tokens, plain.tokens, "{kind:?}");
    }
}

/// `auto` with lookup, on a machine where a pass of 64 tokens costs little more than one (so that
/// it speculates), its costs held at the profile's.
fn auto(with_draft: bool) -> AutoPolicy {
    let flat = |s: f64| CostTable::new(vec![(1, s), (64, s * 1.05)]).unwrap();
    let limits = Limits {
        budget: 64,
        max_depth: 12,
        max_branch: 4,
        max_leaves: 255,
    };
    let policy = if with_draft {
        let costs = Costs {
            target: flat(0.1),
            draft: flat(0.002),
        };
        AutoPolicy::new(costs, limits, &[0.6, 0.1], 8.0)
    } else {
        AutoPolicy::without_draft(flat(0.1), limits)
    };
    policy.with_lookup(lookup()).with_live_costs(false)
}

#[test]
fn greedy_output_is_the_targets_under_auto_with_lookup() {
    let plain = run(&Kind::Plain, SamplingConfig::GREEDY, 0, 200).0;
    for with_draft in [false, true] {
        let mut policy = auto(with_draft);
        let (out, _) = run_with(
            &PROMPT,
            &mut policy,
            with_draft,
            SamplingConfig::GREEDY,
            0,
            200,
            None,
        );
        assert_eq!(out.tokens, plain.tokens, "auto, draft: {with_draft}");
        assert!(count(&out, Source::Lookup) > 0);
        let c = policy.counts();
        assert!(c.lookup + c.both > 0, "{c:?}");
        if with_draft {
            assert!(count(&out, Source::Draft) > 0);
            assert!(c.draft + c.both > 0, "{c:?}");
        }
    }
}

/// How often each sequence of the first `len` tokens came out of `n` generations.
fn observe(
    kind: &Kind,
    sampling: SamplingConfig,
    len: usize,
    n: u64,
    mutant: Option<Mutant>,
) -> HashMap<Vec<Token>, u64> {
    let mut counts: HashMap<Vec<Token>, u64> = HashMap::new();
    let mut looked_up = 0;
    for seed in 0..n {
        let (out, stats) = run_with(
            &PROMPT,
            &mut policy(kind),
            has_draft(kind),
            sampling,
            seed,
            len,
            mutant,
        );
        looked_up += stats.lookup_accepted;
        *counts.entry(out.tokens).or_insert(0) += 1;
    }
    assert!(looked_up > 0, "{kind:?}: lookup never accepted");
    counts
}

fn check_distribution(kind: &Kind, sampling: SamplingConfig, len: usize, n: u64) {
    let expected = exact_joint(&target(), &PROMPT, &sampling, len);
    let counts = observe(kind, sampling, len, n, None);
    assert_possible(&counts, &expected);
    let (stat, crit) = chi_square(&counts, &expected, n);
    assert!(
        stat < crit,
        "chi-square {stat:.1} >= {crit:.1} for {kind:?} with {sampling:?}"
    );
}

/// Lookup alone, beside a chain or a tree, and (within the first tokens, so the draft's trees are
/// shallow) under the draft's leaves only or as well.
fn lookup_kinds() -> [Kind; 6] {
    let acc = Acceptance::new(vec![0.5, 0.2]).unwrap();
    [
        Kind::Lookup(1),
        Kind::Lookup(8),
        Kind::Both(chain(&acc, 3), 6),
        Kind::Both(tree(10, 3, 3), 8),
        Kind::Leaves(chain(&acc, 1), 0, 2),
        Kind::Leaves(tree(4, 1, 3), 4, 2),
    ]
}

#[test]
fn sampled_output_with_lookup_follows_the_target_distribution() {
    for kind in lookup_kinds() {
        check_distribution(&kind, sampling(1.0, 0, 1.0), 3, 20_000);
    }
    // Truncation leaves lookup candidates the target cannot produce (probability 0): always
    // rejected, never output.
    for kind in [Kind::Lookup(8), Kind::Both(tree(10, 3, 3), 8)] {
        check_distribution(&kind, sampling(0.8, 3, 0.9), 3, 20_000);
    }
}

#[test]
fn the_chi_square_test_rejects_broken_lookup_verifiers() {
    let s = sampling(1.0, 0, 1.0);
    let n = 20_000;
    let expected = exact_joint(&target(), &PROMPT, &s, 3);
    let acc = Acceptance::new(vec![0.5, 0.2]).unwrap();
    // A verifier that keeps a rejected lookup candidate in the target's distribution fails with
    // lookup alone and merged; one that verifies a lookup candidate as if drawn from the draft
    // needs a draft distribution at the node, so it is tried on merged trees.
    let cases = [
        (Kind::Lookup(8), vec![Mutant::SkipLookupResidual]),
        (
            Kind::Both(chain(&acc, 3), 6),
            vec![Mutant::SkipLookupResidual, Mutant::LookupAsDraft],
        ),
        (
            Kind::Both(tree(10, 3, 3), 8),
            vec![Mutant::SkipLookupResidual, Mutant::LookupAsDraft],
        ),
        (
            Kind::Leaves(tree(4, 1, 3), 0, 2),
            vec![Mutant::SkipLookupResidual],
        ),
    ];
    for (kind, broken) in cases {
        for mutant in broken {
            let counts = observe(&kind, s, 3, n, Some(mutant));
            let (stat, crit) = chi_square(&counts, &expected, n);
            assert!(
                stat > crit,
                "{mutant:?} passed with {kind:?}: {stat:.1} < {crit:.1}"
            );
        }
    }
}

#[test]
fn both_models_caches_hold_the_committed_tokens_after_lookup_steps() {
    // Lookup nodes the draft never decoded are caught up at its next pass: its prefix is always a
    // prefix of prompt and output, as the target's is.
    let acc = Acceptance::new(vec![0.5, 0.2]).unwrap();
    let mut t = target();
    let mut d = draft();
    let mut policy = FixedPolicy::new(chain(&acc, 2), "both").with_lookup(lookup(), 8);
    let mut sink = Collect::default();
    let cfg = GenConfig {
        sampling: SamplingConfig::GREEDY,
        max_tokens: 120,
        seed: 0,
    };
    generate(&mut t, Some(&mut d), &PROMPT, &cfg, &mut policy, &mut sink).unwrap();
    let mut all = PROMPT.to_vec();
    all.extend(&sink.tokens);
    assert!(t.prefix.len() < all.len());
    assert_eq!(t.prefix[..], all[..t.prefix.len()]);
    assert_eq!(t.pending_len(), 0);
    assert_eq!(d.prefix[..], all[..d.prefix.len()]);
    assert!(count(&sink, Source::Lookup) > 0);
}

#[test]
fn a_full_context_ends_lookup_generation_cleanly() {
    let mut t = target();
    t.n_ctx = 30;
    let mut policy = policy(&Kind::Lookup(16));
    let mut sink = Collect::default();
    let cfg = GenConfig {
        sampling: SamplingConfig::GREEDY,
        max_tokens: 100,
        seed: 0,
    };
    let stats = generate(&mut t, None, &PROMPT, &cfg, &mut policy, &mut sink).unwrap();
    assert_eq!(
        stats.stop_reason,
        Some(canopy_spec::StopReason::ContextFull)
    );
    let plain = run(&Kind::Plain, SamplingConfig::GREEDY, 0, 100).0;
    assert_eq!(sink.tokens, plain.tokens[..sink.tokens.len()]);
    for max in [1, 2, 3, 7] {
        let out = run(&Kind::Lookup(16), SamplingConfig::GREEDY, 0, max).0;
        assert_eq!(out.tokens, plain.tokens[..max]);
    }
}
