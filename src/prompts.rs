//! Prompt sets for `acceptance`, `bench`, `profile` and `simulate` (kept in the application core).

use std::path::Path;

use crate::error::{CliError, CliResult};

/// Prompts from `file`, or the shipped set; see [`canopy_core::load_prompts`].
///
/// # Errors
/// A user error when the file cannot be read or holds no prompt.
pub fn load_prompts(file: Option<&Path>) -> CliResult<Vec<String>> {
    canopy_core::load_prompts(file).map_err(|e| CliError::user(e.to_string()))
}
