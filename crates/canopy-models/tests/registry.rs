//! The registry on real SQLite files: scan, import (copy and reference), remove, list, roles,
//! migrations, background hashing with progress.

mod common;

use canopy_models::registry::SCHEMA_VERSION;
use canopy_models::{DeleteFile, HashEvent, HashState, ImportMode, Library, ModelsError, Role};
use common::{sha256_file, small_gguf, write};

fn open(dir: &tempfile::TempDir) -> Library {
    Library::open(&dir.path().join("library.db"), &dir.path().join("models")).unwrap()
}

#[test]
fn scan_registers_valid_files_and_explains_invalid_ones() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a.gguf"), &small_gguf(&["a", "b"], 64));
    write(
        &src.path().join("sub/b.GGUF"),
        &small_gguf(&["a", "b", "c"], 128),
    );
    write(&src.path().join("broken.gguf"), b"GGUF\x01\x00\x00\x00");
    write(&src.path().join("notes.txt"), b"not a model");
    write(&src.path().join(".hidden/c.gguf"), &small_gguf(&["a"], 32));
    let mut lib = open(&home);

    let report = lib.scan(src.path()).unwrap();
    assert_eq!(report.added.len(), 2, "{report:?}");
    assert_eq!(report.invalid.len(), 1);
    let (path, reason) = &report.invalid[0];
    assert!(path.ends_with("broken.gguf"));
    assert!(reason.contains("version 1"), "{reason}");
    for m in &report.added {
        assert!(matches!(m.hash, HashState::Hashing { done: 0 }));
        assert!(!m.managed);
        assert_eq!(m.role, Role::Draft);
        assert_eq!(m.info.architecture.as_deref(), Some("llama"));
    }

    let again = lib.scan(src.path()).unwrap();
    assert!(again.added.is_empty());
    assert_eq!(again.already.len(), 2);

    let listing = lib.list().unwrap();
    assert_eq!(listing.models.len(), 2);
    let sizes: u64 = ["a.gguf", "sub/b.GGUF"]
        .iter()
        .map(|f| std::fs::metadata(src.path().join(f)).unwrap().len())
        .sum();
    assert_eq!(listing.total_bytes, sizes);
    assert_eq!(listing.managed_bytes, 0);

    let err = lib.scan(&src.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn import_copies_or_references_and_remove_respects_the_models_folder() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let a = write(&src.path().join("a.gguf"), &small_gguf(&["a"], 64));
    let b = write(&src.path().join("b.gguf"), &small_gguf(&["b"], 64));
    let mut lib = open(&home);

    let copied = lib.import(&a, ImportMode::Copy).unwrap();
    assert!(copied.managed);
    assert_eq!(copied.path, lib.models_dir().join("a.gguf"));
    assert_eq!(sha256_file(&copied.path), sha256_file(&a));
    let err = lib.import(&a, ImportMode::Copy).unwrap_err();
    assert!(matches!(err, ModelsError::DestinationExists(_)), "{err}");

    let referenced = lib.import(&b, ImportMode::Reference).unwrap();
    assert!(!referenced.managed);
    assert_eq!(referenced.path, std::fs::canonicalize(&b).unwrap());
    let err = lib.import(&b, ImportMode::Reference).unwrap_err();
    assert!(
        matches!(err, ModelsError::AlreadyRegistered { .. }),
        "{err}"
    );

    let bad = write(&src.path().join("bad.gguf"), b"nope");
    let err = lib.import(&bad, ImportMode::Copy).unwrap_err();
    assert!(matches!(err, ModelsError::InvalidGguf { .. }), "{err}");
    assert!(!lib.models_dir().join("bad.gguf").exists());

    assert_eq!(lib.list().unwrap().managed_bytes, copied.size);

    // A referenced file outside the models folder is not deleted without an explicit request.
    let err = lib
        .remove(referenced.id, DeleteFile::InsideModelsDir)
        .unwrap_err();
    assert!(matches!(err, ModelsError::OutsideModelsDir { .. }), "{err}");
    assert!(b.exists());
    assert!(lib.get(referenced.id).is_ok());
    lib.remove(referenced.id, DeleteFile::Keep).unwrap();
    assert!(b.exists());
    assert!(matches!(
        lib.get(referenced.id).unwrap_err(),
        ModelsError::NotFound(_)
    ));

    lib.remove(copied.id, DeleteFile::InsideModelsDir).unwrap();
    assert!(!copied.path.exists());
    assert!(a.exists());
    assert!(lib.list().unwrap().models.is_empty());
    assert!(matches!(
        lib.remove(copied.id, DeleteFile::Keep).unwrap_err(),
        ModelsError::NotFound(_)
    ));
}

