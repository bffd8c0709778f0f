//! Hub downloads against a real HTTP server on 127.0.0.1 that answers the hub's documented
//! endpoints (search, tree listing with LFS metadata, resolve with a 302 to storage, `Range`):
//! verification against the listed sha256, corruption, resume, gated repositories and tokens,
//! wrong revisions and files, a too-small disk, and split models registered as one.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use canopy_models::{
    DeleteFile, DownloadError, Hub, HubError, HubEvent, HubFile, ImportMode, Library, ModelsError,
};
use common::{serve_hub, small_gguf, split_parts, Behaviour, HubRepo, HubServer};

const REPO: &str = "canopy-test/SmolLM2-135M-Instruct-GGUF";
const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn library(dir: &tempfile::TempDir) -> Library {
    Library::open(&dir.path().join("library.db"), &dir.path().join("models")).unwrap()
}

fn smol() -> Arc<Vec<u8>> {
    Arc::new(std::fs::read(common::real_model("smollm2-135m")).unwrap())
}

fn tiny() -> Arc<Vec<u8>> {
    Arc::new(small_gguf(&["<s>", "</s>", "a", "b"], 8192))
}

fn hub(server: &HubServer, token: Option<&str>) -> Hub {
    Hub::new(&server.endpoint, token.map(str::to_string)).unwrap()
}

fn fetch(
    hub: &Hub,
    lib: &mut Library,
    reference: &str,
) -> Result<
    (
        canopy_models::ModelRecord,
        Vec<canopy_models::download::Downloaded>,
    ),
    ModelsError,
> {
    let plan = hub.plan(&HubFile::parse(reference)?)?;
    hub.download(lib, &plan, &AtomicBool::new(false), &mut |_| {})
}

fn models_dir_files(lib: &Library) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(lib.models_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[test]
fn a_real_model_downloads_verified_with_the_listed_sha256() {
    let data = smol();
    let sha = common::sha256_hex(&data);
    let server = serve_hub(
        vec![HubRepo::new(REPO).file(SMOL, data.clone())],
        Behaviour::default(),
    );
    let hub = hub(&server, None);
    let dir = tempfile::tempdir().unwrap();
    let mut lib = library(&dir);

    let found = hub.search("smollm2", 10).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, REPO);
    let groups = hub.list_gguf_files(REPO, "main").unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].quant.as_deref(), Some("Q4_1"));
    assert_eq!(groups[0].entries[0].size, data.len() as u64);

    let plan = hub
        .plan(&HubFile::parse(&format!("hf:{REPO}/{SMOL}")).unwrap())
        .unwrap();
    assert_eq!(plan.parts.len(), 1);
    assert_eq!(plan.parts[0].sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(plan.size(), data.len() as u64);
    let mut events = Vec::new();
    let (record, files) = hub
        .download(&mut lib, &plan, &AtomicBool::new(false), &mut |e| {
            events.push(e.clone())
        })
        .unwrap();
    assert!(matches!(
        events[0],
        HubEvent::Part {
            part: 1,
            parts: 1,
            ..
        }
    ));
    assert!(files[0].checksum_verified);
    assert_eq!(record.sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(record.file_name, SMOL);
    assert!(record.parts.is_empty());
    assert_eq!(record.info.architecture.as_deref(), Some("llama"));
    // The resolve URL answered 302 and the bytes came from the storage path.
    assert_eq!(server.requests("/cdn/").len(), 1);
    // A resolve URL names the same file.
    let url = format!("{}/{REPO}/resolve/main/{SMOL}", server.endpoint);
    assert_eq!(
        HubFile::parse(&url).unwrap(),
        HubFile::parse(&format!("hf:{REPO}/{SMOL}")).unwrap()
    );
}

#[test]
fn a_corrupted_byte_is_refused_and_nothing_is_registered() {
    let server = serve_hub(
        vec![HubRepo::new(REPO).file("tiny-Q8_0.gguf", tiny())],
        Behaviour {
            corrupt: true,
            ..Behaviour::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let mut lib = library(&dir);
    let err = fetch(
        &hub(&server, None),
        &mut lib,
        &format!("hf:{REPO}/tiny-Q8_0.gguf"),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ModelsError::Download(DownloadError::ChecksumMismatch { .. })
        ),
        "{err}"
    );
    assert!(lib.list().unwrap().models.is_empty());
    assert!(models_dir_files(&lib).is_empty());
}

#[test]
fn a_cut_connection_resumes_from_where_it_stopped() {
    let data = tiny();
    let server = serve_hub(
        vec![HubRepo::new(REPO).file("tiny-Q8_0.gguf", data.clone())],
        Behaviour {
            cut_first_at: Some(5000),
            ..Behaviour::default()
        },
    );
    let hub = hub(&server, None);
    let dir = tempfile::tempdir().unwrap();
    let mut lib = library(&dir);
    let reference = format!("hf:{REPO}/tiny-Q8_0.gguf");
    let err = fetch(&hub, &mut lib, &reference).unwrap_err();
    assert!(
        matches!(
            err,
            ModelsError::Download(DownloadError::Dropped { done: 5000, .. })
        ),
        "{err}"
    );
    let (record, files) = fetch(&hub, &mut lib, &reference).unwrap();
    assert_eq!(files[0].sha256, common::sha256_hex(&data));
    assert_eq!(record.size, data.len() as u64);
    let cdn = server.requests("/cdn/");
    assert_eq!(cdn.len(), 2);
    assert_eq!(cdn[0].range, None);
    assert_eq!(cdn[1].range.as_deref(), Some("bytes=5000-"));
}

#[test]
fn a_gated_file_needs_the_token_and_the_token_reaches_only_the_hub() {
    let server = serve_hub(
        vec![HubRepo::new("meta-llama/Gated-GGUF")
            .gated("hf_right")
            .file("g-Q4_K_M.gguf", tiny())],
        Behaviour::default(),
    );
    let reference = "hf:meta-llama/Gated-GGUF/g-Q4_K_M.gguf";
    let dir = tempfile::tempdir().unwrap();
    let mut lib = library(&dir);

    let err = fetch(&hub(&server, None), &mut lib, reference).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ModelsError::Hub(HubError::GatedNeedsToken { .. })),
        "{msg}"
    );
    assert!(
        msg.contains("HF_TOKEN") && msg.contains("meta-llama/Gated-GGUF"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    assert!(server.requests("/cdn/").is_empty());

    let err = fetch(&hub(&server, Some("hf_wrong")), &mut lib, reference).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ModelsError::Hub(HubError::GatedNoAccess { .. })),
        "{msg}"
    );
    assert!(!msg.contains("hf_wrong"), "{msg}");

    let (record, _) = fetch(&hub(&server, Some("hf_right")), &mut lib, reference).unwrap();
    assert_eq!(record.file_name, "g-Q4_K_M.gguf");
    let resolve = server.requests("/meta-llama/Gated-GGUF/resolve/");
    assert_eq!(
        resolve.last().unwrap().authorization.as_deref(),
        Some("Bearer hf_right")
    );
    // The storage the hub redirects to never sees the token.
    let cdn = server.requests("/cdn/");
    assert_eq!(cdn.len(), 1);
    assert_eq!(cdn[0].authorization, None);
}

