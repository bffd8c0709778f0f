//! Per-step verification cost of greedy decoding and of sampling (temperature 1, top-k 0, top-p 1:
//! the whole vocabulary in play, what an OpenAI client asks for by default) with a tree of 8 nodes,
//! at real vocabulary sizes, on synthetic logits.
//!
//! The models are synthetic: a decode only records the tree and hands out precomputed logits rows
//! (chosen by the node's last tokens, so every node has its own), so the time measured is the
//! verifier's own work after the target's decode: the argmax or the distribution at every node the
//! walk reaches, and the walk. It is `GenStats::verify_secs / GenStats::steps` of the real
//! generation loop. A real decode comes on top of both columns.
//!
//! After criterion's measurements, a table prints both side by side with their ratio, measured
//! interleaved in one run, and `target/criterion/verify-summary.json` holds the same numbers.

use std::time::{Duration, Instant};

use canopy_plan::{optimal_tree, Acceptance, Limits, TreePlan};
use canopy_spec::sampling::SamplingConfig;
use canopy_spec::{
    generate, FixedPolicy, Flow, GenConfig, GenStats, ModelError, NodeIn, Source, Token, TokenSink,
    TreeModel,
};
use criterion::{criterion_group, criterion_main, Criterion};

/// Qwen2.5, Llama 3, Gemma.
const VOCABS: [(&str, usize); 3] = [("152k", 151_936), ("128k", 128_256), ("256k", 256_000)];
/// Distinct logits rows per model.
const ROWS: usize = 16;
/// Tokens generated per measured call.
const TOKENS: usize = 24;

fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ceb9fe1a85ec53);
    h ^ (h >> 33)
}

/// Logits like a language model's: a broad bulk and a few likely tokens. The draft's rows share
/// the likely tokens with the target's, with other weights, so it is accepted only part of the
/// time.
fn rows(vocab: usize, draft: bool) -> Vec<Vec<f32>> {
    (0..ROWS as u64)
        .map(|r| {
            let mut row: Vec<f32> = (0..vocab as u64)
                .map(|v| {
                    let h = mix(r.wrapping_mul(0x9e37_79b9) ^ v ^ (u64::from(draft) << 60));
                    (h >> 40) as f32 / (1u64 << 24) as f32 * 6.0 - 3.0
                })
                .collect();
            for k in 0..8u64 {
                let t = (mix(r * 31 + k) % vocab as u64) as usize;
                let boost = 14.0 - k as f32 * 0.7;
                row[t] = boost + if draft { (mix(r ^ k) % 3) as f32 } else { 0.0 };
            }
            row
        })
        .collect()
}

/// A model whose logits after a context are a fixed row chosen by the context's last two tokens.
struct Synthetic<'a> {
    rows: &'a [Vec<f32>],
    vocab: usize,
    prefix: Vec<Token>,
    pending: Vec<(Token, Option<usize>)>,
    out: Vec<usize>,
}

impl<'a> Synthetic<'a> {
    fn new(rows: &'a [Vec<f32>]) -> Self {
        Synthetic {
            rows,
            vocab: rows[0].len(),
            prefix: Vec::new(),
            pending: Vec::new(),
            out: Vec::new(),
        }
    }

    fn last_two(&self, i: usize) -> (Token, Token) {
        let (t, parent) = self.pending[i];
        let before = match parent {
            Some(p) => self.pending[p].0,
            None => self.prefix.last().copied().unwrap_or(0),
        };
        (before, t)
    }
}

impl TreeModel for Synthetic<'_> {
    fn n_vocab(&self) -> usize {
        self.vocab
    }
    fn n_ctx(&self) -> usize {
        1 << 20
    }
    fn n_past(&self) -> usize {
        self.prefix.len()
    }
    fn max_batch(&self) -> usize {
        512
    }
    fn prefill(&mut self, tokens: &[Token]) -> Result<(), ModelError> {
        self.prefix.extend_from_slice(tokens);
        Ok(())
    }
    fn decode(&mut self, nodes: &[NodeIn]) -> Result<(), ModelError> {
        self.out.clear();
        for n in nodes {
            self.pending.push((n.token, n.parent));
            if n.logits {
                let (a, b) = self.last_two(self.pending.len() - 1);
                let h = mix((a as u64) << 32 ^ b as u64);
                self.out.push((h % ROWS as u64) as usize);
            }
        }
        Ok(())
    }
    fn logits(&self, i: usize) -> &[f32] {
        &self.rows[self.out[i]]
    }
    fn commit(&mut self, path: &[usize]) -> Result<(), ModelError> {
        let toks: Vec<Token> = path.iter().map(|&v| self.pending[v].0).collect();
        self.prefix.extend(toks);
        self.pending.clear();
        Ok(())
    }
}

struct Discard;

