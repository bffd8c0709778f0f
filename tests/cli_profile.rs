//! End-to-end test of `canopy profile` with a real model: the measured profile is saved, `canopy plan
//! --profile` plans with its curves, and `canopy generate --plan auto` picks its plan from it.

use std::path::Path;
use std::process::{Command, Output};

fn canopy(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(args)
        .env("CANOPY_HOME", home)
        .output()
        .expect("run canopy")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

fn medians(curve: &serde_json::Value) -> Vec<(u64, f64)> {
    curve["curve"]["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            (
                p["n"].as_u64().unwrap(),
                p["seconds"]["median"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn quick_profile_is_measured_saved_and_used_by_plan_and_generate() {
    let smol = canopy_models::test_model("smollm2-135m").expect("run scripts/fetch-models");
    let smol = smol.to_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    let profile = json(&canopy(
        home.path(),
        &[
            "profile", "--quick", "--json", "--target", smol, "--draft", smol,
        ],
    ));

    assert_eq!(profile["schema_version"], 1);
    assert_eq!(profile["kind"], "measured");
    let curves = &profile["curves"];
    let target = medians(&curves["target"]);
    let draft = medians(&curves["draft"]);
    let ns: Vec<u64> = target.iter().map(|p| p.0).collect();
    // Every size to 16 (a CPU pass is not a line between powers of two), then 32.
    let mut quick: Vec<u64> = (1..=16).collect();
    quick.push(32);
    assert_eq!(ns, quick, "quick CPU grid");
    assert_eq!(draft.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 4, 8]);
    for &(n, s) in target.iter().chain(&draft) {
        assert!(s.is_finite() && s > 0.0, "n={n}: {s}");
    }
    // Real CPU passes: a batch of 32 costs more than half a single token and much less per token.
    let (t1, t32) = (target[0].1, target[16].1);
    assert!(t32 > 0.5 * t1, "t(1) = {t1}, t(32) = {t32}");
    assert!(t32 / 32.0 < t1, "t(1) = {t1}, t(32) = {t32}");
    assert_eq!(
        curves["target"]["model"]["name"],
        "SmolLM2-135M-Instruct.Q4_1"
    );
    // Same model as draft and target: greedy drafts are (nearly) always accepted.
    let p = profile["acceptance"]["p"].as_array().expect("acceptance");
    assert!(p[0].as_f64().unwrap() > 0.9, "{p:?}");
    assert_eq!(profile["resident_layers"], 0);

    let name = profile["name"].as_str().unwrap();
    let saved = home.path().join("profiles").join(format!("{name}.json"));
    assert!(saved.is_file(), "{} missing", saved.display());
    // Stored one way: the file, not the chat history too.
    assert!(std::fs::read_to_string(&saved)
        .unwrap()
        .contains("\"schema_version\": 1"));
    let store = canopy_store::Store::open(&home.path().join("canopy.db")).unwrap();
    assert!(store.legacy_profiles().unwrap().is_empty());

    // `plan --profile` uses the measured curves: a cost-aware choice within the measured range.
    let plan = json(&canopy(
        home.path(),
        &[
            "plan",
            "--profile",
            saved.to_str().unwrap(),
            "--acceptance",
            "0.6,0.1,0.05",
            "--json",
        ],
    ));
    assert!(plan["predicted_tokens_per_second"].as_f64().unwrap() > 0.0);
    assert!(plan["plain_tokens_per_second"].as_f64().unwrap() > 0.0);
    assert!(plan["budget_used"].as_u64().unwrap() <= 32);
    // By name, and with the profile's own acceptance vector.
    let by_name = json(&canopy(home.path(), &["plan", "--profile", name, "--json"]));
    assert!(by_name["speedup"].as_f64().unwrap() >= 1.0);

    // `generate --plan auto` finds the saved profile for these files and placement.
    let out = canopy(
        home.path(),
        &[
            "generate",
            "--plan",
            "auto",
            "--target",
            smol,
            "--draft",
            smol,
            "--max-tokens",
            "8",
            "--temperature",
            "0",
            "--prompt",
            "Say hello.",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let result = json(&out);
    assert!(
        stderr.contains(&format!("planning with profile {name}")),
        "{stderr}"
    );
    // With the same model as draft, a CPU-bound machine may rightly find plain decoding best
    // (every drafted token costs a full pass); either way the plan is the planner's choice.
    // (Candidates from the conversation, when played, are counted after the plans.)
    let chosen = result["plan"].as_str().unwrap();
    let plans = chosen.split("; steps:").next().unwrap();
    assert!(
        plans == "auto: none" || plans.starts_with("auto: tree:"),
        "{chosen}"
    );
    assert!(result["tokens"].as_u64().unwrap() >= 1);
    // auto corrected the profile's curves as it ran and says how far they were off.
    let factor = result["cost_disagreement"].as_f64();
    assert!(factor.is_some_and(|f| f >= 1.0), "{result}");

    // An explicit profile without curves is refused in one line.
    let out = canopy(
        home.path(),
        &[
            "generate",
            "--plan",
            "auto",
            "--target",
            smol,
            "--draft",
            smol,
            "--profile",
            "cpu-only",
            "--prompt",
            "hi",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no measured cost curves"));
}
