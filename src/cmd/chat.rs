//! `canopy chat`.

use crate::error::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> CliResult {
    Err(CliError::user("`canopy chat` is not available in this build"))
}
