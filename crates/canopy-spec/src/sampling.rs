//! From logits to the distribution the user asked for.
//!
//! The settings apply in llama.cpp's order:
//!
//! 1. **penalties** (repetition, frequency, presence) on the tokens of the position's penalty
//!    window: the last `last_n` tokens of the prompt, the output so far and, under speculation, the
//!    drafted tokens on the path to the node being scored ([`TokenCounts::window`]). Every tree
//!    node, in the draft and in the target, uses its own path, so the penalties are exact under
//!    speculation;
//! 2. **top-k**: the `k` largest penalised logits;
//! 3. **top-p**: the smallest set of the most likely remaining tokens whose probability at
//!    temperature 1 reaches `top_p`;
//! 4. **min-p**: the remaining tokens at least `min_p` times as likely as the most likely one, at
//!    temperature 1;
//! 5. **temperature**: `softmax(logit / T)` over what is left.
//!
//! Temperature 0 is greedy decoding: the point mass on the largest penalised logit (ties: the
//! lowest id); top-k, top-p and min-p never remove it, so they do not matter there.
//!
//! Cost: without top-p, min-p or penalties, a distribution is one pass for the largest logit and
//! one for the weights (dense, indexed by token, no sorting); top-k selects its `k` tokens in
//! linear time; top-p sorts only the head it keeps; penalties copy the logits once and change the
//! window's tokens.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub use canopy_types::{Penalties, SamplingError};

pub use crate::dist::Dist;
use crate::Token;

/// Validated sampling settings. `temperature == 0` means greedy decoding.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingConfig {
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: u32,
    /// 1.0 disables top-p.
    pub top_p: f32,
    /// 0.0 disables min-p.
    #[serde(default)]
    pub min_p: f32,
    /// [`Penalties::NONE`] disables them.
    #[serde(default)]
    pub penalties: Penalties,
}

impl SamplingConfig {
    pub const GREEDY: SamplingConfig = SamplingConfig {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        penalties: Penalties::NONE,
    };

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Checks the ranges: temperature finite and ≥ 0, top-p in (0, 1], min-p in [0, 1], the
    /// penalties as [`Penalties::check`] says.
    ///
    /// # Errors
    /// The first invalid setting, naming it.
    pub fn validate(&self) -> Result<(), SamplingError> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(SamplingError::Temperature(self.temperature));
        }
        if !self.top_p.is_finite() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return Err(SamplingError::TopP(self.top_p));
        }
        canopy_types::check_min_p(self.min_p)?;
        self.penalties.check()
    }

    /// Whether the penalties change any logit (then each position needs its window).
    pub fn has_penalties(&self) -> bool {
        !self.penalties.is_off()
    }
}

impl From<canopy_types::Sampling> for SamplingConfig {
    /// The engine's view of checked sampling settings (the seed travels separately).
    fn from(s: canopy_types::Sampling) -> SamplingConfig {
        SamplingConfig {
            temperature: s.temperature(),
            top_k: s.top_k(),
            top_p: s.top_p(),
            min_p: s.min_p(),
            penalties: s.penalties(),
        }
    }
}

/// How often each token occurs in one position's penalty window (ascending token ids).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenCounts(Vec<(Token, u32)>);

impl TokenCounts {
    /// The counts of the last `last_n` tokens of `context` followed by `path`: for a tree node,
    /// `context` is the prompt and the output so far (ending with the step's root) and `path` the
    /// drafted tokens from below the root down to the node itself.
    pub fn window(context: &[Token], path: &[Token], last_n: usize) -> TokenCounts {
        let from_path = path.len().min(last_n);
        let from_context = (last_n - from_path).min(context.len());
        let mut tokens: Vec<Token> = context[context.len() - from_context..]
            .iter()
            .chain(&path[path.len() - from_path..])
            .copied()
            .collect();
        TokenCounts::of(&mut tokens)
    }

    /// The counts of `tokens` (sorted in place).
    pub fn of(tokens: &mut [Token]) -> TokenCounts {
        tokens.sort_unstable();
        let mut counts: Vec<(Token, u32)> = Vec::new();
        for &t in tokens.iter() {
            match counts.last_mut() {
                Some((last, c)) if *last == t => *c += 1,
                _ => counts.push((t, 1)),
            }
        }
        TokenCounts(counts)
    }

