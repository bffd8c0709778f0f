//! `canopy models` end to end: the built binary, a temporary CANOPY_HOME, a real HTTP server on
//! 127.0.0.1 and the real test models (fetched by `scripts/fetch-models --all`).

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn canopy(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_canopy"))
        .env("CANOPY_HOME", home)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn real_model(id: &str) -> (PathBuf, String) {
    let path = canopy_models::test_model(id).unwrap_or_else(|e| panic!("{e}"));
    let sha = canopy_models::paths::test_models()
        .unwrap()
        .into_iter()
        .find(|m| m.id == id)
        .unwrap()
        .sha256;
    (path, sha)
}

/// Serves `data` at `/m/<name>`, honouring `Range: bytes=N-`. The first answer is cut after
/// `cut_first_at` bytes when given; with `corrupt`, one byte in the middle is flipped; with
/// `status`, every answer is that status.
fn serve(
    name: &str,
    data: Arc<Vec<u8>>,
    cut_first_at: Option<usize>,
    corrupt: bool,
    status: Option<u16>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/m/{name}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (data, count) = (data.clone(), count.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut start = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(r) = lower.strip_prefix("range: bytes=") {
                        start = r.trim().trim_end_matches('-').parse().unwrap_or(0);
                    }
                }
                let nth = count.fetch_add(1, Ordering::SeqCst);
                if let Some(code) = status {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    return;
                }
                let len = data.len();
                let head = if start > 0 {
                    format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", len - 1, len - start)
                } else {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
                };
                let mut body = data[start..].to_vec();
                if corrupt {
                    let mid = body.len() / 2;
                    body[mid] ^= 0xff;
                }
                let _ = stream.write_all(head.as_bytes());
                match cut_first_at {
                    Some(cut) if nth == 0 => {
                        let _ = stream.write_all(&body[..cut]);
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                    _ => {
                        let _ = stream.write_all(&body);
                    }
                }
            });
        }
    });
    url
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn inspect_shows_real_metadata_and_refuses_invalid_files_with_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let (smol, _) = real_model("smollm2-135m");
    let out = canopy(
        home.path(),
        &["models", "inspect", smol.to_str().unwrap(), "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let info = json(&out);
    assert_eq!(info["architecture"], "llama");
    assert_eq!(info["layers"], 30);

    let bad = home.path().join("bad.gguf");
    std::fs::write(&bad, b"GGML and then some").unwrap();
    let out = canopy(home.path(), &["models", "inspect", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("magic") && err.lines().count() == 1, "{err}");
}

#[test]
fn download_resumes_after_a_cut_and_refuses_corrupt_bytes_and_404() {
    let home = tempfile::tempdir().unwrap();
    let (smol, sha) = real_model("smollm2-135m");
    let data = Arc::new(std::fs::read(&smol).unwrap());
    let name = "SmolLM2-135M-Instruct.Q4_1.gguf";

    let bad_url = serve(name, data.clone(), None, true, None);
    let out = canopy(
        home.path(),
        &["models", "download", &bad_url, "--sha256", &sha],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("checksum mismatch"),
        "{}",
        stderr(&out)
    );
    let list = json(&canopy(home.path(), &["models", "list", "--json"]));
    assert_eq!(list["models"].as_array().unwrap().len(), 0);

    let missing = serve(name, data.clone(), None, false, Some(404));
    let out = canopy(
        home.path(),
        &["models", "download", &missing, "--sha256", &sha],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));

    let url = serve(name, data.clone(), Some(data.len() / 2), false, None);
    let out = canopy(home.path(), &["models", "download", &url, "--sha256", &sha]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("run the same command again to resume"),
        "{}",
        stderr(&out)
    );
    let out = canopy(home.path(), &["models", "download", &url, "--sha256", &sha]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("sha256 verified"), "{}", stdout(&out));
    let list = json(&canopy(home.path(), &["models", "list", "--json"]));
    let models = list["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["sha256"], sha.as_str());
    assert_eq!(models[0]["managed"], true);
    assert!(home.path().join("models").join(name).is_file());

    let out = canopy(
        home.path(),
        &[
            "models",
            "download",
            "ftp://example.com/x.gguf",
            "--sha256",
            &sha,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("only http and https"),
        "{}",
        stderr(&out)
    );
    let out = canopy(
        home.path(),
        &["models", "download", "https://example.com/x.gguf"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--sha256"), "{}", stderr(&out));

    let id = models[0]["id"].to_string();
    let out = canopy(home.path(), &["models", "remove", &id, "--delete-file"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!home.path().join("models").join(name).exists());
}

#[test]
fn import_pairs_fit_and_remove_on_the_real_models() {
    let home = tempfile::tempdir().unwrap();
    for id in ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"] {
        let (path, sha) = real_model(id);
        let out = canopy(
            home.path(),
            &["models", "import", path.to_str().unwrap(), "--reference"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains(&sha), "{}", stderr(&out));
    }
    let out = canopy(home.path(), &["models", "pairs", "3", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pairing = json(&out);
    let candidates = pairing["candidates"].as_array().unwrap();
    assert_eq!(candidates[0]["id"], 2);
    assert_eq!(candidates[0]["verdict"], "compatible");
    assert_eq!(candidates[1]["id"], 1);
    assert_eq!(candidates[1]["verdict"], "refused");
    let reason = candidates[1]["reason"].as_str().unwrap();
    assert!(reason.contains("differ at token"), "{reason}");

    let out = canopy(home.path(), &["models", "pairs", "1"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("larger than the target"),
        "{}",
        stdout(&out)
    );

    let out = canopy(
        home.path(),
        &["models", "fit", "3", "--vram-gib", "4", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let fit = json(&out);
    assert_eq!(fit["draft"], 2);
    assert_eq!(fit["estimate"]["target_layers_resident"], 28);
    assert_eq!(fit["estimate"]["badge"], "fits");

    let (smol, _) = real_model("smollm2-135m");
    let out = canopy(home.path(), &["models", "remove", "1", "--delete-file"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("outside the models folder"),
        "{}",
        stderr(&out)
    );
    assert!(smol.is_file());
    let out = canopy(home.path(), &["models", "remove", "1"]);
    assert!(out.status.success());
    assert!(smol.is_file());
    let out = canopy(home.path(), &["models", "pairs", "99"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn scan_reports_invalid_files_and_catalog_lists_pairs() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("incoming");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("broken.gguf"), b"GGUF\x63\x00\x00\x00").unwrap();
    let out = canopy(home.path(), &["models", "scan", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("invalid") && stdout(&out).contains("version 99"),
        "{}",
        stdout(&out)
    );
    let out = canopy(home.path(), &["models", "list"]);
    assert!(stdout(&out).contains("no models yet"), "{}", stdout(&out));

    let out = canopy(home.path(), &["models", "catalog", "--json"]);
    assert!(out.status.success());
    let catalog = json(&out);
    assert!(catalog["pairs"].as_array().unwrap().len() >= 2);
}

#[path = "../crates/canopy-models/tests/common/mod.rs"]
mod hub_fixture;

mod common;

/// `canopy models download hf:...` against a local hub serving SmolLM2 split in two GGUF files,
/// then `canopy generate` through the registered first part: llama.cpp loads the other part.
#[test]
fn a_split_model_downloads_from_the_hub_as_one_model_and_generates() {
    let (smol, _) = real_model("smollm2-135m");
    let data = std::fs::read(&smol).unwrap();
    let parts = hub_fixture::split_parts("SmolLM2-135M-Instruct-Q4_1", &data, 2);
    let mut repo = hub_fixture::HubRepo::new("canopy-test/SmolLM2-split-GGUF");
    for (name, bytes) in &parts {
        repo = repo.file(name, bytes.clone());
    }
    let server = hub_fixture::serve_hub(vec![repo], hub_fixture::Behaviour::default());
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_canopy"))
            .env("CANOPY_HOME", home.path())
            .env("HF_ENDPOINT", &server.endpoint)
            .env_remove("HF_TOKEN")
            .args(args)
            .output()
            .unwrap()
    };

    let out = run(&["models", "files", "canopy-test/SmolLM2-split-GGUF"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Q4_1") && stdout(&out).contains("(2 parts)"),
        "{}",
        stdout(&out)
    );

    let reference = format!("hf:canopy-test/SmolLM2-split-GGUF/{}", parts[0].0);
    let out = run(&["models", "download", &reference]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fit on this machine"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("2 parts") && stdout(&out).contains("sha256 verified"),
        "{}",
        stdout(&out)
    );
    let listing = json(&run(&["models", "list", "--json"]));
    let models = listing["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "one library entry for the set");
    assert_eq!(models[0]["parts"].as_array().unwrap().len(), 2);
    let first = models[0]["path"].as_str().unwrap().to_string();
    assert!(first.ends_with(&parts[0].0), "{first}");

    let out = run(&[
        "generate",
        "--target",
        &first,
        "--temperature",
        "0",
        "--max-tokens",
        "8",
        "--prompt",
        "hi",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = json(&out)["text"].as_str().unwrap_or_default().to_string();
    assert!(
        !text.trim().is_empty(),
        "generated nothing: {}",
        stdout(&out)
    );

    // A gated or unknown repository is one line and exit code 2.
    let out = run(&["models", "download", "hf:nobody/nothing/x.gguf"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no repository nobody/nothing"),
        "{}",
        stderr(&out)
    );
}

/// A gated repository: refused without a token, downloaded once `canopy models token` saved one
/// (readable by the user only); `models files` then shows the fit and that the file is in the
/// library.
#[test]
fn a_saved_token_opens_a_gated_repository() {
    let (smol, _) = real_model("smollm2-135m");
    let data = std::sync::Arc::new(std::fs::read(&smol).unwrap());
    let repo = hub_fixture::HubRepo::new("canopy-test/Gated-GGUF")
        .file("Gated-Q4_1.gguf", data)
        .gated("hf_secret123");
    let server = hub_fixture::serve_hub(vec![repo], hub_fixture::Behaviour::default());
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut command = common::command(home.path());
        command
            .env("HF_ENDPOINT", &server.endpoint)
            .env_remove("HF_TOKEN")
            .args(args);
        common::with_stdin(command, stdin)
    };
    let reference = "hf:canopy-test/Gated-GGUF/Gated-Q4_1.gguf";

    let out = run(&["models", "download", reference], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("canopy models token"),
        "{}",
        stderr(&out)
    );

    let out = run(&["models", "token"], "two words\n");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = run(&["models", "token"], "hf_secret123\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let saved = home.path().join("hub-token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the token is readable by others: {mode:o}");
    }
    assert!(!stdout(&out).contains("hf_secret123"), "{}", stdout(&out));

    let out = run(&["models", "download", reference], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hf_secret123"), "{}", stderr(&out));
    let out = run(&["models", "files", "canopy-test/Gated-GGUF"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(
        listing.contains("Q4_1") && listing.contains("(in the library)"),
        "{listing}"
    );
    assert!(
        listing.contains("fits") || listing.contains("tight"),
        "{listing}"
    );

    let out = run(&["models", "token", "--remove"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!saved.exists());
}
