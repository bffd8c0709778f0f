//! `canopy serve` end to end: the built binary on SmolLM2, spoken to by the official `openai`
//! Python package (installed by `scripts/setup`) and by raw HTTP. The client scripts live in
//! `tests/serve/`.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{assert_user_error, canopy, command, smollm2};

/// One server at a time: each worker uses every core, and llama.cpp's spinning threads make
/// overlapping runs much slower than consecutive ones.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running `canopy serve`, stopped (SIGTERM, then SIGKILL) when dropped.
struct Served {
    child: Child,
    url: String,
    stderr: std::path::PathBuf,
    _home: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

impl Served {
    fn start(extra: &[&str]) -> Served {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let home = tempfile::tempdir().unwrap();
        let stderr = home.path().join("serve.stderr");
        let smol = smollm2();
        let mut child = command(home.path())
            .args(["serve", "--target", smol.to_str().unwrap(), "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start canopy serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some(url) = first.strip_prefix("listening on ") else {
            let _ = child.kill();
            panic!(
                "no ready line, got {first:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Served {
            url: url.to_owned(),
            child,
            stderr,
            _home: home,
            _turn: turn,
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Runs `python3 tests/serve/SCRIPT URL ARGS` and asserts it passed; returns its stdout.
    fn python(&self, script: &str, args: &[&str]) -> String {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve");
        let out = Command::new("python3")
            .arg(dir.join(script))
            .arg(&self.url)
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("python3 runs (scripts/setup installs it and the openai package)");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{script} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}\nserver stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        );
        println!("{script}:\n{stdout}");
        stdout
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_openai_client_chats_streams_completes_and_hangs_up() {
    let served = Served::start(&[]);
    let out = served.python("client.py", &[]);
    assert!(out.contains("next request started"), "{out}");
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_keeps_serving() {
    let served = Served::start(&["--context", "256"]);
    served.python("bad_input.py", &[]);
}

#[test]
fn penalties_and_llama_cpp_extensions_from_the_openai_client_are_honoured_or_refused_by_name() {
    let served = Served::start(&[]);
    served.python("sampling.py", &[]);
}

#[test]
fn an_api_key_is_required_when_set() {
    let served = Served::start(&["--api-key", "open-sesame"]);
    served.python("api_key.py", &["open-sesame"]);
}

#[test]
fn a_bounded_load_answers_or_refuses_every_request_and_memory_stays_flat() {
    let served = Served::start(&["--queue", "4"]);
    served.python("load.py", &[&served.pid()]);
}

#[test]
fn a_worker_killed_mid_stream_is_an_error_event_and_the_next_request_gets_a_fresh_worker() {
    let served = Served::start(&[]);
    served.python("kill.py", &[&served.pid()]);
}

#[test]
fn listening_beyond_loopback_needs_an_api_key() {
    let home = tempfile::tempdir().unwrap();
    let smol = smollm2();
    let out = canopy(
        home.path(),
        &[
            "serve",
            "--target",
            smol.to_str().unwrap(),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
    );
    let line = assert_user_error(&out, "serve --host 0.0.0.0");
    assert!(line.contains("--api-key"), "{line}");
    let out = canopy(
        home.path(),
        &["serve", "--target", "/nonexistent.gguf", "--port", "0"],
    );
    assert_user_error(&out, "serve with a missing model");
}

/// The ready line reaches a reader at once (the tests depend on it), and the server exits on
/// SIGTERM.
#[test]
fn stops_on_sigterm() {
    let mut served = Served::start(&[]);
    // SAFETY: signalling our own child by its pid.
    unsafe {
        libc::kill(served.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = String::new();
    let _ = std::fs::File::open(&served.stderr)
        .unwrap()
        .read_to_string(&mut rest);
    assert!(!rest.contains("panicked"), "{rest}");
}
