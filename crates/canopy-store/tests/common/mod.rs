//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use canopy_store::{NewConversation, Store};

/// A fresh store in its own temporary directory (kept alive by the returned guard).
pub fn temp_store() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("canopy.db");
    let store = Store::open(&path).expect("open fresh store");
    (dir, path, store)
}

pub fn titled(title: &str) -> NewConversation {
    NewConversation {
        title: title.to_string(),
        ..NewConversation::default()
    }
}

/// `PRAGMA integrity_check` through a connection of its own.
pub fn integrity_check(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).expect("open for check");
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check")
}
