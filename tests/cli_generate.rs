//! `canopy generate` end to end: the built binary, the real llama.cpp worker and the real test
//! models (fetched by `scripts/fetch-models --all`).

mod common;

use std::path::Path;

use common::{assert_success, assert_user_error, canopy, json, model, smollm2, stdout};

const HAIKU: &str = "Write a haiku about trees.";

fn generate(home: &Path, target: &Path, extra: &[&str]) -> serde_json::Value {
    let target = target.to_str().unwrap();
    let mut args = vec!["generate", "--target", target];
    args.extend_from_slice(extra);
    args.push("--json");
    let out = canopy(home, &args);
    assert_success(&out, &format!("canopy {}", args.join(" ")));
    json(&out)
}

fn text(v: &serde_json::Value) -> &str {
    v["text"].as_str().expect("text is a string")
}

#[test]
fn greedy_generation_is_deterministic_and_reports_statistics() {
    let home = tempfile::tempdir().unwrap();
    let smol = smollm2();
    let args = [
        "--prompt",
        HAIKU,
        "--temperature",
        "0",
        "--max-tokens",
        "48",
    ];
    let first = generate(home.path(), &smol, &args);
    let second = generate(home.path(), &smol, &args);
    assert!(!text(&first).is_empty(), "empty text: {first}");
    assert_eq!(
        text(&first),
        text(&second),
        "greedy output changed between runs"
    );

    let tokens = first["tokens"].as_u64().unwrap();
    assert!((1..=48).contains(&tokens), "tokens: {first}");
    assert!(first["prefill_tokens"].as_u64().unwrap() > 5, "{first}");
    assert!(
        first["tokens_per_second"].as_f64().unwrap() > 0.0,
        "{first}"
    );
    assert_eq!(first["plan"], "none");
    assert_eq!(first["mean_accepted_per_step"].as_f64(), Some(0.0));
    let provenance = first["provenance"].as_str().unwrap();
    assert_eq!(
        provenance.len() as u64,
        tokens,
        "one provenance mark per token"
    );
    assert!(
        provenance.chars().all(|c| c == 't'),
        "no draft, all target: {provenance}"
    );
    for field in [
        "steps",
        "draft_ms",
        "verify_ms",
        "stop_reason",
        "prefill_ms",
    ] {
        assert!(!first[field].is_null(), "missing {field}: {first}");
    }

    // Without --json the same text streams to stdout, followed by a newline.
    let out = canopy(
        home.path(),
        &[
            "generate",
            "--target",
            smol.to_str().unwrap(),
            "--prompt",
            HAIKU,
            "--temperature",
            "0",
            "--max-tokens",
            "48",
        ],
    );
    assert_success(&out, "streaming generate");
    assert_eq!(stdout(&out), format!("{}\n", text(&first)));
}

#[test]
fn same_seed_same_text_and_seeds_matter() {
    let home = tempfile::tempdir().unwrap();
    let smol = smollm2();
    let sample = |seed: &str| {
        let v = generate(
            home.path(),
            &smol,
            &[
                "--prompt",
                "Tell me a short story about a dragon.",
                "--temperature",
                "1.0",
                "--seed",
                seed,
                "--max-tokens",
                "24",
            ],
        );
        text(&v).to_owned()
    };
    let a = sample("7");
    assert_eq!(a, sample("7"), "the same seed must give the same text");
    let others: Vec<String> = ["1", "2", "3"].iter().map(|s| sample(s)).collect();
    assert!(
        others.iter().any(|o| *o != a),
        "four seeds gave the same text: {a:?}"
    );
}

