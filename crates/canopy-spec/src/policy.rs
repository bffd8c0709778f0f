//! Plan policies: a fixed tree, or `auto` (planner choice from measured costs and acceptance,
//! re-planned when the measured acceptance drifts).

use canopy_plan::{choose, Acceptance, Costs, Limits, TreePlan};

use crate::driver::PlanPolicy;

/// Positional acceptance counts from verification walks, with an optional prior.
#[derive(Clone, Debug, PartialEq)]
pub struct AcceptanceTracker {
    /// `visits[k]`: visited nodes that had at least k+1 children.
    visits: Vec<f64>,
    /// `hits[k]`: of those, how many accepted the child of rank k+1.
    hits: Vec<f64>,
}

impl AcceptanceTracker {
    /// A tracker for ranks 1..=width with `prior` counted as `weight` observations.
    pub fn new(width: usize, prior: &[f64], weight: f64) -> Self {
        let mut t = AcceptanceTracker {
            visits: vec![weight; width],
            hits: vec![0.0; width],
        };
        for (k, h) in t.hits.iter_mut().enumerate() {
            *h = prior.get(k).copied().unwrap_or(0.0) * weight;
        }
        t
    }

    /// Records the visits of one walk: (children, accepted rank).
    pub fn record(&mut self, visits: &[(usize, Option<usize>)]) {
        for &(children, accepted) in visits {
            for k in 0..children.min(self.visits.len()) {
                self.visits[k] += 1.0;
                if accepted == Some(k + 1) {
                    self.hits[k] += 1.0;
                }
            }
        }
    }

    /// The estimated vector p[1..=width], scaled down if needed so that it sums to at most 1.
    pub fn estimate(&self) -> Vec<f64> {
        let mut p: Vec<f64> = self
            .hits
            .iter()
            .zip(&self.visits)
            .map(|(&h, &v)| {
                if v > 0.0 {
                    (h / v).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            })
            .collect();
        let sum: f64 = p.iter().sum();
        if sum > 1.0 {
            for x in &mut p {
                *x /= sum;
            }
        }
        p
    }

    /// Number of walks' worth of observations at rank 1 (prior included).
    pub fn observations(&self) -> f64 {
        self.visits.first().copied().unwrap_or(0.0)
    }
}

/// The same tree every step (`none`, `chain:K`, `tree:N`).
pub struct FixedPolicy {
    plan: TreePlan,
    label: String,
    tracker: AcceptanceTracker,
}

impl FixedPolicy {
    pub fn new(plan: TreePlan, label: impl Into<String>) -> Self {
        FixedPolicy {
            plan,
            label: label.into(),
            tracker: AcceptanceTracker::new(8, &[], 0.0),
        }
    }

    /// Acceptance measured while running.
    pub fn tracker(&self) -> &AcceptanceTracker {
        &self.tracker
    }
}

impl PlanPolicy for FixedPolicy {
    fn next_plan(&mut self) -> TreePlan {
        self.plan.clone()
    }
    fn observe(&mut self, visits: &[(usize, Option<usize>)]) {
        self.tracker.record(visits);
    }
    fn describe(&self) -> String {
        self.label.clone()
    }
}

/// `auto`: the planner's choice for this machine's costs and the measured acceptance.
pub struct AutoPolicy {
    costs: Costs,
    limits: Limits,
    tracker: AcceptanceTracker,
    used: Vec<f64>,
    plan: TreePlan,
    since_replan: usize,
    history: Vec<String>,
}

/// Steps between drift checks, and the L1 drift that triggers a new plan.
const CHECK_EVERY: usize = 8;
const DRIFT: f64 = 0.05;

impl AutoPolicy {
    /// Plans once from `prior` (e.g. a stored profile's acceptance vector).
    pub fn new(costs: Costs, limits: Limits, prior: &[f64], prior_weight: f64) -> Self {
        let width = limits.max_branch.clamp(1, 16);
        let tracker = AcceptanceTracker::new(width, prior, prior_weight);
        let mut policy = AutoPolicy {
            costs,
            limits,
            tracker,
            used: Vec::new(),
            plan: TreePlan::plain(),
            since_replan: 0,
            history: Vec::new(),
        };
        policy.replan();
        policy
    }

    fn replan(&mut self) {
        self.used = self.tracker.estimate();
        self.since_replan = 0;
        let plan = Acceptance::new(self.used.clone())
            .ok()
            .and_then(|acc| choose(&acc, &self.costs, &self.limits).ok())
            .map_or_else(TreePlan::plain, |choice| choice.plan);
        self.history.push(if plan.budget() == 1 {
            "none".to_owned()
        } else {
            format!("tree:{} (depth {})", plan.budget(), plan.depth())
        });
        self.plan = plan;
    }

    /// The plans chosen so far, in order.
    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// The acceptance vector the current plan was made for.
    pub fn acceptance(&self) -> &[f64] {
        &self.used
    }
}

impl PlanPolicy for AutoPolicy {
    fn next_plan(&mut self) -> TreePlan {
        self.plan.clone()
    }

    fn observe(&mut self, visits: &[(usize, Option<usize>)]) {
        self.tracker.record(visits);
        self.since_replan += 1;
        if self.since_replan >= CHECK_EVERY {
            let now = self.tracker.estimate();
            let drift: f64 = now.iter().zip(&self.used).map(|(a, b)| (a - b).abs()).sum();
            if drift > DRIFT {
                self.replan();
            } else {
                self.since_replan = 0;
            }
        }
    }

    fn describe(&self) -> String {
        format!("auto: {}", self.history.join(" -> "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_estimates_positional_rates() {
        let mut t = AcceptanceTracker::new(3, &[], 0.0);
        // 4 visits with 2 children: rank 1 accepted twice, rank 2 once, none once.
        t.record(&[(2, Some(1)), (2, Some(1)), (2, Some(2)), (2, None)]);
        let p = t.estimate();
        assert_eq!(p[0], 0.5);
        assert_eq!(p[1], 0.25);
        assert_eq!(p[2], 0.0);
    }

    #[test]
    fn prior_is_blended_with_observations() {
        let mut t = AcceptanceTracker::new(1, &[0.8], 4.0);
        t.record(&[(1, None); 4]);
        assert!((t.estimate()[0] - 0.4).abs() < 1e-12);
    }
}
