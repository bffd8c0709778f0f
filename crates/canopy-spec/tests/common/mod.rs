//! A deterministic fake language model for the speculation loop's tests.
#![allow(dead_code)]

use std::collections::HashMap;

use canopy_spec::sampling::{distribution_after, SamplingConfig, TokenCounts};
use canopy_spec::{Flow, ModelError, NodeIn, Source, StopReason, Token, TokenSink, TreeModel};

/// Logits are a fixed pseudo-random function of the whole context, so the model is a real
/// (if meaningless) autoregressive distribution; `noise` perturbs them to make a draft that agrees
/// only partly with its target.
#[derive(Clone)]
pub struct FakeModel {
    pub vocab: usize,
    pub n_ctx: usize,
    pub seed: u64,
    /// Scale of the logits (larger = peakier distributions).
    pub scale: f32,
    /// 0 = identical to the model with `noise_seed` 0 and the same seed; larger = more different.
    pub noise: f32,
    pub noise_seed: u64,
    pub prefix: Vec<Token>,
    pending: Vec<(Token, Option<usize>)>,
    rows: Vec<Vec<f32>>,
    pub decodes: usize,
    /// Ids at or above this get the largest logits (a draft whose padding ids dominate).
    pub boost_above: Option<usize>,
    /// Largest token id passed to `decode`.
    pub max_token_seen: Token,
}

fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ceb9fe1a85ec53);
    h ^ (h >> 33)
}

fn unit(h: u64) -> f32 {
    (mix(h) >> 40) as f32 / (1u64 << 24) as f32
}

impl FakeModel {
    pub fn new(vocab: usize, seed: u64, scale: f32) -> Self {
        FakeModel {
            vocab,
            n_ctx: 4096,
            seed,
            scale,
            noise: 0.0,
            noise_seed: 0,
            prefix: Vec::new(),
            pending: Vec::new(),
            rows: Vec::new(),
            decodes: 0,
            boost_above: None,
            max_token_seen: 0,
        }
    }

    pub fn with_noise(mut self, noise: f32, noise_seed: u64) -> Self {
        self.noise = noise;
        self.noise_seed = noise_seed;
        self
    }

    /// The logits after `context`.
    pub fn logits_for(&self, context: &[Token]) -> Vec<f32> {
        let mut h = self.seed;
        // Only the last three tokens matter, so contexts repeat and drafts can learn them.
        for &t in context.iter().rev().take(3) {
            h = mix(h ^ (t as u64 + 1).wrapping_mul(0x9e3779b97f4a7c15));
        }
        (0..self.vocab)
            .map(|v| {
                let base = unit(h ^ (v as u64) << 1) * self.scale;
                let noise = if self.noise > 0.0 {
                    (unit(mix(h ^ self.noise_seed) ^ (v as u64) << 2) - 0.5) * self.noise
                } else {
                    0.0
                };
                let boost = match self.boost_above {
                    Some(limit) if v >= limit => 100.0,
                    _ => 0.0,
                };
                base + noise + boost
            })
            .collect()
    }

