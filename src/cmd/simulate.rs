//! `canopy simulate`: predict tokens per second on a profiled (or reference) machine for a target of
//! any size, from the real acceptance behaviour of a real draft/target pair on this machine.
//!
//! The draft and target run for real (greedy) through the worker: first the acceptance vector, then
//! generations with the planner's tree budget. Each verification step is then charged the time the
//! profile's cost model predicts for that hardware and target size, instead of the time it took
//! here. The result is a model-based prediction, not a measurement.

use std::path::{Path, PathBuf};

use canopy_core::{
    AcceptanceRequest, AcceptanceResult, CancelFlag, ChatMessage, Core, ModelChoice, Prompt,
    ACCEPTANCE_POSITIONS, ACCEPTANCE_WIDTH,
};
use canopy_hw::{recommend_placement, ModelSpec, PredictedCosts, Profile};
use canopy_plan::{choose, Acceptance, CostTable, Costs, Limits, TreePlan, ENGINE};
use canopy_types::{ChatRole, Placement, Plan, Sampling};
use serde_json::{json, Value};

use crate::engine::{core_error, model_path};
use crate::error::{CliError, CliResult};
use crate::prompts::load_prompts;

#[derive(clap::Args)]
pub struct Args {
    /// Hardware profile to predict for: a name (saved or reference, e.g. rtx4090-pcie4) or a file.
    #[arg(long, value_name = "NAME|PATH")]
    pub profile: String,
    /// The real target model whose acceptance behaviour is used (GGUF).
    #[arg(long)]
    pub target: PathBuf,
    /// The real draft model (GGUF); it is also the draft charged on the profiled machine.
    #[arg(long)]
    pub draft: PathBuf,
    /// Bytes of the target to predict for (default: the target file's size), e.g. 41.4e9 for
    /// Llama-2-70B Q4_K_M.
    #[arg(long, value_name = "BYTES")]
    pub target_bytes: Option<f64>,
    /// Parameters of the predicted target (default: its bytes at the target file's bits per weight).
    #[arg(long, value_name = "COUNT")]
    pub target_params: Option<f64>,
    /// Transformer layers of the predicted target (default: the target file's).
    #[arg(long)]
    pub target_layers: Option<u32>,
    /// Prompts: a JSON array of strings or one prompt per line (default: assets/prompts.json, else a
    /// built-in list).
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// How many of the prompts to run.
    #[arg(long, default_value_t = 3)]
    pub num_prompts: usize,
    /// Tokens generated per prompt.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: u32,
    /// Largest tree (tokens per verification pass) the planner may choose; the engine verifies
    /// trees of up to 1024 tokens with at most 255 leaves (llama.cpp's sequence limit).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub budget: u32,
    /// Deepest tree the planner may choose.
    #[arg(long, default_value_t = 24)]
    pub max_depth: usize,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// A real generation with the chosen budget, charged with predicted times.
struct Replay {
    plan: TreePlan,
    label: String,
    prompts: usize,
    tokens: u64,
    steps: u64,
    step_seconds: f64,
}

pub fn run(args: Args) -> CliResult {
    let target_path = model_path(&args.target, "target")?;
    let draft_path = model_path(&args.draft, "draft")?;
    if args.max_tokens == 0 || args.num_prompts == 0 {
        return Err(CliError::user(
            "--max-tokens and --num-prompts must be at least 1",
        ));
    }
    let core = crate::engine::core()?;
    let profile = core.find_profile(&args.profile).map_err(core_error)?;
    let (target, target_file) = target_spec(&core, &args, &target_path)?;
    let draft = file_spec(&core, &draft_path, "draft")?;
    let model = &profile.cost_model;
    let placement = recommend_placement(model, &target, draft.bytes, None);
    let costs = predicted_costs(model, (&target, &draft), &placement, args.budget as usize)?;

    let mut prompts = load_prompts(args.prompts.as_deref())?;
    prompts.truncate(args.num_prompts);
    let cancel = CancelFlag::new();
    let paths = (target_path.as_path(), draft_path.as_path());
    let measured = measure_acceptance(&core, &cancel, &args, paths, &prompts)?;
    let acc = Acceptance::new(measured.acceptance.clone())
        .map_err(|e| CliError::Failure(anyhow::anyhow!("measured acceptance vector: {e}")))?;
    let choice = choose_plan(&args, &acc, &costs)?;
    let budget = choice.plan.budget();
    let replay = (budget >= 2)
        .then(|| {
            replay_tree(
                &core,
                &cancel,
                (&args, &acc, &costs),
                paths,
                &prompts,
                budget,
            )
        })
        .transpose()?;

    let plain_s = costs
        .target
        .at(1)
        .map_err(|e| CliError::Failure(anyhow::anyhow!("{e}")))?;
    // The offloading baseline of the published comparisons: every weight over PCIe for every token.
    let streamed = canopy_hw::LayerSplit {
        resident_layers: 0,
        op_offload_min_batch: 1,
    };
    let plain_streamed_s = model.target_pass(&target, &streamed, 1).total_s;
    let report = Report {
        plain_streamed_s,
        profile: &profile,
        target,
        target_file,
        draft,
        draft_file: &draft_path,
        placement,
        acceptance: acc.as_slice(),
        positions: measured.positions,
        plain_s,
        choice: &choice,
        replay: replay.as_ref(),
    };
    report.print(args.json)
}

/// The planner's choice for the measured acceptance and the predicted costs, under `--budget`
/// and `--max-depth`.
fn choose_plan(args: &Args, acc: &Acceptance, costs: &Costs) -> CliResult<canopy_plan::Choice> {
    let limits = Limits {
        budget: args.budget as usize,
        max_depth: args.max_depth,
        max_branch: ENGINE.max_branch.min(acc.as_slice().len()),
        max_leaves: ENGINE.max_leaves,
    };
    limits
        .validate()
        .map_err(|e| CliError::user(e.to_string()))?;
    choose(acc, costs, &limits).map_err(|e| CliError::user(e.to_string()))
}

/// The real pair's greedy acceptance vector, measured by the worker on the CPU.
fn measure_acceptance(
    core: &Core,
    cancel: &CancelFlag,
    args: &Args,
    (target, draft): (&Path, &Path),
    prompts: &[String],
) -> CliResult<AcceptanceResult> {
    eprintln!("measuring the acceptance vector of the real pair...");
    let request = AcceptanceRequest {
        target: target.to_owned(),
        draft: draft.to_owned(),
        prompts: prompts.to_vec(),
        temperature: 0.0,
        width: ACCEPTANCE_WIDTH,
        tokens_per_prompt: args.max_tokens.max(ACCEPTANCE_POSITIONS),
        seed: 0,
    };
    core.measure_acceptance(request, cancel, &mut |_| {})
        .map_err(core_error)
}

/// Generates with the engine's `tree:N` on the real pair and counts tokens per step, to check the
/// simulated tree against what the engine does.
fn replay_tree(
    core: &Core,
    cancel: &CancelFlag,
    (args, acc, costs): (&Args, &Acceptance, &Costs),
    (target, draft): (&Path, &Path),
    prompts: &[String],
    n: usize,
) -> CliResult<Replay> {
    // The tree the engine builds for `tree:N` from the same acceptance vector.
    let plan = ENGINE
        .fixed_tree_plan(acc, n)
        .map_err(|e| CliError::user(e.to_string()))?;
    let step_seconds = costs
        .step_seconds(&plan, acc)
        .map_err(|e| CliError::Failure(anyhow::anyhow!("pricing the tree: {e}")))?;
    let choice = ModelChoice {
        draft: Some(draft.to_owned()),
        plan: Plan::tree(n as u32).map_err(|e| CliError::Failure(anyhow::anyhow!("{e}")))?,
        placement: Placement::Cpu,
        ..ModelChoice::target_only(target.to_owned())
    };
    let (mut tokens, mut steps) = (0, 0);
    let mut label = String::new();
    for (i, prompt) in prompts.iter().enumerate() {
        eprintln!(
            "generating with tree:{n}, prompt {}/{}...",
            i + 1,
            prompts.len()
        );
        let chat = Prompt::Chat(vec![ChatMessage {
            role: ChatRole::User,
            content: prompt.clone(),
        }]);
        let mut prepared = core
            .prepare(
                &choice,
                chat,
                Sampling::greedy(),
                args.max_tokens,
                Vec::new(),
            )
            .map_err(core_error)?;
        // The tree is shaped by the measured vector, as the simulation's is.
        prepared.request.acceptance = Some(acc.as_slice().to_vec());
        let result = core
            .generate(&prepared, cancel, &mut |_| {})
            .map_err(core_error)?;
        tokens += result.tokens;
        steps += result.steps;
        label = result.plan;
    }
    Ok(Replay {
        plan,
        label,
        prompts: prompts.len(),
        tokens,
        steps,
        step_seconds,
    })
}

/// The planner's costs as `model` predicts them for `target` and `draft` in `placement`, up to
/// `budget` nodes per pass.
fn predicted_costs(
    model: &canopy_hw::CostModel,
    (target, draft): (&ModelSpec, &ModelSpec),
    placement: &canopy_hw::LayerSplit,
    budget: usize,
) -> CliResult<Costs> {
    let predicted = model
        .predicted_costs(target, draft, placement, budget, budget)
        .map_err(|e| CliError::user(e.to_string()))?;
    planner_costs(&predicted)
}

/// A model file as the cost model sees it.
fn file_spec(core: &Core, path: &Path, what: &str) -> CliResult<ModelSpec> {
    let info = core
        .inspect_file(path)
        .map_err(|e| CliError::user(format!("{what} model {e}")))?;
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

/// The target to predict for: the file's figures, with `--target-bytes`, `--target-params` and
/// `--target-layers` overriding them (bytes alone keep the file's bits per weight). Also returns
/// the file's own figures.
fn target_spec(core: &Core, args: &Args, path: &Path) -> CliResult<(ModelSpec, ModelSpec)> {
    let file = file_spec(core, path, "target")?;
    let positive = |v: f64, flag: &str| {
        if v.is_finite() && v >= 1.0 {
            Ok(v)
        } else {
            Err(CliError::user(format!(
                "{flag} must be a number >= 1, got {v}"
            )))
        }
    };
    let bytes = match args.target_bytes {
        Some(b) => positive(b, "--target-bytes")?.round() as u64,
        None => file.bytes,
    };
    let params = match args.target_params {
        Some(p) => positive(p, "--target-params")?.round() as u64,
        None => (bytes as f64 * file.params as f64 / file.bytes as f64).round() as u64,
    };
    let layers = match args.target_layers {
        Some(0) => return Err(CliError::user("--target-layers must be at least 1")),
        Some(l) => l,
        None => file.layers,
    };
    Ok((
        ModelSpec {
            bytes,
            params: params.max(1),
            layers,
        },
        file,
    ))
}

fn planner_costs(predicted: &PredictedCosts) -> CliResult<Costs> {
    let table = |points: &Vec<(usize, f64)>, name| {
        CostTable::named(points.clone(), name)
            .map_err(|e| CliError::Failure(anyhow::anyhow!("predicted {name} costs: {e}")))
    };
    Ok(Costs {
        target: table(&predicted.target, "target")?,
        draft: table(&predicted.draft, "draft")?,
    })
}

/// Everything `canopy simulate` prints.
struct Report<'a> {
    profile: &'a Profile,
    target: ModelSpec,
    target_file: ModelSpec,
    draft: ModelSpec,
    draft_file: &'a Path,
    placement: canopy_hw::LayerSplit,
    acceptance: &'a [f64],
    positions: u64,
    plain_s: f64,
    /// Plain decoding with every weight streamed over PCIe (the published baselines' setting).
    plain_streamed_s: f64,
    choice: &'a canopy_plan::Choice,
    replay: Option<&'a Replay>,
}

const PREDICTION_NOTE: &str = "model-based prediction: real draft/target acceptance on this machine, each step charged the pass times the profile's cost model predicts for that hardware and target size; not a measurement";

impl Report<'_> {
    fn print(&self, json: bool) -> CliResult {
        if json {
            let text = serde_json::to_string_pretty(&self.json()).map_err(anyhow::Error::from)?;
            println!("{text}");
        } else {
            print!("{}", self.text());
        }
        Ok(())
    }

