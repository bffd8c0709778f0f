//! Plan policies: a fixed tree, optionally with lookup candidates beside it, or `auto`, which
//! chooses every step's tree from measured costs and measured acceptance: the draft's tree from a
//! ladder of optimal trees planned for the draft's acceptance (re-planned when it drifts or the
//! costs move), and how many lookup candidates to hang beside it from lookup's own acceptance,
//! measured by depth as the conversation runs. `auto` also corrects its cost curves with every
//! step's measured pass times, so a profile measured on a busy machine stops misleading it within
//! a reply.

use canopy_plan::{
    chain, choose_ladder, choose_step, Acceptance, CostTable, Costs, DraftOption, Limits,
    LiveCostTable, LivePoint, LookupAcceptance, StepCosts, TreePlan, ENGINE,
};
use canopy_types::{Placement, Plan};
use serde::Serialize;

use crate::driver::{PlanPolicy, StepInput, StepPlan, StepReport};
use crate::lookup::{LookupConfig, LookupProposal, MAX_SITES};
use crate::verify::LookupVisit;
use crate::Token;

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

/// Depths of lookup acceptance tracked separately; deeper candidates share the last one.
pub const LOOKUP_DEPTHS: usize = 16;

/// The lookup acceptance assumed before a conversation has shown any, by depth (depth 1 first;
/// deeper depths use the last row): a modest first token, continuations more likely once one was
/// accepted (text copied once tends to be copied on). A guess that lets lookup be tried; with
/// [`LOOKUP_PRIOR_WEIGHT`] it yields to the measurements within a few steps.
pub const LOOKUP_PRIOR: [&[f64]; 5] = [&[0.4, 0.1], &[0.6, 0.05], &[0.7], &[0.75], &[0.8]];
/// The observations [`LOOKUP_PRIOR`] counts as, per depth.
pub const LOOKUP_PRIOR_WEIGHT: f64 = 4.0;
/// The observations an earlier generation's measured lookup acceptance counts as, per depth,
/// when a new one starts from it ([`PlanPolicy::start_lookup_from`]).
pub const LOOKUP_CARRIED_WEIGHT: f64 = 4.0;

/// Lookup acceptance counts by depth (see [`LookupVisit`]), with a prior.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupTracker {
    rows: Vec<AcceptanceTracker>,
}

impl LookupTracker {
    /// `prior[d]` for depth `d + 1` (the last row for deeper ones), counted as `weight`
    /// observations per depth.
    pub fn new(prior: &[&[f64]], weight: f64) -> Self {
        let rows = (0..LOOKUP_DEPTHS)
            .map(|d| {
                let row = prior.get(d).or(prior.last()).copied().unwrap_or(&[]);
                AcceptanceTracker::new(MAX_SITES, row, weight)
            })
            .collect();
        LookupTracker { rows }
    }

    /// Records the lookup visits of one walk.
    pub fn record(&mut self, visits: &[LookupVisit]) {
        for v in visits {
            let d = (v.depth as usize).clamp(1, LOOKUP_DEPTHS) - 1;
            self.rows[d].record(&[(v.children as usize, v.accepted.map(|r| r as usize))]);
        }
    }

    /// The estimated acceptance by depth and rank.
    pub fn estimate(&self) -> LookupAcceptance {
        LookupAcceptance::new(self.rows.iter().map(AcceptanceTracker::estimate).collect())
            .expect("estimates are probabilities summing to at most 1")
    }

    /// Visits at depth 1 (prior included).
    pub fn observations(&self) -> f64 {
        self.rows[0].observations()
    }
}

impl Default for LookupTracker {
    /// [`LOOKUP_PRIOR`] with [`LOOKUP_PRIOR_WEIGHT`].
    fn default() -> Self {
        LookupTracker::new(&LOOKUP_PRIOR, LOOKUP_PRIOR_WEIGHT)
    }
}

/// The acceptance a plan assumes before any is measured (and `auto`'s prior without a profile).
pub const DEFAULT_ACCEPTANCE: [f64; 4] = [0.6, 0.1, 0.04, 0.02];
/// Observations a profile's (or the default) acceptance vector counts as in `auto`'s estimate.
pub const PRIOR_WEIGHT: f64 = 8.0;

/// Why a request's plan has no policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid acceptance vector: {0}")]
    Acceptance(canopy_plan::PlanError),
    #[error("{0}")]
    Tree(canopy_plan::PlanError),
    #[error("plan auto needs cost curves (a profile's or a calibration's)")]
    AutoWithoutCosts,
}

/// Largest tree `auto` considers where the target's pass is compute-bound (weights on the CPU),
/// and where it streams or sits on a GPU (the calibration may stop earlier).
const AUTO_MAX_BUDGET_CPU: usize = 256;
const AUTO_MAX_BUDGET: usize = canopy_types::MAX_TREE as usize;

/// Largest tree `plan` builds in `placement` (`auto` decides below this at run time): what an
/// engine sizes its batches and calibration for, and the `max_budget` of [`policy_for`].
pub fn largest_tree(plan: Plan, placement: Placement) -> usize {
    match plan {
        Plan::Auto if placement == Placement::Cpu => AUTO_MAX_BUDGET_CPU,
        Plan::Auto => AUTO_MAX_BUDGET,
        fixed => fixed.fixed_budget().unwrap_or(1) as usize,
    }
}

