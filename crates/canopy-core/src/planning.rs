//! The planner's tools for the command line: the optimal tree for an acceptance vector (with
//! measured costs, the budget and depth that pay most), and a prediction for a profiled machine
//! from a real draft/target pair's acceptance on this one.

use std::path::{Path, PathBuf};

use canopy_hw::{recommend_placement, LayerSplit, ModelSpec, PredictedCosts, Profile};
use canopy_plan::{
    choose, optimal_tree_bounded, Acceptance, Choice, CostTable, Costs, Limits, TreePlan, ENGINE,
};
use canopy_types::{ChatRole, Placement, Plan, Sampling};
use canopy_worker::{AcceptanceRequest, CancelFlag, ChatMessage, Prompt};

use crate::error::{CoreError, CoreResult};
use crate::profiling::{ACCEPTANCE_POSITIONS, ACCEPTANCE_WIDTH};
use crate::request::ModelChoice;
use crate::Core;

/// What `canopy plan` asks: an acceptance vector (or a profile's), limits, and optionally
/// measured costs (a file, or a profile's curves).
#[derive(Debug, Clone)]
pub struct PlanQuery {
    /// p[1], p[2], ...; `None` = the profile's measured vector.
    pub acceptance: Option<Vec<f64>>,
    /// A profile by name or file, whose acceptance and curves are used where not given.
    pub profile: Option<String>,
    /// A JSON file `{"target": [[n, seconds], ...], "draft": [[k, seconds], ...]}`.
    pub costs_file: Option<PathBuf>,
    pub budget: usize,
    pub max_depth: usize,
    /// `None` = the length of the acceptance vector.
    pub max_branch: Option<usize>,
    pub max_leaves: usize,
}

/// The plan, and the hardware choice behind it when costs were given.
#[derive(Debug, Clone)]
pub struct PlanOutcome {
    pub acceptance: Vec<f64>,
    pub limits: Limits,
    pub plan: TreePlan,
    /// A proven upper bound on the expected tokens of any tree the plan competed with (equal to
    /// the plan's own when it is exactly optimal).
    pub upper_bound: f64,
    pub choice: Option<Choice>,
}

impl PlanOutcome {
    /// How far the plan may lie below the optimum, as a fraction of the bound.
    pub fn gap(&self) -> f64 {
        ((self.upper_bound - self.plan.expected_tokens) / self.upper_bound).max(0.0)
    }
}

/// What `canopy simulate` asks: a profile to predict for, the real pair to measure, and the
/// target's size on the profiled machine where it differs from the file's.
#[derive(Debug, Clone)]
pub struct SimulateQuery {
    pub profile: String,
    pub target: PathBuf,
    pub draft: PathBuf,
    /// Bytes, parameters and layers of the predicted target (default: the target file's; bytes
    /// alone keep the file's bits per weight).
    pub target_bytes: Option<f64>,
    pub target_params: Option<f64>,
    pub target_layers: Option<u32>,
    pub prompts: Vec<String>,
    pub max_tokens: u32,
    pub budget: usize,
    pub max_depth: usize,
}

/// A real generation with the chosen budget, charged with predicted times.
#[derive(Debug, Clone)]
pub struct Replay {
    pub plan: TreePlan,
    pub label: String,
    pub prompts: usize,
    pub tokens: u64,
    pub steps: u64,
    pub step_seconds: f64,
}

/// A prediction for the profiled machine: real acceptance, predicted pass times.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub profile: Profile,
    pub target: ModelSpec,
    pub target_file: ModelSpec,
    pub draft: ModelSpec,
    pub placement: LayerSplit,
    pub acceptance: Vec<f64>,
    pub positions: u64,
    /// Predicted plain decoding in the chosen placement, seconds per token.
    pub plain_s: f64,
    /// Plain decoding with every weight streamed over PCIe (the published baselines' setting).
    pub plain_streamed_s: f64,
    pub choice: Choice,
    pub replay: Option<Replay>,
}

impl Simulation {
    /// Predicted seconds per token of the tree: from the replay when one ran (real tokens per
    /// step), else the planner's expectation.
    pub fn tree_seconds_per_token(&self) -> f64 {
        match &self.replay {
            Some(r) if r.tokens > 0 => r.steps as f64 * r.step_seconds / r.tokens as f64,
            _ => 1.0 / self.choice.predicted_tokens_per_second,
        }
    }
}

fn user(e: impl std::fmt::Display) -> CoreError {
    CoreError::user(e.to_string())
}