    fn path(&self, mut i: usize) -> Vec<Token> {
        let mut toks = Vec::new();
        loop {
            toks.push(self.pending[i].0);
            match self.pending[i].1 {
                Some(p) => i = p,
                None => break,
            }
        }
        toks.reverse();
        let mut ctx = self.prefix.clone();
        ctx.extend(toks);
        ctx
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

impl TreeModel for FakeModel {
    fn n_vocab(&self) -> usize {
        self.vocab
    }
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    fn n_past(&self) -> usize {
        self.prefix.len()
    }
    fn max_batch(&self) -> usize {
        512
    }
    fn prefill(&mut self, tokens: &[Token]) -> Result<(), ModelError> {
        assert!(self.pending.is_empty());
        self.prefix.extend_from_slice(tokens);
        Ok(())
    }
    fn decode(&mut self, nodes: &[NodeIn]) -> Result<(), ModelError> {
        self.decodes += 1;
        if self.prefix.len() + self.pending.len() + nodes.len() > self.n_ctx {
            return Err(ModelError::ContextFull { n_ctx: self.n_ctx });
        }
        self.rows.clear();
        for n in nodes {
            self.max_token_seen = self.max_token_seen.max(n.token);
            if let Some(p) = n.parent {
                assert!(p < self.pending.len(), "parent after child");
            }
            self.pending.push((n.token, n.parent));
            if n.logits {
                let ctx = self.path(self.pending.len() - 1);
                self.rows.push(self.logits_for(&ctx));
            }
        }
        Ok(())
    }
    fn logits(&self, i: usize) -> &[f32] {
        &self.rows[i]
    }
    fn commit(&mut self, path: &[usize]) -> Result<(), ModelError> {
        for (k, &v) in path.iter().enumerate() {
            let expected = k.checked_sub(1).map(|j| path[j]);
            if self.pending[v].1 != expected {
                return Err(ModelError::InvalidTree("not a chain".into()));
            }
        }
        let toks: Vec<Token> = path.iter().map(|&v| self.pending[v].0).collect();
        self.prefix.extend(toks);
        self.pending.clear();
        Ok(())
    }
}

/// Collects output tokens; stops at `eos` if set.
#[derive(Default)]
pub struct Collect {
    pub tokens: Vec<Token>,
    pub sources: Vec<Source>,
    pub eos: Option<Token>,
}

impl TokenSink for Collect {
    fn push(&mut self, token: Token, source: Source) -> Flow {
        if Some(token) == self.eos {
            return Flow::Stop(StopReason::Eos);
        }
        self.tokens.push(token);
        self.sources.push(source);
        Flow::Continue
    }
    fn cancelled(&self) -> bool {
        false
    }
}

/// Pearson chi-square statistic and its critical value at p = 1e-4 (Wilson–Hilferty). A sequence
/// the expected distribution cannot produce makes the statistic infinite.
pub fn chi_square(
    counts: &HashMap<Vec<Token>, u64>,
    expected: &HashMap<Vec<Token>, f64>,
    n: u64,
) -> (f64, f64) {
    let mut stat = 0.0;
    let mut cells = 0;
    let mut other_obs = 0.0;
    let mut other_exp = 0.0;
    for (k, &p) in expected {
        let e = p * n as f64;
        let o = *counts.get(k).unwrap_or(&0) as f64;
        if e < 5.0 {
            other_obs += o;
            other_exp += e;
            continue;
        }
        stat += (o - e).powi(2) / e;
        cells += 1;
    }
    let unexpected: u64 = counts
        .iter()
        .filter(|(k, _)| !expected.contains_key(*k))
        .map(|(_, v)| v)
        .sum();
    if unexpected > 0 {
        return (f64::INFINITY, 0.0);
    }
    if other_exp > 0.0 {
        stat += (other_obs - other_exp).powi(2) / other_exp.max(1e-9);
        cells += 1;
    }
    let df = (cells - 1) as f64;
    let z = 3.719;
    let crit = df * (1.0 - 2.0 / (9.0 * df) + z * (2.0 / (9.0 * df)).sqrt()).powi(3);
    (stat, crit)
}

pub fn assert_possible(counts: &HashMap<Vec<Token>, u64>, expected: &HashMap<Vec<Token>, f64>) {
    let impossible: Vec<&Vec<Token>> = counts
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        impossible.is_empty(),
        "sequences the target cannot produce: {impossible:?}"
    );
}

/// The exact distribution of `model`'s first `len` tokens after `prompt`, decoding one token at a
/// time (each position's penalty window: the last `last_n` tokens of prompt and output).
pub fn exact_joint(
    model: &FakeModel,
    prompt: &[Token],
    sampling: &SamplingConfig,
    len: usize,
) -> HashMap<Vec<Token>, f64> {
    let mut out = HashMap::new();
    let mut stack = vec![(Vec::<Token>::new(), 1.0)];
    while let Some((seq, p)) = stack.pop() {
        if seq.len() == len {
            out.insert(seq, p);
            continue;
        }
        let mut ctx = prompt.to_vec();
        ctx.extend(&seq);
        let last_n = sampling.penalties.last_n as usize;
        let mut window = ctx[ctx.len().saturating_sub(last_n)..].to_vec();
        let recent = TokenCounts::of(&mut window);
        let dist = distribution_after(&model.logits_for(&ctx), sampling, &recent);
        for (t, q) in dist.iter() {
            let mut s = seq.clone();
            s.push(t);
            stack.push((s, p * q));
        }
    }
    out
}