/// What a request's plan means: the one speculation policy of every front end and of `simulate`.
///
/// `prior` is the acceptance vector to start from (a profile's; [`DEFAULT_ACCEPTANCE`] without
/// one). `none`, `chain:K` and `tree:N` draw the same tree every step ([`ENGINE`]'s optimal tree
/// for `tree:N`); `auto` needs `costs`, plans trees of at most `max_budget` tokens within
/// [`ENGINE`], speculates from the conversation alone when there is no draft model, and merges
/// lookup candidates into its trees unless `lookup` is false.
///
/// # Errors
/// [`PolicyError`] for an invalid prior, a tree the planner cannot build, or `auto` without costs.
///
/// [`ENGINE`]: canopy_plan::ENGINE
pub fn policy_for(
    plan: Plan,
    prior: Option<&[f64]>,
    costs: Option<Costs>,
    has_draft: bool,
    lookup: bool,
    max_budget: usize,
) -> Result<Box<dyn PlanPolicy>, PolicyError> {
    let prior = prior.unwrap_or(&DEFAULT_ACCEPTANCE);
    let acc = Acceptance::new(prior.to_vec()).map_err(PolicyError::Acceptance)?;
    Ok(match plan {
        Plan::None => Box::new(FixedPolicy::new(TreePlan::plain(), "none")),
        Plan::Chain(k) => Box::new(FixedPolicy::new(
            chain(&acc, k as usize),
            format!("chain:{k}"),
        )),
        Plan::Tree(n) => {
            let tree = ENGINE
                .fixed_tree_plan(&acc, n as usize)
                .map_err(PolicyError::Tree)?;
            let label = format!("tree:{n} (depth {})", tree.depth());
            Box::new(FixedPolicy::new(tree, label))
        }
        Plan::Auto => {
            let costs = costs.ok_or(PolicyError::AutoWithoutCosts)?;
            let limits = ENGINE.auto(costs.target.max_n().min(max_budget));
            // Candidates from the conversation itself cost no model pass; the policy values them
            // with their own measured acceptance and plays them only where they pay.
            let auto = match has_draft {
                true => AutoPolicy::new(costs, limits, prior, PRIOR_WEIGHT),
                false => AutoPolicy::without_draft(costs.target, limits),
            };
            match lookup {
                true => Box::new(auto.with_lookup(LookupConfig::default())),
                false => Box::new(auto),
            }
        }
    })
}

/// The same tree every step (`none`, `chain:K`, `tree:N`), and optionally the same number of
/// lookup candidates beside it.
pub struct FixedPolicy {
    plan: TreePlan,
    label: String,
    tracker: AcceptanceTracker,
    lookup: Option<(LookupConfig, usize)>,
    under_leaves: usize,
    lookup_tracker: LookupTracker,
}

impl FixedPolicy {
    /// `plan` every step, described as `label`.
    pub fn new(plan: TreePlan, label: impl Into<String>) -> Self {
        FixedPolicy {
            plan,
            label: label.into(),
            tracker: AcceptanceTracker::new(8, &[], 0.0),
            lookup: None,
            under_leaves: 0,
            lookup_tracker: LookupTracker::new(&[], 0.0),
        }
    }

    /// Also matches the conversation with `config` and verifies up to `nodes` of its candidates
    /// every step, in the proposal's order (the latest match's chain first), under the root before
    /// the draft's children. With [`TreePlan::plain`] (or no draft model) that is lookup alone.
    pub fn with_lookup(mut self, config: LookupConfig, nodes: usize) -> Self {
        self.lookup = Some((config, nodes));
        self
    }

    /// Also hangs up to `nodes` lookup candidates under every leaf of the draft's tree, matched
    /// after the leaf's path (no effect without [`FixedPolicy::with_lookup`]).
    pub fn with_lookup_under_leaves(mut self, nodes: usize) -> Self {
        self.under_leaves = nodes;
        self
    }

    /// The draft's acceptance measured while running.
    pub fn tracker(&self) -> &AcceptanceTracker {
        &self.tracker
    }

    /// Lookup's acceptance measured while running.
    pub fn lookup_tracker(&self) -> &LookupTracker {
        &self.lookup_tracker
    }
}

impl PlanPolicy for FixedPolicy {
    fn lookup(&self) -> Option<LookupConfig> {
        self.lookup.map(|(config, _)| config)
    }
    fn next_step(&mut self, input: &StepInput<'_>) -> StepPlan {
        let nodes = self.lookup.map_or(0, |(_, n)| n).min(input.lookup.len());
        StepPlan {
            draft: if input.has_draft {
                self.plan.clone()
            } else {
                TreePlan::plain()
            },
            lookup: (0..nodes).collect(),
            lookup_under_leaves: self.lookup.is_some() && self.under_leaves > 0,
        }
    }
    fn lookup_under(&self, _: usize, proposal: &LookupProposal) -> Vec<usize> {
        (0..self.under_leaves.min(proposal.len())).collect()
    }
    fn observe(&mut self, report: &StepReport<'_>) {
        self.tracker.record(&report.walk.visits);
        self.lookup_tracker.record(&report.walk.lookup_visits);
    }
    fn describe(&self) -> String {
        match (self.lookup, self.under_leaves) {
            (Some((_, nodes)), 0) => format!("{} + lookup:{nodes}", self.label),
            (Some((_, nodes)), leaves) => {
                format!(
                    "{} + lookup:{nodes} (and {leaves} under each leaf)",
                    self.label
                )
            }
            (None, _) => self.label.clone(),
        }
    }
}

/// Steps of a generation by what they verified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StepCounts {
    /// The root alone.
    pub plain: usize,
    /// The draft's tree alone.
    pub draft: usize,
    /// Lookup candidates alone.
    pub lookup: usize,
    /// Both.
    pub both: usize,
}

/// What `auto` has learned about this machine's costs, next to the profile it started from: a
/// front end says when they disagree.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveCosts {
    /// The target's pass, by tokens in the pass.
    pub target: Vec<LivePoint>,
    /// The draft's pass, by tokens in the pass (none without a draft model).
    pub draft: Option<Vec<LivePoint>>,
    /// The largest ratio (or inverse ratio) between a measured point's live and profiled time; 1
    /// when nothing was measured or everything agrees.
    pub disagreement: f64,
}

/// `auto`: the planner's choice for this machine's costs and the measured acceptance.
///
/// At every re-plan it computes a ladder of draft trees, the best of every range of budgets for
/// the draft's measured acceptance and the live costs ([`choose_ladder`]); at every step it picks
/// one of them, or none, and a prefix of the lookup candidates, with the most predicted tokens per
/// second ([`choose_step`]). Under the chosen draft tree's leaves it hangs the lookup candidates
/// matched after each leaf's path whose weight (the leaf's reach times their lookup weight) pays
/// for their token at the step's predicted rate: a node of weight `w` costs `t′ + w·(t′ + d′)`
/// seconds (its token, its re-decoding off the first-choice chain, the draft's catching up) and
/// adds `w` tokens, which raises the rate `R` exactly when `w > t′R / (1 − R(t′ + d′))`. Every
/// step's measured target and draft pass times correct the cost
/// curves ([`LiveCostTable`]); plain decoding is measured now and then (early, while the profile's
/// plain time is unconfirmed) so that a curve wrong at one end cannot hide a slower tree. It
/// re-plans when the draft's acceptance drifts or the costs move.
pub struct AutoPolicy {
    target: LiveCostTable,
    draft: Option<LiveCostTable>,
    /// The corrected tables (the profile's when `live` is off).
    target_now: CostTable,
    draft_now: Option<CostTable>,
    live: bool,
    limits: Limits,
    tracker: AcceptanceTracker,
    lookup: Option<(LookupConfig, LookupTracker)>,
    /// The draft acceptance and the cost factors the ladder was planned with.
    used: Vec<f64>,
    planned: Vec<f64>,
    ladder: Vec<DraftOption>,
    since_replan: usize,
    since_plain: usize,
    history: Vec<String>,
    counts: StepCounts,
    /// What the current step decided for lookup under the draft's leaves.
    leaf: Option<LeafLookup>,
    /// The current step's lookup proposal, to follow as a [`Shadow`] once the step is committed.
    pending: Option<Shadow>,
    /// Proposals followed along what the target committed (see [`Shadow`]).
    shadows: Vec<Shadow>,
    /// The copy run: how many of the last committed tokens lookup proposals predicted in a row
    /// (the longest match of a live shadow). A candidate that continues a run of `r` is valued,
    /// and its outcome counted, at depth `r + d`: once text is being copied, the next token is
    /// far likelier to be copied too than a first match suggests.
    run: usize,
    /// The run when the current step began.
    step_run: usize,
}

