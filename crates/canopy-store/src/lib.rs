//! Durable SQLite storage for Canopy: chat history (conversations as message trees, streaming
//! replies saved as they grow), full-text search, settings, the model registry and hardware profiles.
//!
//! Durability rules: WAL with `synchronous=FULL`, a busy timeout, one writer connection per
//! [`Store`], every write in a `BEGIN IMMEDIATE` transaction, migrations keyed on
//! `PRAGMA user_version` applied atomically after a backup copy, and a refusal to open a database
//! written by a newer build. A reply that was streaming when its process died is marked
//! [`MessageStatus::Interrupted`] on the next open, with the text saved so far.

mod error;
mod export;
mod schema;
mod types;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior,
};

pub use error::StoreError;
pub use export::utc_datetime;
pub use schema::SCHEMA_VERSION;
pub use types::{
    Conversation, ConversationId, GenerationStats, Message, MessageId, MessageStatus,
    NewConversation, SearchHit,
};

use canopy_types::ChatRole;
use types::RoleColumn;

/// The file name of the database inside the data directory.
pub const DB_FILE_NAME: &str = "canopy.db";

/// How long a write waits for another writer before failing with "database is locked".
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a [`ReplyWriter`] commits the partial text of a streaming reply.
pub const REPLY_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Search results returned at most.
const SEARCH_LIMIT: usize = 200;

/// The data directory: `$CANOPY_HOME` if set, else the platform data directory + `canopy`.
///
/// Fails with [`StoreError::NoDataDir`] when neither exists.
pub fn data_dir() -> Result<PathBuf, StoreError> {
    match std::env::var_os("CANOPY_HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home)),
        _ => dirs::data_dir()
            .map(|dir| dir.join("canopy"))
            .ok_or(StoreError::NoDataDir),
    }
}

/// The database connection every read and write goes through. `Send`, not `Sync`: one writer.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Held shared while the store is open; taken exclusively during `open` to know that no other
    /// live store can own a streaming reply.
    _owners: File,
    interrupted_on_open: usize,
}

