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
//! interleaved in one run, with each one's drafting time per step for reference (Gumbel-top-k
//! draws against greedy top-k), and `target/criterion/verify-summary.json` holds the same numbers.

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
        // Side by side: interleaved runs; total time over total steps for each.
        let mut totals = [Totals::default(), Totals::default()];
        let started = Instant::now();
        let mut seed = 1000;
        while totals[0].runs < 20 || started.elapsed() < Duration::from_secs(4) {
            seed += 1;
            for (t, sampling) in totals
                .iter_mut()
                .zip([SamplingConfig::GREEDY, sampling_t1()])
            {
                t.add(&run(&target, &draft, &plan, sampling, seed));
            }
        }
        summary.push((name, vocab, totals));
    }
    group.finish();
    print_summary(&summary);
}

/// Sums over the runs of one setting.
#[derive(Default)]
struct Totals {
    runs: usize,
    steps: usize,
    tokens: usize,
    verify_secs: f64,
    draft_secs: f64,
}

impl Totals {
    fn add(&mut self, stats: &GenStats) {
        self.runs += 1;
        self.steps += stats.steps;
        self.tokens += stats.tokens;
        self.verify_secs += stats.verify_secs;
        self.draft_secs += stats.draft_secs;
    }

    fn verify_us(&self) -> f64 {
        self.verify_secs * 1e6 / self.steps.max(1) as f64
    }

    fn draft_us(&self) -> f64 {
        self.draft_secs * 1e6 / self.steps.max(1) as f64
    }

    fn tokens_per_step(&self) -> f64 {
        self.tokens as f64 / self.steps.max(1) as f64
    }
}

fn print_summary(rows: &[(&str, usize, [Totals; 2])]) {
    println!();
    println!(
        "time per step, tree:8, synthetic logits (interleaved runs: total time / total steps)"
    );
    println!(
        "{:>6} {:>8} | {:>10} {:>10} {:>6} | {:>10} {:>10} | {:>9} {:>9}",
        "vocab",
        "ids",
        "verify g",
        "verify T1",
        "ratio",
        "draft g",
        "draft T1",
        "tok/st g",
        "tok/st T1"
    );
    let mut json = Vec::new();
    for (name, vocab, [g, s]) in rows {
        let ratio = s.verify_us() / g.verify_us();
        println!(
            "{name:>6} {vocab:>8} | {:>8.1}µs {:>8.1}µs {ratio:>6.2} | {:>8.1}µs {:>8.1}µs | {:>9.2} {:>9.2}",
            g.verify_us(),
            s.verify_us(),
            g.draft_us(),
            s.draft_us(),
            g.tokens_per_step(),
            s.tokens_per_step(),
        );
        json.push(format!(
            concat!(
                "{{\"vocab\":{},\"verify_greedy_us\":{:.3},\"verify_sampling_t1_us\":{:.3},",
                "\"verify_ratio\":{:.4},\"draft_greedy_us\":{:.3},\"draft_sampling_t1_us\":{:.3},",
                "\"tokens_per_step_greedy\":{:.3},\"tokens_per_step_sampling_t1\":{:.3}}}"
            ),
            vocab,
            g.verify_us(),
            s.verify_us(),
            ratio,
            g.draft_us(),
            s.draft_us(),
            g.tokens_per_step(),
            s.tokens_per_step(),
        ));
    }
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = std::path::Path::new(&dir)
        .join("criterion")
        .join("verify-summary.json");
    let body = format!("{{\"plan\":\"tree:8\",\"rows\":[{}]}}\n", json.join(","));
    if let Some(parent) = path.parent() {
        if std::fs::create_dir_all(parent).is_ok() && std::fs::write(&path, body).is_ok() {
            println!("written to {}", path.display());
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
