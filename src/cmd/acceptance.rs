//! `canopy acceptance`: the positional acceptance vector of a draft/target pair.

use canopy_core::{AcceptanceRequest, CancelFlag, Event, ACCEPTANCE_POSITIONS, ACCEPTANCE_WIDTH};
use serde_json::json;

use crate::engine::{core, core_error, model_path, PairArgs};
use crate::error::CliResult;
use crate::prompts::load_prompts;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub pair: PairArgs,
    /// 0 = greedy (top-k candidates, accepted when equal to the target's argmax); above 0 the
    /// sampling rule with residual distributions.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Length of the vector (candidates per position).
    #[arg(long, default_value_t = ACCEPTANCE_WIDTH)]
    pub width: usize,
    /// Positions measured per prompt (the target's own continuation).
    #[arg(long, default_value_t = ACCEPTANCE_POSITIONS)]
    pub tokens: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> CliResult {
    let target = model_path(&args.pair.target, "target")?;
    let draft = model_path(&args.pair.draft, "draft")?;
    let prompts = load_prompts(args.pair.prompts.as_deref())?;
    let n_prompts = prompts.len();
    let request = AcceptanceRequest {
        target,
        draft,
        prompts,
        temperature: args.temperature,
        width: args.width,
        tokens_per_prompt: args.tokens,
        seed: args.seed,
    };
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
    let r = core()?
        .measure_acceptance(request, &CancelFlag::new(), &mut on_event)
        .map_err(core_error)?;
    if !quiet {
        eprintln!();
    }
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
