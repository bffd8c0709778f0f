//! Hardware-aware choice of budget and depth from measured pass times.

use serde::{Deserialize, Serialize};

use crate::dp::{Dims, LeafTable, Table, EXACT_LEAF_WORK};
use crate::relax::{Effort, Relaxation};
use crate::{Acceptance, Limits, PlanError, TreePlan};

/// Measured `(n, seconds)` points of one kind of pass, sorted by `n`.
///
/// Between points the time is interpolated linearly; outside the measured range [`CostTable::at`] fails
/// and only [`CostTable::extrapolate`] answers, when a caller asks for it on purpose.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostTable {
    points: Vec<(usize, f64)>,
}

impl CostTable {
    /// Sorts and validates the points; `table` below names the table in errors.
    ///
    /// Fails when there are no points, when an `n` is 0 or measured twice, or when a time is not a
    /// finite number > 0.
    pub fn new(points: Vec<(usize, f64)>) -> Result<Self, PlanError> {
        Self::named(points, "cost")
    }

    /// Like [`CostTable::new`], naming the table (`"target"`, `"draft"`) in errors.
    pub fn named(mut points: Vec<(usize, f64)>, table: &'static str) -> Result<Self, PlanError> {
        if points.is_empty() {
            return Err(PlanError::EmptyCostTable { table });
        }
        for &(n, seconds) in &points {
            if n == 0 {
                return Err(PlanError::InvalidCostPoint {
                    table,
                    n,
                    seconds,
                    reason: "n counts tokens, so it is >= 1",
                });
            }
            if !seconds.is_finite() || seconds <= 0.0 {
                return Err(PlanError::InvalidCostPoint {
                    table,
                    n,
                    seconds,
                    reason: "a time must be a finite number of seconds > 0",
                });
            }
        }
        points.sort_by_key(|&(n, _)| n);
        if let Some(w) = points.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(PlanError::DuplicateCostPoint { table, n: w[0].0 });
        }
        Ok(CostTable { points })
    }

    /// The measured points, sorted by `n`.
    pub fn points(&self) -> &[(usize, f64)] {
        &self.points
    }

    /// The smallest measured `n`.
    pub fn min_n(&self) -> usize {
        self.points[0].0
    }

    /// The largest measured `n`.
    pub fn max_n(&self) -> usize {
        self.points[self.points.len() - 1].0
    }

    /// The time of a pass over `n` tokens, interpolated linearly between measured points.
    ///
    /// Fails with [`PlanError::OutOfRange`] when `n` lies outside the measured range.
    pub fn at(&self, n: usize) -> Result<f64, PlanError> {
        if n < self.min_n() || n > self.max_n() {
            return Err(PlanError::OutOfRange {
                table: "cost",
                n,
                min: self.min_n(),
                max: self.max_n(),
            });
        }
        Ok(self.extrapolate(n))
    }

    /// Explicit extrapolation: like [`CostTable::at`] inside the range, and along the nearest measured
    /// segment outside it (a single point extrapolates flat). Never below the smallest measured time.
    pub fn extrapolate(&self, n: usize) -> f64 {
        let pts = &self.points;
        if pts.len() == 1 {
            return pts[0].1;
        }
        let i = match pts.binary_search_by_key(&n, |&(m, _)| m) {
            Ok(i) => return pts[i].1,
            Err(i) => i.clamp(1, pts.len() - 1),
        };
        let ((n0, t0), (n1, t1)) = (pts[i - 1], pts[i]);
        let t = t0 + (t1 - t0) * (n as f64 - n0 as f64) / (n1 as f64 - n0 as f64);
        let floor = pts.iter().map(|&(_, s)| s).fold(f64::INFINITY, f64::min);
        t.max(floor)
    }

    /// The measured cost of one more token at `n`: the slope of the segment around `n` (the
    /// nearest one outside the range), never negative; `t/n` for a table of one point.
    pub fn marginal(&self, n: usize) -> f64 {
        let pts = &self.points;
        if pts.len() == 1 {
            return pts[0].1 / pts[0].0 as f64;
        }
        let i = pts
            .partition_point(|&(m, _)| m <= n)
            .clamp(1, pts.len() - 1);
        let ((n0, t0), (n1, t1)) = (pts[i - 1], pts[i]);
        ((t1 - t0) / (n1 - n0) as f64).max(0.0)
    }

    fn key(&self) -> Vec<(usize, u64)> {
        self.points.iter().map(|&(n, s)| (n, s.to_bits())).collect()
    }
}