    /// Predicted seconds per token of the tree: from the replay when one ran (real tokens per step),
    /// else the planner's expectation.
    fn tree_seconds_per_token(&self) -> f64 {
        match self.replay {
            Some(r) if r.tokens > 0 => r.steps as f64 * r.step_seconds / r.tokens as f64,
            _ => 1.0 / self.choice.predicted_tokens_per_second,
        }
    }

    fn json(&self) -> Value {
        let spec =
            |s: &ModelSpec| json!({"bytes": s.bytes, "params": s.params, "layers": s.layers});
        let plan = &self.choice.plan;
        let tree_spt = self.tree_seconds_per_token();
        let replay = self.replay.map(|r| {
            json!({
                "plan": r.label,
                "budget": r.plan.budget(),
                "depth": r.plan.depth(),
                "expected_tokens_per_step": r.plan.expected_tokens,
                "prompts": r.prompts,
                "tokens": r.tokens,
                "steps": r.steps,
                "tokens_per_step": if r.steps > 0 { r.tokens as f64 / r.steps as f64 } else { 0.0 },
                "step_seconds": r.step_seconds,
            })
        });
        json!({
            "prediction": PREDICTION_NOTE,
            "profile": self.profile.name,
            "profile_kind": self.profile.kind,
            "gpu": self.profile.gpu.summary(),
            "target": spec(&self.target),
            "target_file": spec(&self.target_file),
            "draft": spec(&self.draft),
            "draft_file": self.draft_file,
            "placement": self.placement,
            "acceptance": self.acceptance,
            "acceptance_positions": self.positions,
            "plain": {
                "seconds_per_token": self.plain_s,
                "tokens_per_second": 1.0 / self.plain_s,
            },
            "plain_streamed": {
                "seconds_per_token": self.plain_streamed_s,
                "tokens_per_second": 1.0 / self.plain_streamed_s,
            },
            "planner": {
                "budget": plan.budget(),
                "depth": plan.depth(),
                "leaves": plan.leaves(),
                "expected_tokens_per_step": plan.expected_tokens,
                "step_seconds": self.choice.step_seconds,
                "predicted_tokens_per_second": self.choice.predicted_tokens_per_second,
                "speedup": self.choice.speedup,
            },
            "replay": replay,
            "tree": {
                "seconds_per_token": tree_spt,
                "tokens_per_second": 1.0 / tree_spt,
                "speedup": self.plain_s / tree_spt,
                "speedup_over_streamed": self.plain_streamed_s / tree_spt,
            },
        })
    }