impl Store {
    /// Opens (creating directories and file if needed) the database at `path` and brings its
    /// schema up to date.
    ///
    /// Fails when the directory or file cannot be created ([`StoreError::Io`]), the file is not
    /// an SQLite database or holds someone else's tables, it was written by a newer build
    /// ([`StoreError::NewerSchema`]), or a migration fails (the database is left unchanged and
    /// a backup copy exists).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                action: "cannot create directory",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let owners_path = sibling(path, ".owners");
        let owners = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&owners_path)
            .map_err(|source| StoreError::Io {
                action: "cannot open",
                path: owners_path.clone(),
                source,
            })?;
        let sole_owner = match owners.try_lock() {
            Ok(()) => true,
            Err(TryLockError::WouldBlock) => false,
            Err(TryLockError::Error(source)) => {
                return Err(StoreError::Io {
                    action: "cannot lock",
                    path: owners_path,
                    source,
                })
            }
        };

        let mut conn = Connection::open(path).map_err(|e| classify(e, path))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| classify(e, path))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.set_transaction_behavior(TransactionBehavior::Immediate);
        migrate(&mut conn, path)?;

        // Only when no other store is open can a 'streaming' reply be an orphan of a dead process.
        let interrupted_on_open = if sole_owner {
            mark_orphans_interrupted(&conn)?
        } else {
            0
        };
        let relock = if sole_owner {
            owners.unlock().and_then(|()| owners.lock_shared())
        } else {
            owners.lock_shared()
        };
        relock.map_err(|source| StoreError::Io {
            action: "cannot lock",
            path: owners_path,
            source,
        })?;

        Ok(Store {
            conn,
            path: path.to_path_buf(),
            _owners: owners,
            interrupted_on_open,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many replies left 'streaming' by a dead process were marked interrupted by `open`.
    pub fn interrupted_on_open(&self) -> usize {
        self.interrupted_on_open
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, committing when it returns `Ok`.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Creates an empty conversation. Fails only on database errors.
    pub fn create_conversation(&self, new: &NewConversation) -> Result<ConversationId, StoreError> {
        self.write(|tx| insert_conversation(tx, new, now_ms(), now_ms()))
    }

    /// All conversations, the most recently updated first. Fails only on database errors.
    pub fn list_conversations(&self) -> Result<Vec<Conversation>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "{CONVERSATION_SELECT} ORDER BY c.updated_at DESC, c.id DESC"
        ))?;
        let rows = stmt.query_map([], conversation_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One conversation; fails with [`StoreError::ConversationNotFound`] if it does not exist.
    pub fn conversation(&self, id: ConversationId) -> Result<Conversation, StoreError> {
        self.conn
            .query_row(
                &format!("{CONVERSATION_SELECT} WHERE c.id = ?1"),
                [id],
                conversation_from_row,
            )
            .optional()?
            .ok_or(StoreError::ConversationNotFound(id))
    }

    /// Sets a conversation's title; fails with [`StoreError::ConversationNotFound`].
    pub fn rename_conversation(&self, id: ConversationId, title: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE conversations SET title = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, title, now_ms()],
            )?;
            if changed == 0 {
                return Err(StoreError::ConversationNotFound(id));
            }
            Ok(())
        })
    }

    /// Sets the target and draft models a conversation generates with (library ids or paths,
    /// opaque to the store); fails with [`StoreError::ConversationNotFound`].
    pub fn set_conversation_models(
        &self,
        id: ConversationId,
        target: Option<&str>,
        draft: Option<&str>,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE conversations SET target_model = ?2, draft_model = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, target, draft, now_ms()],
            )?;
            if changed == 0 {
                return Err(StoreError::ConversationNotFound(id));
            }
            Ok(())
        })
    }

    /// Deletes a conversation with all its messages; fails with [`StoreError::ConversationNotFound`].
    pub fn delete_conversation(&self, id: ConversationId) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM messages WHERE conversation_id = ?1", [id])?;
            let deleted = tx.execute("DELETE FROM conversations WHERE id = ?1", [id])?;
            if deleted == 0 {
                return Err(StoreError::ConversationNotFound(id));
            }
            Ok(())
        })
    }

    /// Adds a complete message under `parent` (`None` for a root). Another message with the same
    /// parent starts a branch: that is how an edited prompt or a regenerated reply is stored.
    ///
    /// Fails when the conversation or the parent does not exist, or the parent belongs to
    /// another conversation.
    pub fn add_message(
        &self,
        conv: ConversationId,
        parent: Option<MessageId>,
        role: ChatRole,
        content: &str,
    ) -> Result<MessageId, StoreError> {
        self.write(|tx| {
            insert_message(
                tx,
                conv,
                parent,
                role,
                content,
                MessageStatus::Complete,
                now_ms(),
            )
        })
    }

    /// Starts an empty assistant reply to `parent` with status streaming; fails as [`Store::add_message`].
    pub fn begin_reply(
        &self,
        conv: ConversationId,
        parent: MessageId,
    ) -> Result<MessageId, StoreError> {
        self.write(|tx| {
            insert_message(
                tx,
                conv,
                Some(parent),
                ChatRole::Assistant,
                "",
                MessageStatus::Streaming,
                now_ms(),
            )
        })
    }

    /// Commits the text of a streaming reply so far. Fails with [`StoreError::MessageNotFound`] or
    /// [`StoreError::NotStreaming`] when the reply was already finished (or marked interrupted).
    pub fn update_reply(&self, id: MessageId, content_so_far: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE messages SET content = ?2 WHERE id = ?1 AND status = 'streaming'",
                params![id, content_so_far],
            )?;
            if changed == 0 {
                return Err(not_streaming(tx, id));
            }
            Ok(())
        })
    }

    /// Commits the final text, status (complete or interrupted) and statistics of a streaming reply.
    ///
    /// Fails with [`StoreError::BadFinishStatus`] for status streaming, and as [`Store::update_reply`].
    pub fn finish_reply(
        &self,
        id: MessageId,
        content: &str,
        status: MessageStatus,
        stats: Option<&GenerationStats>,
    ) -> Result<(), StoreError> {
        if status == MessageStatus::Streaming {
            return Err(StoreError::BadFinishStatus(status));
        }
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE messages SET content = ?2, status = ?3 WHERE id = ?1 AND status = 'streaming'",
                params![id, content, status],
            )?;
            if changed == 0 {
                return Err(not_streaming(tx, id));
            }
            if let Some(stats) = stats {
                insert_stats(tx, id, stats)?;
            }
            tx.execute(
                "UPDATE conversations SET updated_at = ?2
                 WHERE id = (SELECT conversation_id FROM messages WHERE id = ?1)",
                params![id, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Starts a streaming reply to `parent` and returns a writer that saves it as it grows;
    /// fails as [`Store::begin_reply`].
    pub fn reply_writer(
        &self,
        conv: ConversationId,
        parent: MessageId,
    ) -> Result<ReplyWriter<'_>, StoreError> {
        let id = self.begin_reply(conv, parent)?;
        Ok(ReplyWriter {
            store: self,
            id,
            content: String::new(),
            committed_len: 0,
            last_commit: Instant::now(),
            interval: REPLY_COMMIT_INTERVAL,
            finished: false,
        })
    }

    /// All messages of a conversation on all branches, oldest first (parents before children).
    /// Fails with [`StoreError::ConversationNotFound`].
    pub fn messages(&self, conv: ConversationId) -> Result<Vec<Message>, StoreError> {
        self.conversation_exists(conv)?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             LEFT JOIN generation_stats s ON s.message_id = m.id
             WHERE m.conversation_id = ?1 ORDER BY m.id"
        ))?;
        let rows = stmt.query_map([conv], message_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The path from the root message down to `leaf`, root first.
    /// Fails with [`StoreError::MessageNotFound`].
    pub fn thread(&self, leaf: MessageId) -> Result<Vec<Message>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "WITH RECURSIVE path(id, depth) AS (
                 SELECT ?1, 0
                 UNION ALL
                 SELECT m.parent_id, path.depth + 1 FROM messages m JOIN path ON m.id = path.id
                 WHERE m.parent_id IS NOT NULL
             )
             SELECT {MESSAGE_COLUMNS} FROM path
             JOIN messages m ON m.id = path.id
             LEFT JOIN generation_stats s ON s.message_id = m.id
             ORDER BY path.depth DESC"
        ))?;
        let thread: Vec<Message> = stmt
            .query_map([leaf], message_from_row)?
            .collect::<Result<_, _>>()?;
        if thread.is_empty() {
            return Err(StoreError::MessageNotFound(leaf));
        }
        Ok(thread)
    }

    /// The tip of the active branch: the most recently added message (always a leaf), or `None`
    /// for an empty conversation. Fails with [`StoreError::ConversationNotFound`].
    pub fn latest_leaf(&self, conv: ConversationId) -> Result<Option<MessageId>, StoreError> {
        self.conversation_exists(conv)?;
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM messages WHERE conversation_id = ?1 ORDER BY id DESC LIMIT 1",
                [conv],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Full-text search over all messages, best match first (at most 200 hits). Every
    /// whitespace-separated word of `query` must occur (English stemming, case and accents
    /// ignored); `query` is plain text, never search syntax, so any input is safe. Fails only on
    /// database errors.
    pub fn search(&self, query: &str) -> Result<Vec<SearchHit>, StoreError> {
        let Some(fts) = fts_query(query) else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare(
            "SELECT m.conversation_id, c.title, m.id, m.role,
                    snippet(messages_fts, 0, '[', ']', '…', 16), m.created_at
             FROM messages_fts
             JOIN messages m ON m.id = messages_fts.rowid
             JOIN conversations c ON c.id = m.conversation_id
             WHERE messages_fts MATCH ?1
             ORDER BY rank, m.id DESC
             LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![fts, SEARCH_LIMIT as i64], |row| {
            Ok(SearchHit {
                conversation_id: row.get(0)?,
                conversation_title: row.get(1)?,
                message_id: row.get(2)?,
                role: row.get::<_, RoleColumn>(3)?.0,
                snippet: row.get(4)?,
                created_at: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The active branch of a conversation as Markdown. Fails with [`StoreError::ConversationNotFound`].
    pub fn export_markdown(&self, conv: ConversationId) -> Result<String, StoreError> {
        let conversation = self.conversation(conv)?;
        let thread = match self.latest_leaf(conv)? {
            Some(leaf) => self.thread(leaf)?,
            None => Vec::new(),
        };
        Ok(export::markdown(&conversation, &thread))
    }

    /// A conversation with every branch as JSON that [`Store::import_json`] reads back.
    /// Fails with [`StoreError::ConversationNotFound`].
    pub fn export_json(&self, conv: ConversationId) -> Result<String, StoreError> {
        let conversation = self.conversation(conv)?;
        let messages = self.messages(conv)?;
        Ok(export::json(&conversation, &messages))
    }

    /// Imports a conversation written by [`Store::export_json`] as a new conversation. Replies
    /// that were streaming when exported are stored as interrupted.
    ///
    /// Fails with [`StoreError::BadImport`] when the text is not such an export (bad JSON, other
    /// format or a newer format version, a parent that does not precede its child); nothing is
    /// stored then.
    pub fn import_json(&self, json: &str) -> Result<ConversationId, StoreError> {
        let file = export::parse(json)?;
        self.write(|tx| {
            let conv = insert_conversation(
                tx,
                &file.conversation.new_conversation(),
                file.conversation.created_at,
                file.conversation.updated_at,
            )?;
            let mut ids = std::collections::HashMap::new();
            for message in &file.messages {
                let parent = message.parent_id.map(|p| ids[&p]);
                let status = match message.status {
                    MessageStatus::Streaming => MessageStatus::Interrupted,
                    other => other,
                };
                let id = insert_message(
                    tx,
                    conv,
                    parent,
                    message.role,
                    &message.content,
                    status,
                    message.created_at,
                )?;
                if let Some(stats) = &message.stats {
                    insert_stats(tx, id, stats)?;
                }
                ids.insert(message.id, id);
            }
            tx.execute(
                "UPDATE conversations SET updated_at = ?2 WHERE id = ?1",
                params![conv, file.conversation.updated_at],
            )?;
            Ok(conv)
        })
    }

    /// A setting's value, `None` if never set. Fails only on database errors.
    pub fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// Sets (or replaces) a setting. Fails only on database errors.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO settings(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )?;
            Ok(())
        })
    }

    /// Hardware profiles an earlier Canopy saved here, as (name, json), newest first. Profiles
    /// now live as files in the data folder; the core moves these there once and then calls
    /// [`Store::forget_legacy_profiles`]. Fails only on database errors.
    pub fn legacy_profiles(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, json FROM hardware_profiles ORDER BY id DESC")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes the hardware profiles of [`Store::legacy_profiles`], once they are saved
    /// elsewhere. Fails only on database errors.
    pub fn forget_legacy_profiles(&self) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM hardware_profiles", [])?;
            Ok(())
        })
    }

    /// Runs SQLite's `integrity_check` and the full-text index's own check; returns the problems
    /// found (empty when the database is sound). Fails only on database errors.
    pub fn check_integrity(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let mut problems: Vec<String> = stmt
            .query_map([], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?
            .into_iter()
            .filter(|line| line != "ok")
            .collect();
        if let Err(err) = self.conn.execute(
            "INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)",
            [],
        ) {
            problems.push(format!("full-text index: {err}"));
        }
        Ok(problems)
    }

    fn conversation_exists(&self, conv: ConversationId) -> Result<(), StoreError> {
        let exists: bool = self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM conversations WHERE id = ?1)",
            [conv],
            |row| row.get(0),
        )?;
        if exists {
            Ok(())
        } else {
            Err(StoreError::ConversationNotFound(conv))
        }
    }
}