impl<'de> Deserialize<'de> for CostTable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let points = Vec::<(usize, f64)>::deserialize(deserializer)?;
        CostTable::new(points).map_err(serde::de::Error::custom)
    }
}

/// Measured pass times of the target and the draft.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    /// One target pass over `n` new tokens (`n` = the tree's budget; 1 = plain decoding).
    pub target: CostTable,
    /// One draft pass over a level of `k` nodes.
    pub draft: CostTable,
}

impl Costs {
    pub(crate) fn key(&self) -> crate::planner::CostKey {
        (self.target.key(), self.draft.key())
    }

    /// Seconds of one speculation step with `plan` under `acc`: one target pass over its budget plus
    /// one draft pass per level over the nodes that get children there (leaves need no draft pass),
    /// plus the accepted tokens both models decode again at the head of their next pass to keep
    /// their KV caches in position order, charged at the measured cost of one more token:
    /// [`TreePlan::expected_redecoded`] in the target's pass, and every accepted token (an upper
    /// bound) in the draft's first pass.
    ///
    /// Fails with [`PlanError::OutOfRange`] when the budget or a level's width lies outside the measured
    /// range of the target or draft table.
    pub fn step_seconds(&self, plan: &TreePlan, acc: &Acceptance) -> Result<f64, PlanError> {
        let n = plan.budget();
        let mut target = self.target.at(n).map_err(|e| rename(e, "target"))?;
        let mut draft = 0.0;
        for (i, level) in plan.levels().iter().enumerate() {
            let width = level.expand.len();
            draft += self.draft.at(width).map_err(|e| rename(e, "draft"))?;
            if i == 0 {
                draft += (plan.expected_tokens - 1.0).max(0.0) * self.draft.marginal(width);
            }
        }
        if n > 1 {
            target += plan.expected_redecoded(acc) * self.target.marginal(n);
        }
        Ok(target + draft)
    }
}

/// A lower bound of [`Costs::step_seconds`] from a tree's size and level widths alone (without the
/// re-decoded tokens), for skipping trees that cannot win before building them.
fn step_from_profile(costs: &Costs, nodes: usize, expanded: &[usize]) -> Result<f64, PlanError> {
    let mut seconds = costs.target.at(nodes)?;
    for &width in expanded {
        seconds += costs.draft.at(width)?;
    }
    Ok(seconds)
}

fn rename(err: PlanError, name: &'static str) -> PlanError {
    match err {
        PlanError::OutOfRange { n, min, max, .. } => PlanError::OutOfRange {
            table: name,
            n,
            min,
            max,
        },
        other => other,
    }
}

/// The plan chosen for a machine, with its prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub plan: TreePlan,
    /// `expected_tokens / step_seconds`.
    pub predicted_tokens_per_second: f64,
    /// `1 / t_target(1)`.
    pub plain_tokens_per_second: f64,
    /// `predicted_tokens_per_second / plain_tokens_per_second` (>= 1).
    pub speedup: f64,
    /// Predicted seconds of one step (target pass plus draft passes; `t_target(1)` for plain decoding).
    pub step_seconds: f64,
    /// No tree within the limits with at most as many nodes and levels as `plan` has more expected
    /// tokens; equal to `plan.expected_tokens` when the plan is optimal for its budget and depth.
    pub upper_bound: f64,
}

/// Chooses budget (at most `limits.budget` and the largest measured target `n`) and depth (at most
/// `limits.max_depth`) maximising `expected_tokens / (t_target(budget) + sum of draft level times)`,
/// among the optimal trees of every such budget and depth. Plain decoding is always a candidate, so the
/// choice is never predicted slower than it. Trees whose level widths the draft table does not cover
/// are skipped (never extrapolated).
///
/// Where the leaf limit binds and the exact leaf-limited program is too costly, not every budget is
/// planned: at each depth, the budgets at which it binds are sampled geometrically (each about 15 %
/// below the next, from the largest) together with the measured target points among them, and each is
/// planned by the relaxation of [`crate::optimal_tree_bounded`] to within about 0.01 % of its optimum.
///
/// Fails when the limits are invalid or when the target table does not cover `n = 1`.
pub fn choose(acc: &Acceptance, costs: &Costs, limits: &Limits) -> Result<Choice, PlanError> {
    limits.validate()?;
    let plain = plain_choice(costs)?;
    let mut best = Best(plain);
    search(acc, costs, limits, &mut best)?;
    Ok(best.0)
}