impl TokenSink for Discard {
    fn push(&mut self, _: Token, _: Source) -> Flow {
        Flow::Continue
    }
    fn cancelled(&self) -> bool {
        false
    }
}

/// `tree:8`: the planner's best 8-node tree for a typical acceptance vector.
fn tree8() -> TreePlan {
    let acc = Acceptance::new(vec![0.55, 0.15, 0.07, 0.03]).expect("acceptance vector");
    let limits = Limits {
        budget: 8,
        max_depth: 8,
        max_branch: 4,
        max_leaves: 255,
    };
    optimal_tree(&acc, &limits).expect("plan")
}

fn sampling_t1() -> SamplingConfig {
    SamplingConfig {
        temperature: 1.0,
        ..SamplingConfig::GREEDY
    }
}

/// One generation of [`TOKENS`] tokens; its statistics.
fn run(
    target: &[Vec<f32>],
    draft: &[Vec<f32>],
    plan: &TreePlan,
    sampling: SamplingConfig,
    seed: u64,
) -> GenStats {
    let mut t = Synthetic::new(target);
    let mut d = Synthetic::new(draft);
    let mut policy = FixedPolicy::new(plan.clone(), "tree:8");
    let cfg = GenConfig {
        sampling,
        max_tokens: TOKENS,
        seed,
    };
    generate(
        &mut t,
        Some(&mut d),
        &[1, 2, 3],
        &cfg,
        &mut policy,
        &mut Discard,
    )
    .expect("generation")
}

fn per_step(stats: &GenStats) -> Duration {
    Duration::from_secs_f64(stats.verify_secs / stats.steps.max(1) as f64)
}

fn bench(c: &mut Criterion) {
    let plan = tree8();
    let mut group = c.benchmark_group("verify_step_tree8");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    let mut summary = Vec::new();
    for (name, vocab) in VOCABS {
        let (target, draft) = (rows(vocab, false), rows(vocab, true));
        for (mode, sampling) in [
            ("greedy", SamplingConfig::GREEDY),
            ("sampling_t1", sampling_t1()),
        ] {
            let mut seed = 0;
            group.bench_function(format!("{name}/{mode}"), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            seed += 1;
                            per_step(&run(&target, &draft, &plan, sampling, seed))
                        })
                        .sum()
                })
            });
        }
        // Side by side: interleaved runs, the median per-step time of each.
        let (mut greedy, mut sampled) = (Vec::new(), Vec::new());
        let mut steps = [0usize; 2];
        let started = Instant::now();
        let mut seed = 1000;
        while greedy.len() < 15 || started.elapsed() < Duration::from_secs(3) {
            seed += 1;
            let g = run(&target, &draft, &plan, SamplingConfig::GREEDY, seed);
            let s = run(&target, &draft, &plan, sampling_t1(), seed);
            steps[0] += g.steps;
            steps[1] += s.steps;
            greedy.push(per_step(&g).as_secs_f64());
            sampled.push(per_step(&s).as_secs_f64());
        }
        let (g, s) = (median(&mut greedy), median(&mut sampled));
        let tokens_per_step = |n: usize| (greedy.len() * TOKENS) as f64 / n as f64;
        summary.push((
            name,
            vocab,
            g,
            s,
            tokens_per_step(steps[0]),
            tokens_per_step(steps[1]),
        ));
    }
    group.finish();
    print_summary(&summary);
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

type Row = (&'static str, usize, f64, f64, f64, f64);

fn print_summary(rows: &[Row]) {
    println!();
    println!("per-step verification, tree:8, synthetic logits (medians of interleaved runs)");
    println!(
        "{:>6} {:>8} {:>12} {:>14} {:>7} {:>12} {:>12}",
        "vocab", "ids", "greedy µs", "sampling µs", "ratio", "tok/step g", "tok/step s"
    );
    let mut json = Vec::new();
    for &(name, vocab, g, s, tg, ts) in rows {
        println!(
            "{name:>6} {vocab:>8} {:>12.1} {:>14.1} {:>7.2} {tg:>12.2} {ts:>12.2}",
            g * 1e6,
            s * 1e6,
            s / g
        );
        json.push(format!(
            "{{\"vocab\":{vocab},\"greedy_us\":{:.3},\"sampling_t1_us\":{:.3},\"ratio\":{:.4},\"tokens_per_step_greedy\":{tg:.3},\"tokens_per_step_sampling\":{ts:.3}}}",
            g * 1e6,
            s * 1e6,
            s / g
        ));
    }
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = std::path::Path::new(&dir)
        .join("criterion")
        .join("verify-summary.json");
    let body = format!("{{\"plan\":\"tree:8\",\"rows\":[{}]}}\n", json.join(","));
    if std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new("."))).is_ok()
        && std::fs::write(&path, body).is_ok()
    {
        println!("written to {}", path.display());
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
