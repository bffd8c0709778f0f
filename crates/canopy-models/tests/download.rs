//! Downloads against a real HTTP server on 127.0.0.1: resume after a cut, corrupted bytes, 404, a
//! server that ignores `Range`, a complete partial file (416), cancellation, a full disk.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use canopy_models::{
    download, download_and_register, DownloadError, DownloadEvent, DownloadRequest, Expected,
    Library, ModelsError,
};
use common::{serve, sha256_hex, small_gguf, Behaviour};

fn request(url: &str, sha256: &str) -> DownloadRequest {
    DownloadRequest {
        url: url.to_string(),
        file_name: None,
        expected: Expected {
            sha256: Some(sha256.to_string()),
            size: None,
        },
    }
}

fn library(dir: &tempfile::TempDir) -> Library {
    Library::open(&dir.path().join("library.db"), &dir.path().join("models")).unwrap()
}

fn partial_files(lib: &Library) -> Vec<String> {
    match std::fs::read_dir(lib.models_dir().join(".partial")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".part"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_real_model_cut_half_way_resumes_and_verifies() {
    let model = common::real_model("smollm2-135m");
    let data = Arc::new(std::fs::read(&model).unwrap());
    let sha = canopy_models::paths::test_models()
        .unwrap()
        .into_iter()
        .find(|m| m.id == "smollm2-135m")
        .unwrap()
        .sha256;
    let half = data.len() as u64 / 2;
    let server = serve(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        data.clone(),
        Behaviour {
            cut_first_at: Some(half),
            ..Behaviour::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let mut lib = library(&dir);
    let cancel = AtomicBool::new(false);
    let req = request(&server.url, &sha);

    let err = download_and_register(&mut lib, &req, &cancel, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ModelsError::Download(DownloadError::Dropped { done, .. }) if done == half),
        "{msg}"
    );
    assert!(
        msg.contains("run the same command again to resume"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    let part = lib
        .models_dir()
        .join(".partial/SmolLM2-135M-Instruct.Q4_1.gguf.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), half);
    assert!(lib.list().unwrap().models.is_empty());

    let mut events = Vec::new();
    let (record, file) =
        download_and_register(&mut lib, &req, &cancel, &mut |e| events.push(e.clone())).unwrap();
    assert_eq!(events[0], DownloadEvent::CheckingPartial { bytes: half });
    assert!(events.contains(&DownloadEvent::Connected {
        resume_from: half,
        total: Some(data.len() as u64)
    }));
    assert_eq!(
        *server.ranges.lock().unwrap(),
        vec![None, Some(format!("bytes={half}-"))]
    );
    assert_eq!(file.sha256, sha);
    assert!(file.checksum_verified);
    assert_eq!(
        file.path,
        lib.models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf")
    );
    assert!(!part.exists());
    assert_eq!(record.sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(record.info.architecture.as_deref(), Some("llama"));
    assert!(record.managed);
    assert_eq!(lib.list().unwrap().models.len(), 1);
}

#[test]
fn corrupted_bytes_are_refused_and_nothing_is_kept() {
    let data = Arc::new(small_gguf(&["<s>", "</s>", "a", "b"], 4096));
    let sha = sha256_hex(&data);
    let server = serve(
        "tiny.gguf",
        data,
        Behaviour {
            corrupt: true,
            ..Behaviour::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let mut lib = library(&dir);
    let err = download_and_register(
        &mut lib,
        &request(&server.url, &sha),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ModelsError::Download(DownloadError::ChecksumMismatch { .. })
        ),
        "{msg}"
    );
    assert!(msg.contains(&sha) && msg.contains("deleted"), "{msg}");
    assert!(lib.list().unwrap().models.is_empty());
    assert!(partial_files(&lib).is_empty());
    assert!(!lib.models_dir().join("tiny.gguf").exists());
}

#[test]
fn not_found_and_other_statuses_are_one_line_errors() {
    let data = Arc::new(small_gguf(&["a"], 32));
    let dir = tempfile::tempdir().unwrap();
    let lib = library(&dir);
    let sha = sha256_hex(&data);
    for (status, expect) in [(404u16, "HTTP 404 Not Found"), (503, "HTTP 503")] {
        let server = serve(
            "tiny.gguf",
            data.clone(),
            Behaviour {
                status: Some(status),
                ..Behaviour::default()
            },
        );
        let err = download(
            lib.models_dir(),
            &request(&server.url, &sha),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(expect) && err.contains(&server.url), "{err}");
    }
    // Nothing listens on a just-closed port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/tiny.gguf");
    let err = download(
        lib.models_dir(),
        &request(&url, &sha),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, DownloadError::Connect { .. }), "{err}");
    let err = download(
        lib.models_dir(),
        &request("ftp://127.0.0.1/tiny.gguf", &sha),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, DownloadError::UnsupportedScheme { .. }),
        "{err}"
    );
    let err = download(
        lib.models_dir(),
        &request("http://127.0.0.1/tiny.gguf", "abc"),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, DownloadError::BadChecksum { .. }), "{err}");
}

#[test]
fn a_server_ignoring_range_restarts_from_zero() {
    let data = Arc::new(small_gguf(&["<s>", "</s>", "x"], 64 * 1024));
    let sha = sha256_hex(&data);
    let server = serve(
        "tiny.gguf",
        data.clone(),
        Behaviour {
            cut_first_at: Some(10_000),
            ignore_range: true,
            ..Behaviour::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let mut lib = library(&dir);
    let req = request(&server.url, &sha);
    let cancel = AtomicBool::new(false);
    assert!(download_and_register(&mut lib, &req, &cancel, &mut |_| {}).is_err());
    let mut events = Vec::new();
    let (record, file) =
        download_and_register(&mut lib, &req, &cancel, &mut |e| events.push(e.clone())).unwrap();
    assert!(events.contains(&DownloadEvent::ServerIgnoredRange { discarded: 10_000 }));
    assert_eq!(file.sha256, sha);
    assert_eq!(file.size, data.len() as u64);
    assert_eq!(record.size, data.len() as u64);
}

#[test]
fn a_complete_partial_file_is_verified_after_416() {
    let data = Arc::new(small_gguf(&["<s>", "</s>"], 1024));
    let sha = sha256_hex(&data);
    let server = serve("tiny.gguf", data.clone(), Behaviour::default());
    let dir = tempfile::tempdir().unwrap();
    let lib = library(&dir);
    // Cancel after the last chunk arrived but before the rename: the whole file is in the partial.
    let cancel = AtomicBool::new(false);
    let total = data.len() as u64;
    let req = request(&server.url, &sha);
    // One chunk holds the whole small file, so cancellation lands before the end-of-body check.
    let err = download(lib.models_dir(), &req, &cancel, &mut |e| {
        if let DownloadEvent::Progress { done, .. } = e {
            if *done == total {
                cancel.store(true, Ordering::SeqCst);
            }
        }
    })
    .unwrap_err();
    assert!(matches!(err, DownloadError::Cancelled { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("run the same command again to resume"));
    let file = download(lib.models_dir(), &req, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(file.sha256, sha);
    assert_eq!(
        server.ranges.lock().unwrap().last().unwrap().as_deref(),
        Some(format!("bytes={total}-").as_str())
    );
}

#[test]
fn size_only_verification_when_no_checksum_is_known() {
    let data = Arc::new(small_gguf(&["a", "b"], 256));
    let server = serve("tiny.gguf", data.clone(), Behaviour::default());
    let dir = tempfile::tempdir().unwrap();
    let lib = library(&dir);
    let mut req = request(&server.url, "");
    req.expected = Expected {
        sha256: None,
        size: Some(data.len() as u64 + 1),
    };
    let err = download(lib.models_dir(), &req, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
    assert!(matches!(err, DownloadError::SizeMismatch { .. }), "{err}");
    req.expected.size = Some(data.len() as u64);
    let file = download(lib.models_dir(), &req, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert!(!file.checksum_verified);
    req.expected = Expected::default();
    let err = download(lib.models_dir(), &req, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
    assert!(matches!(err, DownloadError::NothingToVerify), "{err}");
}

#[test]
fn an_invalid_gguf_with_the_right_checksum_is_deleted_and_not_registered() {
    let data = Arc::new(b"this is not a model at all".to_vec());
    let sha = sha256_hex(&data);
    let server = serve("fake.gguf", data, Behaviour::default());
    let dir = tempfile::tempdir().unwrap();
    let mut lib = library(&dir);
    let err = download_and_register(
        &mut lib,
        &request(&server.url, &sha),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, ModelsError::InvalidGguf { .. }), "{err}");
    assert!(err.to_string().contains("magic"), "{err}");
    assert!(!lib.models_dir().join("fake.gguf").exists());
    assert!(lib.list().unwrap().models.is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_keeps_the_partial_and_says_so() {
    let data = Arc::new(small_gguf(&["a", "b"], 1024));
    let sha = sha256_hex(&data);
    let server = serve("tiny.gguf", data, Behaviour::default());
    let dir = tempfile::tempdir().unwrap();
    let lib = library(&dir);
    let req = request(&server.url, &sha);
    // A first, cancelled attempt leaves the partial's bookkeeping; then the partial becomes
    // /dev/full, where every write fails with ENOSPC.
    let cancel = AtomicBool::new(true);
    assert!(download(lib.models_dir(), &req, &cancel, &mut |_| {}).is_err());
    let part = lib.models_dir().join(".partial/tiny.gguf.part");
    std::fs::remove_file(&part).unwrap();
    std::os::unix::fs::symlink("/dev/full", &part).unwrap();
    let err = download(lib.models_dir(), &req, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, DownloadError::DiskFullWhileWriting { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("disk full"), "{err}");
}
