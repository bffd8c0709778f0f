//! `canopy acceptance`: the positional acceptance vector of a draft/target pair.

use std::path::PathBuf;

use canopy_worker::{AcceptanceRequest, CancelFlag, Event, Job, JobResult};
use serde_json::json;

use crate::engine::{check_temperature, measuring_worker, model_path, worker_error};
use crate::error::{CliError, CliResult};
use crate::prompts::load_prompts;

#[derive(clap::Args)]
pub struct Args {
    /// The target model (GGUF file).
    #[arg(long)]
    pub target: PathBuf,
    /// The draft model (GGUF file, same vocabulary).
    #[arg(long)]
    pub draft: PathBuf,
    /// Prompts: a JSON array (strings or {"prompt": ...}) or one per line. Default: the shipped set.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// 0 = greedy (top-k candidates, accepted when equal to the target's argmax); above 0 the
    /// sampling rule with residual distributions.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Length of the vector (candidates per position).
    #[arg(long, default_value_t = 8)]
    pub width: usize,
    /// Positions measured per prompt (the target's own continuation).
    #[arg(long, default_value_t = 64)]
    pub tokens: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> CliResult {
    let target = model_path(&args.target, "target")?;
    let draft = model_path(&args.draft, "draft")?;
    check_temperature(args.temperature)?;
    if args.width == 0 || args.width > 64 {
        return Err(CliError::user("--width must be between 1 and 64"));
    }
    if args.tokens == 0 {
        return Err(CliError::user("--tokens must be at least 1"));
    }
    let prompts = load_prompts(args.prompts.as_deref())?;
    let n_prompts = prompts.len();
    let job = Job::Acceptance(AcceptanceRequest {
        target,
        draft,
        prompts,
        temperature: args.temperature,
        width: args.width,
        tokens_per_prompt: args.tokens,
        seed: args.seed,
    });
    let mut supervisor = measuring_worker()?;
    let quiet = args.json;
    let mut on_event = |e: &Event| {
        if let (
            false,
            Event::Progress {
                phase, fraction, ..
            },
        ) = (quiet, e)
        {
            eprint!("\r{phase}: {:>3.0}%", fraction * 100.0);
        }
    };
    let result = supervisor
        .run(job, &CancelFlag::new(), &mut on_event)
        .map_err(worker_error)?;
    if !quiet {
        eprintln!();
    }
    let JobResult::Acceptance(r) = result else {
        return Err(CliError::Failure(anyhow::anyhow!(
            "the worker answered with another job's result"
        )));
    };
    let mode = if r.temperature == 0.0 {
        "greedy"
    } else {
        "sampling"
    };
    if args.json {
        println!(
            "{}",
            json!({
                "acceptance": r.acceptance,
                "positions": r.positions,
                "prompts": n_prompts,
                "temperature": r.temperature,
                "mode": mode,
                "sum": r.acceptance.iter().sum::<f64>(),
            })
        );
    } else {
        println!(
            "{mode} acceptance over {} positions of {n_prompts} prompts:",
            r.positions
        );
        for (k, p) in r.acceptance.iter().enumerate() {
            println!("  p[{}] = {p:.4}", k + 1);
        }
        println!("  sum  = {:.4}", r.acceptance.iter().sum::<f64>());
        let csv: Vec<String> = r.acceptance.iter().map(|p| format!("{p:.4}")).collect();
        println!("use with: canopy plan --acceptance {}", csv.join(","));
    }
    Ok(())
}