    /// Each distinct token with its count, ascending ids.
    pub fn iter(&self) -> impl Iterator<Item = (Token, u32)> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The logits after `penalties` for a position whose window holds `recent` (llama.cpp's rule: a
/// positive logit is divided by the repetition penalty and a negative one multiplied by it, then
/// `count · frequency + presence` is subtracted). Borrows `logits` when nothing changes; ids
/// outside `logits` are ignored.
pub fn penalised<'a>(
    logits: &'a [f32],
    penalties: &Penalties,
    recent: &TokenCounts,
) -> Cow<'a, [f32]> {
    if penalties.is_off() || recent.is_empty() {
        return Cow::Borrowed(logits);
    }
    let mut out = logits.to_vec();
    for (t, count) in recent.iter() {
        if let Some(l) = usize::try_from(t).ok().and_then(|i| out.get_mut(i)) {
            if *l <= 0.0 {
                *l *= penalties.repeat;
            } else {
                *l /= penalties.repeat;
            }
            *l -= count as f32 * penalties.frequency + penalties.presence;
        }
    }
    Cow::Owned(out)
}

/// Index of the largest logit (ties: the lowest index). Greedy decoding.
pub fn argmax(logits: &[f32]) -> Token {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as Token
}

/// The largest logit minus the second largest: how near a tie the greedy choice is (infinite for
/// fewer than two logits).
pub fn top2_margin(logits: &[f32]) -> f32 {
    argmax_and_margin(logits).1
}

/// [`argmax`] and [`top2_margin`] in one pass.
pub fn argmax_and_margin(logits: &[f32]) -> (Token, f32) {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    let mut best = 0usize;
    for (i, &x) in logits.iter().enumerate() {
        if x > a {
            b = a;
            a = x;
            best = i;
        } else if x > b {
            b = x;
        }
    }
    (best as Token, a - b)
}

/// The `k` tokens with the largest logits, best first (ties: lower id first; the order is
/// `f32::total_cmp`'s).
///
/// One pass holding the best `k` so far in a heap whose top is the worst of them: a logit below
/// that is passed over with one comparison, so the pass costs about what an argmax does, and the
/// heap changes only `O(k log(n / k))` times on logits in no particular order.
pub fn top_k(logits: &[f32], k: usize) -> Vec<Token> {
    /// Ordered worst first: a lower logit, or the same and a higher id.
    #[derive(Clone, Copy, PartialEq)]
    struct Held(f32, u32);
    impl Eq for Held {}
    impl Ord for Held {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
        }
    }
    impl PartialOrd for Held {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }

    let k = k.min(logits.len());
    if k == 0 {
        return Vec::new();
    }
    let mut heap: std::collections::BinaryHeap<Held> = logits[..k]
        .iter()
        .enumerate()
        .map(|(i, &x)| Held(x, i as u32))
        .collect();
    let mut worst = heap.peek().map_or(f32::NEG_INFINITY, |h| h.0);
    for (i, &x) in logits.iter().enumerate().skip(k) {
        // Equal logits (and NaN, ±0) go through the exact ordering.
        if x < worst {
            continue;
        }
        let candidate = Held(x, i as u32);
        if let Some(mut top) = heap.peek_mut() {
            if candidate < *top {
                *top = candidate;
            }
        }
        worst = heap.peek().map_or(f32::NEG_INFINITY, |h| h.0);
    }
    heap.into_sorted_vec()
        .into_iter()
        .map(|h| h.1 as Token)
        .collect()
}

/// The largest value (negative infinity for none; NaN ignored), eight lanes at a time.
fn max_f32(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2, the one feature `max_f32_avx2` is compiled for.
        return unsafe { max_f32_avx2(xs) };
    }
    max_f32_portable(xs)
}

/// [`max_f32_portable`] compiled for AVX2: the same operations in the same order, twice as wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn max_f32_avx2(xs: &[f32]) -> f32 {
    max_f32_portable(xs)
}

#[inline(always)]
fn max_f32_portable(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            acc[j] = if c[j] > acc[j] { c[j] } else { acc[j] };
        }
    }
    acc.iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// Appends the weight of every logit to `out` (see [`weight`]) and returns their total, each
