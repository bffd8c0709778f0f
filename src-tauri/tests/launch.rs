//! The app binary started where it cannot open a window: one line that says why, never a trace.

use std::process::Command;

fn app() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_canopy-app"));
    let home = tempfile::tempdir().expect("temporary data directory");
    command
        .env("CANOPY_HOME", home.keep())
        .env_remove("RUST_BACKTRACE");
    command
}

#[test]
#[cfg(target_os = "linux")]
fn without_a_display_it_says_so_in_one_line() {
    let output = app()
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run canopy-app");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.contains("no display"), "stderr: {stderr}");
}

#[test]
#[cfg(target_os = "linux")]
fn an_unreachable_display_is_one_line_too() {
    let output = app()
        .env_remove("WAYLAND_DISPLAY")
        .env("DISPLAY", ":987")
        .output()
        .expect("run canopy-app");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "stderr: {stderr}");
    assert!(!stderr.contains("stack backtrace"), "stderr: {stderr}");
    let ours: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("canopy:"))
        .collect();
    assert_eq!(ours.len(), 1, "stderr: {stderr}");
}
