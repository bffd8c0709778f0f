//! End-to-end test of `canopy simulate`: the real SmolLM2 pair's behaviour, charged with the RTX 4090
//! reference profile's predicted costs for a Llama-2-70B-sized target.

use std::process::Command;

#[test]
fn predicts_a_streamed_70b_sized_target_on_the_rtx4090_profile() {
    let smol = canopy_models::test_model("smollm2-135m").expect("run scripts/fetch-models");
    let smol = smol.to_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args([
            "simulate",
            "--profile",
            "rtx4090-pcie4",
            "--target",
            smol,
            "--draft",
            smol,
            "--target-bytes",
            "41400000000",
            "--num-prompts",
            "1",
            "--max-tokens",
            "8",
            "--json",
        ])
        .env("CANOPY_HOME", home.path())
        .output()
        .expect("run canopy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(v["prediction"]
        .as_str()
        .unwrap()
        .starts_with("model-based prediction"));
    assert_eq!(v["target"]["bytes"], 41_400_000_000u64);
    let f = |path: &[&str]| {
        path.iter()
            .fold(&v, |v, k| &v[*k])
            .as_f64()
            .unwrap_or_else(|| panic!("{path:?} in {v}"))
    };
    // All weights over PCIe 4 (24 GB/s) per token: about 41.4 / 24 = 1.7 s.
    let streamed = f(&["plain_streamed", "seconds_per_token"]);
    let pcie = 41.4e9 / 24e9;
    assert!(streamed > pcie / 2.0 && streamed < pcie * 2.0, "{streamed}");
    // The chosen placement (resident layers, CPU path for one token) is no slower than that.
    let plain = f(&["plain", "seconds_per_token"]);
    assert!(plain > 0.0 && plain <= streamed, "{plain} vs {streamed}");
    // Draft = target: every drafted token is accepted, so a deep tree pays off.
    assert!(v["acceptance"][0].as_f64().unwrap() > 0.9, "{v}");
    assert!(v["planner"]["budget"].as_u64().unwrap() >= 2);
    assert!(v["replay"]["tokens"].as_u64().unwrap() >= 1);
    let tree = f(&["tree", "seconds_per_token"]);
    assert!(tree > 0.0 && tree < plain, "{tree} vs {plain}");
    assert!(f(&["tree", "speedup"]) > 1.0);
    assert!((f(&["tree", "tokens_per_second"]) * tree - 1.0).abs() < 1e-9);
}

/// `canopy acceptance` measures through the core: SmolLM2 drafting for itself is accepted at the
/// first candidate, and a bad width is one line and exit 2 before any model loads.
#[test]
fn acceptance_of_a_model_drafting_for_itself() {
    let smol = canopy_models::test_model("smollm2-135m").expect("run scripts/fetch-models");
    let smol = smol.to_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    let prompts = home.path().join("prompts.txt");
    std::fs::write(&prompts, "Name three colours.\nCount to five.\n").unwrap();
    let prompts = prompts.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["acceptance", "--target", smol, "--draft", smol, "--json"];
        args.extend(["--prompts", prompts]);
        args.extend(extra);
        Command::new(env!("CARGO_BIN_EXE_canopy"))
            .args(&args)
            .env("CANOPY_HOME", home.path())
            .output()
            .expect("run canopy")
    };
    let out = run(&["--tokens", "8", "--width", "4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["acceptance"].as_array().unwrap().len(), 4, "{v}");
    assert!(v["acceptance"][0].as_f64().unwrap() > 0.9, "{v}");
    assert_eq!(v["mode"], "greedy");

    let out = run(&["--width", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("width must be between 1 and 64"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