impl Core {
    /// The optimal tree for the query's acceptance vector within its limits; with costs, the
    /// budget and depth that maximise predicted tokens per second.
    ///
    /// # Errors
    /// A user error for a bad vector, limits, costs file or profile.
    pub fn plan_tree(&self, query: &PlanQuery) -> CoreResult<PlanOutcome> {
        let profile = query
            .profile
            .as_deref()
            .map(|spec| self.find_profile(spec))
            .transpose()?;
        let acc = match (&query.acceptance, &profile) {
            (Some(p), _) => {
                Acceptance::new(p.clone()).map_err(|e| user(format!("acceptance: {e}")))?
            }
            (None, Some(p)) => {
                let record = p.acceptance.as_ref().ok_or_else(|| {
                    user(format!(
                        "profile {} has no acceptance vector: give one",
                        p.name
                    ))
                })?;
                Acceptance::new(record.p.clone())
                    .map_err(|e| user(format!("profile {}: acceptance vector: {e}", p.name)))?
            }
            (None, None) => {
                return Err(user(
                    "give an acceptance vector, or a profile with a measured one",
                ))
            }
        };
        let limits = Limits {
            budget: query.budget,
            max_depth: query.max_depth,
            max_branch: query.max_branch.unwrap_or(acc.as_slice().len()),
            max_leaves: query.max_leaves,
        };
        limits.validate().map_err(user)?;
        let costs = match (&query.costs_file, &profile) {
            (Some(path), _) => Some(read_costs(path)?),
            (None, Some(p)) => Some(profile_costs(p)?),
            (None, None) => None,
        };
        let (plan, upper_bound, choice) = match costs {
            None => {
                let bounded = optimal_tree_bounded(&acc, &limits).map_err(user)?;
                (bounded.plan, bounded.upper_bound, None)
            }
            Some(costs) => {
                let choice = choose(&acc, &costs, &limits).map_err(user)?;
                (choice.plan.clone(), choice.upper_bound, Some(choice))
            }
        };
        Ok(PlanOutcome {
            acceptance: acc.as_slice().to_vec(),
            limits,
            plan,
            upper_bound,
            choice,
        })
    }

    /// Predicts tokens per second on the query's profiled machine: the real pair's greedy
    /// acceptance measured here, the planner's tree for the costs the profile's model predicts
    /// for that target, and a replay of that tree by the engine to count real tokens per step.
    /// `progress` hears what runs.
    ///
    /// # Errors
    /// A user error for bad models, numbers or profile; a worker failure as such.
    pub fn simulate(
        &self,
        query: &SimulateQuery,
        cancel: &CancelFlag,
        progress: &mut dyn FnMut(&str),
    ) -> CoreResult<Simulation> {
        if query.max_tokens == 0 || query.prompts.is_empty() {
            return Err(user("give at least one prompt and one token per prompt"));
        }
        let profile = self.find_profile(&query.profile)?;
        let (target, target_file) = self.target_spec(query)?;
        let draft = self.file_spec(&query.draft, "draft")?;
        let model = &profile.cost_model;
        let placement = recommend_placement(model, &target, draft.bytes, None);
        let predicted = model
            .predicted_costs(&target, &draft, &placement, query.budget, query.budget)
            .map_err(user)?;
        let costs = planner_costs(&predicted)?;

        progress("measuring the acceptance vector of the real pair");
        let measured = self.measure_acceptance(
            AcceptanceRequest {
                target: query.target.clone(),
                draft: query.draft.clone(),
                prompts: query.prompts.clone(),
                temperature: 0.0,
                width: ACCEPTANCE_WIDTH,
                tokens_per_prompt: query.max_tokens.max(ACCEPTANCE_POSITIONS),
                seed: 0,
            },
            cancel,
            &mut |_| {},
        )?;
        let acc = Acceptance::new(measured.acceptance.clone())
            .map_err(|e| CoreError::internal(format!("measured acceptance vector: {e}")))?;
        let limits = Limits {
            budget: query.budget,
            max_depth: query.max_depth,
            max_branch: ENGINE.max_branch.min(acc.as_slice().len()),
            max_leaves: ENGINE.max_leaves,
        };
        limits.validate().map_err(user)?;
        let choice = choose(&acc, &costs, &limits).map_err(user)?;
        let budget = choice.plan.budget();
        let replay = (budget >= 2)
            .then(|| self.replay_tree(query, &acc, &costs, budget, cancel, progress))
            .transpose()?;
        let plain_s = costs.target.at(1).map_err(CoreError::internal)?;
        // The offloading baseline of the published comparisons: every weight over PCIe for every
        // token.
        let streamed = LayerSplit {
            resident_layers: 0,
            op_offload_min_batch: 1,
        };
        let plain_streamed_s = model.target_pass(&target, &streamed, 1).total_s;
        Ok(Simulation {
            profile,
            target,
            target_file,
            draft,
            placement,
            acceptance: measured.acceptance,
            positions: measured.positions,
            plain_s,
            plain_streamed_s,
            choice,
            replay,
        })
    }