/// A step's lookup proposal followed along the tokens the target committed, recording the visits
/// lookup would have made where the step did not verify it (the whole proposal on a plain or
/// draft-only step, the part below the verified nodes otherwise; the walk goes on over the
/// following steps). The target's committed token is a draw from its distribution (its argmax
/// when greedy), and a lookup candidate `x` is a point-mass proposal accepted with probability
/// `p(x)`, the chance that the draw is `x`; so each shadow visit counts exactly as a verified one
/// would. This is how lookup's acceptance is measured at every depth while plain decoding, the
/// draft's trees or shorter chains pay better, and how `auto` finds text being copied (editing,
/// quoting) without first paying for candidates valued at the prior.
#[derive(Debug)]
struct Shadow {
    proposal: LookupProposal,
    /// The nodes the step verified (their visits are the walk's own).
    played: Vec<usize>,
    /// The copy run when the step began (see [`AutoPolicy`]'s `run`): a node of depth `d` counts
    /// at depth `offset + d`.
    offset: usize,
    /// The node reached (`None`: the top).
    at: Option<usize>,
    /// Committed tokens followed so far.
    matched: usize,
    /// Whether the walk ran off the end of its proposal (rather than missing).
    exhausted: bool,
}

impl Shadow {
    /// Follows one committed token: the visit made there (`None` at a leaf) and whether the walk
    /// goes on.
    fn feed(&mut self, token: Token) -> (Option<LookupVisit>, bool) {
        let depth = self.offset as u32 + self.at.map_or(1, |v| self.proposal.shape()[v].depth + 1);
        let mut children = 0;
        let mut hit = None;
        let mut verified = false;
        for c in self.proposal.children(self.at) {
            children += 1;
            verified |= self.played.contains(&c);
            if hit.is_none() && self.proposal.tokens()[c] == token {
                hit = Some((children, c));
            }
        }
        if children == 0 {
            self.exhausted = true;
            return (None, false);
        }
        let visit = LookupVisit {
            depth,
            from_root: true,
            children,
            accepted: hit.map(|(rank, _)| rank),
        };
        self.at = hit.map(|(_, c)| c);
        self.matched += usize::from(hit.is_some());
        ((!verified).then_some(visit), hit.is_some())
    }
}

/// The most shadow walks followed at once (one starts per step; a walk ends at its first miss or
/// the end of its proposal, at most [`crate::lookup::MAX_LEN`] tokens on).
const MAX_SHADOWS: usize = 32;

/// The current step's terms for lookup under the draft's leaves.
struct LeafLookup {
    /// The probability of reaching every node of the step's draft plan.
    reach: Vec<f64>,
    acc: LookupAcceptance,
    /// The least weight a candidate must have to pay for its token.
    threshold: f64,
}

/// Steps between drift checks, and the L1 drift of acceptance that triggers a new plan.
const CHECK_EVERY: usize = 8;
const DRIFT: f64 = 0.05;
/// The change of a cost factor (its logarithm, about 10 %) that triggers a new plan.
const COST_DRIFT: f64 = 0.1;
/// Measurements of a plain pass after which the profile's plain time counts as confirmed; before
/// that, a plain step every `EXPLORE_FIRST` steps of speculation, after it every `EXPLORE_EVERY`.
const PLAIN_CONFIRMED: f64 = 2.0;
const EXPLORE_FIRST: usize = 4;
const EXPLORE_EVERY: usize = 64;

impl AutoPolicy {
    /// Plans once from `prior` (e.g. a stored profile's acceptance vector), for a target and a
    /// draft model.
    pub fn new(costs: Costs, limits: Limits, prior: &[f64], prior_weight: f64) -> Self {
        Self::build(costs.target, Some(costs.draft), limits, prior, prior_weight)
    }

    /// For a target without a draft model: only lookup can speculate (add it with
    /// [`AutoPolicy::with_lookup`]).
    pub fn without_draft(target: CostTable, limits: Limits) -> Self {
        Self::build(target, None, limits, &[], 0.0)
    }

    fn build(
        target: CostTable,
        draft: Option<CostTable>,
        limits: Limits,
        prior: &[f64],
        prior_weight: f64,
    ) -> Self {
        let width = limits.max_branch.clamp(1, 16);
        let mut policy = AutoPolicy {
            target_now: target.clone(),
            target: LiveCostTable::new(target),
            draft_now: draft.clone(),
            draft: draft.map(LiveCostTable::new),
            live: true,
            limits,
            tracker: AcceptanceTracker::new(width, prior, prior_weight),
            lookup: None,
            used: Vec::new(),
            planned: Vec::new(),
            ladder: Vec::new(),
            since_replan: 0,
            since_plain: 0,
            history: Vec::new(),
            counts: StepCounts::default(),
            leaf: None,
            pending: None,
            shadows: Vec::new(),
            run: 0,
            step_run: 0,
        };
        policy.replan();
        policy
    }

    /// Also proposes lookup candidates matched with `config`, valued with [`LOOKUP_PRIOR`] until
    /// the conversation shows its own acceptance.
    pub fn with_lookup(mut self, config: LookupConfig) -> Self {
        self.lookup = Some((config, LookupTracker::default()));
        self
    }