/// Creates a database at an older schema `version` (0 ..= [`SCHEMA_VERSION`]) exactly as that
/// version's build did, so that tests can migrate from it. Fails on database errors and on an
/// unknown version.
#[doc(hidden)]
pub fn create_at_schema_version(path: &Path, version: i64) -> Result<(), StoreError> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let version = usize::try_from(version)
        .ok()
        .filter(|v| *v as i64 <= SCHEMA_VERSION)
        .ok_or(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        })?;
    schema::migrations()
        .to_version(&mut conn, version)
        .map_err(|source| StoreError::Migration {
            path: path.to_path_buf(),
            from: 0,
            backup: PathBuf::new(),
            source: Box::new(source),
        })
}

/// Saves a streaming reply as tokens arrive.
///
/// [`ReplyWriter::push`] commits the text so far whenever a second has passed since the last
/// commit, [`ReplyWriter::finish`] commits the final text and statistics. A writer dropped without
/// finishing commits what it has (best effort) and leaves the reply 'streaming'; the next open
/// with no other store alive marks it interrupted.
pub struct ReplyWriter<'a> {
    store: &'a Store,
    id: MessageId,
    content: String,
    committed_len: usize,
    last_commit: Instant,
    interval: Duration,
    finished: bool,
}

impl ReplyWriter<'_> {
    /// The id of the reply message.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The text pushed so far.
    pub fn content(&self) -> &str {
        &self.content
    }

    /// Commits on every push once `interval` has passed since the last commit (default one second;
    /// zero commits every push).
    pub fn set_commit_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// Appends generated text, committing if the commit interval has passed. Fails as
    /// [`Store::update_reply`]; the text stays buffered and the next commit retries it.
    pub fn push(&mut self, text: &str) -> Result<(), StoreError> {
        self.content.push_str(text);
        if self.last_commit.elapsed() >= self.interval {
            self.flush()?;
        }
        Ok(())
    }

    /// Replaces the text pushed so far (the engine's final text, stop strings removed); committed
    /// with the next flush or at the end.
    pub fn set_content(&mut self, text: &str) {
        if self.content != text {
            self.content = text.to_owned();
            self.committed_len = usize::MAX;
        }
    }

    /// Commits the text so far now. Fails as [`Store::update_reply`].
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.content.len() != self.committed_len {
            self.store.update_reply(self.id, &self.content)?;
            self.committed_len = self.content.len();
        }
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Commits the whole text as complete with its statistics. Fails as [`Store::finish_reply`].
    pub fn finish(self, stats: Option<&GenerationStats>) -> Result<MessageId, StoreError> {
        self.end(MessageStatus::Complete, stats)
    }

    /// Commits the text so far as interrupted (the user stopped it, or generation failed).
    /// Fails as [`Store::finish_reply`].
    pub fn interrupt(self, stats: Option<&GenerationStats>) -> Result<MessageId, StoreError> {
        self.end(MessageStatus::Interrupted, stats)
    }

    fn end(
        mut self,
        status: MessageStatus,
        stats: Option<&GenerationStats>,
    ) -> Result<MessageId, StoreError> {
        self.store
            .finish_reply(self.id, &self.content, status, stats)?;
        self.finished = true;
        Ok(self.id)
    }
}

