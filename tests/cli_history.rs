//! `canopy history` end to end through the real binary, with a temporary `CANOPY_HOME`.

use std::path::Path;
use std::process::{Command, Output};

use canopy_store::{MessageStatus, NewConversation, Store};
use canopy_types::ChatRole;

fn canopy(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(args)
        .env("CANOPY_HOME", home)
        .output()
        .expect("run canopy")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// A user error: exit code 2 and exactly one line on stderr.
fn user_error(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(2),
        "stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

/// Two conversations, one with a regenerated reply; returns the id of the first.
fn seed(home: &Path) -> i64 {
    let store = Store::open(&home.join("canopy.db")).unwrap();
    let conv = store
        .create_conversation(&NewConversation {
            title: "Borrow checker".into(),
            target_model: Some("big.gguf".into()),
            ..NewConversation::default()
        })
        .unwrap();
    let q = store
        .add_message(
            conv,
            None,
            ChatRole::User,
            "What does the borrow checker prevent?",
        )
        .unwrap();
    store
        .add_message(conv, Some(q), ChatRole::Assistant, "Dangling references.")
        .unwrap();
    let reply = store.begin_reply(conv, q).unwrap();
    store
        .finish_reply(
            reply,
            "Data races and dangling references.",
            MessageStatus::Complete,
            None,
        )
        .unwrap();
    let other = store
        .create_conversation(&NewConversation {
            title: "Soup".into(),
            ..NewConversation::default()
        })
        .unwrap();
    store
        .add_message(other, None, ChatRole::User, "A leek soup recipe?")
        .unwrap();
    conv.0
}

#[test]
fn list_show_search_export_import_delete() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();

    assert_eq!(
        stdout(&canopy(home, &["history", "list"])),
        "no conversations yet\n"
    );
    let conv = seed(home).to_string();

    let list = stdout(&canopy(home, &["history", "list"]));
    assert!(
        list.contains("Borrow checker") && list.contains("Soup"),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&canopy(home, &["history", "list", "--json"]))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["title"], "Soup");
    assert_eq!(json[1]["message_count"], 3);

    let shown = stdout(&canopy(home, &["history", "show", &conv]));
    assert!(shown.contains("# Borrow checker"), "{shown}");
    assert!(
        shown.contains("Data races and dangling references."),
        "{shown}"
    );
    let shown: serde_json::Value = serde_json::from_str(&stdout(&canopy(
        home,
        &["history", "show", &conv, "--json"],
    )))
    .unwrap();
    assert_eq!(shown["messages"].as_array().unwrap().len(), 3);
    assert_eq!(shown["conversation"]["target_model"], "big.gguf");

    let found = stdout(&canopy(home, &["history", "search", "dangling"]));
    assert_eq!(found.lines().count(), 2, "{found}");
    assert!(found.contains("[dangling]"), "{found}");
    let hits: serde_json::Value = serde_json::from_str(&stdout(&canopy(
        home,
        &["history", "search", "leek", "--json"],
    )))
    .unwrap();
    assert_eq!(hits[0]["conversation_title"], "Soup");
    for odd in ["AND(", "\"", "NEAR(", "*"] {
        stdout(&canopy(home, &["history", "search", odd]));
    }

    let md = stdout(&canopy(
        home,
        &["history", "export", &conv, "--format", "md"],
    ));
    assert!(md.starts_with("# Borrow checker"), "{md}");
    let file = home.join("export.json");
    let written = canopy(
        home,
        &[
            "history",
            "export",
            &conv,
            "--format",
            "json",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(stdout(&written), "");
    let exported = std::fs::read_to_string(&file).unwrap();

    let imported = stdout(&canopy(
        home,
        &["history", "import", file.to_str().unwrap()],
    ));
    assert!(
        imported.starts_with("imported conversation ") && imported.contains("Borrow checker"),
        "{imported}"
    );
    let new_id = imported
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    assert_ne!(new_id, conv);
    let again = stdout(&canopy(
        home,
        &["history", "export", &new_id, "--format", "json"],
    ));
    assert_eq!(again, exported);

    assert_eq!(
        stdout(&canopy(home, &["history", "delete", &conv])),
        format!("deleted conversation {conv}\n")
    );
    let list: serde_json::Value =
        serde_json::from_str(&stdout(&canopy(home, &["history", "list", "--json"]))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[test]
fn errors_are_one_line_user_errors() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    seed(home);

    for args in [
        &["history", "show", "999"][..],
        &["history", "delete", "999"],
        &["history", "export", "999", "--format", "json"],
    ] {
        let err = user_error(&canopy(home, args));
        assert!(err.contains("no conversation with id 999"), "{err}");
    }

    let missing = home.join("missing.json");
    let err = user_error(&canopy(
        home,
        &["history", "import", missing.to_str().unwrap()],
    ));
    assert!(err.contains("cannot read"), "{err}");

    let bad = home.join("bad.json");
    std::fs::write(&bad, "{\"format\": \"something else\"}\n").unwrap();
    let err = user_error(&canopy(home, &["history", "import", bad.to_str().unwrap()]));
    assert!(err.contains("not a Canopy conversation export"), "{err}");

    // Not a number: clap's usage error, also exit 2.
    assert_eq!(
        canopy(home, &["history", "show", "abc"]).status.code(),
        Some(2)
    );

    // A database from a newer build is refused, not changed.
    let db = home.join("canopy.db");
    set_user_version(&db, 99);
    let err = user_error(&canopy(home, &["history", "list"]));
    assert!(err.contains("newer Canopy"), "{err}");
}

/// Sets `PRAGMA user_version` by writing the big-endian field at offset 60 of the database header
/// (the root package has no SQLite dependency of its own). Every connection must be closed.
fn set_user_version(db: &Path, version: u32) {
    use std::io::{Seek, SeekFrom, Write};
    assert!(
        !db.with_extension("db-wal").exists(),
        "the database must be checkpointed"
    );
    let mut file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    file.seek(SeekFrom::Start(60)).unwrap();
    file.write_all(&version.to_be_bytes()).unwrap();
}