/// block summed while still in cache. Compiled for AVX2 where the processor has it: the
/// exponential is most of a dense distribution's time, and the baseline x86-64 build has half the
/// lanes. Both give the same bits (the same operations in the same order, no fused multiply-add).
fn fill_weights(logits: &[f32], max: f32, inv_t: f32, out: &mut Vec<f32>) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2, the one feature `fill_weights_avx2` is compiled for.
        return unsafe { fill_weights_avx2(logits, max, inv_t, out) };
    }
    fill_weights_portable(logits, max, inv_t, out)
}

/// [`fill_weights_portable`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fill_weights_avx2(logits: &[f32], max: f32, inv_t: f32, out: &mut Vec<f32>) -> f64 {
    fill_weights_portable(logits, max, inv_t, out)
}

#[inline(always)]
fn fill_weights_portable(logits: &[f32], max: f32, inv_t: f32, out: &mut Vec<f32>) -> f64 {
    // Plain loops over slices (`Vec::extend` would leave the arithmetic in a function of its own,
    // outside the AVX2 build).
    let start = out.len();
    out.resize(start + logits.len(), 0.0);
    let mut total = 0.0;
    for (o, l) in out[start..]
        .chunks_mut(crate::dist::BLOCK)
        .zip(logits.chunks(crate::dist::BLOCK))
    {
        for (w, &x) in o.iter_mut().zip(l) {
            *w = weight(x, max, inv_t);
        }
        total += crate::dist::block_sum(o);
    }
    total
}

/// `e^x` for `x ≤ 0`, within two units in the last place of `f32`, in straight-line arithmetic so
/// that a loop over the vocabulary vectorises (`f32::exp` is a library call per element and takes
/// most of a dense distribution's time). 0 below −87 (where `f32` runs out of normal numbers); NaN
/// stays NaN.
///
/// Cephes' `expf`: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-7 polynomial for `e^r`, and
/// `2^n` built in the exponent bits.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    // Adding 1.5·2^23 rounds to the nearest integer, which lands in the low bits.
    const ROUND: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e_r = p * r * r + r + 1.0;
    let n_bits = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let two_n = f32::from_bits((n_bits.wrapping_add(127) << 23) as u32);
    if x < -87.0 {
        0.0
    } else {
        e_r * two_n
    }
}

/// The sum of `exp(logit − max)` over all `logits`, in `f32` blocks added in `f64` (no
/// allocation; vectorises).
fn mass(logits: &[f32], max: f32) -> f64 {
    let mut total = 0.0;
    for block in logits.chunks(128) {
        let mut acc = [0.0f32; 8];
        let chunks = block.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for j in 0..8 {
                acc[j] += weight(c[j], max, 1.0);
            }
        }
        let tail = rest.iter().map(|&l| f64::from(weight(l, max, 1.0)));
        total += acc.iter().map(|&x| f64::from(x)).chain(tail).sum::<f64>();
    }
    total
}

/// `exp((logit − max) / T)` as a weight: 0 for NaN or negative infinity.
#[inline(always)]
fn weight(logit: f32, max: f32, inv_t: f32) -> f32 {
    let w = exp_nonpositive((logit - max) * inv_t);
    if w > 0.0 {
        w
    } else {
        0.0
    }
}

/// The distribution to sample from with no penalty window (or penalties off): see the module
/// documentation for the order of the settings. For greedy settings it is the point mass on the
/// argmax.
pub fn distribution(logits: &[f32], cfg: &SamplingConfig) -> Dist {
    distribution_after(logits, cfg, &TokenCounts::default())
}

