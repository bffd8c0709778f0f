//! Estimating the positional acceptance vector (BRIEF §2) at one position.

use rand::Rng;

use crate::draft::sampled_children;
use crate::sampling::{argmax, top_k, Dist};

/// Greedy: the draft's top-`width` candidates; rank k counts 1 when it equals the target's argmax.
pub fn greedy_position(target_logits: &[f32], draft_logits: &[f32], width: usize) -> Vec<f64> {
    let best = argmax(target_logits);
    let mut p = vec![0.0; width];
    if let Some(k) = top_k(draft_logits, width).iter().position(|&t| t == best) {
        p[k] = 1.0;
    }
    p
}

/// Sampling: candidates drawn from `q` without replacement; the k-th is accepted with probability
/// `min(1, P(x)/Q(x))` times the probability that all earlier ones were rejected, where after a
/// rejection `P` becomes the residual and `Q` loses the rejected token. Averaged over `draws`
/// candidate sequences.
pub fn sampled_position(
    p: &Dist,
    q: &Dist,
    width: usize,
    draws: usize,
    rng: &mut impl Rng,
) -> Vec<f64> {
    let mut out = vec![0.0; width];
    for _ in 0..draws.max(1) {
        let candidates = sampled_children(q, width, rng);
        let mut p_cur = p.clone();
        let mut q_cur = q.clone();
        let mut still_rejected = 1.0;
        for (k, &x) in candidates.iter().enumerate() {
            let qx = q_cur.prob(x);
            let a = if qx > 0.0 {
                (p_cur.prob(x) / qx).min(1.0)
            } else {
                0.0
            };
            out[k] += still_rejected * a;
            still_rejected *= 1.0 - a;
            p_cur.make_residual(&q_cur);
            q_cur.remove(x);
        }
    }
    let n = draws.max(1) as f64;
    out.iter_mut().for_each(|x| *x /= n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn identical_models_accept_first_candidate() {
        let d = Dist::from_weights([(0, 0.6), (1, 0.4)]);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let p = sampled_position(&d, &d, 3, 10, &mut rng);
        assert!((p[0] - 1.0).abs() < 1e-9);
        assert_eq!(greedy_position(&[0.0, 2.0], &[0.0, 1.0], 2), vec![1.0, 0.0]);
        assert_eq!(greedy_position(&[0.0, 2.0], &[1.0, 0.0], 2), vec![0.0, 1.0]);
    }
}