    /// Generates with the engine's `tree:N` on the real pair and counts tokens per step, to check
    /// the simulated tree against what the engine does.
    fn replay_tree(
        &self,
        query: &SimulateQuery,
        acc: &Acceptance,
        costs: &Costs,
        n: usize,
        cancel: &CancelFlag,
        progress: &mut dyn FnMut(&str),
    ) -> CoreResult<Replay> {
        // The tree the engine builds for `tree:N` from the same acceptance vector.
        let plan = ENGINE.fixed_tree_plan(acc, n).map_err(user)?;
        let step_seconds = costs
            .step_seconds(&plan, acc)
            .map_err(|e| CoreError::internal(format!("pricing the tree: {e}")))?;
        let choice = ModelChoice {
            draft: Some(query.draft.clone()),
            plan: Plan::tree(n as u32).map_err(user)?,
            placement: Placement::Cpu,
            ..ModelChoice::target_only(query.target.clone())
        };
        let (mut tokens, mut steps) = (0, 0);
        let mut label = String::new();
        for (i, prompt) in query.prompts.iter().enumerate() {
            progress(&format!(
                "generating with tree:{n}, prompt {}/{}",
                i + 1,
                query.prompts.len()
            ));
            let chat = Prompt::Chat(vec![ChatMessage {
                role: ChatRole::User,
                content: prompt.clone(),
            }]);
            let mut prepared = self.prepare(
                &choice,
                chat,
                Sampling::greedy(),
                query.max_tokens,
                Vec::new(),
            )?;
            // The tree is shaped by the measured vector, as the simulation's is.
            prepared.request.acceptance = Some(acc.as_slice().to_vec());
            let result = self.generate(&mut prepared, cancel, &mut |_| {})?;
            tokens += result.tokens;
            steps += result.steps;
            label = result.plan;
        }
        Ok(Replay {
            plan,
            label,
            prompts: query.prompts.len(),
            tokens,
            steps,
            step_seconds,
        })
    }

    /// A model file as the cost model sees it.
    fn file_spec(&self, path: &Path, what: &str) -> CoreResult<ModelSpec> {
        let info = self
            .inspect_file(path)
            .map_err(|e| user(format!("{what} model {e}")))?;
        Ok(ModelSpec {
            bytes: info.file_size.max(1),
            params: info.parameter_count.max(1),
            layers: info
                .layers
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or(1)
                .max(1),
        })
    }

    /// The target to predict for: the file's figures with the query's overriding them, and the
    /// file's own figures.
    fn target_spec(&self, query: &SimulateQuery) -> CoreResult<(ModelSpec, ModelSpec)> {
        let file = self.file_spec(&query.target, "target")?;
        let positive = |v: f64, what: &str| {
            if v.is_finite() && v >= 1.0 {
                Ok(v)
            } else {
                Err(user(format!(
                    "the target's {what} must be a number >= 1, got {v}"
                )))
            }
        };
        let bytes = match query.target_bytes {
            Some(b) => positive(b, "bytes")?.round() as u64,
            None => file.bytes,
        };
        let params = match query.target_params {
            Some(p) => positive(p, "parameters")?.round() as u64,
            None => (bytes as f64 * file.params as f64 / file.bytes as f64).round() as u64,
        };
        let layers = match query.target_layers {
            Some(0) => return Err(user("the target's layers must be at least 1")),
            Some(l) => l,
            None => file.layers,
        };
        let target = ModelSpec {
            bytes,
            params: params.max(1),
            layers,
        };
        Ok((target, file))
    }
}

/// The measured curves of a profile as the planner's cost tables.
fn profile_costs(p: &Profile) -> CoreResult<Costs> {
    let (target, draft) = p.costs().ok_or_else(|| {
        user(format!(
            "profile {} has no measured cost curves: run `canopy profile --target T --draft D`, or use `canopy simulate` for a reference profile",
            p.name
        ))
    })?;
    let table = |points, name| {
        CostTable::named(points, name).map_err(|e| user(format!("profile {}: {e}", p.name)))
    };
    Ok(Costs {
        target: table(target, "target")?,
        draft: table(draft, "draft")?,
    })
}

fn read_costs(path: &Path) -> CoreResult<Costs> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| user(format!("cannot read costs file {}: {e}", path.display())))?;
    parse_costs(&text).map_err(|e| user(format!("costs file {}: {e}", path.display())))
}

/// Parses the costs JSON (tables are validated while deserialising).
fn parse_costs(text: &str) -> Result<Costs, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

fn planner_costs(predicted: &PredictedCosts) -> CoreResult<Costs> {
    let table = |points: &Vec<(usize, f64)>, name| {
        CostTable::named(points.clone(), name)
            .map_err(|e| CoreError::internal(format!("predicted {name} costs: {e}")))
    };
    Ok(Costs {
        target: table(&predicted.target, "target")?,
        draft: table(&predicted.draft, "draft")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_costs_and_rejects_bad_tables() {
        let costs =
            parse_costs(r#"{"target": [[1, 0.1], [64, 0.2]], "draft": [[1, 0.01], [16, 0.02]]}"#)
                .unwrap();
        assert_eq!(costs.target.max_n(), 64);
        assert!(parse_costs(r#"{"target": [], "draft": [[1, 0.01]]}"#)
            .unwrap_err()
            .contains("no points"));
        assert!(
            parse_costs(r#"{"target": [[1, -1]], "draft": [[1, 0.01]]}"#)
                .unwrap_err()
                .contains("n = 1")
        );
        assert!(parse_costs(r#"{"target": [[1, 0.1]]}"#).is_err());
    }
}
