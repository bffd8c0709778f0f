//! The one error type every command returns: a kind the front end can act on and one line of text.

use serde::Serialize;

/// What kind of failure a command hit: the core's classification; the front end offers a restart
/// for `Crashed`.
pub use canopy_core::ErrorKind;

/// A command failure as the front end receives it: `{ "kind": ..., "message": ... }`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, thiserror::Error, ts_rs::TS)]
#[error("{message}")]
pub struct CommandError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CommandError {
    pub fn new(kind: ErrorKind, message: impl std::fmt::Display) -> Self {
        CommandError {
            kind,
            message: one_line(&message.to_string()),
        }
    }

    pub fn user(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::User, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn busy(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Busy, message)
    }
}

/// Collapses whitespace so that every message fits on one line.
pub fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        "something went wrong".to_owned()
    } else {
        line
    }
}

impl From<canopy_core::CoreError> for CommandError {
    fn from(err: canopy_core::CoreError) -> Self {
        CommandError::new(err.kind(), err)
    }
}

impl From<canopy_core::ModelsError> for CommandError {
    fn from(err: canopy_core::ModelsError) -> Self {
        canopy_core::CoreError::from(err).into()
    }
}

impl From<canopy_core::WorkerError> for CommandError {
    fn from(err: canopy_core::WorkerError) -> Self {
        canopy_core::CoreError::from(err).into()
    }
}

pub type CommandResult<T> = Result<T, CommandError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_serialise_with_their_kind() {
        let err = CommandError::user("bad\n  thing\thappened ");
        assert_eq!(err.message, "bad thing happened");
        let json = serde_json::to_string(&err).unwrap();
        assert_eq!(json, r#"{"kind":"user","message":"bad thing happened"}"#);
        assert_eq!(one_line(" \n "), "something went wrong");
    }

    #[test]
    fn a_dead_worker_is_reported_as_crashed() {
        let err: CommandError = canopy_core::WorkerError::Crashed {
            status: "killed by signal 9 (SIGKILL)".into(),
            detail: String::new(),
        }
        .into();
        assert_eq!(err.kind, ErrorKind::Crashed);
        assert!(err.message.contains("SIGKILL"));
    }
}
