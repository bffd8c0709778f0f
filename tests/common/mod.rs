//! Shared helpers of the command-line tests: the built `canopy` binary run with a temporary
//! CANOPY_HOME, and the real test models fetched by `scripts/fetch-models --all`.

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `canopy` binary under test.
pub const CANOPY: &str = env!("CARGO_BIN_EXE_canopy");

/// The path of a fetched test model; panics (failing the test) with the fetch instructions when
/// it is missing.
pub fn model(id: &str) -> PathBuf {
    canopy_models::test_model(id).unwrap_or_else(|e| panic!("{e}"))
}

/// SmolLM2-135M-Instruct: small and fast, the model of most tests.
pub fn smollm2() -> PathBuf {
    model("smollm2-135m")
}

/// A `canopy` command whose data directory is `home`.
pub fn command(home: &Path) -> Command {
    let mut command = Command::new(CANOPY);
    command.env("CANOPY_HOME", home);
    command
}

/// Runs `canopy ARGS` with `home` as its data directory and waits for it.
pub fn canopy(home: &Path, args: &[&str]) -> Output {
    command(home)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {CANOPY}: {e}"))
}

/// Runs `command` with `input` on its standard input (then closed) and waits for it.
pub fn with_stdin(mut command: Command, input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {CANOPY}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that a command succeeded, showing its stderr when it did not.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstderr:\n{}",
        out.status.code(),
        stderr(out)
    );
}

/// Asserts the user-error policy: exit code 2, exactly one line on stderr starting with
/// `error:`, and no panic. Returns that line.
pub fn assert_user_error(out: &Output, what: &str) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: expected exit code 2\nstderr:\n{err}"
    );
    assert!(
        !err.contains("panicked") && !stdout(out).contains("panicked"),
        "{what}: panicked\n{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one line on stderr, got\n{err}"
    );
    assert!(
        lines[0].starts_with("error: "),
        "{what}: the line should start with 'error: ': {err}"
    );
    lines[0].to_owned()
}

/// Parses the one JSON object printed by `canopy generate --json`.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
            stdout(out),
            stderr(out)
        )
    })
}
