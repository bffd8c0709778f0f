//! Cost tables corrected by the pass times measured while running.
//!
//! A profile is measured once, perhaps while the machine was busy; the times a generation measures
//! step after step say what a pass costs now. [`LiveCostTable`] keeps the profile's points and, per
//! point, a correction factor learned from those measurements: each measured pass time is compared
//! with the profile's time at its `n`, and the logarithm of the ratio updates the two points around
//! `n` in proportion to how near each is (the first observations of a point are averaged, later ones
//! move it by a fixed fraction, an exponentially weighted mean). A point no measurement has reached
//! takes the factor of the measured points around it (interpolated in `n`, flat beyond the last),
//! so the corrected curve keeps the profile's shape where nothing says otherwise.

use serde::{Deserialize, Serialize};

use crate::CostTable;

/// The weight of a new observation once a point has this many: the mean turns into an exponentially
/// weighted mean over about the last `2 / RATE` observations.
const RATE: f64 = 0.2;
/// Observations after which a point's own factor is used alone.
const CONFIDENT: f64 = 1.0;

/// One point of a live cost table, for screens: what the profile said and what running measures.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LivePoint {
    /// Tokens in the pass.
    pub n: usize,
    /// The profile's time of a pass over `n` tokens.
    pub profiled_seconds: f64,
    /// The corrected time the planner now uses.
    pub live_seconds: f64,
    /// Measurements that reached this point (a measurement between two points counts in part for
    /// each).
    pub observations: f64,
}

/// A measured cost table corrected by the times of the passes run since.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveCostTable {
    base: CostTable,
    /// Per base point: the running estimate of `ln(measured / profiled)`.
    log_factor: Vec<f64>,
    /// Per base point: observations received.
    weight: Vec<f64>,
}

impl LiveCostTable {
    /// The profile's table, not yet corrected.
    pub fn new(base: CostTable) -> Self {
        let n = base.points().len();
        LiveCostTable {
            base,
            log_factor: vec![0.0; n],
            weight: vec![0.0; n],
        }
    }

    /// The profile's table.
    pub fn base(&self) -> &CostTable {
        &self.base
    }

    /// One pass over `n` tokens took `seconds`. A time that is not finite and positive is ignored.
    pub fn observe(&mut self, n: usize, seconds: f64) {
        self.observe_passes(&[n], seconds);
    }

    /// Passes over `ns` tokens took `seconds` together (a draft's levels in one step): the ratio of
    /// the time to the profile's sum corrects every pass's points, each in proportion to its share
    /// of the predicted time. Ignored when `ns` is empty or the time is not finite and positive.
    pub fn observe_passes(&mut self, ns: &[usize], seconds: f64) {
        if ns.is_empty() || !seconds.is_finite() || seconds <= 0.0 {
            return;
        }
        let predicted: f64 = ns.iter().map(|&n| self.base.extrapolate(n)).sum();
        let r = (seconds / predicted).ln();
        for &n in ns {
            let share = self.base.extrapolate(n) / predicted;
            for (i, u) in self.bracket(n) {
                self.update(i, r, u * share);
            }
        }
    }

    /// The base points around `n` and their interpolation weights.
    fn bracket(&self, n: usize) -> [(usize, f64); 2] {
        let pts = self.base.points();
        let i = pts.partition_point(|&(m, _)| m < n);
        if i == 0 {
            return [(0, 1.0), (0, 0.0)];
        }
        if i == pts.len() {
            return [(i - 1, 1.0), (i - 1, 0.0)];
        }
        let (n0, n1) = (pts[i - 1].0 as f64, pts[i].0 as f64);
        let lambda = (n as f64 - n0) / (n1 - n0);
        [(i - 1, 1.0 - lambda), (i, lambda)]
    }

    fn update(&mut self, i: usize, r: f64, u: f64) {
        if u <= 0.0 {
            return;
        }
        let w = self.weight[i] + u;
        let step = (u / w).max(RATE * u).min(1.0);
        self.log_factor[i] += step * (r - self.log_factor[i]);
        self.weight[i] = w;
    }

    /// The logarithm of the correction factor the planner uses at base point `i`.
    fn effective(&self, i: usize) -> f64 {
        let confidence = (self.weight[i] / CONFIDENT).min(1.0);
        if confidence >= 1.0 {
            return self.log_factor[i];
        }
        confidence * self.log_factor[i] + (1.0 - confidence) * self.neighbours(i)
    }

    /// The factor suggested at point `i` by the confidently measured points: interpolated in `n`
    /// between the nearest on either side, the nearest one's beyond, 0 (the profile) without any.
    fn neighbours(&self, i: usize) -> f64 {
        let pts = self.base.points();
        let sure = |j: &usize| self.weight[*j] >= CONFIDENT;
        let below = (0..i).rev().find(sure);
        let above = (i + 1..pts.len()).find(sure);
        match (below, above) {
            (Some(a), Some(b)) => {
                let (na, nb, n) = (pts[a].0 as f64, pts[b].0 as f64, pts[i].0 as f64);
                let t = (n - na) / (nb - na);
                self.log_factor[a] + t * (self.log_factor[b] - self.log_factor[a])
            }
            (Some(a), None) => self.log_factor[a],
            (None, Some(b)) => self.log_factor[b],
            (None, None) => 0.0,
        }
    }

