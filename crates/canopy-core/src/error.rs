//! What can go wrong in the application core, sorted by who can fix it.

use canopy_models::ModelsError;
use canopy_store::StoreError;
use canopy_worker::WorkerError;

/// A failed service call. Front ends map [`CoreError::kind`] to their own conventions (exit code 2,
/// an HTTP status, an error banner) and show the message as one line.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request was wrong and the message says what to change.
    #[error("{0}")]
    User(String),
    /// Something named does not exist (a conversation, a message, a model).
    #[error("{0}")]
    NotFound(String),
    /// A store or library could not be opened; the message says why.
    #[error("{0}")]
    Unavailable(String),
    /// Inference failed; a crashed worker is replaced on the next request.
    #[error(transparent)]
    Worker(WorkerError),
    #[error("chat history: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Models(ModelsError),
    /// A failure of this program, not of the request.
    #[error("{0}")]
    Internal(String),
}

/// Who can act on a failure: the one classification of errors, decided by the core
/// ([`CoreError::kind`]) and used by every front end (the app sends it as `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was wrong; the message says what to change.
    User,
    /// The conversation, message or model does not exist (any more).
    NotFound,
    /// A part could not start (for example the database could not be opened).
    Unavailable,
    /// The inference worker died; the conversation is intact and the next request starts a new
    /// one.
    Crashed,
    /// Another generation, download or profile run is already in progress.
    Busy,
    /// Something failed that the user cannot fix.
    Internal,
}

impl CoreError {
    pub fn user(msg: impl Into<String>) -> CoreError {
        CoreError::User(msg.into())
    }

    pub fn internal(msg: impl std::fmt::Display) -> CoreError {
        CoreError::Internal(msg.to_string())
    }

    /// Who can act on this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CoreError::User(_) | CoreError::Worker(WorkerError::User(_)) => ErrorKind::User,
            CoreError::Worker(WorkerError::Crashed { .. } | WorkerError::Protocol(_)) => {
                ErrorKind::Crashed
            }
            CoreError::NotFound(_) => ErrorKind::NotFound,
            CoreError::Unavailable(_) => ErrorKind::Unavailable,
            CoreError::Store(e) if e.is_not_found() => ErrorKind::NotFound,
            CoreError::Store(
                StoreError::NewerSchema { .. }
                | StoreError::BadImport(_)
                | StoreError::NotADatabase { .. }
                | StoreError::ForeignDatabase { .. }
                | StoreError::NoDataDir,
            ) => ErrorKind::User,
            CoreError::Models(ModelsError::NotFound(_) | ModelsError::PathNotRegistered(_)) => {
                ErrorKind::NotFound
            }
            CoreError::Models(e) if e.is_user_error() => ErrorKind::User,
            _ => ErrorKind::Internal,
        }
    }
}

impl From<WorkerError> for CoreError {
    fn from(err: WorkerError) -> CoreError {
        match err {
            WorkerError::User(msg) => CoreError::User(msg),
            other => CoreError::Worker(other),
        }
    }
}

impl From<ModelsError> for CoreError {
    fn from(err: ModelsError) -> CoreError {
        CoreError::Models(err)
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_are_classified_once() {
        let kind = |e: StoreError| CoreError::from(e).kind();
        let newer = StoreError::NewerSchema {
            path: "canopy.db".into(),
            found: 9,
            supported: 3,
        };
        assert_eq!(kind(newer), ErrorKind::User);
        assert_eq!(
            kind(StoreError::BadImport("no messages".into())),
            ErrorKind::User
        );
        let id = canopy_store::ConversationId(7);
        assert_eq!(
            kind(StoreError::ConversationNotFound(id)),
            ErrorKind::NotFound
        );
        let id = canopy_store::MessageId(7);
        assert_eq!(kind(StoreError::MessageNotFound(id)), ErrorKind::NotFound);
    }
}