#[test]
fn wrong_revision_missing_file_and_unknown_repo_are_clear_errors() {
    let server = serve_hub(
        vec![HubRepo::new(REPO).file("tiny-Q8_0.gguf", tiny())],
        Behaviour::default(),
    );
    let hub = hub(&server, None);
    let dir = tempfile::tempdir().unwrap();
    let mut lib = library(&dir);
    let cases = [
        (
            format!("hf:{REPO}@v9/tiny-Q8_0.gguf"),
            "has no revision \"v9\"",
        ),
        (
            format!("hf:{REPO}/tiny-Q4_0.gguf"),
            "has no file \"tiny-Q4_0.gguf\"",
        ),
        (
            "hf:nobody/nothing/x.gguf".to_string(),
            "no repository nobody/nothing",
        ),
    ];
    for (reference, expect) in cases {
        let msg = fetch(&hub, &mut lib, &reference).unwrap_err().to_string();
        assert!(
            msg.contains(expect) && !msg.contains('\n'),
            "{reference}: {msg}"
        );
    }
    let msg = fetch(&hub, &mut lib, &format!("hf:{REPO}/tiny-Q4_0.gguf"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("tiny-Q8_0.gguf"),
        "names what the folder has: {msg}"
    );
    let msg = hub.list_gguf_files(REPO, "nope").unwrap_err().to_string();
    assert!(msg.contains("has no revision"), "{msg}");
    assert!(lib.list().unwrap().models.is_empty());
}

#[test]
fn a_disk_too_small_is_refused_before_the_first_byte() {
    let server = serve_hub(
        vec![HubRepo::new(REPO).file_listed_as("huge-Q8_0.gguf", tiny(), 1 << 60)],
        Behaviour::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut lib = library(&dir);
    let err = fetch(
        &hub(&server, None),
        &mut lib,
        &format!("hf:{REPO}/huge-Q8_0.gguf"),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ModelsError::Download(DownloadError::DiskFull { needed, .. }) if needed == 1 << 60),
        "{msg}"
    );
    assert!(msg.contains("disk full"), "{msg}");
    assert!(server.requests("/cdn/").is_empty());
    assert!(models_dir_files(&lib).is_empty());
}

#[test]
fn a_split_model_downloads_every_part_and_registers_one_model() {
    let parts = split_parts("SmolLM2-135M-Instruct-Q4_1", &smol(), 2);
    let mut repo = HubRepo::new(REPO);
    for (name, bytes) in &parts {
        repo = repo.file(name, bytes.clone());
    }
    let server = serve_hub(vec![repo], Behaviour::default());
    let hub = hub(&server, None);
    let groups = hub.list_gguf_files(REPO, "main").unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].entries.len(), 1, "the parts are one entry");
    assert_eq!(groups[0].entries[0].files.len(), 2);

    let dir = tempfile::tempdir().unwrap();
    let mut lib = library(&dir);
    // Naming any part downloads the set.
    let (record, files) = fetch(&hub, &mut lib, &format!("hf:{REPO}/{}", parts[1].0)).unwrap();
    assert_eq!(files.len(), 2);
    for ((name, bytes), file) in parts.iter().zip(&files) {
        assert_eq!(file.sha256, common::sha256_hex(bytes), "{name}");
        assert!(file.checksum_verified);
    }
    assert_eq!(record.file_name, parts[0].0);
    assert_eq!(record.parts.len(), 2);
    assert_eq!(record.size, (parts[0].1.len() + parts[1].1.len()) as u64);
    assert_eq!(
        record.parts[1].sha256.as_deref(),
        Some(files[1].sha256.as_str())
    );
    let whole = canopy_gguf::inspect(&common::real_model("smollm2-135m")).unwrap();
    assert_eq!(record.info.tensor_count, whole.tensor_count);
    assert_eq!(record.info.parameter_count, whole.parameter_count);
    assert_eq!(lib.list().unwrap().models.len(), 1);
    assert_eq!(
        lib.find_by_path(&files[1].path).unwrap().unwrap().id,
        record.id
    );

    lib.remove(record.id, DeleteFile::InsideModelsDir).unwrap();
    assert!(
        models_dir_files(&lib).is_empty(),
        "remove deletes every part"
    );
}

