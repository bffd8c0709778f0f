//! Property tests of the distribution operations and of the sampling pipeline against
//! straightforward references: a sorted list of (token, probability) pairs, and the settings
//! applied one after another on a fully sorted vocabulary.

use std::collections::{BTreeMap, HashMap};

use canopy_spec::sampling::{
    argmax, distribution_after, top_k, Penalties, SamplingConfig, TokenCounts,
};
use canopy_spec::{Dist, Token};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The reference distribution: token → probability, normalised, positive entries only.
fn reference(weights: &[(Token, f64)]) -> BTreeMap<Token, f64> {
    let mut m: BTreeMap<Token, f64> = BTreeMap::new();
    for &(t, w) in weights {
        if t >= 0 && w > 0.0 && w.is_finite() {
            *m.entry(t).or_insert(0.0) += w;
        }
    }
    normalise(m)
}

fn normalise(m: BTreeMap<Token, f64>) -> BTreeMap<Token, f64> {
    let total: f64 = m.values().sum();
    m.into_iter()
        .filter(|&(_, p)| p > 0.0)
        .map(|(t, p)| (t, p / total))
        .collect()
}

fn ref_residual(p: &BTreeMap<Token, f64>, q: &BTreeMap<Token, f64>) -> BTreeMap<Token, f64> {
    normalise(
        p.iter()
            .map(|(&t, &pt)| (t, (pt - q.get(&t).copied().unwrap_or(0.0)).max(0.0)))
            .collect(),
    )
}

fn ref_without(p: &BTreeMap<Token, f64>, token: Token) -> BTreeMap<Token, f64> {
    let mut m = p.clone();
    m.remove(&token);
    normalise(m)
}

/// The same probabilities within `tol` for every token either side gives one (so no token outside
/// the reference's support above `tol`).
fn assert_same(d: &Dist, r: &BTreeMap<Token, f64>, tol: f64) -> Result<(), TestCaseError> {
    for (t, p) in d.iter() {
        prop_assert!(
            r.contains_key(&t),
            "token {} ({}) is outside the reference",
            t,
            p
        );
    }
    for (t, &p) in r {
        prop_assert!(
            (d.prob(*t) - p).abs() <= tol,
            "token {}: {} vs {}",
            t,
            d.prob(*t),
            p
        );
    }
    Ok(())
}

/// A distribution given as weights over `0..vocab`, built dense or sparse.
fn weights(vocab: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(prop_oneof![Just(0.0), 0.0f64..1.0, 1.0f64..100.0], vocab)
}

fn build(w: &[f64], dense: bool) -> Dist {
    if dense {
        Dist::from_dense(w.to_vec())
    } else {
        Dist::from_weights(w.iter().enumerate().map(|(t, &w)| (t as Token, w)))
    }
}

fn as_pairs(w: &[f64]) -> Vec<(Token, f64)> {
    w.iter()
        .enumerate()
        .map(|(t, &w)| (t as Token, w))
        .collect()
}

proptest! {
    #[test]
    fn operations_match_the_reference(
        (p, q) in (1usize..600).prop_flat_map(|v| (weights(v), weights(v))),
        p_dense: bool,
        q_dense: bool,
        removals in prop::collection::vec(0usize..600, 0..4),
    ) {
        let (dp, dq) = (build(&p, p_dense), build(&q, q_dense));
        let (rp, rq) = (reference(&as_pairs(&p)), reference(&as_pairs(&q)));
        assert_same(&dp, &rp, 1e-6)?;
        prop_assert_eq!(dp.len(), rp.len());
        prop_assert_eq!(dp.is_empty(), rp.is_empty());
        // Argmax: the most likely, the lowest id among ties.
        let best = rp.iter().fold(None, |b: Option<(Token, f64)>, (&t, &x)| match b {
            Some((_, bx)) if bx >= x => b,
            _ => Some((t, x)),
        });
        prop_assert_eq!(dp.argmax(), best.map(|b| b.0));
        // Residual, in either representation.
        match (dp.residual(&dq), rp.is_empty() || rq.is_empty()) {
            (_, true) => {}
            (Some(r), false) => assert_same(&r, &ref_residual(&rp, &rq), 1e-5)?,
            (None, false) => {
                // Only when p and q are equal up to rounding.
                let gap: f64 = rp.iter().map(|(t, &x)| (x - rq.get(t).copied().unwrap_or(0.0)).abs()).sum();
                prop_assert!(gap < 1e-9, "no residual where the reference has one");
            }
        }
        // Removals one after another, in place and by copy.
        let (mut d, mut r) = (dq.clone(), rq.clone());
        for &x in &removals {
            let token = x as Token;
            let copy = d.without(token);
            d.remove(token);
            r = ref_without(&r, token);
            assert_same(&d, &r, 1e-5)?;
            assert_same(&copy, &r, 1e-5)?;
        }
        // Sampling never leaves the support.
        let mut rng = ChaCha8Rng::seed_from_u64(p.len() as u64);
        for _ in 0..8 {
            match dp.sample(&mut rng) {
                Some(t) => prop_assert!(rp.contains_key(&t)),
                None => prop_assert!(rp.is_empty()),
            }
        }
    }

    #[test]
    fn top_k_matches_a_full_sort(logits in logits(), k in 0usize..400) {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        let want: Vec<Token> = order.iter().take(k).map(|&i| i as Token).collect();
        prop_assert_eq!(top_k(&logits, k), want);
        prop_assert_eq!(argmax(&logits), order[0] as Token);
    }

    #[test]
    fn windows_count_the_last_tokens(
        context in prop::collection::vec(0i32..6, 0..20),
        path in prop::collection::vec(0i32..6, 0..8),
        last_n in 0usize..30,
    ) {
        let all: Vec<Token> = context.iter().chain(&path).copied().collect();
        let mut want: BTreeMap<Token, u32> = BTreeMap::new();
        for &t in &all[all.len().saturating_sub(last_n)..] {
            *want.entry(t).or_insert(0) += 1;
        }
        let got: BTreeMap<Token, u32> = TokenCounts::window(&context, &path, last_n).iter().collect();
        prop_assert_eq!(got, want);
    }
}