impl Drop for ReplyWriter<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: the reply stays 'streaming' either way and is recovered on the next open.
            let _ = self.flush();
        }
    }
}

const CONVERSATION_SELECT: &str =
    "SELECT c.id, c.title, c.created_at, c.updated_at, c.target_model,
        c.draft_model, c.sampling_json, c.plan,
        (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)
    FROM conversations c";

const MESSAGE_COLUMNS: &str = "m.id, m.conversation_id, m.parent_id, m.role, m.content, m.status,
    m.created_at, s.tokens, s.prefill_tokens, s.tokens_per_second, s.plan, s.steps,
    s.mean_accepted_per_step, s.draft_ms, s.verify_ms, s.provenance";

fn conversation_from_row(row: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: row.get(0)?,
        title: row.get(1)?,
        created_at: row.get(2)?,
        updated_at: row.get(3)?,
        target_model: row.get(4)?,
        draft_model: row.get(5)?,
        sampling_json: row.get(6)?,
        plan: row.get(7)?,
        message_count: row.get(8)?,
    })
}

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    let stats = match row.get::<_, Option<u64>>(7)? {
        None => None,
        Some(tokens) => Some(GenerationStats {
            tokens,
            prefill_tokens: row.get(8)?,
            tokens_per_second: row.get(9)?,
            plan: row.get(10)?,
            steps: row.get(11)?,
            mean_accepted_per_step: row.get(12)?,
            draft_ms: row.get(13)?,
            verify_ms: row.get(14)?,
            provenance: types::provenance::from_bytes(&row.get::<_, Vec<u8>>(15)?),
        }),
    };
    Ok(Message {
        id: row.get(0)?,
        conversation_id: row.get(1)?,
        parent_id: row.get(2)?,
        role: row.get::<_, RoleColumn>(3)?.0,
        content: row.get(4)?,
        status: row.get(5)?,
        created_at: row.get(6)?,
        stats,
    })
}