    /// Whether measured pass times correct the cost curves (on by default). Off, the profile's
    /// curves are used as given, for tests that force a profile's choices.
    pub fn with_live_costs(mut self, live: bool) -> Self {
        self.live = live;
        if !live {
            self.target_now = self.target.base().clone();
            self.draft_now = self.draft.as_ref().map(|d| d.base().clone());
        }
        self
    }

    fn log_factors(&self) -> Vec<f64> {
        let mut f = self.target.log_factors();
        if let Some(d) = &self.draft {
            f.extend(d.log_factors());
        }
        f
    }

    fn replan(&mut self) {
        self.used = self.tracker.estimate();
        self.since_replan = 0;
        self.planned = self.log_factors();
        let mut best: Option<(f64, TreePlan)> = None;
        self.ladder = match &self.draft_now {
            Some(draft) => {
                let costs = Costs {
                    target: self.target_now.clone(),
                    draft: draft.clone(),
                };
                Acceptance::new(self.used.clone())
                    .ok()
                    .and_then(|acc| {
                        let ladder = choose_ladder(&acc, &costs, &self.limits).ok()?;
                        let mut options = Vec::new();
                        for choice in ladder.into_iter().skip(1) {
                            if best
                                .as_ref()
                                .is_none_or(|b| choice.predicted_tokens_per_second > b.0)
                            {
                                best =
                                    Some((choice.predicted_tokens_per_second, choice.plan.clone()));
                            }
                            options.extend(DraftOption::new(choice.plan, &acc, &costs.draft).ok());
                        }
                        Some(options)
                    })
                    .unwrap_or_default()
            }
            None => Vec::new(),
        };
        let chosen = match best {
            Some((_, plan)) => format!("tree:{} (depth {})", plan.budget(), plan.depth()),
            None => "none".to_owned(),
        };
        if self.history.last() != Some(&chosen) {
            self.history.push(chosen);
        }
    }

    /// The draft plans chosen by the re-plans, in order, each change once (`none` when no tree
    /// pays by itself).
    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// The draft acceptance vector the current plans were made for.
    pub fn acceptance(&self) -> &[f64] {
        &self.used
    }

    /// Steps so far, by what they verified.
    pub fn counts(&self) -> StepCounts {
        self.counts
    }

    /// The cost curves as corrected by the measured pass times, next to the profile's.
    pub fn live_costs(&self) -> LiveCosts {
        LiveCosts {
            target: self.target.points(),
            draft: self.draft.as_ref().map(LiveCostTable::points),
            disagreement: self
                .draft
                .as_ref()
                .map_or(1.0, LiveCostTable::disagreement)
                .max(self.target.disagreement()),
        }
    }

    /// Whether to measure a plain pass now instead of speculating.
    fn explore_plain(&self) -> bool {
        if !self.live {
            return false;
        }
        let every = if self.target.observations_at(1) < PLAIN_CONFIRMED {
            EXPLORE_FIRST
        } else {
            EXPLORE_EVERY
        };
        self.since_plain >= every
    }

    /// The plan of the step: the draft option and root lookup nodes that pay best
    /// ([`choose_step`]), and what lookup may hang under the draft's leaves.
    fn choose(&mut self, input: &StepInput<'_>) -> StepPlan {
        self.leaf = None;
        let with_draft = input.has_draft && self.draft_now.is_some();
        let options: &[DraftOption] = if with_draft { &self.ladder } else { &[] };
        let lookup_acc = self.lookup.as_ref().map(|(_, tracker)| tracker.estimate());
        // Root candidates continue the copy run; those under the draft's leaves start afresh.
        let (shape, root_acc) = match &lookup_acc {
            Some(acc) => (input.lookup.shape(), acc.skip(self.run)),
            None => (
                &[][..],
                LookupAcceptance::new(vec![vec![0.0]]).expect("a valid vector"),
            ),
        };
        // Tokens committed past the draft's tree must be decoded by the draft before it drafts
        // again. While no draft plan pays (an empty ladder) the draft does not draft, so they
        // wait as plain decoding's tokens do, and lookup's cost nothing more.
        let draft_marginal = self
            .draft_now
            .as_ref()
            .filter(|_| with_draft && !options.is_empty())
            .map(|d| d.marginal(1));
        let costs = StepCosts {
            target: &self.target_now,
            draft_marginal,
            max_nodes: self.limits.budget,
        };
        let Ok(choice) = choose_step(options, shape, &root_acc, &costs) else {
            return StepPlan::plain();
        };
        if (choice.draft.is_some() || !choice.lookup.is_empty()) && self.explore_plain() {
            return StepPlan::plain();
        }
        let draft = choice
            .draft
            .map_or_else(TreePlan::plain, |i| options[i].plan.clone());
        // Lookup under the draft's leaves: a candidate there pays when its weight (the leaf's
        // reach times its own lookup weight) beats what its token costs at this step's rate.
        if let (Some(acc), true) = (lookup_acc, draft.budget() > 1) {
            let weights = root_acc.weights(shape);
            let root_lookup: f64 = choice
                .lookup
                .iter()
                .filter(|&&i| shape[i].parent.is_none())
                .map(|&i| weights[i])
                .sum();
            let draft_acc = Acceptance::new(self.used.clone()).ok();
            let mut reach = vec![1.0; draft.nodes.len()];
            for (i, node) in draft.nodes.iter().enumerate().skip(1) {
                let parent = node.parent.unwrap_or(0);
                let p = draft_acc
                    .as_ref()
                    .map_or(0.0, |a| a.get(node.rank as usize));
                let below_lookup = if parent == 0 { 1.0 - root_lookup } else { 1.0 };
                reach[i] = reach[parent] * p * below_lookup;
            }
            let rate = choice.tokens_per_second();
            let nodes = draft.budget() + choice.lookup.len();
            let token = self.target_now.marginal(nodes);
            let per_weight = token + draft_marginal.unwrap_or(0.0);
            let room = 1.0 - rate * per_weight;
            if room > 0.0 {
                self.leaf = Some(LeafLookup {
                    reach,
                    acc,
                    threshold: token * rate / room,
                });
            }
        }
        StepPlan {
            lookup_under_leaves: self.leaf.is_some(),
            draft,
            lookup: choice.lookup,
        }
    }
}

impl PlanPolicy for AutoPolicy {
    fn lookup(&self) -> Option<LookupConfig> {
        self.lookup.as_ref().map(|(config, _)| *config)
    }