/// The best plan of every range of budgets, as [`choose`] would pick it were the budget capped at
/// the top of that range: plain decoding first, then one [`Choice`] per range that holds a tree
/// faster than plain, by increasing budget. The ranges are 2, 3, 4, 5 and 6 nodes, then
/// 7–8, 9–10, 11–12, 13–16, … (8, 10 and 12 times a power of two).
///
/// A step that adds other candidates to the draft's tree (lookup, [`crate::choose_step`]) picks
/// its draft part from this ladder: where lookup is likely to be accepted, a smaller draft tree
/// than [`choose`]'s may pay better. One search, the cost of one [`choose`].
///
/// Fails as [`choose`] does.
pub fn choose_ladder(
    acc: &Acceptance,
    costs: &Costs,
    limits: &Limits,
) -> Result<Vec<Choice>, PlanError> {
    limits.validate()?;
    let plain = plain_choice(costs)?;
    let mut ladder = Ladder {
        bars: Vec::new(),
        best: Vec::new(),
        plain_tps: plain.predicted_tokens_per_second,
    };
    let mut top = 1;
    while top < limits.budget.min(crate::MAX_BUDGET) {
        top = ladder_step(top);
        ladder.bars.push(top);
        ladder.best.push(None);
    }
    search(acc, costs, limits, &mut ladder)?;
    let mut out = vec![plain];
    out.extend(ladder.best.into_iter().flatten());
    Ok(out)
}

/// The top of the budget range after the one ending at `top`.
fn ladder_step(top: usize) -> usize {
    if top < 6 {
        return top + 1;
    }
    // 6 → 8 → 10 → 12 → 16 → 20 → 24 → 32 …
    let mut scale = 1;
    while top >= 12 * scale {
        scale *= 2;
    }
    [8, 10, 12, 16]
        .into_iter()
        .map(|m| m * scale)
        .find(|&m| m > top)
        .unwrap_or(16 * scale)
}

/// Plain decoding as a choice: `t_target(1)` per token.
fn plain_choice(costs: &Costs) -> Result<Choice, PlanError> {
    let plain_seconds = costs.target.at(1).map_err(|e| rename(e, "target"))?;
    let plain_tps = 1.0 / plain_seconds;
    Ok(Choice {
        plan: TreePlan::plain(),
        predicted_tokens_per_second: plain_tps,
        plain_tokens_per_second: plain_tps,
        speedup: 1.0,
        step_seconds: plain_seconds,
        upper_bound: 1.0,
    })
}

/// What a search keeps of the plans it meets.
trait Keep {
    /// The tokens per second a plan of `budget` nodes must beat to be kept.
    fn bar(&self, budget: usize) -> f64;
    /// A plan with its predicted step time and the upper bound of its budget and depth.
    fn offer(&mut self, plan: TreePlan, step: f64, upper_bound: f64);
}

/// [`choose`]: the fastest plan.
struct Best(Choice);

impl Keep for Best {
    fn bar(&self, _: usize) -> f64 {
        self.0.predicted_tokens_per_second
    }
    fn offer(&mut self, plan: TreePlan, step: f64, upper_bound: f64) {
        let tps = plan.expected_tokens / step;
        if tps > self.0.predicted_tokens_per_second {
            let plain_tps = self.0.plain_tokens_per_second;
            self.0 = Choice {
                predicted_tokens_per_second: tps,
                plain_tokens_per_second: plain_tps,
                speedup: tps / plain_tps,
                step_seconds: step,
                upper_bound: upper_bound.max(plan.expected_tokens),
                plan,
            };
        }
    }
}

/// [`choose_ladder`]: the fastest plan of each budget range that beats plain decoding.
struct Ladder {
    /// The top of every range, ascending.
    bars: Vec<usize>,
    best: Vec<Option<Choice>>,
    plain_tps: f64,
}

impl Ladder {
    fn slot(&self, budget: usize) -> usize {
        self.bars
            .partition_point(|&top| top < budget)
            .min(self.bars.len().saturating_sub(1))
    }
}

