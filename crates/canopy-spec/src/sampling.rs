//! From logits to the distribution the user asked for.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::Token;

/// Validated sampling settings. `temperature == 0` means greedy decoding.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingConfig {
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: u32,
    /// 1.0 disables top-p.
    pub top_p: f32,
}

impl SamplingConfig {
    pub const GREEDY: SamplingConfig = SamplingConfig {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
    };

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Checks the ranges: temperature finite and ≥ 0, top-p in (0, 1].
    ///
    /// # Errors
    /// A one-line description of the first invalid setting.
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(format!(
                "temperature must be a number >= 0, got {}",
                self.temperature
            ));
        }
        if !self.top_p.is_finite() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return Err(format!("top-p must be in (0, 1], got {}", self.top_p));
        }
        Ok(())
    }
}

impl From<canopy_types::Sampling> for SamplingConfig {
    /// The engine's view of checked sampling settings (the seed travels separately).
    fn from(s: canopy_types::Sampling) -> SamplingConfig {
        SamplingConfig {
            temperature: s.temperature(),
            top_k: s.top_k(),
            top_p: s.top_p(),
        }
    }
}

/// A sparse probability distribution over tokens: the support, sorted by descending probability.
/// Probabilities are `f64` and sum to 1.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Dist {
    entries: Vec<(Token, f64)>,
}

impl Dist {
    /// Builds a distribution from unnormalised non-negative weights (zero weights are dropped).
    /// Returns an empty distribution when all weights are zero.
    pub fn from_weights(weights: impl IntoIterator<Item = (Token, f64)>) -> Dist {
        let mut entries: Vec<(Token, f64)> = weights
            .into_iter()
            .filter(|&(_, w)| w > 0.0 && w.is_finite())
            .collect();
        let total: f64 = entries.iter().map(|&(_, w)| w).sum();
        if total <= 0.0 {
            return Dist::default();
        }
        for e in &mut entries {
            e.1 /= total;
        }
        entries.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Dist { entries }
    }

    /// A distribution with all its mass on one token.
    pub fn point(token: Token) -> Dist {
        Dist {
            entries: vec![(token, 1.0)],
        }
    }

    pub fn entries(&self) -> &[(Token, f64)] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Probability of `token` (0 outside the support).
    pub fn prob(&self, token: Token) -> f64 {
        self.entries
            .iter()
            .find(|e| e.0 == token)
            .map_or(0.0, |e| e.1)
    }

    /// The most likely token (ties: the lowest id).
    pub fn argmax(&self) -> Option<Token> {
        self.entries.first().map(|e| e.0)
    }

    /// Draws one token.
    pub fn sample(&self, rng: &mut impl Rng) -> Option<Token> {
        let mut u: f64 = rng.random();
        for &(token, p) in &self.entries {
            if u < p {
                return Some(token);
            }
            u -= p;
        }
        self.entries.last().map(|e| e.0)
    }

    /// The same distribution with `token` removed and the rest renormalised.
    pub fn without(&self, token: Token) -> Dist {
        Dist::from_weights(self.entries.iter().copied().filter(|e| e.0 != token))
    }

    /// `normalise(max(self - other, 0))`: the residual after a rejection.
    /// Returns `None` when the residual has no mass (then `self` ≤ `other` everywhere).
    pub fn residual(&self, other: &Dist) -> Option<Dist> {
        let r = Dist::from_weights(self.entries.iter().map(|&(t, p)| (t, p - other.prob(t))));
        (!r.is_empty()).then_some(r)
    }
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
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &x in logits {
        if x > a {
            b = a;
            a = x;
        } else if x > b {
            b = x;
        }
    }
    a - b
}

/// The `k` tokens with the largest logits, best first (ties: lower id first).
pub fn top_k(logits: &[f32], k: usize) -> Vec<Token> {
    let k = k.min(logits.len());
    if k == 0 {
        return Vec::new();
    }
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let cmp = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx.into_iter().map(|i| i as Token).collect()
}

/// The distribution to sample from: softmax(logits / temperature) restricted by top-k then
/// top-p (smallest prefix of the sorted distribution whose mass reaches `top_p`).
/// For greedy settings it is the point mass on the argmax.
pub fn distribution(logits: &[f32], cfg: &SamplingConfig) -> Dist {
    if cfg.is_greedy() {
        return Dist::point(argmax(logits));
    }
    let candidates: Vec<Token> = if cfg.top_k > 0 && (cfg.top_k as usize) < logits.len() {
        top_k(logits, cfg.top_k as usize)
    } else {
        (0..logits.len() as Token).collect()
    };
    let inv_t = 1.0 / f64::from(cfg.temperature);
    let max = candidates
        .iter()
        .map(|&t| f64::from(logits[t as usize]))
        .fold(f64::NEG_INFINITY, f64::max);
    let dist = Dist::from_weights(
        candidates
            .iter()
            .map(|&t| (t, ((f64::from(logits[t as usize]) - max) * inv_t).exp())),
    );
    if cfg.top_p >= 1.0 {
        return dist;
    }
    let mut mass = 0.0;
    let mut keep = 0;
    for &(_, p) in dist.entries() {
        keep += 1;
        mass += p;
        if mass >= f64::from(cfg.top_p) {
            break;
        }
    }
    Dist::from_weights(dist.entries()[..keep].iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_point_mass_on_argmax() {
        let d = distribution(&[0.1, 3.0, 2.0], &SamplingConfig::GREEDY);
        assert_eq!(d.entries(), &[(1, 1.0)]);
    }

    #[test]
    fn top_k_and_top_p_restrict_support() {
        let logits = [1.0, 2.0, 3.0, 4.0];
        let cfg = SamplingConfig {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
        };
        let d = distribution(&logits, &cfg);
        assert_eq!(d.len(), 2);
        let e = (1.0f64).exp();
        assert!((d.prob(3) - e / (1.0 + e)).abs() < 1e-12);
        let cfg = SamplingConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
        };
        let d = distribution(&logits, &cfg);
        assert_eq!(d.entries().len(), 1);
        assert_eq!(d.argmax(), Some(3));
    }

    #[test]
    fn residual_and_without() {
        let p = Dist::from_weights([(0, 0.5), (1, 0.3), (2, 0.2)]);
        let q = Dist::from_weights([(0, 0.7), (1, 0.3)]);
        let r = p.residual(&q).expect("mass left");
        assert_eq!(r.entries(), &[(2, 1.0)]);
        assert!(p.residual(&p).is_none());
        let w = p.without(0);
        assert!((w.prob(1) - 0.6).abs() < 1e-12);
    }

    #[test]
    fn top_k_orders_and_breaks_ties_by_id() {
        assert_eq!(top_k(&[1.0, 5.0, 5.0, 0.0], 3), vec![1, 2, 0]);
        assert_eq!(argmax(&[2.0, 2.0]), 0);
    }
}