    fn next_step(&mut self, input: &StepInput<'_>) -> StepPlan {
        let plan = self.choose(input);
        self.step_run = self.run;
        self.pending = (self.lookup.is_some() && !input.lookup.is_empty()).then(|| Shadow {
            proposal: input.lookup.clone(),
            played: plan.lookup.clone(),
            offset: self.run,
            at: None,
            matched: 0,
            exhausted: false,
        });
        plan
    }

    fn lookup_under(&self, plan_node: usize, proposal: &LookupProposal) -> Vec<usize> {
        let Some(leaf) = &self.leaf else {
            return Vec::new();
        };
        let reach = leaf.reach.get(plan_node).copied().unwrap_or(0.0);
        let weights = leaf.acc.weights(proposal.shape());
        // A child weighs at most its parent, so the chosen nodes form a trie.
        (0..proposal.len())
            .filter(|&i| reach * weights[i] > leaf.threshold)
            .collect()
    }

    fn observe(&mut self, report: &StepReport<'_>) {
        self.tracker.record(&report.walk.visits);
        if let Some((_, tracker)) = &mut self.lookup {
            let run = self.step_run as u32;
            let visits: Vec<LookupVisit> = report
                .walk
                .lookup_visits
                .iter()
                .map(|v| LookupVisit {
                    depth: v.depth + if v.from_root { run } else { 0 },
                    ..*v
                })
                .collect();
            tracker.record(&visits);
            if let Some(shadow) = self.pending.take() {
                if self.shadows.len() < MAX_SHADOWS {
                    self.shadows.push(shadow);
                }
            }
            // The run goes on through a walk that is still matching or that ran off the end of its
            // proposal (the next proposal takes over); a miss ends it.
            let mut visits = Vec::new();
            let mut run = 0;
            self.shadows.retain_mut(|shadow| {
                let alive = report.committed.iter().all(|&token| {
                    let (visit, goes_on) = shadow.feed(token);
                    visits.extend(visit);
                    goes_on
                });
                if alive || shadow.exhausted {
                    run = run.max(shadow.offset + shadow.matched);
                }
                alive
            });
            tracker.record(&visits);
            self.run = run;
        }
        let drafted = !report.draft_passes.is_empty();
        let looked_up = !report.walk.lookup_visits.is_empty();
        match (drafted, looked_up) {
            (false, false) => self.counts.plain += 1,
            (true, false) => self.counts.draft += 1,
            (false, true) => self.counts.lookup += 1,
            (true, true) => self.counts.both += 1,
        }
        if report.target_tokens <= 1 {
            self.since_plain = 0;
        } else {
            self.since_plain += 1;
        }
        if self.live {
            self.target
                .observe(report.target_tokens.max(1), report.verify_secs);
            self.target_now = self.target.corrected();
            if let Some(d) = &mut self.draft {
                d.observe_passes(report.draft_passes, report.draft_secs);
                self.draft_now = Some(d.corrected());
            }
        }
        self.since_replan += 1;
        if self.since_replan >= CHECK_EVERY {
            let now = self.tracker.estimate();
            let drift: f64 = now.iter().zip(&self.used).map(|(a, b)| (a - b).abs()).sum();
            let moved = self
                .log_factors()
                .iter()
                .zip(&self.planned)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            if drift > DRIFT || moved > COST_DRIFT {
                self.replan();
            } else {
                self.since_replan = 0;
            }
        }
    }

    fn cost_disagreement(&self) -> Option<f64> {
        self.live.then(|| self.live_costs().disagreement)
    }

    /// Lookup's acceptance as measured so far (prior included), `None` without lookup.
    fn lookup_acceptance(&self) -> Option<LookupAcceptance> {
        self.lookup.as_ref().map(|(_, t)| t.estimate())
    }

    /// Counts `measured` as [`LOOKUP_CARRIED_WEIGHT`] observations per depth: a start that the
    /// new conversation's own steps outweigh within a few tokens.
    fn start_lookup_from(&mut self, measured: &LookupAcceptance) {
        let rows: Vec<&[f64]> = measured.rows().iter().map(|r| r.as_slice()).collect();
        if let Some((_, tracker)) = &mut self.lookup {
            *tracker = LookupTracker::new(&rows, LOOKUP_CARRIED_WEIGHT);
        }
    }