/// The distribution to sample from at a position whose penalty window holds `recent` (see the
/// module documentation for the order of the settings). Empty when no logit is finite.
pub fn distribution_after(logits: &[f32], cfg: &SamplingConfig, recent: &TokenCounts) -> Dist {
    let logits = penalised(logits, &cfg.penalties, recent);
    let logits: &[f32] = &logits;
    if cfg.is_greedy() {
        return Dist::point(argmax(logits));
    }
    // Candidates: `None` is the whole vocabulary; `Some` ascending ids.
    let mut candidates: Option<Vec<Token>> = None;
    let max = if cfg.top_k > 0 && (cfg.top_k as usize) < logits.len() {
        let kept = top_k(logits, cfg.top_k as usize);
        let max = kept
            .first()
            .map_or(f32::NEG_INFINITY, |&t| logits[t as usize]);
        let mut ids = kept;
        ids.sort_unstable();
        candidates = Some(ids);
        max
    } else {
        max_f32(logits)
    };
    if !max.is_finite() {
        return Dist::default();
    }
    if cfg.top_p < 1.0 {
        candidates = Some(top_p_head(logits, candidates, max, cfg.top_p));
    }
    if cfg.min_p > 0.0 {
        // llama.cpp's test: p ≥ min_p · p_max  ⇔  logit ≥ max + ln(min_p).
        let floor = max + cfg.min_p.ln();
        candidates = Some(match candidates {
            Some(mut ids) => {
                ids.retain(|&t| logits[t as usize] >= floor);
                ids
            }
            None => (0..logits.len())
                .filter(|&i| logits[i] >= floor)
                .map(|i| i as Token)
                .collect(),
        });
    }
    let inv_t = 1.0 / cfg.temperature;
    match candidates {
        None => {
            let mut weights = crate::dist::buffer(logits.len());
            let total = fill_weights(logits, max, inv_t, &mut weights);
            Dist::dense_with_total(weights, total)
        }
        Some(ids) => {
            let weights = ids
                .iter()
                .map(|&t| weight(logits[t as usize], max, inv_t))
                .collect();
            Dist::sparse_unchecked(ids, weights)
        }
    }
}

