//! Every crafted file in `tests/bad/` (written by `scripts/make-bad-gguf`) is refused with the check
//! and byte offset its manifest names; the `good-*` files are accepted; nothing panics.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Case {
    file: String,
    check: Option<String>,
    offset: Option<u64>,
    description: String,
}

fn bad_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad")
}

fn manifest() -> Vec<Case> {
    let text = std::fs::read_to_string(bad_dir().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest.json parses")
}

#[test]
fn every_crafted_file_is_refused_with_its_own_reason() {
    let cases = manifest();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    for case in &cases {
        let path = bad_dir().join(&case.file);
        let from_file = canopy_gguf::validate(&path);
        let bytes = std::fs::read(&path).expect("read case");
        let from_bytes = canopy_gguf::validate_bytes(&bytes).map(|_| ());
        match (&case.check, from_file) {
            (None, Ok(())) => assert!(from_bytes.is_ok(), "{}: bytes refused", case.file),
            (None, Err(e)) => panic!("{} ({}) was refused: {e}", case.file, case.description),
            (Some(check), Ok(())) => {
                panic!(
                    "{} ({}) was accepted; expected {check}",
                    case.file, case.description
                )
            }
            (Some(check), Err(e)) => {
                let message = e.to_string();
                assert_eq!(e.check().as_str(), check, "{}: {message}", case.file);
                assert_eq!(e.offset(), case.offset, "{}: {message}", case.file);
                let expected_start = format!("invalid GGUF at byte {}: ", case.offset.unwrap_or(0));
                assert!(
                    message.starts_with(&expected_start),
                    "{}: {message}",
                    case.file
                );
                assert!(
                    !message.contains('\n'),
                    "{}: not one line: {message}",
                    case.file
                );
                let from_bytes = from_bytes.expect_err("bytes accepted");
                assert_eq!(from_bytes.to_string(), message, "{}", case.file);
            }
        }
    }
}

#[test]
fn messages_name_the_field() {
    let err = |file: &str| canopy_gguf::validate(&bad_dir().join(file)).unwrap_err();
    assert_eq!(
        err("huge-tensor-count.gguf").to_string(),
        "invalid GGUF at byte 8: tensor count 18446744073709551615 cannot fit in the 1045 bytes left"
    );
    assert_eq!(
        err("duplicate-tensor-name.gguf").to_string(),
        "invalid GGUF at byte 105: tensor name 'same' appears twice"
    );
    assert_eq!(
        err("duplicate-key.gguf").field(),
        Some("general.architecture")
    );
    assert_eq!(
        err("row-not-whole-blocks.gguf").to_string(),
        "invalid GGUF at byte 90: tensor 't' has 33 elements per row, not a multiple of the q4_0 block size 32"
    );
    assert_eq!(
        err("bad-magic.gguf").to_string(),
        "invalid GGUF at byte 0: magic \"GGML\" is not \"GGUF\""
    );
}

#[test]
fn the_committed_files_match_their_generator() {
    let out = tempfile::tempdir().expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-bad-gguf");
    let status = Command::new("python3")
        .arg(&script)
        .arg(out.path())
        .output()
        .expect("python3 runs scripts/make-bad-gguf");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let mut names: Vec<_> = std::fs::read_dir(out.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    let mut committed: Vec<_> = std::fs::read_dir(bad_dir())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    committed.sort();
    assert_eq!(
        names, committed,
        "run scripts/make-bad-gguf to refresh tests/bad"
    );
    for name in names {
        let fresh = std::fs::read(out.path().join(&name)).expect("fresh");
        let kept = std::fs::read(bad_dir().join(&name)).expect("kept");
        assert!(fresh == kept, "{name:?} differs: run scripts/make-bad-gguf");
    }
}