#[test]
fn roles_are_guessed_and_settable_and_resolve_finds_ids_and_paths() {
    assert_eq!(Role::guess(135_000_000), Role::Draft);
    assert_eq!(Role::guess(8_000_000_000), Role::Both);
    assert_eq!(Role::guess(70_000_000_000), Role::Target);
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let a = write(&src.path().join("a.gguf"), &small_gguf(&["a"], 64));
    let mut lib = open(&home);
    let m = lib.import(&a, ImportMode::Reference).unwrap();
    assert_eq!(lib.set_role(m.id, Role::Target).unwrap().role, Role::Target);
    assert!(Role::parse("verifier").is_err());
    assert_eq!(lib.resolve(&m.id.to_string()).unwrap().id, m.id);
    assert_eq!(lib.resolve(a.to_str().unwrap()).unwrap().id, m.id);
    assert!(lib.resolve("9999").is_err());
    lib.touch(m.id).unwrap();
    assert!(lib.get(m.id).unwrap().last_used_at.is_some());
}

#[test]
fn the_schema_is_versioned_and_a_newer_one_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("library.db");
    drop(open(&home));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    // Reopening is a no-op migration.
    drop(open(&home));
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = Library::open(&db, &home.path().join("models")).unwrap_err();
    assert!(matches!(err, ModelsError::SchemaTooNew { .. }), "{err}");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn hashing_runs_in_the_background_with_progress() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    // 40 MB of weights: several 16 MiB progress reports.
    let big = write(
        &src.path().join("big.gguf"),
        &small_gguf(&["a"], 10_000_000),
    );
    let small = write(&src.path().join("small.gguf"), &small_gguf(&["b"], 64));
    let mut lib = open(&home);
    let m1 = lib.import(&big, ImportMode::Reference).unwrap();
    let m2 = lib.import(&small, ImportMode::Reference).unwrap();
    assert_eq!(lib.pending_hashes().unwrap().len(), 2);

    let job = lib.start_hashing(&[m1.clone(), m2.clone()]);
    let events: Vec<HashEvent> = job.events.iter().collect();
    let progress: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            HashEvent::Progress { id, done, total } if *id == m1.id => {
                assert_eq!(*total, m1.size);
                Some(*done)
            }
            _ => None,
        })
        .collect();
    assert!(progress.len() >= 3, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(*progress.last().unwrap(), m1.size);
    assert!(events.contains(&HashEvent::Done {
        id: m1.id,
        sha256: sha256_file(&big)
    }));
    assert!(events.contains(&HashEvent::Done {
        id: m2.id,
        sha256: sha256_file(&small)
    }));
    let stored = lib.get(m1.id).unwrap();
    assert_eq!(stored.hash, HashState::Done);
    assert_eq!(stored.sha256, Some(sha256_file(&big)));
    assert!(lib.pending_hashes().unwrap().is_empty());

    // A file that changed since registration is reported, not silently hashed.
    let m3 = lib
        .import(
            &write(&src.path().join("c.gguf"), &small_gguf(&["c"], 64)),
            ImportMode::Reference,
        )
        .unwrap();
    std::fs::write(&m3.path, b"changed").unwrap();
    let finals = lib.start_hashing(std::slice::from_ref(&m3)).wait();
    assert!(
        matches!(&finals[0], HashEvent::Failed { reason, .. } if reason.contains("changed")),
        "{finals:?}"
    );
    assert!(matches!(
        lib.get(m3.id).unwrap().hash,
        HashState::Failed { .. }
    ));
}
