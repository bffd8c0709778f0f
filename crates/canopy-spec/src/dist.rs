//! A probability distribution over token ids, with the operations the verification walk needs.
//!
//! A [`Dist`] holds unnormalised non-negative `f32` weights (llama.cpp's precision for
//! probabilities: half the memory traffic of `f64`, twice the lanes) and their total in `f64`
//! (summed in short `f32` blocks added in `f64`), either *dense* (indexed by
//! token id: the whole vocabulary is in play) or *sparse* (ascending token ids: what top-k, top-p
//! or min-p kept). Each operation touches only what it must: [`Dist::prob`] is a lookup,
//! [`Dist::remove`] changes one weight and the total, [`Dist::make_residual`] visits the entries of
//! whichever side is sparse (one pass when both are dense), and [`Dist::sample`] scans the weights
//! once without sorting them.

use rand::Rng;

use crate::Token;

/// A probability distribution over token ids. Probabilities are the weights divided by their total,
/// so they sum to 1 (up to rounding) unless the distribution is empty.
#[derive(Debug, Default)]
pub struct Dist {
    /// `None`: dense, `weights[t]` is token `t`'s weight. `Some`: sparse, the token of each weight,
    /// ascending and distinct.
    ids: Option<Vec<Token>>,
    /// Non-negative and finite.
    weights: Vec<f32>,
    /// The sum of `weights` (kept up to date incrementally; recomputed when cancellation would make
    /// it inaccurate).
    total: f64,
}

impl Clone for Dist {
    fn clone(&self) -> Dist {
        let mut weights = buffer(self.weights.len());
        weights.extend_from_slice(&self.weights);
        Dist {
            ids: self.ids.clone(),
            weights,
            total: self.total,
        }
    }
}

impl Drop for Dist {
    /// A dense distribution's weights go back to this thread's buffers.
    fn drop(&mut self) {
        if self.ids.is_none() {
            recycle(std::mem::take(&mut self.weights));
        }
    }
}

/// Weight buffers of dropped dense distributions, kept for the next ones: a dense distribution is
/// the size of the vocabulary (600 KB at 152k tokens), and a fresh one from the allocator costs
/// page faults that would take longer than filling it. Per thread, at most [`KEPT`] buffers.
mod buffers {
    use std::cell::RefCell;

    /// Enough for every distribution one speculation step holds at once with a tree of a few dozen
    /// nodes (the draft's expanded nodes and the target's visited ones) to reuse a buffer.
    pub(super) const KEPT: usize = 12;
    /// Smaller buffers are not worth keeping.
    const SMALLEST: usize = 1 << 14;

    thread_local! {
        static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty vector with room for `len` weights.
    pub(super) fn take(len: usize) -> Vec<f32> {
        if len >= SMALLEST {
            let found = FREE.with(|free| free.borrow_mut().pop());
            if let Some(mut v) = found {
                v.clear();
                v.reserve(len);
                return v;
            }
        }
        Vec::with_capacity(len)
    }

    pub(super) fn give(v: Vec<f32>) {
        if v.capacity() >= SMALLEST {
            // Never fails or panics: a thread being torn down just drops the buffer.
            let _ = FREE.try_with(|free| {
                if let Ok(mut free) = free.try_borrow_mut() {
                    if free.len() < KEPT {
                        free.push(v);
                    }
                }
            });
        }
    }
}

/// An empty weight vector with room for `len` (reused when a dense distribution was dropped).
pub(crate) fn buffer(len: usize) -> Vec<f32> {
    buffers::take(len)
}

fn recycle(v: Vec<f32>) {
    buffers::give(v);
}

/// How much of the total an incremental update may cancel before the total is summed afresh.
const RECOUNT_BELOW: f64 = 1e-6;

impl Dist {
    /// A sparse distribution from unnormalised weights. Weights that are not positive and finite,
    /// and negative token ids, are dropped; a token listed twice gets the sum of its weights.
    /// All weights dropped gives the empty distribution.
    pub fn from_weights(weights: impl IntoIterator<Item = (Token, f64)>) -> Dist {
        let mut entries: Vec<(Token, f64)> = weights
            .into_iter()
            .filter(|&(t, w)| t >= 0 && w > 0.0 && w.is_finite())
            .collect();
        entries.sort_unstable_by_key(|e| e.0);
        entries.dedup_by(|later, first| {
            if later.0 == first.0 {
                first.1 += later.1;
                true
            } else {
                false
            }
        });
        let total: f64 = entries.iter().map(|e| e.1).sum();
        let (ids, weights): (Vec<Token>, Vec<f32>) = entries
            .into_iter()
            .map(|(t, w)| (t, (w / total) as f32))
            .unzip();
        Dist::sparse_unchecked(ids, weights)
    }