#[test]
fn split_sets_on_disk_register_through_the_first_part_only() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let parts = split_parts("tiny", &small_gguf(&["a", "b"], 4096), 3);
    assert_eq!(parts.len(), 1, "one tensor makes one part");
    let mut writer = canopy_gguf::GgufWriter::new().kv_str("general.architecture", "llama");
    for i in 0..3 {
        writer = writer.tensor(format!("t{i}"), &[64], canopy_gguf::GgmlType::F32);
    }
    let parts = split_parts("tiny", &writer.to_bytes(), 3);
    for (name, bytes) in &parts {
        common::write(&src.join(name), bytes);
    }
    let mut lib = library(&dir);
    let err = lib
        .import(&src.join(&parts[1].0), ImportMode::Reference)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("first part") && err.contains(&parts[0].0),
        "{err}"
    );

    let report = lib.scan(&src).unwrap();
    assert_eq!(report.added.len(), 1, "{report:?}");
    assert_eq!(report.already.len(), 2);
    assert!(report.invalid.is_empty(), "{report:?}");
    let record = &report.added[0];
    assert_eq!(record.parts.len(), 3);
    assert_eq!(record.info.tensor_count, 3);
    let finals = lib.start_hashing(&report.added).wait();
    assert!(
        matches!(finals[0], canopy_models::HashEvent::Done { .. }),
        "{finals:?}"
    );
    let hashed = lib.get(record.id).unwrap();
    assert_eq!(
        hashed.sha256.as_deref(),
        Some(common::sha256_hex(&parts[0].1).as_str())
    );
    assert_eq!(
        hashed.parts[2].sha256.as_deref(),
        Some(common::sha256_hex(&parts[2].1).as_str())
    );
    lib.remove(record.id, DeleteFile::Keep).unwrap();

    // Copy-importing the first part copies the set.
    let copied = lib
        .import(&src.join(&parts[0].0), ImportMode::Copy)
        .unwrap();
    assert_eq!(copied.parts.len(), 3);
    assert_eq!(models_dir_files(&lib).len(), 3);
    lib.remove(copied.id, DeleteFile::InsideModelsDir).unwrap();

    // A missing part is named.
    std::fs::remove_file(src.join(&parts[2].0)).unwrap();
    let err = lib
        .import(&src.join(&parts[0].0), ImportMode::Reference)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("part 3 of 3") && err.contains("missing"),
        "{err}"
    );
}
