//! `canopy generate`.

use crate::error::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> CliResult {
    Err(CliError::user("`canopy generate` is not available in this build"))
}
