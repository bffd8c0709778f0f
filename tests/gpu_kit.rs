//! The GPU kit's dry run: `scripts/gpu-kit` packs the `canopy` binary under test with the check,
//! the generator, the tokenizer and the acceptance vector; the kit is unpacked into an empty
//! folder and `gpu-check --dry-run` runs from there with tiny synthetic models. Without a GPU
//! every placement is `cpu`; the check must still print its table and pass its exactness check,
//! so that the script cannot rot between GPU loans. A second run walks the script's GPU path
//! (`--assume-gpu`: the GPU placements, which llama.cpp runs on the CPU without a GPU).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_success, stderr, stdout, CANOPY};

fn python() -> Command {
    Command::new("python3")
}

/// Packs a kit from the binary under test into `dir` and unpacks it there; returns the kit's
/// folder.
fn pack_and_unpack(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kit = dir.join("kit.tar.xz");
    let packed = python()
        .arg(root.join("scripts/gpu-kit"))
        .args(["--canopy", CANOPY, "--level", "0", "--tokenizer"])
        .arg(common::smollm2())
        .arg(&kit)
        .output()
        .expect("run scripts/gpu-kit");
    assert_success(&packed, "gpu-kit");
    assert!(stdout(&packed).contains("MiB"), "{}", stdout(&packed));
    let size = std::fs::metadata(&kit).unwrap().len();
    assert!(size < 60 << 20, "the kit is {size} bytes");

    // Unpacked with nothing of the repository around: a fresh folder, Python's tarfile.
    let unpacked = dir.join("unpacked");
    let out = python()
        .args(["-m", "tarfile", "-e"])
        .arg(&kit)
        .arg(&unpacked)
        .output()
        .unwrap();
    assert_success(&out, "unpacking the kit");
    let kit_dir = unpacked.join("canopy-gpu-kit");
    for file in [
        "canopy",
        "gpu-check",
        "synth-gguf",
        "tokenizer.gguf",
        "qwen-coder-acceptance.json",
        "KIT.json",
    ] {
        assert!(kit_dir.join(file).is_file(), "the kit lacks {file}");
    }
    kit_dir
}

/// Runs the kit's `gpu-check --dry-run OUTDIR ARGS` and checks what every run must show.
fn dry_run(kit_dir: &Path, outdir: &Path, args: &[&str]) -> Output {
    let check = python()
        .arg(kit_dir.join("gpu-check"))
        .arg("--dry-run")
        .arg(outdir)
        .args(args)
        .current_dir(outdir.parent().unwrap())
        .env_remove("CANOPY_TEST_MODELS")
        .env_remove("CANOPY_HOME")
        .output()
        .expect("run gpu-check");
    assert_success(&check, "gpu-check --dry-run");
    let table = stdout(&check);
    for expected in [
        "| what | tok/s |",
        "Canopy's plan, placement",
        "plain decoding, placement",
        "baseline: generate --plan none",
        "same text",
        "exactness: passed",
    ] {
        assert!(
            table.contains(expected),
            "no {expected:?} in the table:\n{table}\nprogress:\n{}",
            stderr(&check)
        );
    }
    let log = stderr(&check);
    assert!(log.contains("probing the machine"), "{log}");
    assert!(log.contains("gpu: "), "{log}");

    // Everything it wrote is under OUTDIR, with the bundle to carry back; the models are gone.
    assert!(outdir.join("report.md").is_file());
    assert!(outdir.join("bundle.tar.gz").is_file());
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outdir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["dry_run"], true);
    // Without a GPU the small model is batch-invariant: every plan prints target-only's text.
    let exact = results["exactness"].as_array().unwrap();
    assert!(!exact.is_empty() && exact.iter().all(|e| e["same"] == e["of"]));
    assert!(
        results["failures"].as_array().unwrap().is_empty(),
        "{results}"
    );
    assert!(!outdir.join("models").exists());
    check
}

/// One test, the two runs one after the other: llama.cpp's threads spin while they wait, so two
/// checks at once on a small machine take several times as long as one after the other.
#[test]
fn the_kit_unpacks_and_its_dry_runs_print_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let kit_dir = pack_and_unpack(dir.path());

    let check = dry_run(&kit_dir, &dir.path().join("check"), &[]);
    if stderr(&check).contains("gpu: none") {
        // No GPU here (or a build without CUDA): every placement is the CPU.
        let table = stdout(&check);
        assert!(table.contains("placement cpu"), "{table}");
        assert!(
            table.contains("Exactness cpu tree:16: 2/2 same text"),
            "{table}"
        );
    }

    // The script's GPU path: `layers:1`, `stream` and `gpu` placements, both plans.
    let check = dry_run(
        &kit_dir,
        &dir.path().join("check-gpu-path"),
        &["--assume-gpu", "--card-layers", "1"],
    );
    let table = stdout(&check);
    for expected in [
        "Canopy's plan, placement layers:1",
        "Canopy's plan, placement stream",
        "plain decoding, placement stream",
        "-ngl 1 baseline",
        "Exactness gpu tree:16: 2/2 same text",
        "Exactness stream tree:16: 2/2 same text",
    ] {
        assert!(table.contains(expected), "no {expected:?} in:\n{table}");
    }
}