impl Keep for Ladder {
    fn bar(&self, budget: usize) -> f64 {
        self.best
            .get(self.slot(budget))
            .and_then(Option::as_ref)
            .map_or(self.plain_tps, |c| c.predicted_tokens_per_second)
    }
    fn offer(&mut self, plan: TreePlan, step: f64, upper_bound: f64) {
        let tps = plan.expected_tokens / step;
        if self.bars.is_empty() || tps <= self.bar(plan.budget()) {
            return;
        }
        let slot = self.slot(plan.budget());
        self.best[slot] = Some(Choice {
            predicted_tokens_per_second: tps,
            plain_tokens_per_second: self.plain_tps,
            speedup: tps / self.plain_tps,
            step_seconds: step,
            upper_bound: upper_bound.max(plan.expected_tokens),
            plan,
        });
    }
}

/// Offers `keep` the optimal tree of every budget and depth within `limits` that may beat its bar
/// (see [`choose`] for which ones, and for the leaf-limited sampling).
fn search(
    acc: &Acceptance,
    costs: &Costs,
    limits: &Limits,
    keep: &mut impl Keep,
) -> Result<(), PlanError> {
    limits.validate()?;
    let budget = limits.budget.min(costs.target.max_n());
    let dims = Dims::new(acc, budget, limits.max_depth, limits.max_branch);
    if dims.depth == 0 {
        return Ok(());
    }
    let table = Table::build(acc, dims);
    let max_leaves = limits.max_leaves;
    let exact_leaves = LeafTable::work(dims, max_leaves) <= EXACT_LEAF_WORK;
    let mut leaf_table: Option<LeafTable> = None;
    // Per depth, the budgets at which the leaf limit binds and the relaxation must plan.
    let mut binding: Vec<Vec<usize>> = vec![Vec::new(); dims.depth + 1];
    let (mut expanded, mut queue) = (Vec::new(), Vec::new());
    for (d, binding) in binding.iter_mut().enumerate().skip(1) {
        // Whether the unconstrained optimum of (d, n) has too many leaves; a budget whose optimum is
        // that of the budget below inherits it.
        let mut binds = false;
        for n in 2..=dims.budget {
            let choice = table.choice(d, n);
            if choice.0 == 0 {
                binds = false;
                continue;
            }
            if choice != table.choice(d, n - 1) {
                let nodes = table.profile(d, n, &mut expanded, &mut queue);
                let leaves = nodes - expanded.iter().sum::<usize>();
                binds = leaves > max_leaves;
                if !binds {
                    let Ok(step) = step_from_profile(costs, nodes, &expanded) else {
                        continue;
                    };
                    let value = table.value(d, n);
                    if value / step > keep.bar(nodes) {
                        let plan = table.plan(acc, d, n);
                        if let Ok(step) = costs.step_seconds(&plan, acc) {
                            keep.offer(plan, step, value);
                        }
                    }
                    continue;
                }
            } else if !binds {
                continue;
            }
            if !exact_leaves {
                binding.push(n);
                continue;
            }
            let leafy = leaf_table.get_or_insert_with(|| LeafTable::build(acc, dims, max_leaves));
            let plan = leafy.plan(acc, d, n, max_leaves);
            if let Ok(step) = costs.step_seconds(&plan, acc) {
                let value = plan.expected_tokens;
                keep.offer(plan, step, value);
            }
        }
    }
    let marks: Vec<usize> = costs.target.points().iter().map(|&(n, _)| n).collect();
    let mut hint = None;
    for (d, ns) in binding.iter().enumerate() {
        let mut depth_hint = None;
        for n in sample_budgets(ns, &marks) {
            let sub = Dims::new(acc, n, d, limits.max_branch);
            let relaxed = Relaxation::new(acc, sub, max_leaves).solve(
                acc,
                table.value(d, n),
                Effort::COARSE,
                depth_hint.or(hint),
            );
            if depth_hint.is_none() {
                hint = Some(relaxed.lambda);
            }
            depth_hint = Some(relaxed.lambda);
            if let Ok(step) = costs.step_seconds(&relaxed.plan, acc) {
                keep.offer(relaxed.plan, step, relaxed.upper_bound);
            }
        }
    }
    Ok(())
}

/// From the budgets `ns` (ascending) at which the leaf limit binds at one depth, the ones to plan,
/// largest first: the largest, then each about 15 % below the last kept, and every measured target
/// point among them.
fn sample_budgets(ns: &[usize], marks: &[usize]) -> Vec<usize> {
    let mut picked: Vec<usize> = Vec::new();
    for &n in ns.iter().rev() {
        let far = picked
            .last()
            .is_none_or(|&last| (n as f64) * 1.15 <= last as f64);
        if far || marks.binary_search(&n).is_ok() {
            picked.push(n);
        }
    }
    picked
}
