//! The schema, as an append-only list of migrations keyed on `PRAGMA user_version`.
//!
//! Architecture invariant: a migration, once released, never changes. A new schema is a new
//! entry at the end of [`MIGRATIONS`], and the tests open databases at every earlier version.

use rusqlite_migration::{Migrations, M};

/// Version 1: conversations and their message trees.
pub(crate) const V1: &str = "
CREATE TABLE conversations (
    id            INTEGER PRIMARY KEY,
    title         TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    target_model  TEXT,
    draft_model   TEXT,
    sampling_json TEXT,
    plan          TEXT
);
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    parent_id       INTEGER REFERENCES messages(id) ON DELETE CASCADE,
    role            TEXT    NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('complete', 'streaming', 'interrupted')),
    created_at      INTEGER NOT NULL
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
CREATE INDEX messages_by_parent ON messages(parent_id);
CREATE INDEX conversations_by_update ON conversations(updated_at);
";

/// Version 2: generation statistics, full-text search, settings, and the tables of the model
/// registry and the hardware profiles.
pub(crate) const V2: &str = "
CREATE TABLE generation_stats (
    message_id             INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    tokens                 INTEGER NOT NULL,
    prefill_tokens         INTEGER NOT NULL,
    tokens_per_second      REAL    NOT NULL,
    plan                   TEXT    NOT NULL,
    steps                  INTEGER NOT NULL,
    mean_accepted_per_step REAL    NOT NULL,
    draft_ms               REAL    NOT NULL,
    verify_ms              REAL    NOT NULL,
    provenance             BLOB    NOT NULL
);

CREATE VIRTUAL TABLE messages_fts USING fts5(
    content,
    content = 'messages',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_after_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER messages_fts_after_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER messages_fts_after_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE models (
    key        TEXT PRIMARY KEY,
    json       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE hardware_profiles (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    json       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
";

/// Version 3: the unused `models` table goes (the model library keeps its own registry).
/// `hardware_profiles` stays only to be read once: profiles live as JSON files in the data
/// folder, and the core moves any row there ([`crate::Store::legacy_profiles`]).
pub(crate) const V3: &str = "
DROP TABLE models;
";

/// Every schema version in order; version N is the state after the first N entries.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The migrations as `rusqlite_migration` runs them (all pending ones in one transaction).
pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::new(
        MIGRATIONS
            .iter()
            .map(|sql| M::up(sql).foreign_key_check())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations()
            .validate()
            .expect("migrations apply to an empty database");
    }
}