    fn text(&self) -> String {
        let gb = |b: u64| b as f64 / 1e9;
        let plan = &self.choice.plan;
        let tree_spt = self.tree_seconds_per_token();
        let acc: Vec<String> = self.acceptance.iter().map(|p| format!("{p:.3}")).collect();
        let mut out = format!("{PREDICTION_NOTE}.\n");
        out += &format!(
            "profile      {} ({:?}): {}\n",
            self.profile.name,
            self.profile.kind,
            self.profile.gpu.summary()
        );
        out += &format!(
            "target       {:.1} GB, {:.2} B parameters, {} layers; {} resident, op offload from {} tokens\n",
            gb(self.target.bytes),
            self.target.params as f64 / 1e9,
            self.target.layers,
            self.placement.resident_layers,
            self.placement.op_offload_min_batch
        );
        out += &format!(
            "draft        {} ({:.2} GB)\n",
            self.draft_file.display(),
            gb(self.draft.bytes)
        );
        out += &format!(
            "acceptance   {} ({} positions, greedy)\n",
            acc.join(","),
            self.positions
        );
        out += &format!(
            "planner      tree of {} tokens, depth {}: {:.2} expected tokens per {:.3} s step\n",
            plan.budget(),
            plan.depth(),
            plan.expected_tokens,
            self.choice.step_seconds
        );
        if let Some(r) = self.replay {
            out += &format!(
                "replay       {} over {} prompts: {} tokens in {} steps ({:.2} per step), {:.3} s per step\n",
                r.label,
                r.prompts,
                r.tokens,
                r.steps,
                if r.steps > 0 { r.tokens as f64 / r.steps as f64 } else { 0.0 },
                r.step_seconds
            );
        }
        out += &format!(
            "plain        {:.3} s/token, {:.2} tokens/s\n",
            self.plain_s,
            1.0 / self.plain_s
        );
        out += &format!(
            "plain, all weights streamed over PCIe: {:.3} s/token, {:.2} tokens/s\n",
            self.plain_streamed_s,
            1.0 / self.plain_streamed_s
        );
        out += &format!(
            "tree         {:.3} s/token, {:.2} tokens/s, speed-up {:.2}x ({:.2}x over streamed plain)\n",
            tree_spt,
            1.0 / tree_spt,
            self.plain_s / tree_spt,
            self.plain_streamed_s / tree_spt
        );
        out
    }
}