/// The pipeline the straightforward way: penalties, a full sort, then top-k, top-p, min-p and
/// temperature one after another. `None` when the top-p cut is too close to call (rounding).
fn reference_pipeline(
    logits: &[f32],
    cfg: &SamplingConfig,
    window: &[Token],
) -> Option<BTreeMap<Token, f64>> {
    let mut l = logits.to_vec();
    let p = cfg.penalties;
    if !p.is_off() {
        let mut counts: HashMap<Token, u32> = HashMap::new();
        for &t in window {
            *counts.entry(t).or_insert(0) += 1;
        }
        for (&t, &c) in &counts {
            let x = &mut l[t as usize];
            *x = if *x <= 0.0 {
                *x * p.repeat
            } else {
                *x / p.repeat
            };
            *x -= c as f32 * p.frequency + p.presence;
        }
    }
    let mut order: Vec<usize> = (0..l.len()).collect();
    order.sort_by(|&a, &b| l[b].total_cmp(&l[a]).then(a.cmp(&b)));
    if cfg.is_greedy() {
        return Some(BTreeMap::from([(order[0] as Token, 1.0)]));
    }
    if cfg.top_k > 0 {
        order.truncate(cfg.top_k as usize);
    }
    let max = l[order[0]];
    if cfg.top_p < 1.0 {
        let w: Vec<f64> = order
            .iter()
            .map(|&i| f64::from((l[i] - max).exp()))
            .collect();
        let total: f64 = w.iter().sum();
        let goal = f64::from(cfg.top_p) * total;
        let mut mass = 0.0;
        let mut keep = order.len();
        for (k, &x) in w.iter().enumerate() {
            mass += x;
            if mass >= goal {
                keep = k + 1;
                break;
            }
        }
        if (mass - goal).abs() < 1e-6 * total {
            return None;
        }
        order.truncate(keep);
    }
    if cfg.min_p > 0.0 {
        let floor = max + cfg.min_p.ln();
        order.retain(|&i| l[i] >= floor);
    }
    let t = f64::from(cfg.temperature);
    Some(normalise(
        order
            .iter()
            .map(|&i| (i as Token, ((f64::from(l[i]) - f64::from(max)) / t).exp()))
            .collect(),
    ))
}

/// Logits on a coarse grid (so that ties happen) or anywhere.
fn logits() -> impl Strategy<Value = Vec<f32>> {
    (1usize..300).prop_flat_map(|v| {
        prop_oneof![
            prop::collection::vec((-16i32..16).prop_map(|x| x as f32 / 4.0), v),
            prop::collection::vec(-10.0f32..10.0, v),
        ]
    })
}

fn settings() -> impl Strategy<Value = SamplingConfig> {
    (
        prop_oneof![Just(0.0f32), 0.1f32..2.0],
        prop_oneof![Just(0u32), 1u32..50],
        prop_oneof![Just(1.0f32), 0.05f32..1.0],
        prop_oneof![Just(0.0f32), 0.0f32..1.0],
        (
            0u32..40,
            prop_oneof![Just(1.0f32), 0.5f32..2.0],
            -2.0f32..2.0,
            -2.0f32..2.0,
        ),
    )
        .prop_map(
            |(temperature, top_k, top_p, min_p, (last_n, repeat, frequency, presence))| {
                SamplingConfig {
                    temperature,
                    top_k,
                    top_p,
                    min_p,
                    penalties: Penalties {
                        last_n,
                        repeat,
                        frequency,
                        presence,
                    },
                }
            },
        )
}

proptest! {
    #[test]
    fn the_pipeline_matches_the_reference(
        logits in logits(),
        cfg in settings(),
        history in prop::collection::vec(0usize..300, 0..60),
    ) {
        let history: Vec<Token> = history.into_iter().map(|t| (t % logits.len()) as Token).collect();
        let window = &history[history.len().saturating_sub(cfg.penalties.last_n as usize)..];
        let got = distribution_after(&logits, &cfg, &TokenCounts::window(&history, &[], cfg.penalties.last_n as usize));
        if let Some(want) = reference_pipeline(&logits, &cfg, window) {
            assert_same(&got, &want, 1e-5)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Flat logits over a larger vocabulary: the top-p head spans several selection blocks.
    #[test]
    fn a_long_top_p_head_matches_the_reference(
        logits in (400usize..3000).prop_flat_map(|v| prop::collection::vec(-0.5f32..0.5, v)),
        top_p in 0.5f32..0.99,
        top_k in prop_oneof![Just(0u32), 400u32..2000],
    ) {
        let cfg = SamplingConfig { top_p, top_k, ..SamplingConfig { temperature: 1.0, ..SamplingConfig::GREEDY } };
        let got = distribution_after(&logits, &cfg, &TokenCounts::default());
        if let Some(want) = reference_pipeline(&logits, &cfg, &[]) {
            prop_assert!(want.len() > 64);
            assert_same(&got, &want, 1e-5)?;
        }
    }
}