    /// A dense distribution: `weights[t]` is token `t`'s unnormalised weight. Weights that are not
    /// positive and finite count as 0.
    pub fn from_dense(weights: Vec<f64>) -> Dist {
        let ok = |w: f64| w > 0.0 && w.is_finite();
        let total: f64 = weights.iter().filter(|&&w| ok(w)).sum();
        let mut dense = buffer(weights.len());
        dense.extend(
            weights
                .into_iter()
                .map(|w| if ok(w) { (w / total) as f32 } else { 0.0 }),
        );
        Dist::dense_unchecked(dense)
    }

    /// A dense distribution from weights already known to be non-negative and finite.
    pub(crate) fn dense_unchecked(weights: Vec<f32>) -> Dist {
        let total = sum(&weights);
        Dist {
            ids: None,
            weights,
            total,
        }
    }

    /// A dense distribution from non-negative finite weights and their sum, as [`sum`] computes it.
    pub(crate) fn dense_with_total(weights: Vec<f32>, total: f64) -> Dist {
        debug_assert!((total - sum(&weights)).abs() <= 1e-9 * total.max(1.0));
        Dist {
            ids: None,
            weights,
            total,
        }
    }

    /// A sparse distribution from ascending distinct ids and their non-negative finite weights.
    pub(crate) fn sparse_unchecked(ids: Vec<Token>, weights: Vec<f32>) -> Dist {
        debug_assert_eq!(ids.len(), weights.len());
        debug_assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let total = sum(&weights);
        Dist {
            ids: Some(ids),
            weights,
            total,
        }
    }

    /// A distribution with all its mass on one token.
    pub fn point(token: Token) -> Dist {
        Dist {
            ids: Some(vec![token]),
            weights: vec![1.0],
            total: 1.0,
        }
    }

    /// Whether the weights are indexed by token id (the whole vocabulary in play).
    pub fn is_dense(&self) -> bool {
        self.ids.is_none()
    }

    /// Whether no token has positive probability.
    pub fn is_empty(&self) -> bool {
        self.total <= 0.0
    }

    /// The number of tokens with positive probability (a pass over the weights).
    pub fn len(&self) -> usize {
        self.weights.iter().filter(|&&w| w > 0.0).count()
    }

    /// The index of `token` in `weights`, if it has a slot.
    fn slot(&self, token: Token) -> Option<usize> {
        match &self.ids {
            None => usize::try_from(token)
                .ok()
                .filter(|&i| i < self.weights.len()),
            Some(ids) => ids.binary_search(&token).ok(),
        }
    }

    fn token_at(&self, slot: usize) -> Token {
        match &self.ids {
            None => slot as Token,
            Some(ids) => ids[slot],
        }
    }

    fn weight(&self, token: Token) -> f64 {
        self.slot(token).map_or(0.0, |i| f64::from(self.weights[i]))
    }

    /// Probability of `token` (0 outside the support).
    pub fn prob(&self, token: Token) -> f64 {
        if self.total > 0.0 {
            self.weight(token) / self.total
        } else {
            0.0
        }
    }

    /// The tokens with positive probability and their probabilities, ascending token ids.
    pub fn iter(&self) -> impl Iterator<Item = (Token, f64)> + '_ {
        let scale = if self.total > 0.0 {
            1.0 / self.total
        } else {
            0.0
        };
        let ids = self.ids.as_deref();
        self.weights
            .iter()
            .enumerate()
            .filter(|(_, &w)| w > 0.0)
            .map(move |(i, &w)| (ids.map_or(i as Token, |ids| ids[i]), f64::from(w) * scale))
    }

