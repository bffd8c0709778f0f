//! Drawing a node's children from the draft, without replacement.

use rand::Rng;

use crate::sampling::{top_k, Dist};
use crate::Token;

/// Greedy drafting: the draft's `b` most likely tokens, best first.
pub fn greedy_children(logits: &[f32], b: usize) -> Vec<Token> {
    top_k(logits, b)
}

/// Sampling drafting: `b` distinct tokens drawn one after another without replacement from `q`
/// (Gumbel-top-k: the `b` largest `ln q(x) + Gumbel noise` are distributed exactly as sequential
/// draws without replacement). Fewer when `q` has a smaller support.
///
/// The keys are computed in the equivalent exponential-race form: `ln q(x) − ln E(x)` with
/// `E(x) = −ln U(x)` exponential is largest exactly where `E(x) / q(x)` is smallest, which costs one
/// logarithm per token instead of three.
pub fn sampled_children(q: &Dist, b: usize, rng: &mut impl Rng) -> Vec<Token> {
    let mut keyed: Vec<(f64, Token)> = q
        .iter()
        .map(|(token, p)| {
            let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            (-u.ln() / p, token)
        })
        .collect();
    let b = b.min(keyed.len());
    if b == 0 {
        return Vec::new();
    }
    let cmp = |a: &(f64, Token), c: &(f64, Token)| a.0.total_cmp(&c.0);
    if b < keyed.len() {
        keyed.select_nth_unstable_by(b - 1, cmp);
        keyed.truncate(b);
    }
    keyed.sort_by(cmp);
    keyed.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn gumbel_top_k_matches_sequential_draws() {
        // P(first = a, second = b) for sequential draws without replacement is q(a) q(b) / (1 - q(a)).
        let q = Dist::from_weights([(0, 0.5), (1, 0.3), (2, 0.2)]);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 200_000;
        let mut counts = std::collections::HashMap::new();
        for _ in 0..n {
            let c = sampled_children(&q, 2, &mut rng);
            *counts.entry((c[0], c[1])).or_insert(0u32) += 1;
        }
        for (&(a, b), &count) in &counts {
            let expected = q.prob(a) * q.prob(b) / (1.0 - q.prob(a));
            let got = f64::from(count) / f64::from(n);
            assert!(
                (got - expected).abs() < 0.005,
                "({a},{b}): {got} vs {expected}"
            );
        }
        assert_eq!(counts.len(), 6);
    }

    #[test]
    fn never_more_children_than_support() {
        let q = Dist::from_weights([(4, 1.0)]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(sampled_children(&q, 3, &mut rng), vec![4]);
        assert_eq!(greedy_children(&[0.0, 1.0, 2.0], 2), vec![2, 1]);
    }
}
