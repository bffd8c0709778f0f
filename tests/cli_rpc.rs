//! The target split over an RPC helper, end to end: `canopy rpc-server` (CPU backend) and a
//! `canopy` that puts part of SmolLM2's layers on it, two processes on 127.0.0.1.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_success, assert_user_error, canopy, command, json, smollm2, stderr, CANOPY};

const PROMPT: &str = "Write a haiku about trees.";

/// A running `canopy rpc-server` on a free loopback port; killed when dropped.
struct Helper {
    child: Child,
    endpoint: String,
}

impl Helper {
    fn start() -> Helper {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CANOPY)
            .args(["rpc-server", "--port", &port.to_string(), "--device", "cpu"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start canopy rpc-server");
        let endpoint = format!("127.0.0.1:{port}");
        let start = Instant::now();
        // The helper serves one client at a time; a probe that connects and closes is harmless.
        while TcpStream::connect(&endpoint).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the helper did not listen on {endpoint}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Helper { child, endpoint }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn generate(home: &Path, extra: &[&str]) -> serde_json::Value {
    let smol = smollm2();
    let mut args = vec![
        "generate",
        "--target",
        smol.to_str().unwrap(),
        "--prompt",
        PROMPT,
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = canopy(home, &args);
    assert_success(&out, &format!("canopy {}", args.join(" ")));
    json(&out)
}

fn text(v: &serde_json::Value) -> &str {
    v["text"].as_str().expect("text is a string")
}

#[test]
fn split_target_generates_exactly_what_the_local_one_does_and_speculates() {
    let home = tempfile::tempdir().unwrap();
    let helper = Helper::start();
    let local = generate(home.path(), &[]);
    assert!(!text(&local).is_empty(), "{local}");

    let split = generate(home.path(), &["--rpc", &helper.endpoint]);
    // Half the layers by free memory (both sides report this machine's RAM); an explicit count too.
    let fixed = generate(
        home.path(),
        &["--rpc", &helper.endpoint, "--rpc-layers", "5"],
    );
    // Every split keeps its local layers in plain buffers, as the helper does: splits agree.
    assert_eq!(text(&fixed), text(&split), "two splits differ");
    // The local run equals them where it keeps the weights in plain buffers too. Where this CPU
    // variant repacks them (AMX on Sapphire Rapids for SmolLM2's Q4_1), its kernels round
    // differently and greedy text may part at a near tie (README, "More than one machine").
    let repacked = local["target_weights"]["repacked_mib"]
        .as_f64()
        .unwrap_or(0.0);
    if repacked == 0.0 {
        assert_eq!(text(&split), text(&local), "split greedy output differs");
    } else {
        println!(
            "local weights repacked ({repacked:.0} MiB): split {:?}, local {:?}",
            text(&split),
            text(&local)
        );
    }

    // SmolLM2 drafting for itself, the draft local, the target split.
    let smol = smollm2();
    let spec = generate(
        home.path(),
        &[
            "--rpc",
            &helper.endpoint,
            "--draft",
            smol.to_str().unwrap(),
            "--plan",
            "chain:4",
        ],
    );
    assert_eq!(text(&spec), text(&split), "speculation across the split");
    assert!(
        spec["provenance"].as_str().unwrap().contains('d'),
        "no draft token accepted: {spec}"
    );
    assert!(spec["steps"].as_u64() < local["steps"].as_u64(), "{spec}");
}

#[test]
fn profile_measures_and_records_the_split() {
    let home = tempfile::tempdir().unwrap();
    let helper = Helper::start();
    let smol = smollm2();
    let smol = smol.to_str().unwrap();
    let out = canopy(
        home.path(),
        &[
            "profile",
            "--quick",
            "--json",
            "--target",
            smol,
            "--draft",
            smol,
            "--rpc",
            &helper.endpoint,
        ],
    );
    assert_success(&out, "canopy profile --rpc");
    let profile = json(&out);
    let target = &profile["curves"]["target"];
    assert_eq!(
        target["rpc"]["helpers"],
        serde_json::json!([helper.endpoint]),
        "{target}"
    );
    let remote = target["rpc"]["remote_layers"]
        .as_u64()
        .expect("remote layers");
    let total = target["rpc"]["total_layers"]
        .as_u64()
        .expect("total layers");
    assert!(remote >= 1 && remote <= total, "{target}");
    let points = target["curve"]["points"].as_array().expect("points");
    assert!(!points.is_empty(), "{target}");
}

#[test]
fn a_dead_helper_is_a_one_line_error_and_local_generation_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let smol = smollm2();
    let smol = smol.to_str().unwrap();

    // Nobody listening: refused before anything loads.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .to_string();
    let out = canopy(
        home.path(),
        &[
            "generate", "--target", smol, "--prompt", PROMPT, "--rpc", &closed,
        ],
    );
    let line = assert_user_error(&out, "unreachable helper");
    assert!(line.contains(&closed), "{line}");
    let out = canopy(
        home.path(),
        &[
            "generate", "--target", smol, "--prompt", "x", "--rpc", "nope",
        ],
    );
    assert_user_error(&out, "malformed --rpc");

    // Killed mid-generation.
    let mut helper = Helper::start();
    let mut gen = command(home.path())
        .args([
            "generate",
            "--target",
            smol,
            "--prompt",
            "Write a long story about a lighthouse keeper and a storm.",
            "--temperature",
            "0",
            "--max-tokens",
            "1500",
            "--rpc",
            &helper.endpoint,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    gen.stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .expect("some output before the helper dies");
    helper.child.kill().unwrap();
    let out = gen.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        lines[0].contains(&helper.endpoint),
        "helper not named: {err}"
    );

    let local = generate(home.path(), &[]);
    assert!(!text(&local).is_empty());
}

#[test]
fn rpc_server_warns_off_loopback_and_names_devices() {
    let out = Command::new(CANOPY)
        .args(["rpc-server", "--device", "no-such-device"])
        .output()
        .unwrap();
    let line = assert_user_error(&out, "unknown device");
    assert!(line.contains("CPU"), "devices not listed: {line}");

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut child = Command::new(CANOPY)
        .args([
            "rpc-server",
            "--host",
            "0.0.0.0",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    let mut stderr = child.stderr.take().unwrap();
    let mut buf = [0u8; 256];
    let start = Instant::now();
    while !err.contains('\n') && start.elapsed() < Duration::from_secs(20) {
        match stderr.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => err.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        err.starts_with("warning:") && err.contains("no authentication"),
        "{err}"
    );
}
