//! `canopy history`.

use crate::error::{CliError, CliResult};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List entries.
    List,
}

pub fn run(_command: Command) -> CliResult {
    Err(CliError::user("`canopy history` is not available in this build"))
}
