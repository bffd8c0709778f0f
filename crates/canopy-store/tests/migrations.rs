//! Schema migrations: from every earlier version, from a committed fixture, and the refusals.

mod common;

use std::path::{Path, PathBuf};

use canopy_store::{
    create_at_schema_version, MessageId, MessageStatus, Store, StoreError, SCHEMA_VERSION,
};
use canopy_types::ChatRole;
use common::{integrity_check, titled};

const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn user_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap()
}

/// Builds the version-1 fixture: the version-1 schema plus `v1-data.sql`, as one self-contained
/// file (no WAL beside it).
fn build_v1_fixture(path: &Path) {
    create_at_schema_version(path, 1).unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    let data = std::fs::read_to_string(Path::new(FIXTURE_DIR).join("v1-data.sql")).unwrap();
    conn.execute_batch(&data).unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
}

fn table_dump(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut out: Vec<String> = conn
        .prepare("SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in ["conversations", "messages"] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY id"))
            .unwrap();
        let columns = stmt.column_count();
        let rows = stmt
            .query_map([], |row| {
                let values: Vec<String> = (0..columns)
                    .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                    .collect();
                Ok(values.join("|"))
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}

/// The committed `fixtures/v1.db` is what `v1-data.sql` over the version-1 schema produces.
/// Set `CANOPY_REGENERATE_FIXTURES=1` to rewrite it.
#[test]
fn v1_fixture_matches_its_generator() {
    let committed = Path::new(FIXTURE_DIR).join("v1.db");
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("v1.db");
    build_v1_fixture(&fresh);
    if std::env::var_os("CANOPY_REGENERATE_FIXTURES").is_some() {
        std::fs::copy(&fresh, &committed).unwrap();
    }
    assert_eq!(table_dump(&committed), table_dump(&fresh));
    assert_eq!(user_version(&committed), 1);
}

fn copy_fixture(dir: &Path) -> PathBuf {
    let path = dir.join("canopy.db");
    std::fs::copy(Path::new(FIXTURE_DIR).join("v1.db"), &path).unwrap();
    path
}

#[test]
fn migrates_the_v1_fixture_keeping_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path());
    let store = Store::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);

    // A backup copy of the old version sits next to the database.
    let backup = dir.path().join("canopy.db.bak-v1");
    assert!(backup.exists(), "no backup at {}", backup.display());
    assert_eq!(user_version(&backup), 1);

    let conversations = store.list_conversations().unwrap();
    assert_eq!(
        conversations
            .iter()
            .map(|c| c.title.as_str())
            .collect::<Vec<_>>(),
        ["Café crème", "Rust lifetimes"]
    );
    let rust = &conversations[1];
    assert_eq!(rust.message_count, 6);
    assert_eq!(rust.plan.as_deref(), Some("n=64 d=8"));

    // The reply that was streaming in the old database is now interrupted, its text kept.
    assert_eq!(store.interrupted_on_open(), 1);
    let thread = store.thread(MessageId(6)).unwrap();
    let ids: Vec<i64> = thread.iter().map(|m| m.id.0).collect();
    assert_eq!(ids, [1, 5, 6]);
    assert_eq!(thread[2].status, MessageStatus::Interrupted);
    assert_eq!(thread[2].content, "Consider fn longest<'a>(x: &'a str");

    // Full-text search covers the rows written before the index existed.
    let hits = store.search("cafe creme").unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].message_id, MessageId(7));

    // The new tables work.
    store.set_setting("theme", "dark").unwrap();
    let user = store
        .add_message(rust.id, Some(MessageId(4)), ChatRole::User, "thanks")
        .unwrap();
    assert!(user.0 > 8);
    assert!(store.check_integrity().unwrap().is_empty());
    drop(store);
    assert_eq!(integrity_check(&path), "ok");

    // Opening again migrates nothing and makes no second backup.
    let _store = Store::open(&path).unwrap();
    assert!(!dir.path().join("canopy.db.bak-v1.2").exists());
}

#[test]
fn migrates_from_every_earlier_version() {
    for version in 0..SCHEMA_VERSION {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("canopy.db");
        create_at_schema_version(&path, version).unwrap();
        if version >= 1 {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "INSERT INTO conversations(id, title, created_at, updated_at) VALUES (1, 'old', 1, 2);
                 INSERT INTO messages(id, conversation_id, parent_id, role, content, status, created_at)
                 VALUES (1, 1, NULL, 'user', 'kept across versions', 'complete', 1);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap_or_else(|e| panic!("from version {version}: {e}"));
        assert_eq!(
            user_version(&path),
            SCHEMA_VERSION,
            "from version {version}"
        );
        assert_eq!(
            dir.path()
                .join(format!("canopy.db.bak-v{version}"))
                .exists(),
            version >= 1,
            "backup from version {version}"
        );
        if version >= 1 {
            assert_eq!(store.search("kept").unwrap().len(), 1);
            assert_eq!(
                store.messages(canopy_store::ConversationId(1)).unwrap()[0].content,
                "kept across versions"
            );
        }
        let conv = store.create_conversation(&titled("new")).unwrap();
        store
            .add_message(conv, None, ChatRole::User, "hello")
            .unwrap();
        assert!(store.check_integrity().unwrap().is_empty());
    }
}

#[test]
fn refuses_a_newer_schema_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canopy.db");
    drop(Store::open(&path).unwrap());
    let newer = SCHEMA_VERSION + 1;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", newer).unwrap();
    }
    let err = Store::open(&path)
        .err()
        .expect("a newer schema must be refused");
    match &err {
        StoreError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (newer, SCHEMA_VERSION));
        }
        other => panic!("unexpected error {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("newer Canopy"), "{message}");
    assert!(
        message.contains(&format!("schema version {newer}")),
        "{message}"
    );
    assert_eq!(user_version(&path), newer);
}

#[test]
fn refuses_files_that_are_not_canopy_databases() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.db");
    std::fs::write(
        &text,
        "this is not a database, it is a long enough text file to have a header",
    )
    .unwrap();
    assert!(matches!(
        Store::open(&text),
        Err(StoreError::NotADatabase { .. })
    ));

    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance REAL);")
        .unwrap();
    assert!(matches!(
        Store::open(&foreign),
        Err(StoreError::ForeignDatabase { .. })
    ));
}

#[test]
fn a_second_migration_backup_gets_a_new_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path());
    std::fs::write(dir.path().join("canopy.db.bak-v1"), "an older backup").unwrap();
    drop(Store::open(&path).unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("canopy.db.bak-v1")).unwrap(),
        "an older backup"
    );
    assert_eq!(user_version(&dir.path().join("canopy.db.bak-v1.2")), 1);
}
