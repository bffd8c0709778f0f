//! End-to-end tests of `canopy plan`, running the built binary.

use std::process::{Command, Output};

fn canopy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(args)
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

#[test]
fn plans_the_issue_example_as_json() {
    let out = canopy(&[
        "plan",
        "--acceptance",
        "0.62,0.11,0.05",
        "--budget",
        "128",
        "--max-depth",
        "10",
        "--json",
    ]);
    let v = json(&out);
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(v["budget_used"].as_u64(), Some(nodes.len() as u64));
    assert!(nodes.len() <= 128 && nodes.len() > 1);
    assert!(v["depth"].as_u64().unwrap() <= 10);
    assert!(v["expected_tokens"].as_f64().unwrap() > 1.62);
    assert_eq!(
        nodes[0],
        serde_json::json!({"parent": null, "rank": 0, "depth": 0})
    );
    // Breadth-first: parents come before children and depths never decrease.
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let parent = node["parent"].as_u64().unwrap() as usize;
        assert!(parent < i);
        assert_eq!(
            node["depth"].as_u64(),
            nodes[parent]["depth"].as_u64().map(|d| d + 1)
        );
        assert!(node["depth"].as_u64() >= nodes[i - 1]["depth"].as_u64());
        assert!((1..=3).contains(&node["rank"].as_u64().unwrap()));
    }
    let leaves = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            !nodes
                .iter()
                .any(|n| n["parent"].as_u64() == Some(*i as u64))
        })
        .count();
    assert_eq!(v["leaves"].as_u64(), Some(leaves as u64));
    assert!(v.get("speedup").is_none());
}

#[test]
fn limits_shape_the_tree() {
    let v = json(&canopy(&[
        "plan",
        "--acceptance",
        "0.6,0.2,0.1",
        "--budget",
        "64",
        "--max-depth",
        "1",
        "--json",
    ]));
    assert_eq!(
        v["budget_used"], 4,
        "depth 1 is the root and one level of siblings"
    );
    let v = json(&canopy(&[
        "plan",
        "--acceptance",
        "0.6,0.2,0.1",
        "--budget",
        "9",
        "--max-branch",
        "1",
        "--json",
    ]));
    assert_eq!(
        (
            v["budget_used"].as_u64(),
            v["depth"].as_u64(),
            v["leaves"].as_u64()
        ),
        (Some(9), Some(8), Some(1))
    );
    let v = json(&canopy(&[
        "plan",
        "--acceptance",
        "0.6,0.2,0.1",
        "--budget",
        "20",
        "--max-depth",
        "6",
        "--max-leaves",
        "3",
        "--json",
    ]));
    assert!(v["leaves"].as_u64().unwrap() <= 3);
}

#[test]
fn a_large_leaf_limited_tree_is_planned_with_a_proven_gap() {
    // Trees of 1024 nodes and at most 255 leaves (llama.cpp's sequence limit).
    let v = json(&canopy(&[
        "plan",
        "--acceptance",
        "0.6,0.1,0.05,0.03,0.02,0.01",
        "--budget",
        "1024",
        "--max-depth",
        "32",
        "--max-branch",
        "32",
        "--max-leaves",
        "255",
        "--json",
    ]));
    assert!(v["budget_used"].as_u64().unwrap() <= 1024);
    assert!(v["budget_used"].as_u64().unwrap() > 256);
    assert!(v["leaves"].as_u64().unwrap() <= 255);
    assert!(v["depth"].as_u64().unwrap() <= 32);
    let (value, bound) = (
        v["expected_tokens"].as_f64().unwrap(),
        v["upper_bound"].as_f64().unwrap(),
    );
    assert!(value <= bound + 1e-9);
    assert!(v["gap"].as_f64().unwrap() < 1e-3, "gap {}", v["gap"]);
}

#[test]
fn costs_choose_budget_and_depth() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("costs.json");
    // A streamed target: a pass costs nearly the same for 1 or 256 tokens.
    std::fs::write(
        &path,
        r#"{"target": [[1, 2.0], [64, 2.05], [256, 2.2]], "draft": [[1, 0.01], [256, 0.03]]}"#,
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let v = json(&canopy(&[
        "plan",
        "--acceptance",
        "0.62,0.11,0.05",
        "--budget",
        "1024",
        "--max-depth",
        "12",
        "--costs",
        path,
        "--json",
    ]));
    assert!(
        v["budget_used"].as_u64().unwrap() <= 256,
        "never beyond the measured target range"
    );
    assert!(v["speedup"].as_f64().unwrap() > 1.5);
    let tps = v["predicted_tokens_per_second"].as_f64().unwrap();
    assert!((tps / 0.5 - v["speedup"].as_f64().unwrap()).abs() < 1e-9);

    // A compute-bound CPU where a pass grows with its size: plain decoding may win, never lose.
    let cpu = dir.path().join("cpu.json");
    std::fs::write(
        &cpu,
        r#"{"target": [[1, 0.1], [2, 0.2], [32, 3.2]], "draft": [[1, 0.05], [32, 1.0]]}"#,
    )
    .unwrap();
    let v = json(&canopy(&[
        "plan",
        "--acceptance",
        "0.3,0.1",
        "--costs",
        cpu.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["budget_used"], 1);
    assert_eq!(v["speedup"].as_f64(), Some(1.0));
}

#[test]
fn text_output_has_a_summary_and_a_picture() {
    let out = canopy(&[
        "plan",
        "--acceptance",
        "0.62,0.11,0.05",
        "--budget",
        "32",
        "--max-depth",
        "5",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("expected tokens per pass"), "{text}");
    assert!(text.contains("depth  nodes  expanded"), "{text}");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("0      1")),
        "{text}"
    );
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad_costs = dir.path().join("bad.json");
    std::fs::write(
        &bad_costs,
        r#"{"target": [[2, 0.1]], "draft": [[1, 0.01]]}"#,
    )
    .unwrap();
    let missing = dir.path().join("missing.json");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--acceptance", "0.7,0.5"], "sum"),
        (vec!["--acceptance", "0.5,nan"], "p[2]"),
        (vec!["--acceptance", "0.5,x"], "p[2]"),
        (vec!["--acceptance", "0.5", "--budget", "0"], "budget"),
        (
            vec!["--acceptance", "0.5", "--max-leaves", "0"],
            "max_leaves",
        ),
        (
            vec!["--acceptance", "0.5", "--costs", missing.to_str().unwrap()],
            "missing.json",
        ),
        (
            vec![
                "--acceptance",
                "0.5",
                "--costs",
                bad_costs.to_str().unwrap(),
            ],
            "n = 1",
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["plan"];
        full.extend(args.iter());
        let out = canopy(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