fn insert_conversation(
    tx: &Transaction<'_>,
    new: &NewConversation,
    created_at: i64,
    updated_at: i64,
) -> Result<ConversationId, StoreError> {
    tx.execute(
        "INSERT INTO conversations(title, created_at, updated_at, target_model, draft_model,
                                   sampling_json, plan)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            new.title,
            created_at,
            updated_at,
            new.target_model,
            new.draft_model,
            new.sampling_json,
            new.plan
        ],
    )?;
    Ok(ConversationId(tx.last_insert_rowid()))
}

fn insert_message(
    tx: &Transaction<'_>,
    conv: ConversationId,
    parent: Option<MessageId>,
    role: ChatRole,
    content: &str,
    status: MessageStatus,
    created_at: i64,
) -> Result<MessageId, StoreError> {
    let touched = tx.execute(
        "UPDATE conversations SET updated_at = max(updated_at, ?2) WHERE id = ?1",
        params![conv, now_ms()],
    )?;
    if touched == 0 {
        return Err(StoreError::ConversationNotFound(conv));
    }
    if let Some(parent) = parent {
        let parent_conversation: ConversationId = tx
            .query_row(
                "SELECT conversation_id FROM messages WHERE id = ?1",
                [parent],
                |row| row.get(0),
            )
            .optional()?
            .ok_or(StoreError::MessageNotFound(parent))?;
        if parent_conversation != conv {
            return Err(StoreError::ParentInOtherConversation {
                parent,
                parent_conversation,
                conversation: conv,
            });
        }
    }
    tx.execute(
        "INSERT INTO messages(conversation_id, parent_id, role, content, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![conv, parent, RoleColumn(role), content, status, created_at],
    )?;
    Ok(MessageId(tx.last_insert_rowid()))
}