    /// The support with its probabilities, most likely first (ties: the lowest id first).
    pub fn sorted(&self) -> Vec<(Token, f64)> {
        let mut v: Vec<(Token, f64)> = self.iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// The most likely token (ties: the lowest id); `None` when empty.
    pub fn argmax(&self) -> Option<Token> {
        let mut best: Option<(usize, f32)> = None;
        for (i, &w) in self.weights.iter().enumerate() {
            if w > best.map_or(0.0, |b| b.1) {
                best = Some((i, w));
            }
        }
        best.map(|(i, _)| self.token_at(i))
    }

    /// Draws one token (one uniform number, one scan of the weights, no sorting); `None` when
    /// empty.
    pub fn sample(&self, rng: &mut impl Rng) -> Option<Token> {
        if self.is_empty() {
            return None;
        }
        let target = rng.random::<f64>() * self.total;
        // Whole blocks first (their sums vectorise), then the block the target falls in.
        let mut acc = 0.0;
        let mut last_positive = None;
        for (b, block) in self.weights.chunks(BLOCK).enumerate() {
            let s = block_sum(block);
            if s > 0.0 {
                last_positive = Some(b);
            }
            if acc + s > target {
                for (i, &w) in block.iter().enumerate() {
                    acc += f64::from(w);
                    if acc > target && w > 0.0 {
                        return Some(self.token_at(b * BLOCK + i));
                    }
                }
            } else {
                acc += s;
            }
        }
        // Rounding left the target past the sum: the last token with weight.
        let b = last_positive?;
        let end = (b * BLOCK + BLOCK).min(self.weights.len());
        (b * BLOCK..end)
            .rev()
            .find(|&i| self.weights[i] > 0.0)
            .map(|i| self.token_at(i))
    }

    /// Up to `b` distinct tokens drawn one after another without replacement, in draw order (fewer
    /// when the support is smaller).
    ///
    /// Gumbel-top-k in its exponential-race form: token `x` arrives at `E(x) / w(x)` with `E(x)`
    /// exponential (`ln w(x) + Gumbel` is `−ln` of that), and the `b` earliest arrivals, earliest
    /// first, are distributed exactly as `b` sequential draws without replacement. Instead of one
    /// random number per token, Efraimidis and Spirakis' exponential jumps: once `b` tokens are
    /// held, with `T` the latest of their arrivals, a later token arrives before `T` with
    /// probability `1 − e^(−T·w)`, so the next one that does lies an `Exp(1) / T` stretch of
    /// cumulative weight further on; it gets an arrival drawn below `T` and replaces the latest.
    /// One pass over the weights (whole blocks skipped by their sums) and `O(b log(n / b))` random
    /// numbers.
    pub fn sample_distinct(&self, b: usize, rng: &mut impl Rng) -> Vec<Token> {
        if b == 0 || self.is_empty() {
            return Vec::new();
        }
        let exponential = |rng: &mut _| -> f64 { -(1.0 - Rng::random::<f64>(rng)).ln() };
        let w = &self.weights;
        let n = w.len();
        // (arrival, slot)
        let mut held: Vec<(f64, usize)> = Vec::with_capacity(b);
        let mut i = 0;
        while held.len() < b && i < n {
            if w[i] > 0.0 {
                held.push((exponential(rng) / f64::from(w[i]), i));
            }
            i += 1;
        }
        while i < n {
            let (latest, at) = held
                .iter()
                .enumerate()
                .map(|(k, &(a, _))| (a, k))
                .fold((f64::NEG_INFINITY, 0), |m, x| if x.0 > m.0 { x } else { m });
            let mut skip = exponential(rng) / latest;
            // The slot where the cumulative weight passes `skip`.
            while i < n {
                if i % BLOCK == 0 && i + BLOCK <= n {
                    let s = block_sum(&w[i..i + BLOCK]);
                    if s <= skip {
                        skip -= s;
                        i += BLOCK;
                        continue;
                    }
                }
                let wi = f64::from(w[i]);
                if wi > skip {
                    break;
                }
                skip -= wi;
                i += 1;
            }
            if i == n {
                break;
            }
            // Its arrival, given that it beats `latest`: E given E < latest·w.
            let wi = f64::from(w[i]);
            let below = -(-latest * wi).exp_m1();
            let e = -(-(rng.random::<f64>() * below)).ln_1p();
            held[at] = (e / wi, i);
            i += 1;
        }
        held.sort_by(|a, c| a.0.total_cmp(&c.0));
        held.into_iter()
            .map(|(_, slot)| self.token_at(slot))
            .collect()
    }

    /// Removes `token` and renormalises the rest, in constant time (a lookup when sparse).
    pub fn remove(&mut self, token: Token) {
        if let Some(i) = self.slot(token) {
            let w = f64::from(std::mem::replace(&mut self.weights[i], 0.0));
            let before = self.total;
            self.total -= w;
            if self.total <= before * RECOUNT_BELOW {
                self.total = sum(&self.weights);
            }
        }
    }

    /// The same distribution with `token` removed and the rest renormalised.
    pub fn without(&self, token: Token) -> Dist {
        let mut d = self.clone();
        d.remove(token);
        d
    }

    /// Replaces `self` (`p`) by the residual `normalise(max(p − q, 0))` after a rejection, where
    /// `q` is `other`. Touches only the entries both have: one pass when both are dense, the sparse
    /// side's entries otherwise.
    ///
    /// Returns `false` when no mass remains, that is when `p ≤ q` everywhere, which for two
    /// distributions means they are equal up to rounding; `self` then becomes a copy of `other`
    /// (so equal to `p` up to rounding).
    pub fn make_residual(&mut self, other: &Dist) -> bool {
        if other.is_empty() {
            return !self.is_empty();
        }
        if self.is_empty() {
            *self = other.clone();
            return false;
        }
        // q's weights in p's units.
        let s = (self.total / other.total) as f32;
        match (&self.ids, &other.ids) {
            (None, None) => {
                // One pass over both; the total is summed afresh.
                let n = self.weights.len().min(other.weights.len());
                let (head, tail) = self.weights.split_at_mut(n);
                self.total = residual_dense(head, &other.weights[..n], s) + sum(tail);
            }
            (None, Some(ids)) => {
                // Only q's entries change; the total follows them.
                let before = self.total;
                let mut delta = 0.0;
                for (&t, &q) in ids.iter().zip(&other.weights) {
                    if let Some(w) = usize::try_from(t)
                        .ok()
                        .and_then(|i| self.weights.get_mut(i))
                    {
                        let new = (*w - s * q).max(0.0);
                        delta += f64::from(new) - f64::from(*w);
                        *w = new;
                    }
                }
                self.total = before + delta;
                if self.total <= before * RECOUNT_BELOW {
                    self.total = sum(&self.weights);
                }
            }
            (Some(ids), _) => {
                // Only p's entries can keep mass.
                for (&t, w) in ids.iter().zip(self.weights.iter_mut()) {
                    let q = other.weight(t) as f32;
                    if q > 0.0 {
                        *w = (*w - s * q).max(0.0);
                    }
                }
                self.total = sum(&self.weights);
            }
        }
        if self.total > 0.0 {
            true
        } else {
            *self = other.clone();
            false
        }
    }

    /// `normalise(max(self − other, 0))`: the residual after a rejection. Returns `None` when the
    /// residual has no mass (then `self ≤ other` everywhere).
    pub fn residual(&self, other: &Dist) -> Option<Dist> {
        let mut r = self.clone();
        r.make_residual(other).then_some(r)
    }
}

/// Elements summed in `f32` before their sum joins the `f64` total: short enough that `f32`
/// rounding stays near one unit in the last place, long enough to vectorise.
pub(crate) const BLOCK: usize = 128;

/// Sum in `f64` of `f32` blocks, each summed with eight independent lanes (so that it vectorises).
pub(crate) fn sum(xs: &[f32]) -> f64 {
    xs.chunks(BLOCK).map(block_sum).sum()
}

#[inline(always)]
pub(crate) fn block_sum(block: &[f32]) -> f64 {
    let mut acc = [0.0f32; 8];
    let chunks = block.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            acc[j] += c[j];
        }
    }
    acc.iter().chain(rest).map(|&x| f64::from(x)).sum()
}