/// Top-p at temperature 1: the smallest set of the most likely `candidates` (all tokens when
/// `None`) whose probability reaches `top_p`, as ascending ids. Sorts only the head it keeps: it
/// selects growing blocks of the best remaining tokens in linear time until their mass reaches the
/// target, and sorts the last block to find the cut.
fn top_p_head(logits: &[f32], candidates: Option<Vec<Token>>, max: f32, top_p: f32) -> Vec<Token> {
    let w = |i: u32| f64::from(weight(logits[i as usize], max, 1.0));
    let (mut rest, total): (Vec<u32>, f64) = match candidates {
        Some(ids) => {
            let total = ids.iter().map(|&t| w(t as u32)).sum();
            (ids.into_iter().map(|t| t as u32).collect(), total)
        }
        None => ((0..logits.len() as u32).collect(), mass(logits, max)),
    };
    let goal = f64::from(top_p) * total;
    // Best first, ties: lower id first.
    let cmp = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let mut kept: Vec<u32> = Vec::new();
    let mut mass = 0.0;
    let mut block = 64usize;
    let mut start = 0usize;
    loop {
        let remaining = &mut rest[start..];
        if remaining.is_empty() {
            break;
        }
        let take = block.min(remaining.len());
        let last = take == remaining.len();
        if !last {
            remaining.select_nth_unstable_by(take - 1, cmp);
        }
        let head = &mut remaining[..take];
        let head_mass: f64 = head.iter().map(|&i| w(i)).sum();
        if mass + head_mass >= goal || last {
            head.sort_unstable_by(cmp);
            for &i in head.iter() {
                kept.push(i);
                mass += w(i);
                if mass >= goal {
                    break;
                }
            }
            break;
        }
        kept.extend_from_slice(head);
        mass += head_mass;
        start += take;
        block *= 2;
    }
    let mut ids: Vec<Token> = kept.into_iter().map(|i| i as Token).collect();
    ids.sort_unstable();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32, top_k: u32, top_p: f32) -> SamplingConfig {
        SamplingConfig {
            temperature,
            top_k,
            top_p,
            ..SamplingConfig::GREEDY
        }
    }

    #[test]
    fn greedy_is_point_mass_on_argmax() {
        let d = distribution(&[0.1, 3.0, 2.0], &SamplingConfig::GREEDY);
        assert_eq!(d.sorted(), vec![(1, 1.0)]);
    }

    #[test]
    fn top_k_and_top_p_restrict_support() {
        let logits = [1.0, 2.0, 3.0, 4.0];
        let d = distribution(&logits, &cfg(1.0, 2, 1.0));
        assert_eq!(d.len(), 2);
        let e = (1.0f64).exp();
        assert!((d.prob(3) - e / (1.0 + e)).abs() < 1e-6);
        let d = distribution(&logits, &cfg(1.0, 0, 0.5));
        assert_eq!(d.len(), 1);
        assert_eq!(d.argmax(), Some(3));
    }

    #[test]
    fn top_p_is_taken_at_temperature_one() {
        // At T=1 the best token has 0.64 of the mass: top-p 0.6 keeps it alone, whatever the
        // temperature applied afterwards (which would flatten it below 0.6).
        let logits = [0.0, 0.0, 0.0, (0.64f32 / 0.12).ln()];
        let d = distribution(&logits, &cfg(5.0, 0, 0.6));
        assert_eq!(d.sorted(), vec![(3, 1.0)]);
    }

    #[test]
    fn min_p_keeps_tokens_near_the_best() {
        // Probabilities at T=1 proportional to 1, 0.5, 0.1: min-p 0.2 drops the last.
        let logits = [0.0, 0.5f32.ln(), 0.1f32.ln()];
        let mut c = cfg(1.0, 0, 1.0);
        c.min_p = 0.2;
        let d = distribution(&logits, &c);
        assert_eq!(d.len(), 2);
        assert!((d.prob(0) - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn penalties_follow_llama_cpp() {
        let p = Penalties {
            last_n: 3,
            repeat: 2.0,
            frequency: 0.5,
            presence: 0.25,
        };
        // The window is the last three tokens of context + path: 2, 2, 1 (token 0 fell out).
        let recent = TokenCounts::window(&[0, 2], &[2, 1], 3);
        assert_eq!(recent.iter().collect::<Vec<_>>(), vec![(1, 1), (2, 2)]);
        let out = penalised(&[1.0, 4.0, -1.0, 0.5], &p, &recent);
        assert_eq!(&out[..], &[1.0, 4.0 / 2.0 - 0.75, -2.0 - 1.25, 0.5]);
        let off = Penalties { last_n: 0, ..p };
        assert!(matches!(penalised(&[1.0], &off, &recent), Cow::Borrowed(_)));
    }

    #[test]
    fn greedy_takes_the_penalised_argmax() {
        let mut c = SamplingConfig::GREEDY;
        c.penalties = Penalties {
            last_n: 64,
            repeat: 1.5,
            frequency: 0.0,
            presence: 0.0,
        };
        let logits = [3.0, 2.5, 0.0];
        assert_eq!(distribution(&logits, &c).argmax(), Some(0));
        let recent = TokenCounts::window(&[0], &[], 64);
        assert_eq!(distribution_after(&logits, &c, &recent).argmax(), Some(1));
    }

    #[test]
    fn settings_are_checked() {
        assert!(SamplingConfig::GREEDY.validate().is_ok());
        let mut c = cfg(1.0, 0, 1.0);
        c.min_p = 1.5;
        assert_eq!(c.validate().unwrap_err().setting(), "min-p");
        assert_eq!(
            cfg(-1.0, 0, 1.0).validate().unwrap_err().setting(),
            "temperature"
        );
    }

    #[test]
    fn exp_is_within_two_ulps_of_the_library() {
        let mut x = 0.0f32;
        while x > -87.0 {
            let (got, want) = (exp_nonpositive(x), x.exp());
            assert!(
                (got - want).abs() <= 2.0 * f32::EPSILON * want,
                "{x}: {got} vs {want}"
            );
            x -= 0.000_37;
        }
        assert_eq!(exp_nonpositive(-88.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn the_wide_kernels_give_the_portable_bits() {
        // On a processor with AVX2 the dispatched kernels run the AVX2 build; either way they
        // must agree with the portable build bit for bit.
        let logits: Vec<f32> = (0..10_007u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 8) as f32 / (1 << 24) as f32) * 30.0 - 20.0)
            .collect();
        let max = max_f32(&logits);
        assert_eq!(max.to_bits(), max_f32_portable(&logits).to_bits());
        for inv_t in [1.0, 1.0 / 0.7, 4.0] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let ta = fill_weights(&logits, max, inv_t, &mut a);
            let tb = fill_weights_portable(&logits, max, inv_t, &mut b);
            assert_eq!(ta.to_bits(), tb.to_bits());
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }

    #[test]
    fn top_k_orders_and_breaks_ties_by_id() {
        assert_eq!(top_k(&[1.0, 5.0, 5.0, 0.0], 3), vec![1, 2, 0]);
        assert_eq!(argmax(&[2.0, 2.0]), 0);
        assert_eq!(argmax_and_margin(&[1.0, 3.0, 2.5]), (1, 0.5));
    }
}
