//! Exit-code policy of the `canopy` command: user errors exit 2 with one line, anything else exits 1.

use std::fmt;

/// An error that ends a `canopy` command.
#[derive(Debug)]
pub enum CliError {
    /// Bad input from the user (missing file, invalid parameter, ...): exit code 2.
    User(String),
    /// Anything else (a crashed worker, an I/O failure, ...): exit code 1.
    Failure(anyhow::Error),
}

impl CliError {
    pub fn user(msg: impl Into<String>) -> Self {
        CliError::User(msg.into())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::User(_) => 2,
            CliError::Failure(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::User(msg) => f.write_str(msg),
            // `{:#}` prints the whole context chain on one line.
            CliError::Failure(err) => write!(f, "{err:#}"),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(err: anyhow::Error) -> Self {
        CliError::Failure(err)
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;
