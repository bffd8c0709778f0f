//! `canopy models`.

use crate::error::{CliError, CliResult};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List entries.
    List,
}

pub fn run(_command: Command) -> CliResult {
    Err(CliError::user("`canopy models` is not available in this build"))
}