    /// The corrected factors' logarithms at every base point (0 = as profiled): what a planner
    /// compares to see whether the costs moved since it last planned.
    pub fn log_factors(&self) -> Vec<f64> {
        (0..self.log_factor.len())
            .map(|i| self.effective(i))
            .collect()
    }

    /// The corrected table: every profiled time times its point's factor.
    pub fn corrected(&self) -> CostTable {
        let points = self
            .base
            .points()
            .iter()
            .enumerate()
            .map(|(i, &(n, s))| (n, s * self.effective(i).exp()))
            .collect();
        CostTable::new(points).expect("positive finite times scaled by positive factors")
    }

    /// Observations that reached the point at `n` (0 when `n` is not a base point).
    pub fn observations_at(&self, n: usize) -> f64 {
        self.base
            .points()
            .iter()
            .position(|&(m, _)| m == n)
            .map_or(0.0, |i| self.weight[i])
    }

    /// Every point with its profiled and corrected time.
    pub fn points(&self) -> Vec<LivePoint> {
        self.base
            .points()
            .iter()
            .enumerate()
            .map(|(i, &(n, s))| LivePoint {
                n,
                profiled_seconds: s,
                live_seconds: s * self.effective(i).exp(),
                observations: self.weight[i],
            })
            .collect()
    }

    /// How far the measurements are from the profile: the largest factor (or its inverse) among the
    /// points measured at least once; 1 when none was or all agree.
    pub fn disagreement(&self) -> f64 {
        self.log_factor
            .iter()
            .zip(&self.weight)
            .filter(|(_, &w)| w >= CONFIDENT)
            .map(|(l, _)| l.abs())
            .fold(0.0, f64::max)
            .exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> LiveCostTable {
        LiveCostTable::new(CostTable::new(vec![(1, 0.1), (4, 0.11), (16, 0.14)]).unwrap())
    }

    #[test]
    fn an_unmeasured_table_is_the_profile() {
        let t = table();
        assert_eq!(t.corrected(), *t.base());
        assert_eq!(t.disagreement(), 1.0);
    }

    #[test]
    fn a_point_learns_its_measured_time() {
        let mut t = table();
        for _ in 0..3 {
            t.observe(4, 0.33);
        }
        let c = t.corrected();
        assert!((c.at(4).unwrap() - 0.33).abs() < 1e-9);
        // Beyond the measured point the factor carries flat; nothing measured below or above it
        // contradicts that.
        assert!((c.at(16).unwrap() - 0.42).abs() < 1e-9);
        assert!((c.at(1).unwrap() - 0.3).abs() < 1e-9);
        assert!((t.disagreement() - 3.0).abs() < 1e-9);
        assert_eq!(t.observations_at(4), 3.0);
    }

    #[test]
    fn measured_points_keep_their_own_factors_and_interpolate_between() {
        let mut t = table();
        for _ in 0..4 {
            t.observe(1, 0.1);
            t.observe(16, 0.56);
        }
        let c = t.corrected();
        assert!((c.at(1).unwrap() - 0.1).abs() < 1e-9);
        assert!((c.at(16).unwrap() - 0.56).abs() < 1e-9);
        // n = 4 lies a fifth of the way from 1 to 16: its factor is 4^(1/5).
        let want = 0.11 * 4f64.powf(0.2);
        assert!(
            (c.at(4).unwrap() - want).abs() < 1e-9,
            "{}",
            c.at(4).unwrap()
        );
    }

    #[test]
    fn a_measurement_between_points_splits_between_them() {
        let mut t = table();
        t.observe(10, 2.0 * t.base().at(10).unwrap());
        assert!((t.observations_at(4) - 0.5).abs() < 1e-9);
        assert!((t.observations_at(16) - 0.5).abs() < 1e-9);
        for _ in 0..10 {
            t.observe(10, 2.0 * t.base().at(10).unwrap());
        }
        assert!((t.corrected().at(10).unwrap() / t.base().at(10).unwrap() - 2.0).abs() < 1e-6);
    }

    #[test]
    fn later_measurements_move_the_factor_gradually() {
        let mut t = table();
        for _ in 0..20 {
            t.observe(4, 0.11);
        }
        t.observe(4, 0.22);
        let f = t.corrected().at(4).unwrap() / 0.11;
        assert!((f - 2f64.powf(RATE)).abs() < 1e-9, "{f}");
        for _ in 0..40 {
            t.observe(4, 0.22);
        }
        assert!((t.corrected().at(4).unwrap() / 0.22 - 1.0).abs() < 0.01);
    }

    #[test]
    fn passes_measured_together_share_the_correction() {
        let mut t = table();
        t.observe_passes(&[1, 4], 2.0 * (0.1 + 0.11));
        // Each point got its share of one observation, both with the same ratio.
        assert!((t.observations_at(1) - 0.1 / 0.21).abs() < 1e-9);
        assert!((t.observations_at(4) - 0.11 / 0.21).abs() < 1e-9);
        t.observe_passes(&[], 1.0);
        t.observe(4, f64::NAN);
        t.observe(4, 0.0);
        assert!((t.observations_at(4) - 0.11 / 0.21).abs() < 1e-9);
        let points = t.points();
        assert!(points[..2]
            .iter()
            .all(|p| p.live_seconds > p.profiled_seconds));
        assert_eq!(points[2].live_seconds, points[2].profiled_seconds);
    }
}
