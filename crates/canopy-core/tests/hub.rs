//! The core's hub service against a real hub on 127.0.0.1: files with their fit, the library
//! usable while a download runs, and the saved token.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use canopy_core::{Core, Inference};
use canopy_worker::{CancelFlag, Event, Job, JobResult, WorkerError};

#[path = "../../canopy-models/tests/common/mod.rs"]
mod hub_fixture;

struct NoEngine;

impl Inference for NoEngine {
    fn run(
        &mut self,
        _: Job,
        _: Option<u32>,
        _: &CancelFlag,
        _: &mut dyn FnMut(&Event),
    ) -> Result<JobResult, WorkerError> {
        Err(WorkerError::User("no engine in this test".into()))
    }
}

/// One test in this binary: it sets `HF_ENDPOINT` for the whole process.
#[test]
fn hub_files_downloads_and_the_token() {
    let data = Arc::new(hub_fixture::small_gguf(&["a", "b", "c"], 4096));
    let repo = hub_fixture::HubRepo::new("canopy-test/Tiny-GGUF")
        .file("Tiny-Q8_0.gguf", data.clone())
        .file_listed_as("Tiny-F16.gguf", data, 1 << 50);
    let server = hub_fixture::serve_hub(vec![repo], hub_fixture::Behaviour::default());
    std::env::set_var("HF_ENDPOINT", &server.endpoint);
    std::env::remove_var("HF_TOKEN");
    let home = tempfile::tempdir().unwrap();
    let core = Core::new(home.path().to_path_buf(), Box::new(NoEngine));

    let found = core.hub_search("tiny", 10).unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        core.hub_search("  ", 10).is_err(),
        "an empty search is refused"
    );

    let files = core.hub_files("canopy-test/Tiny-GGUF", "").unwrap();
    let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["Tiny-Q8_0", "Tiny-F16"], "{files:?}");
    assert_eq!(files[0].source, "hf:canopy-test/Tiny-GGUF/Tiny-Q8_0.gguf");
    assert_eq!(files[0].quant.as_deref(), Some("Q8_0"));
    assert_eq!(
        files[1].fit.map(|b| b.as_str()),
        Some("too-big"),
        "1 PiB cannot fit"
    );
    assert!(!files[0].in_library);

    // The library stays usable while the download runs: listing from the progress callback
    // would deadlock if the download held the library.
    let source = core.download_source(&files[0].source, None).unwrap();
    let mut listed_during = 0;
    let downloaded = core
        .download(&source, &AtomicBool::new(false), &mut |_| {
            if listed_during == 0 {
                listed_during = core.model_views().unwrap().len() + 1;
            }
        })
        .unwrap();
    assert!(downloaded.checksum_verified, "the hub lists the sha256");
    let record = downloaded.record;
    assert_eq!(
        listed_during, 1,
        "the library was listed (empty) during the download"
    );
    assert_eq!(record.file_name, "Tiny-Q8_0.gguf");
    let files = core.hub_files("canopy-test/Tiny-GGUF", "main").unwrap();
    assert!(files[0].in_library, "{files:?}");

    // The token: refused when malformed, saved readable by the user only, forgotten.
    assert!(core.save_hub_token(Some("two words")).is_err());
    let status = core.save_hub_token(Some(" hf_abc123 \n")).unwrap();
    assert!(status.saved && !status.from_environment);
    let saved = home.path().join("hub-token");
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), "hf_abc123");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    assert!(core.hub().unwrap().has_token());
    assert!(!format!("{:?}", core.hub().unwrap()).contains("hf_abc123"));
    assert!(!core.save_hub_token(None).unwrap().saved);
    assert!(!saved.exists());
}