/// `w ← max(w − s·q, 0)` over two equally long slices; returns the new sum of `w`.
fn residual_dense(w: &mut [f32], q: &[f32], s: f32) -> f64 {
    let mut total = 0.0;
    for (wb, qb) in w.chunks_mut(BLOCK).zip(q.chunks(BLOCK)) {
        let mut acc = [0.0f32; 8];
        let mut wc = wb.chunks_exact_mut(8);
        let mut qc = qb.chunks_exact(8);
        for (a, b) in (&mut wc).zip(&mut qc) {
            for j in 0..8 {
                let d = a[j] - s * b[j];
                let new = if d > 0.0 { d } else { 0.0 };
                acc[j] += new;
                a[j] = new;
            }
        }
        let mut block: f64 = acc.iter().map(|&x| f64::from(x)).sum();
        for (a, &b) in wc.into_remainder().iter_mut().zip(qc.remainder()) {
            *a = (*a - s * b).max(0.0);
            block += f64::from(*a);
        }
        total += block;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn residual_and_without() {
        let p = Dist::from_weights([(0, 0.5), (1, 0.3), (2, 0.2)]);
        let q = Dist::from_weights([(0, 0.7), (1, 0.3)]);
        let r = p.residual(&q).expect("mass left");
        assert_eq!(r.sorted(), vec![(2, 1.0)]);
        assert!(p.residual(&p).is_none());
        let w = p.without(0);
        assert!(close(w.prob(1), 0.6));
        assert!(close(w.prob(0), 0.0));
    }

    #[test]
    fn dense_and_sparse_agree() {
        let dense = Dist::from_dense(vec![0.5, 0.0, 0.3, 0.2]);
        let sparse = Dist::from_weights([(2, 0.3), (0, 0.5), (3, 0.2)]);
        for ((a, p), (b, q)) in dense.sorted().into_iter().zip(sparse.sorted()) {
            assert!(a == b && close(p, q));
        }
        assert_eq!(dense.len(), 3);
        assert_eq!(dense.argmax(), Some(0));
        let q = Dist::from_weights([(0, 0.25), (2, 0.75)]);
        let (a, b) = (dense.residual(&q).unwrap(), sparse.residual(&q).unwrap());
        for t in 0..4 {
            assert!(close(a.prob(t), b.prob(t)), "{t}");
        }
        let qd = Dist::from_dense(vec![0.25, 0.0, 0.75]);
        let c = dense.residual(&qd).unwrap();
        for t in 0..4 {
            assert!(close(a.prob(t), c.prob(t)), "{t}");
        }
    }

    #[test]
    fn duplicates_add_and_bad_weights_drop() {
        let d = Dist::from_weights([(1, 1.0), (1, 1.0), (2, f64::NAN), (-1, 1.0), (3, 2.0)]);
        assert_eq!(d.sorted(), vec![(1, 0.5), (3, 0.5)]);
        assert!(Dist::from_weights([(0, 1e-300)]).prob(0) == 1.0);
        assert!(Dist::from_weights([(0, 0.0)]).is_empty());
        assert_eq!(
            Dist::default().sample(&mut ChaCha8Rng::seed_from_u64(0)),
            None
        );
    }

    #[test]
    fn an_empty_residual_becomes_the_other_side() {
        let mut p = Dist::from_dense(vec![0.5, 0.5]);
        let q = Dist::from_dense(vec![0.5, 0.5]);
        assert!(!p.make_residual(&q));
        assert!(close(p.prob(0), 0.5));
    }

    #[test]
    fn sampling_follows_the_weights() {
        let mut w = vec![0.0; 1000];
        w[3] = 1.0;
        w[600] = 3.0;
        let d = Dist::from_dense(w);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let n = 40_000;
        let hits = (0..n).filter(|_| d.sample(&mut rng) == Some(600)).count();
        let got = hits as f64 / n as f64;
        assert!((got - 0.75).abs() < 0.01, "{got}");
    }
}
