//! Drawing a node's children from the draft, without replacement.

use rand::Rng;

use crate::sampling::{top_k, Dist};
use crate::Token;

/// Greedy drafting: the draft's `b` most likely tokens, best first.
pub fn greedy_children(logits: &[f32], b: usize) -> Vec<Token> {
    top_k(logits, b)
}

/// Sampling drafting: `b` distinct tokens drawn one after another without replacement from `q`
/// (Gumbel-top-k, with exponential jumps: see [`Dist::sample_distinct`]). Fewer when `q` has a
/// smaller support.
pub fn sampled_children(q: &Dist, b: usize, rng: &mut impl Rng) -> Vec<Token> {
    q.sample_distinct(b, rng)
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
    fn jumps_over_a_large_support_keep_the_sequential_law() {
        // 3000 tokens (many blocks to jump over): the first two draws' marginals against the
        // exact law of sequential draws without replacement.
        let weights: Vec<f64> = (0..3000).map(|i| 1.0 / (1.0 + (i % 97) as f64)).collect();
        let q = Dist::from_dense(weights);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let n = 200_000u32;
        let (mut first, mut second) = (vec![0u32; 3000], vec![0u32; 3000]);
        for _ in 0..n {
            let c = sampled_children(&q, 3, &mut rng);
            assert_eq!(c.len(), 3);
            assert!(c[0] != c[1] && c[1] != c[2] && c[0] != c[2]);
            first[c[0] as usize] += 1;
            second[c[1] as usize] += 1;
        }
        let p: Vec<f64> = (0..3000).map(|t| q.prob(t)).collect();
        let second_exact = |b: usize| -> f64 {
            (0..3000)
                .filter(|&a| a != b)
                .map(|a| p[a] * p[b] / (1.0 - p[a]))
                .sum()
        };
        // Pooled over ranges of 300 ids (jumps skip whole blocks, so a wrong jump shows as a
        // range drawn too often or too rarely); within 5 standard deviations.
        for start in (0..3000).step_by(300) {
            let members: Vec<usize> = (start..start + 300).collect();
            let got1: f64 =
                members.iter().map(|&t| f64::from(first[t])).sum::<f64>() / f64::from(n);
            let want1: f64 = members.iter().map(|&t| p[t]).sum();
            let got2: f64 =
                members.iter().map(|&t| f64::from(second[t])).sum::<f64>() / f64::from(n);
            let want2: f64 = members.iter().map(|&t| second_exact(t)).sum();
            let sd = (want1 * (1.0 - want1) / f64::from(n)).sqrt();
            assert!(
                (got1 - want1).abs() < 5.0 * sd,
                "first, ids {start}..: {got1} vs {want1}"
            );
            let sd = (want2 * (1.0 - want2) / f64::from(n)).sqrt();
            assert!(
                (got2 - want2).abs() < 5.0 * sd,
                "second, ids {start}..: {got2} vs {want2}"
            );
        }
    }

    #[test]
    fn never_more_children_than_support() {
        let q = Dist::from_weights([(4, 1.0)]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(sampled_children(&q, 3, &mut rng), vec![4]);
        assert_eq!(greedy_children(&[0.0, 1.0, 2.0], 2), vec![2, 1]);
    }
}