    fn describe(&self) -> String {
        let plans = format!("auto: {}", self.history.join(" -> "));
        if self.lookup.is_none() {
            return plans;
        }
        let c = self.counts;
        format!(
            "{plans}; steps: {} plain, {} draft, {} lookup, {} both",
            c.plain, c.draft, c.lookup, c.both
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::LookupIndex;
    use crate::verify::Walk;

    #[test]
    fn the_largest_tree_is_the_plan_s_own_or_auto_s_bound_for_the_placement() {
        assert_eq!(
            largest_tree(Plan::Auto, Placement::Cpu),
            AUTO_MAX_BUDGET_CPU
        );
        assert_eq!(largest_tree(Plan::Auto, Placement::Stream), AUTO_MAX_BUDGET);
        assert_eq!(largest_tree(Plan::None, Placement::Cpu), 1);
        let tree = Plan::tree(8).unwrap();
        assert_eq!(largest_tree(tree, Placement::Gpu), 8);
        let chain = Plan::chain(3).unwrap();
        assert_eq!(
            largest_tree(chain, Placement::Cpu),
            chain.fixed_budget().unwrap() as usize
        );
    }

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

    /// A deterministic stand-in for a verification walk of `plan` whose draft accepts its rank-1
    /// child with probability 0.7 and rank 2 with 0.1 (u: pseudo-random numbers).
    fn walk_of(plan: &TreePlan, u: &mut impl FnMut() -> f64) -> Walk {
        let mut walk = Walk::default();
        let mut v = 0;
        loop {
            let kids = plan.children(v);
            if kids.is_empty() {
                return walk;
            }
            let x = u();
            let rank = if x < 0.7 {
                Some(1)
            } else if x < 0.8 && kids.len() >= 2 {
                Some(2)
            } else {
                None
            };
            walk.visits.push((kids.len(), rank));
            match rank {
                Some(r) => {
                    v = kids.start + r - 1;
                    walk.path.push(v);
                }
                None => return walk,
            }
        }
    }

    fn curve(f: impl Fn(usize) -> f64) -> CostTable {
        CostTable::new([1, 2, 4, 8, 16, 32, 64].map(|n| (n, f(n))).to_vec()).unwrap()
    }

    fn limits() -> Limits {
        Limits {
            budget: 64,
            max_depth: 16,
            max_branch: 8,
            max_leaves: 255,
        }
    }

    /// Runs `auto` planned from `profile` for `steps` steps on a machine whose passes really take
    /// `real(n)` (the draft's as profiled); returns every step's target budget.
    fn run_auto(
        profile: &CostTable,
        real: impl Fn(usize) -> f64,
        steps: usize,
    ) -> (AutoPolicy, Vec<usize>) {
        let draft = curve(|_| 0.002);
        let costs = Costs {
            target: profile.clone(),
            draft: draft.clone(),
        };
        let mut policy = AutoPolicy::new(costs, limits(), &[0.7, 0.1, 0.05], 8.0);
        let mut seed = 1u64;
        let mut u = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let empty = LookupProposal::empty();
        let mut budgets = Vec::new();
        for _ in 0..steps {
            let step = policy.next_step(&StepInput {
                has_draft: true,
                lookup: &empty,
            });
            let plan = step.draft;
            let walk = walk_of(&plan, &mut u);
            let passes: Vec<usize> = plan.levels().iter().map(|l| l.expand.len()).collect();
            let draft_secs = passes.iter().map(|&w| draft.at(w).unwrap()).sum();
            policy.observe(&StepReport {
                walk: &walk,
                target_tokens: plan.budget(),
                verify_secs: real(plan.budget()),
                draft_passes: &passes,
                draft_secs,
                committed: &[],
            });
            budgets.push(plan.budget());
        }
        (policy, budgets)
    }

    /// The first step from which every step is plain decoding.
    fn settled_plain(budgets: &[usize]) -> Option<usize> {
        let last_tree = budgets.iter().rposition(|&b| b > 1);
        match last_tree {
            None => Some(0),
            Some(i) if i + 1 < budgets.len() => Some(i + 1),
            Some(_) => None,
        }
    }

    #[test]
    fn an_optimistic_profile_falls_back_to_plain_within_a_few_dozen_steps() {
        // The profile (a busy machine, or a streamed target) says a pass of 64 tokens costs hardly
        // more than one; here every token costs a whole pass, so no tree pays.
        let profile = curve(|n| 0.1 * (1.0 + 0.002 * (n - 1) as f64));
        let real = |n: usize| 0.1 * n as f64;
        let (policy, budgets) = run_auto(&profile, real, 60);
        assert!(
            budgets[0] > 8,
            "the profile starts with a big tree: {budgets:?}"
        );
        let settled = settled_plain(&budgets).expect("never settled on plain decoding");
        assert!(settled <= 24, "plain from step {settled}: {budgets:?}");
        let live = policy.live_costs();
        assert!(live.disagreement > 5.0, "{live:?}");
        assert!(policy.describe().starts_with("auto: tree:"));
        assert!(policy.describe().ends_with("none"), "{}", policy.describe());
    }

    #[test]
    fn a_profile_whose_plain_pass_was_too_slow_is_corrected_by_measuring_plain() {
        // Profiled during a build: plain decoding looked slow next to a tree's pass. Here a plain
        // pass takes a fifth of that and every token in a pass costs as much again.
        let profile = curve(|n| 0.1 + 0.001 * (n - 1) as f64);
        let real = |n: usize| 0.02 * n as f64;
        let (policy, budgets) = run_auto(&profile, real, 60);
        assert!(budgets[0] > 8);
        let settled = settled_plain(&budgets).expect("never settled on plain decoding");
        assert!(settled <= 24, "plain from step {settled}: {budgets:?}");
        let plain = policy.live_costs().target[0];
        assert_eq!(plain.n, 1);
        assert!((plain.live_seconds - 0.02).abs() < 1e-3, "{plain:?}");
    }

    #[test]
    fn an_accurate_profile_keeps_its_trees() {
        let profile = curve(|n| 0.1 * (1.0 + 0.002 * (n - 1) as f64));
        let real = |n: usize| 0.1 * (1.0 + 0.002 * (n - 1) as f64);
        let (policy, budgets) = run_auto(&profile, real, 200);
        let plain = budgets.iter().filter(|&&b| b == 1).count();
        // Plain passes only to confirm the profile: two early, then one in 64 steps.
        assert!(plain <= 6, "{plain} plain steps: {budgets:?}");
        assert!(policy.live_costs().disagreement < 1.01);
        // Without live costs, it never measures plain decoding.
        let costs = Costs {
            target: profile.clone(),
            draft: curve(|_| 0.002),
        };
        let mut fixed =
            AutoPolicy::new(costs, limits(), &[0.7, 0.1, 0.05], 8.0).with_live_costs(false);
        let empty = LookupProposal::empty();
        for _ in 0..70 {
            let step = fixed.next_step(&StepInput {
                has_draft: true,
                lookup: &empty,
            });
            assert!(step.draft.budget() > 1);
            let walk = Walk::default();
            fixed.observe(&StepReport {
                walk: &walk,
                target_tokens: step.draft.budget(),
                verify_secs: 9.0,
                draft_passes: &[1],
                draft_secs: 9.0,
                committed: &[],
            });
        }
        assert_eq!(fixed.live_costs().disagreement, 1.0);
    }

    fn repetitive_proposal() -> LookupProposal {
        let mut index = LookupIndex::new(LookupConfig::default());
        let text: Vec<i32> = (0..200).map(|i| i % 37).collect();
        index.extend(&text);
        index.propose(&[])
    }

    /// Runs lookup-only `auto` for `steps` steps where each token in a pass adds `per_token` of a
    /// plain pass and lookup's candidates are accepted while `accept(step)` holds; returns every
    /// step's number of lookup nodes.
    fn run_lookup(
        per_token: f64,
        accept: impl Fn(usize) -> bool,
        steps: usize,
    ) -> (AutoPolicy, Vec<usize>) {
        let costs = curve(|n| 0.1 * (1.0 + per_token * (n - 1) as f64));
        let mut policy =
            AutoPolicy::without_draft(costs.clone(), limits()).with_lookup(LookupConfig::default());
        assert_eq!(policy.lookup(), Some(LookupConfig::default()));
        let proposal = repetitive_proposal();
        assert_eq!(proposal.len(), 16);
        let mut used = Vec::new();
        for step in 0..steps {
            let plan = policy.next_step(&StepInput {
                has_draft: false,
                lookup: &proposal,
            });
            assert_eq!(plan.draft.budget(), 1);
            let k = plan.lookup.len();
            let mut walk = Walk::default();
            if k > 0 {
                for d in 1..=k as u32 {
                    let ok = accept(step);
                    walk.lookup_visits.push(LookupVisit {
                        depth: d,
                        from_root: true,
                        children: 1,
                        accepted: ok.then_some(1),
                    });
                    if !ok {
                        break;
                    }
                }
            }
            policy.observe(&StepReport {
                walk: &walk,
                target_tokens: 1 + k,
                verify_secs: costs.at(1 + k).unwrap(),
                draft_passes: &[],
                draft_secs: 0.0,
                committed: &[],
            });
            used.push(k);
        }
        (policy, used)
    }

    #[test]
    fn lookup_alone_speculates_while_it_is_accepted_and_stops_when_it_is_not() {
        // Copying, on a machine where a token in the pass costs 2 % of a pass: every candidate
        // accepted, and the chain grows to the whole proposal.
        let (policy, used) = run_lookup(0.02, |_| true, 30);
        assert!(used[0] >= 1, "the prior lets lookup be tried: {used:?}");
        assert!(used[20..].iter().all(|&k| k == 16), "{used:?}");
        let acc = policy.lookup_acceptance().unwrap();
        assert!(acc.get(1, 1) > 0.8 && acc.get(5, 1) > 0.8);
        let c = policy.counts();
        assert_eq!(c.draft + c.both, 0);
        assert!(c.lookup >= 25, "{c:?}");
        assert!(
            policy.describe().contains("lookup"),
            "{}",
            policy.describe()
        );
        // Where a token in the pass costs 20 %, the chain grows only as far as its measured
        // acceptance pays for.
        let (_, used) = run_lookup(0.2, |_| true, 30);
        assert!(used[29] >= 4 && used[29] < 16, "{used:?}");
        // Matches that the target never follows: lookup is dropped within a few steps.
        let (policy, used) = run_lookup(0.2, |_| false, 30);
        let last = used.iter().rposition(|&k| k > 0).unwrap_or(0);
        assert!(last < 8, "{used:?}");
        assert!(policy.lookup_acceptance().unwrap().get(1, 1) <= 0.25);
    }

    /// Runs lookup-only `auto` on a target that writes `truth(position)`, over a history of
    /// `history` tokens, with the lookup index kept as the driver keeps it; returns every step's
    /// number of lookup nodes.
    fn run_on_text(
        policy: &mut AutoPolicy,
        history: Vec<Token>,
        truth: impl Fn(usize) -> Token,
        steps: usize,
        per_token: f64,
    ) -> Vec<usize> {
        let mut index = LookupIndex::new(LookupConfig::default());
        index.extend(&history);
        let mut at = history.len();
        let mut used = Vec::new();
        for _ in 0..steps {
            let proposal = index.propose(&[]);
            let plan = policy.next_step(&StepInput {
                has_draft: false,
                lookup: &proposal,
            });
            let mut walk = Walk::default();
            let mut committed = Vec::new();
            let mut node = None;
            loop {
                let want = truth(at + committed.len());
                let kids: Vec<usize> = proposal
                    .children(node)
                    .filter(|c| plan.lookup.contains(c))
                    .collect();
                let hit = kids.iter().position(|&c| proposal.tokens()[c] == want);
                if !kids.is_empty() {
                    walk.lookup_visits.push(LookupVisit {
                        depth: node.map_or(1, |v| proposal.shape()[v].depth + 1),
                        from_root: true,
                        children: kids.len() as u32,
                        accepted: hit.map(|r| r as u32 + 1),
                    });
                }
                committed.push(want);
                match hit {
                    Some(r) => node = Some(kids[r]),
                    None => break,
                }
            }
            let k = plan.lookup.len();
            policy.observe(&StepReport {
                walk: &walk,
                target_tokens: 1 + k,
                verify_secs: 0.1 * (1.0 + per_token * k as f64),
                draft_passes: &[],
                draft_secs: 0.0,
                committed: &committed,
            });
            index.extend(&committed);
            at += committed.len();
            used.push(k);
        }
        used
    }

    #[test]
    fn lookup_acceptance_is_measured_while_lookup_is_not_played() {
        // A pass grows by half a plain pass per token: at the prior's acceptance no lookup pays,
        // but text copied token for token (here a repeating 37-token passage) does.
        let per_token = 0.5;
        let costs = curve(|n| 0.1 * (1.0 + per_token * (n - 1) as f64));
        let copy = |i: usize| (i % 37) as Token;
        let history: Vec<Token> = (0..100).map(copy).collect();
        let mut policy =
            AutoPolicy::without_draft(costs.clone(), limits()).with_lookup(LookupConfig::default());
        let used = run_on_text(&mut policy, history.clone(), copy, 40, per_token);
        assert_eq!(used[0], 0, "the prior does not pay here: {used:?}");
        let first = used.iter().position(|&k| k > 0).expect("lookup is played");
        assert!(
            first <= 6,
            "plain steps measured lookup as they went: {used:?}"
        );
        // The chain grows as the shadows measure the copy, to the whole proposal: once a copy
        // has run for a few tokens its next tokens are valued at the copy's own acceptance.
        assert!(used[15..].iter().all(|&k| k == 16), "{used:?}");
        // Deep in the copy, lookup is measured as nearly always right.
        let acc = policy.lookup_acceptance().unwrap();
        assert!(acc.get(LOOKUP_DEPTHS, 1) > 0.9, "{acc:?}");
        // New text that the history never held: the shadows miss and lookup stays unplayed.
        let fresh = |i: usize| (1000 + i * 7919 % 5003) as Token;
        let mut policy =
            AutoPolicy::without_draft(costs, limits()).with_lookup(LookupConfig::default());
        let used = run_on_text(&mut policy, history, fresh, 40, per_token);
        assert!(used.iter().all(|&k| k == 0), "{used:?}");
    }

    #[test]
    fn a_shadow_counts_only_what_the_step_did_not_verify() {
        // A chain 5 6 7 of which the step verified the first two nodes.
        let mut index = LookupIndex::new(LookupConfig::new(1, 1, 3, 1, 8).unwrap());
        index.extend(&[4, 5, 6, 7, 1, 4]);
        let proposal = index.propose(&[]);
        assert_eq!(proposal.first_chain(), vec![5, 6, 7]);
        let mut shadow = Shadow {
            proposal,
            played: vec![0, 1],
            offset: 3,
            at: None,
            matched: 0,
            exhausted: false,
        };
        // The walk's own visits at depths 1 and 2; the shadow's first at the third node, counted
        // three positions on (the copy run the step began with).
        assert_eq!(shadow.feed(5), (None, true));
        assert_eq!(shadow.feed(6), (None, true));
        let (visit, goes_on) = shadow.feed(9);
        assert_eq!(
            visit,
            Some(LookupVisit {
                depth: 6,
                from_root: true,
                children: 1,
                accepted: None
            })
        );
        assert!(!goes_on && !shadow.exhausted);
        assert_eq!(shadow.offset + shadow.matched, 5);
        // Running off the end of the proposal is not a miss.
        let mut index = LookupIndex::new(LookupConfig::new(1, 1, 1, 1, 8).unwrap());
        index.extend(&[4, 5, 4]);
        let mut shadow = Shadow {
            proposal: index.propose(&[]),
            played: vec![],
            offset: 0,
            at: None,
            matched: 0,
            exhausted: false,
        };
        assert!(shadow.feed(5).1);
        assert_eq!(shadow.feed(8), (None, false));
        assert!(shadow.exhausted);
    }

    #[test]
    fn a_generation_starts_from_what_the_last_one_measured() {
        let costs = curve(|n| 0.1 * (1.0 + 0.5 * (n - 1) as f64));
        let copy = |i: usize| (i % 37) as Token;
        let history: Vec<Token> = (0..100).map(copy).collect();
        let mut first =
            AutoPolicy::without_draft(costs.clone(), limits()).with_lookup(LookupConfig::default());
        run_on_text(&mut first, history.clone(), copy, 40, 0.5);
        let measured = first.lookup_acceptance().unwrap();
        let mut next: Box<dyn PlanPolicy> = Box::new(
            AutoPolicy::without_draft(costs, limits()).with_lookup(LookupConfig::default()),
        );
        next.start_lookup_from(&measured);
        let deep = next.lookup_acceptance().unwrap().get(LOOKUP_DEPTHS, 1);
        assert!((deep - measured.get(LOOKUP_DEPTHS, 1)).abs() < 1e-9);
        assert!(deep > LookupTracker::default().estimate().get(LOOKUP_DEPTHS, 1));
        // Without lookup there is nothing to start.
        let mut fixed = FixedPolicy::new(TreePlan::plain(), "none");
        fixed.start_lookup_from(&measured);
        assert_eq!(fixed.lookup_acceptance(), None);
    }

    #[test]
    fn a_fixed_policy_takes_the_first_lookup_nodes() {
        let proposal = repetitive_proposal();
        let mut p =
            FixedPolicy::new(TreePlan::plain(), "none").with_lookup(LookupConfig::default(), 5);
        assert_eq!(p.describe(), "none + lookup:5");
        let step = p.next_step(&StepInput {
            has_draft: false,
            lookup: &proposal,
        });
        assert_eq!(step.lookup, vec![0, 1, 2, 3, 4]);
        let acc = Acceptance::new(vec![0.5]).unwrap();
        let mut p = FixedPolicy::new(canopy_plan::chain(&acc, 3), "chain:3");
        assert_eq!(p.lookup(), None);
        let with = p.next_step(&StepInput {
            has_draft: true,
            lookup: &proposal,
        });
        assert_eq!((with.draft.budget(), with.lookup.len()), (4, 0));
        let without = p.next_step(&StepInput {
            has_draft: false,
            lookup: &proposal,
        });
        assert_eq!(without.draft.budget(), 1);
    }

    #[test]
    fn lookup_visits_fill_their_depths() {
        let mut t = LookupTracker::new(&[], 0.0);
        t.record(&[
            LookupVisit {
                depth: 1,
                from_root: true,
                children: 2,
                accepted: Some(2),
            },
            LookupVisit {
                depth: 2,
                from_root: true,
                children: 1,
                accepted: Some(1),
            },
            LookupVisit {
                depth: 12,
                from_root: true,
                children: 1,
                accepted: None,
            },
        ]);
        let acc = t.estimate();
        assert_eq!((acc.get(1, 1), acc.get(1, 2)), (0.0, 1.0));
        assert_eq!(acc.get(2, 1), 1.0);
        assert_eq!(acc.get(LOOKUP_DEPTHS, 1), 0.0);
        assert_eq!(acc.get(40, 1), 0.0);
        assert_eq!(t.observations(), 1.0);
        let prior = LookupTracker::default().estimate();
        assert_eq!(prior.get(1, 1), 0.4);
        assert_eq!(prior.get(7, 1), 0.8);
    }

    #[test]
    fn auto_hangs_lookup_under_leaves_only_where_it_pays() {
        let proposal = repetitive_proposal();
        let empty = LookupProposal::empty();
        // A flat target: a token in the pass costs 5 % of a pass.
        let flat = |s: f64| CostTable::new(vec![(1, s), (64, s * 1.05)]).unwrap();
        let costs = Costs {
            target: flat(0.1),
            draft: flat(0.002),
        };
        let mut policy = AutoPolicy::new(costs, limits(), &[0.7, 0.1, 0.05], 8.0)
            .with_lookup(LookupConfig::default());
        let step = policy.next_step(&StepInput {
            has_draft: true,
            lookup: &empty,
        });
        assert!(step.draft.budget() > 1 && step.lookup_under_leaves);
        // The end of the draft's first-choice chain is the likeliest leaf.
        let mut first_leaf = 0;
        while step.draft.nodes[first_leaf].children > 0 {
            first_leaf = step.draft.children(first_leaf).start;
        }
        let under = policy.lookup_under(first_leaf, &proposal);
        assert!(!under.is_empty());
        assert_eq!(under, (0..under.len()).collect::<Vec<_>>(), "a trie prefix");
        // The least likely leaf (reached rarely) gets less, if anything.
        let least = (1..step.draft.nodes.len())
            .rev()
            .find(|&i| step.draft.nodes[i].children == 0)
            .unwrap();
        assert!(policy.lookup_under(least, &proposal).len() <= under.len());
        // Where tokens in the pass are dear, no tree and nothing under leaves.
        let steep = Costs {
            target: curve(|n| 0.1 * n as f64),
            draft: curve(|_| 0.002),
        };
        let mut policy = AutoPolicy::new(steep, limits(), &[0.7, 0.1, 0.05], 8.0)
            .with_lookup(LookupConfig::default());
        let step = policy.next_step(&StepInput {
            has_draft: true,
            lookup: &empty,
        });
        assert!(step.draft.budget() == 1 && !step.lookup_under_leaves);
        assert!(policy.lookup_under(1, &proposal).is_empty());
    }
}
