//! The ways the store can fail, each carrying the facts a user needs to act.

use std::path::PathBuf;

use crate::{ConversationId, MessageId, MessageStatus};

/// An error from [`crate::Store`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Neither `$CANOPY_HOME` nor a platform data directory is available.
    #[error("cannot find a data directory for this platform; set CANOPY_HOME to choose one")]
    NoDataDir,
    /// A file or directory next to the database could not be created, read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not an SQLite database.
    #[error("{} is not a Canopy database (it is not an SQLite file)", path.display())]
    NotADatabase { path: PathBuf },
    /// The file is an SQLite database with tables that Canopy did not create.
    #[error("{} is an SQLite database that Canopy did not create (schema version 0 with existing tables); refusing to change it", path.display())]
    ForeignDatabase { path: PathBuf },
    /// The database was written by a newer Canopy whose schema this build does not know.
    #[error("{} was written by a newer Canopy (schema version {found}, this build knows up to {supported}); upgrade Canopy or move the file away", path.display())]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// Bringing the schema up to date failed; the database was left at its previous version.
    #[error("migrating {} from schema version {from} failed (nothing was changed; a copy is at {}): {source}", path.display(), backup.display())]
    Migration {
        path: PathBuf,
        from: i64,
        backup: PathBuf,
        #[source]
        source: Box<rusqlite_migration::Error>,
    },
    /// No conversation has this id.
    #[error("no conversation with id {0}")]
    ConversationNotFound(ConversationId),
    /// No message has this id.
    #[error("no message with id {0}")]
    MessageNotFound(MessageId),
    /// A parent message belongs to another conversation than the new message.
    #[error("message {parent} belongs to conversation {parent_conversation}, not to conversation {conversation}")]
    ParentInOtherConversation {
        parent: MessageId,
        parent_conversation: ConversationId,
        conversation: ConversationId,
    },
    /// A reply that is no longer streaming was updated or finished again.
    #[error("message {id} is {status}, not streaming; its content can no longer change")]
    NotStreaming {
        id: MessageId,
        status: MessageStatus,
    },
    /// A streaming reply can only be finished as complete or interrupted.
    #[error("a reply cannot be finished with status {0}")]
    BadFinishStatus(MessageStatus),
    /// An imported conversation file is not valid.
    #[error("not a Canopy conversation export: {0}")]
    BadImport(String),
    /// Any other SQLite failure (disk full, I/O error, locked for longer than the busy timeout, ...).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl StoreError {
    /// True when the error names a conversation or message that does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::ConversationNotFound(_) | StoreError::MessageNotFound(_)
        )
    }
}