#[test]
fn stop_string_ends_the_text_right_before_it() {
    let home = tempfile::tempdir().unwrap();
    let smol = smollm2();
    let greedy = [
        "--prompt",
        HAIKU,
        "--temperature",
        "0",
        "--max-tokens",
        "48",
    ];
    let full = generate(home.path(), &smol, &greedy);
    let full = text(&full);
    // A word of the greedy output, with its leading space, after the first 20 bytes.
    let start = full[20..]
        .find(' ')
        .map(|i| i + 20)
        .unwrap_or_else(|| panic!("greedy output too short for the test: {full:?}"));
    let word_end = full[start + 1..]
        .find(|c: char| c.is_whitespace() || c.is_ascii_punctuation())
        .map_or(full.len(), |i| i + start + 1);
    let stop = &full[start..word_end];
    assert!(stop.len() > 1, "no word after byte 20 in {full:?}");
    let expected = &full[..full.find(stop).unwrap()];

    let mut args = greedy.to_vec();
    args.extend_from_slice(&["--stop", stop]);
    let stopped = generate(home.path(), &smol, &args);
    assert_eq!(text(&stopped), expected, "stop string {stop:?}");
    assert_eq!(stopped["stop_reason"], "stop", "{stopped}");
}

#[test]
fn prompt_too_long_for_the_context_is_a_user_error() {
    let home = tempfile::tempdir().unwrap();
    let smol = smollm2();
    let out = canopy(
        home.path(),
        &[
            "generate",
            "--target",
            smol.to_str().unwrap(),
            "--prompt",
            HAIKU,
            "--context",
            "64",
            "--max-tokens",
            "100",
        ],
    );
    let line = assert_user_error(&out, "--context 64 --max-tokens 100");
    assert!(line.contains("context"), "{line}");
}

/// A context smaller than the engine's batch size still generates (regression: llama.cpp aborted
/// on `GGML_ASSERT(n_outputs_max <= cparams.n_outputs_max)` for `--context 64`).
#[test]
fn small_context_generates() {
    let home = tempfile::tempdir().unwrap();
    let v = generate(
        home.path(),
        &smollm2(),
        &[
            "--prompt",
            "Hi!",
            "--context",
            "64",
            "--max-tokens",
            "16",
            "--temperature",
            "0",
        ],
    );
    assert!(!text(&v).is_empty(), "{v}");
}

#[test]
fn missing_and_non_gguf_models_are_user_errors() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("no-such-model.gguf");
    let out = canopy(
        home.path(),
        &[
            "generate",
            "--target",
            missing.to_str().unwrap(),
            "--prompt",
            "hi",
        ],
    );
    let line = assert_user_error(&out, "missing model");
    assert!(line.contains("not found"), "{line}");

    let text_file = home.path().join("notes.gguf");
    std::fs::write(&text_file, "these are notes, not a model\n").unwrap();
    let out = canopy(
        home.path(),
        &[
            "generate",
            "--target",
            text_file.to_str().unwrap(),
            "--prompt",
            "hi",
        ],
    );
    let line = assert_user_error(&out, "text file as a model");
    assert!(line.contains("GGUF"), "{line}");
}

#[test]
fn invalid_parameters_are_one_line_user_errors() {
    let home = tempfile::tempdir().unwrap();
    let smol = smollm2();
    let cases: &[&[&str]] = &[
        &["--temperature", "-1"],
        &["--top-p", "0"],
        &["--top-p", "1.5"],
        &["--max-tokens", "0"],
        &["--max-tokens", "abc"],
        &["--plan", "bogus"],
        &["--plan", "chain:2"],
        &["--placement", "xyz"],
        &["--min-p", "1.5"],
        &["--min-p", "-0.1"],
        &["--repeat-penalty", "0"],
        &["--repeat-penalty", "2.5"],
        &["--repeat-last-n", "5000"],
        &["--repeat-last-n", "-1"],
        &["--frequency-penalty", "2.5"],
        &["--presence-penalty", "-3"],
        &["--top-k", "1001"],
    ];
    for case in cases {
        let mut args = vec![
            "generate",
            "--target",
            smol.to_str().unwrap(),
            "--prompt",
            "hi",
        ];
        args.extend_from_slice(case);
        let out = canopy(home.path(), &args);
        assert_user_error(&out, &case.join(" "));
    }
    let out = canopy(
        home.path(),
        &[
            "generate",
            "--target",
            smol.to_str().unwrap(),
            "--prompt",
            "hi",
            "--temperature=-1",
        ],
    );
    let line = assert_user_error(&out, "--temperature=-1");
    assert!(line.contains("--temperature"), "{line}");
    // Each sampling error names its flag.
    for (flag, value) in [
        ("--min-p", "2"),
        ("--repeat-penalty", "3"),
        ("--repeat-last-n", "4097"),
        ("--frequency-penalty", "-2.5"),
        ("--presence-penalty", "2.5"),
    ] {
        let out = canopy(
            home.path(),
            &[
                "generate",
                "--target",
                smol.to_str().unwrap(),
                "--prompt",
                "hi",
                flag,
                value,
            ],
        );
        let line = assert_user_error(&out, &format!("{flag} {value}"));
        assert!(line.contains(flag), "{line}");
    }
}

