//! The lookup drafter's cost per step at 8k tokens of history: one proposal at the root and the
//! commit of one step's tokens, and `auto`'s own work per step with lookup (choosing the step's
//! draft tree and lookup prefix, learning from its outcome). A speculation step costs
//! milliseconds (a target pass); these must stay far below 1 % of that.
//!
//! The history is synthetic but shaped like an editing conversation: a 2k-token "document" over a
//! 32k vocabulary, then revisions of it (copies with a few tokens changed), so that every n-gram
//! has several match sites.

use canopy_plan::{CostTable, Costs, Limits};
use canopy_spec::{
    AutoPolicy, LookupConfig, LookupIndex, PlanPolicy, StepInput, StepReport, Token, Walk,
};
use criterion::{criterion_group, criterion_main, Criterion};

fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ceb9fe1a85ec53);
    h ^ (h >> 33)
}

fn history(len: usize) -> Vec<Token> {
    let doc: Vec<Token> = (0..2048u64).map(|i| (mix(i) % 32_000) as Token).collect();
    (0..len)
        .map(|i| {
            let (copy, at) = (i / doc.len(), i % doc.len());
            if mix((copy * 7919 + at) as u64).is_multiple_of(50) {
                (mix(i as u64 ^ 0xabc) % 32_000) as Token
            } else {
                doc[at]
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let tokens = history(8192);
    let mut index = LookupIndex::new(LookupConfig::default());
    index.extend(&tokens);
    assert!(!index.propose(&[]).is_empty());
    c.bench_function("lookup/propose at 8k", |b| {
        b.iter(|| std::hint::black_box(index.propose(&[])))
    });
    c.bench_function("lookup/commit 4 tokens at 8k", |b| {
        b.iter_batched(
            || index.clone(),
            |mut ix| std::hint::black_box(ix.extend(&tokens[100..104])),
            criterion::BatchSize::LargeInput,
        )
    });
    c.bench_function("lookup/index 8k prompt", |b| {
        b.iter(|| {
            let mut ix = LookupIndex::new(LookupConfig::default());
            ix.extend(&tokens);
            std::hint::black_box(ix.entries())
        })
    });

    // `auto` over a flat (streamed-like) profile, so that its ladder holds every budget range up
    // to 256 nodes, with the 16-node proposal above at every step.
    let costs = Costs {
        target: CostTable::new(vec![(1, 0.1), (64, 0.102), (256, 0.11)]).unwrap(),
        draft: CostTable::new(vec![(1, 0.002), (64, 0.003)]).unwrap(),
    };
    let limits = Limits {
        budget: 256,
        max_depth: 16,
        max_branch: 8,
        max_leaves: 255,
    };
    let mut policy = AutoPolicy::new(costs, limits, &[0.7, 0.1, 0.05], 8.0)
        .with_lookup(LookupConfig::default())
        .with_live_costs(false);
    let proposal = index.propose(&[]);
    let walk = Walk::default();
    c.bench_function("auto/choose and observe a step with lookup", |b| {
        b.iter(|| {
            let step = policy.next_step(&StepInput {
                has_draft: true,
                lookup: &proposal,
            });
            policy.observe(&StepReport {
                walk: &walk,
                target_tokens: step.draft.budget() + step.lookup.len(),
                verify_secs: 0.1,
                draft_passes: &[1, 2],
                draft_secs: 0.004,
                committed: &[],
            });
            std::hint::black_box(step)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
