//! `canopy worker`: the inference worker process (internal; started by the other commands).

use crate::error::CliResult;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> CliResult {
    canopy_llama::serve_worker().map_err(|e| anyhow::anyhow!("worker: {e}"))?;
    Ok(())
}