/// The penalty flags reach the engine: greedy decoding of a repetitive prompt repeats, a
/// repetition penalty makes it stop repeating, and a window of 0 turns the penalty off again.
#[test]
fn penalty_flags_change_greedy_output_and_a_zero_window_turns_them_off() {
    let home = tempfile::tempdir().unwrap();
    let smol = smollm2();
    let base = [
        "--raw",
        "--prompt",
        "1, 1, 1, 1, 1, 1, 1, 1,",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
    ];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        text(&generate(home.path(), &smol, &args)).to_owned()
    };
    let plain = with(&[]);
    let penalised = with(&["--repeat-penalty", "2", "--presence-penalty", "1"]);
    let windowless = with(&[
        "--repeat-penalty",
        "2",
        "--presence-penalty",
        "1",
        "--repeat-last-n",
        "0",
    ]);
    assert_ne!(plain, penalised, "the penalties changed nothing");
    assert_eq!(
        plain, windowless,
        "a window of 0 must turn the penalties off"
    );
}

/// Greedy speculation must reproduce the target's own greedy text. A difference is reported with
/// the position where the texts part.
#[test]
fn greedy_chain_with_an_identical_draft_matches_plain_decoding() {
    // A draft identical to the target is always accepted, so a chain leaves no rejected cells in
    // the cache and the output must match plain decoding byte for byte. (Exactness with a draft
    // that gets rejected is tested over llama.cpp directly in crates/canopy-llama/tests.)
    let home = tempfile::tempdir().unwrap();
    let target = model("smollm2-135m");
    let draft = target.to_str().unwrap().to_owned();
    let run = |plan: &str| {
        generate(
            home.path(),
            &target,
            &[
                "--draft",
                &draft,
                "--prompt",
                "Write a haiku about trees.",
                "--temperature",
                "0",
                "--max-tokens",
                "32",
                "--plan",
                plan,
            ],
        )
    };
    let plain = run("none");
    let chain = run("chain:4");
    assert_eq!(text(&chain), text(&plain));
    assert!(
        chain["provenance"].as_str().unwrap().contains('d'),
        "no draft token accepted: {chain}"
    );
    assert!(
        chain["steps"].as_u64() < plain["steps"].as_u64(),
        "no fewer target passes: {chain}"
    );
    assert_eq!(chain["plan"], "chain:4");
}

#[test]
fn qwen_pair_speculates_and_reports_statistics() {
    let home = tempfile::tempdir().unwrap();
    let target = model("qwen2.5-coder-1.5b");
    let draft = model("qwen2.5-coder-0.5b");
    let draft = draft.to_str().unwrap();
    let prompt = "Write a Python function that reverses a string.";
    let run = |plan: &str| {
        generate(
            home.path(),
            &target,
            &[
                "--draft",
                draft,
                "--prompt",
                prompt,
                "--temperature",
                "0",
                "--max-tokens",
                "32",
                "--plan",
                plan,
            ],
        )
    };
    let plain = run("none");
    for plan in ["tree:8", "chain:3"] {
        let spec = run(plan);
        let (a, b) = (text(&plain), text(&spec));
        let same = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
        // Quantized CPU kernels are not batch-invariant: near ties may flip (measured and
        // explained in crates/canopy-llama/tests/exactness.rs); report the agreement.
        println!(
            "--plan {plan}: first {same} of {} characters equal to --plan none",
            a.chars().count()
        );
        assert!(
            spec["provenance"].as_str().unwrap().contains('d'),
            "--plan {plan} accepted nothing: {spec}"
        );
        assert!(
            spec["steps"].as_u64() < plain["steps"].as_u64(),
            "--plan {plan}: no fewer passes: {spec}"
        );
        assert!(spec["mean_accepted_per_step"].as_f64().unwrap() > 0.0);
        for key in [
            "draft_ms",
            "verify_ms",
            "budget",
            "depth",
            "accepted_histogram",
        ] {
            assert!(spec.get(key).is_some(), "missing {key}: {spec}");
        }
    }
}

