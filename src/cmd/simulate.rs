//! `canopy simulate`: predict tokens per second on a profiled (or reference) machine for a target of
//! any size, from the real acceptance behaviour of a real draft/target pair on this machine.
//!
//! The draft and target run for real (greedy) through the worker: first the acceptance vector, then
//! generations with the planner's tree budget. Each verification step is then charged the time the
//! profile's cost model predicts for that hardware and target size, instead of the time it took
//! here. The result is a model-based prediction, not a measurement.

use std::path::{Path, PathBuf};

use canopy_core::{CancelFlag, ModelSpec, SimulateQuery, Simulation};
use serde_json::{json, Value};

use crate::engine::{core, core_error, model_path};
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

pub fn run(args: Args) -> CliResult {
    let target = model_path(&args.target, "target")?;
    let draft = model_path(&args.draft, "draft")?;
    if args.max_tokens == 0 || args.num_prompts == 0 {
        return Err(CliError::user(
            "--max-tokens and --num-prompts must be at least 1",
        ));
    }
    let mut prompts = load_prompts(args.prompts.as_deref())?;
    prompts.truncate(args.num_prompts);
    let query = SimulateQuery {
        profile: args.profile.clone(),
        target,
        draft,
        target_bytes: args.target_bytes,
        target_params: args.target_params,
        target_layers: args.target_layers,
        prompts,
        max_tokens: args.max_tokens,
        budget: args.budget as usize,
        max_depth: args.max_depth,
    };
    let simulation = core()?
        .simulate(&query, &CancelFlag::new(), &mut |what| {
            eprintln!("{what}...")
        })
        .map_err(core_error)?;
    let report = Report {
        simulation: &simulation,
        draft_file: &query.draft,
    };
    report.print(args.json)
}

/// Everything `canopy simulate` prints.
struct Report<'a> {
    simulation: &'a Simulation,
    draft_file: &'a Path,
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

    fn json(&self) -> Value {
        let sim = self.simulation;
        let spec =
            |s: &ModelSpec| json!({"bytes": s.bytes, "params": s.params, "layers": s.layers});
        let plan = &sim.choice.plan;
        let tree_spt = sim.tree_seconds_per_token();
        let replay = sim.replay.as_ref().map(|r| {
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
            "profile": sim.profile.name,
            "profile_kind": sim.profile.kind,
            "gpu": sim.profile.gpu.summary(),
            "target": spec(&sim.target),
            "target_file": spec(&sim.target_file),
            "draft": spec(&sim.draft),
            "draft_file": self.draft_file,
            "placement": sim.placement,
            "acceptance": sim.acceptance,
            "acceptance_positions": sim.positions,
            "plain": {
                "seconds_per_token": sim.plain_s,
                "tokens_per_second": 1.0 / sim.plain_s,
            },
            "plain_streamed": {
                "seconds_per_token": sim.plain_streamed_s,
                "tokens_per_second": 1.0 / sim.plain_streamed_s,
            },
            "planner": {
                "budget": plan.budget(),
                "depth": plan.depth(),
                "leaves": plan.leaves(),
                "expected_tokens_per_step": plan.expected_tokens,
                "step_seconds": sim.choice.step_seconds,
                "predicted_tokens_per_second": sim.choice.predicted_tokens_per_second,
                "speedup": sim.choice.speedup,
            },
            "replay": replay,
            "tree": {
                "seconds_per_token": tree_spt,
                "tokens_per_second": 1.0 / tree_spt,
                "speedup": sim.plain_s / tree_spt,
                "speedup_over_streamed": sim.plain_streamed_s / tree_spt,
            },
        })
    }

    fn text(&self) -> String {
        let sim = self.simulation;
        let gb = |b: u64| b as f64 / 1e9;
        let plan = &sim.choice.plan;
        let tree_spt = sim.tree_seconds_per_token();
        let acc: Vec<String> = sim.acceptance.iter().map(|p| format!("{p:.3}")).collect();
        let mut out = format!("{PREDICTION_NOTE}.\n");
        out += &format!(
            "profile      {} ({:?}): {}\n",
            sim.profile.name,
            sim.profile.kind,
            sim.profile.gpu.summary()
        );
        out += &format!(
            "target       {:.1} GB, {:.2} B parameters, {} layers; {} resident, op offload from {} tokens\n",
            gb(sim.target.bytes),
            sim.target.params as f64 / 1e9,
            sim.target.layers,
            sim.placement.resident_layers,
            sim.placement.op_offload_min_batch
        );
        out += &format!(
            "draft        {} ({:.2} GB)\n",
            self.draft_file.display(),
            gb(sim.draft.bytes)
        );
        out += &format!(
            "acceptance   {} ({} positions, greedy)\n",
            acc.join(","),
            sim.positions
        );
        out += &format!(
            "planner      tree of {} tokens, depth {}: {:.2} expected tokens per {:.3} s step\n",
            plan.budget(),
            plan.depth(),
            plan.expected_tokens,
            sim.choice.step_seconds
        );
        if let Some(r) = &sim.replay {
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
            sim.plain_s,
            1.0 / sim.plain_s
        );
        out += &format!(
            "plain, all weights streamed over PCIe: {:.3} s/token, {:.2} tokens/s\n",
            sim.plain_streamed_s,
            1.0 / sim.plain_streamed_s
        );
        out += &format!(
            "tree         {:.3} s/token, {:.2} tokens/s, speed-up {:.2}x ({:.2}x over streamed plain)\n",
            tree_spt,
            1.0 / tree_spt,
            sim.plain_s / tree_spt,
            sim.plain_streamed_s / tree_spt
        );
        out
    }
}
