//! `canopy worker`: the inference worker process (internal; started by the other commands).

use crate::error::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// Print the llama.cpp backends this binary loads (the CPU variant chosen for this processor,
    /// a GPU backend where one is installed) and exit.
    #[arg(long)]
    backends: bool,
}

pub fn run(args: Args) -> CliResult {
    if args.backends {
        let backends = canopy_llama::backends::load();
        backends.require_cpu().map_err(CliError::user)?;
        println!("{}", backends.describe());
        return Ok(());
    }
    canopy_llama::serve_worker().map_err(|e| anyhow::anyhow!("worker: {e}"))?;
    Ok(())
}