#[test]
fn draft_with_another_vocabulary_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let target = model("qwen2.5-coder-1.5b");
    let smol = smollm2();
    let out = canopy(
        home.path(),
        &[
            "generate",
            "--target",
            target.to_str().unwrap(),
            "--draft",
            smol.to_str().unwrap(),
            "--plan",
            "chain:2",
            "--prompt",
            "hi",
            "--max-tokens",
            "4",
        ],
    );
    let line = assert_user_error(&out, "SmolLM2 draft for a Qwen target");
    assert!(line.contains("vocabularies differ at token 0"), "{line}");
    assert!(
        line.contains("'!'") && line.contains("<|endoftext|>"),
        "{line}"
    );
}

/// Whatever processor this runs on: the CPU variant Canopy chose runs a batched prefill (a prompt
/// of well over 64 tokens) and tree passes without a signal, and `worker --backends` names it. On
/// a Sapphire Rapids machine this is the AMX variant, whose batched kernels once died with SIGILL.
#[test]
fn the_chosen_cpu_variant_runs_batched_decodes() {
    let home = tempfile::tempdir().unwrap();
    let backends = canopy(home.path(), &["worker", "--backends"]);
    assert_success(&backends, "canopy worker --backends");
    let line = stdout(&backends);
    assert!(line.starts_with("CPU ("), "{line}");
    println!("backends: {line}");

    let smol = smollm2();
    let prompt =
        "Summarize: ".to_owned() + &"the quick brown fox jumps over the lazy dog. ".repeat(12);
    let out = generate(
        home.path(),
        &smol,
        &[
            "--prompt",
            &prompt,
            "--temperature",
            "0",
            "--max-tokens",
            "16",
            "--draft",
            smol.to_str().unwrap(),
            "--plan",
            "tree:8",
        ],
    );
    assert!(out["prefill_tokens"].as_u64().unwrap() >= 64, "{out}");
    assert!(out["steps"].as_u64().unwrap() >= 1, "{out}");
    assert!(!text(&out).is_empty(), "{out}");
}

/// `auto` with no draft model speculates from the conversation itself (prompt lookup): on a prompt
/// whose answer repeats it, greedy output is the target's own, and what lookup proposed and had
/// accepted is reported (`l` in the provenance).
#[test]
fn auto_without_a_draft_speculates_from_the_conversation_and_prints_the_same_text() {
    let home = tempfile::tempdir().unwrap();
    let smol = smollm2();
    let prompt = "Copy this list exactly, one item per line: apple, banana, cherry, date, \
                  elderberry, fig, grape, apple, banana, cherry, date, elderberry, fig, grape.";
    let base = [
        "--prompt",
        prompt,
        "--temperature",
        "0",
        "--max-tokens",
        "48",
    ];
    let plain = generate(
        home.path(),
        &smol,
        &[&base[..], &["--plan", "none"]].concat(),
    );
    let auto = generate(
        home.path(),
        &smol,
        &[&base[..], &["--plan", "auto"]].concat(),
    );
    assert_eq!(text(&auto), text(&plain), "{auto}");
    let proposed = auto["lookup_tokens"].as_u64().unwrap();
    let accepted = auto["lookup_accepted"].as_u64().unwrap();
    let marked = auto["provenance"].as_str().unwrap().matches('l').count() as u64;
    // Tokens accepted past the end of the reply (an end-of-text token, the length limit) are
    // counted but not printed.
    assert!(marked <= accepted && accepted <= proposed, "{auto}");
    println!(
        "lookup: {accepted} of {proposed} proposed tokens accepted, {marked} printed; plan {}",
        auto["plan"]
    );
}
