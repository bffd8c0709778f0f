//! Planner speed: the brief's reference size (budget 1024, depth 32, 32 children per node), without
//! and with llama.cpp's limit of 255 leaves.

use canopy_plan::{
    choose, optimal_tree, optimal_tree_bounded, Acceptance, CostTable, Costs, Limits,
};
use criterion::{criterion_group, criterion_main, Criterion};

/// A decreasing 32-entry vector summing to 0.9 (like a good draft under greedy decoding).
fn acceptance() -> Acceptance {
    let raw: Vec<f64> = (0..32).map(|k| 0.6f64.powi(k)).collect();
    let sum: f64 = raw.iter().sum();
    Acceptance::new(raw.iter().map(|x| x / sum * 0.9).collect()).expect("valid vector")
}

fn bench(c: &mut Criterion) {
    let acc = acceptance();
    let limits = Limits {
        budget: 1024,
        max_depth: 32,
        max_branch: 32,
        max_leaves: 1024,
    };
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    group.bench_function("optimal_tree_1024x32x32", |b| {
        b.iter(|| optimal_tree(&acc, &limits).expect("plan"))
    });
    // A GPU streaming a large target: nearly flat pass time; a small draft on the GPU.
    let costs = Costs {
        target: CostTable::new(vec![(1, 3.0), (128, 3.05), (512, 3.2), (1024, 3.5)])
            .expect("table"),
        draft: CostTable::new(vec![(1, 0.01), (64, 0.012), (1024, 0.05)]).expect("table"),
    };
    group.bench_function("choose_1024x32x32", |b| {
        b.iter(|| choose(&acc, &costs, &limits).expect("choice"))
    });
    let leafy = Limits {
        budget: 64,
        max_depth: 8,
        max_branch: 8,
        max_leaves: 16,
    };
    group.bench_function("optimal_tree_leaf_limited_64x8x8_16_leaves", |b| {
        b.iter(|| optimal_tree(&acc, &leafy).expect("plan"))
    });
    // llama.cpp's leaf limit at the reference size: the relaxation with its proven bound.
    let llama = Limits {
        max_leaves: 255,
        ..limits
    };
    let brief = Acceptance::new(vec![0.6, 0.1, 0.05, 0.03, 0.02, 0.01]).expect("valid vector");
    group.bench_function("optimal_tree_1024x32x32_255_leaves", |b| {
        b.iter(|| optimal_tree_bounded(&brief, &llama).expect("plan"))
    });
    group.bench_function("choose_1024x32x32_255_leaves", |b| {
        b.iter(|| choose(&brief, &costs, &llama).expect("choice"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