fn insert_stats(
    tx: &Transaction<'_>,
    id: MessageId,
    stats: &GenerationStats,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR REPLACE INTO generation_stats(message_id, tokens, prefill_tokens,
             tokens_per_second, plan, steps, mean_accepted_per_step, draft_ms, verify_ms, provenance)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            id,
            stats.tokens,
            stats.prefill_tokens,
            stats.tokens_per_second,
            stats.plan,
            stats.steps,
            stats.mean_accepted_per_step,
            stats.draft_ms,
            stats.verify_ms,
            types::provenance::to_bytes(&stats.provenance)
        ],
    )?;
    Ok(())
}

/// The error for an update that changed nothing: the message is missing or no longer streaming.
fn not_streaming(tx: &Transaction<'_>, id: MessageId) -> StoreError {
    let status = tx
        .query_row("SELECT status FROM messages WHERE id = ?1", [id], |row| {
            row.get::<_, MessageStatus>(0)
        })
        .optional();
    match status {
        Ok(Some(status)) => StoreError::NotStreaming { id, status },
        Ok(None) => StoreError::MessageNotFound(id),
        Err(err) => err.into(),
    }
}

/// Turns plain text into an FTS5 query that matches messages containing every word: each word
/// becomes a quoted string (inner quotes doubled), so no input is parsed as search syntax.
/// Control characters (NUL would end the query early) separate words, as the tokenizer treats them.
fn fts_query(text: &str) -> Option<String> {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let terms: Vec<String> = text
        .split_whitespace()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let backup = if found == 0 {
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
            [],
            |row| row.get(0),
        )?;
        if tables > 0 {
            return Err(StoreError::ForeignDatabase {
                path: path.to_path_buf(),
            });
        }
        PathBuf::new()
    } else {
        backup(conn, path, found)?
    };
    if let Err(source) = schema::migrations().to_latest(conn) {
        // Another process may have migrated the same file a moment before us.
        let now: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if now != SCHEMA_VERSION {
            return Err(StoreError::Migration {
                path: path.to_path_buf(),
                from: found,
                backup,
                source: Box::new(source),
            });
        }
    }
    Ok(())
}

/// Writes a consistent copy of the database to `<file>.bak-v<version>` (or a numbered variant if
/// that exists) before a migration.
fn backup(conn: &Connection, path: &Path, version: i64) -> Result<PathBuf, StoreError> {
    let base = sibling(path, &format!(".bak-v{version}"));
    let mut target = base.clone();
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = sibling(&base, &format!(".{n}"));
    }
    let Some(target_text) = target.to_str() else {
        return Err(StoreError::Io {
            action: "cannot back up to",
            path: target,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8"),
        });
    };
    conn.execute("VACUUM INTO ?1", [target_text])?;
    Ok(target)
}

fn mark_orphans_interrupted(conn: &Connection) -> Result<usize, StoreError> {
    // Check first so that a read-only look at a busy database never waits for the write lock.
    let any: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM messages WHERE status = 'streaming')",
        [],
        |row| row.get(0),
    )?;
    if !any {
        return Ok(0);
    }
    let tx = conn.unchecked_transaction()?;
    let marked = tx.execute(
        "UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'",
        [],
    )?;
    tx.commit()?;
    Ok(marked)
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

fn classify(err: rusqlite::Error, path: &Path) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase {
            path: path.to_path_buf(),
        },
        Some(ErrorCode::CannotOpen) => StoreError::Io {
            action: "cannot open",
            path: path.to_path_buf(),
            source: std::io::Error::other(err.to_string()),
        },
        _ => StoreError::Sqlite(err),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_query_quotes_every_word() {
        assert_eq!(fts_query("  "), None);
        assert_eq!(fts_query("a\0b"), Some("\"a\" \"b\"".into()));
        assert_eq!(fts_query("a AND("), Some("\"a\" \"AND(\"".into()));
        assert_eq!(
            fts_query("say \"hi\""),
            Some("\"say\" \"\"\"hi\"\"\"".into())
        );
    }
}
