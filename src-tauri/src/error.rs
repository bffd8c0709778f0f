//! The one error type every command returns: a kind the front end can act on and one line of text.

use serde::Serialize;

/// What kind of failure a command hit; the front end offers a restart for `Crashed`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was wrong; the message says what to change.
    User,
    /// The inference worker died; the conversation is intact and the next request starts a new one.
    Crashed,
    /// Something failed that the user cannot fix from here.
    Internal,
    /// Another generation, download or profile run is already in progress.
    Busy,
    /// The conversation, message or model does not exist (any more).
    NotFound,
    /// A part of the app could not start (for example the database could not be opened).
    Unavailable,
}

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
        use canopy_core::{CoreError, ErrorKind as Core};
        match err {
            CoreError::Worker(worker) => worker.into(),
            err => {
                let kind = match err.kind() {
                    Core::User => ErrorKind::User,
                    Core::NotFound => ErrorKind::NotFound,
                    Core::Unavailable => ErrorKind::Unavailable,
                    Core::Internal => ErrorKind::Internal,
                };
                CommandError::new(kind, err)
            }
        }
    }
}

impl From<canopy_models::ModelsError> for CommandError {
    fn from(err: canopy_models::ModelsError) -> Self {
        canopy_core::CoreError::from(err).into()
    }
}

impl From<canopy_core::WorkerError> for CommandError {
    fn from(err: canopy_core::WorkerError) -> Self {
        use canopy_core::WorkerError;
        let kind = match &err {
            WorkerError::User(_) => ErrorKind::User,
            WorkerError::Crashed { .. } | WorkerError::Protocol(_) => ErrorKind::Crashed,
            WorkerError::Spawn { .. } | WorkerError::Version { .. } | WorkerError::Internal(_) => {
                ErrorKind::Internal
            }
        };
        CommandError::new(kind, err)
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
