//! The validator and metadata reader on real models: SmolLM2-135M and the Qwen2.5-Coder 0.5B/1.5B
//! pair. The models come from `scripts/fetch-models`; a missing model fails the test (set
//! `CANOPY_SKIP_MODEL_TESTS=1` to skip these tests on a machine without them).
//!
//! Models are looked up in `$CANOPY_TEST_MODELS`, else `$CANOPY_HOME/models`, else
//! `~/.local/share/canopy/models`.

use std::path::PathBuf;
use std::time::Instant;

use canopy_gguf::{compare_vocab, inspect, vocabulary, GgmlType, VocabMismatch};

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const QWEN_05B: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
const QWEN_15B: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CANOPY_TEST_MODELS") {
        return dir.into();
    }
    if let Some(home) = std::env::var_os("CANOPY_HOME") {
        return PathBuf::from(home).join("models");
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".local/share/canopy/models")
}

/// The model's path; `None` when the developer chose to skip model tests; panics when it is missing.
fn model(name: &str) -> Option<PathBuf> {
    if std::env::var("CANOPY_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!("CANOPY_SKIP_MODEL_TESTS=1: skipping the test on {name}");
        return None;
    }
    let path = models_dir().join(name);
    assert!(
        path.is_file(),
        "test model {} is missing: run scripts/fetch-models (or point CANOPY_TEST_MODELS at a folder holding it)",
        path.display()
    );
    Some(path)
}

#[test]
fn smollm2_is_inspected_without_loading_weights() {
    let Some(path) = model(SMOLLM2) else { return };
    let started = Instant::now();
    let info = inspect(&path).expect("valid");
    let took = started.elapsed();
    assert_eq!(info.architecture.as_deref(), Some("llama"));
    assert_eq!(info.layers, Some(30));
    assert_eq!(info.parameter_count, 134_515_008);
    assert_eq!(info.tensor_count, 272);
    assert_eq!(info.file_type.as_deref(), Some("Q4_1"));
    assert_eq!(info.context_length, Some(8192));
    assert_eq!(info.embedding_size, Some(576));
    assert_eq!(
        (info.heads, info.kv_heads, info.head_dim),
        (Some(9), Some(3), Some(64))
    );
    assert_eq!(info.kv_cache_bytes_per_token, Some(2 * 30 * 3 * 64 * 2));
    assert_eq!(info.tokenizer_model.as_deref(), Some("gpt2"));
    assert_eq!(info.vocab_size, Some(49152));
    assert_eq!((info.bos_token_id, info.eos_token_id), (Some(1), Some(2)));
    assert!(info.has_chat_template);
    assert_eq!(
        info.file_size,
        std::fs::metadata(&path).expect("size").len()
    );
    let mix: Vec<_> = info
        .quantization
        .iter()
        .map(|q| (q.ggml_type, q.tensors))
        .collect();
    assert_eq!(
        mix,
        [
            (GgmlType::Q4_1, 210),
            (GgmlType::Q8_0, 1),
            (GgmlType::F32, 61)
        ]
    );
    assert!(info.weights_bytes < info.file_size && info.weights_bytes > 96_000_000);
    assert!(
        (5.7..5.8).contains(&info.bits_per_weight),
        "{}",
        info.bits_per_weight
    );
    // Reading 98 MB of weights would take far longer than reading the header.
    assert!(took.as_secs() < 5, "inspect took {took:?}");
}

#[test]
fn qwen_05b_is_inspected() {
    let Some(path) = model(QWEN_05B) else { return };
    let info = inspect(&path).expect("valid");
    assert_eq!(info.architecture.as_deref(), Some("qwen2"));
    assert_eq!(info.layers, Some(24));
    // 494M weights plus a separate 136M-element output matrix (151936 x 896) stored in this file.
    assert_eq!(info.parameter_count, 630_167_424);
    assert_eq!(info.file_type.as_deref(), Some("Q4_K_M"));
    assert_eq!(info.context_length, Some(32768));
    assert_eq!(info.embedding_size, Some(896));
    assert_eq!(
        (info.heads, info.kv_heads, info.head_dim),
        (Some(14), Some(2), Some(64))
    );
    assert_eq!(info.kv_cache_bytes_per_token, Some(2 * 24 * 2 * 64 * 2));
    assert_eq!(info.vocab_size, Some(151_936));
    assert_eq!(
        (info.bos_token_id, info.eos_token_id),
        (Some(151_643), Some(151_645))
    );
}

#[test]
fn qwen_15b_is_inspected() {
    let Some(path) = model(QWEN_15B) else { return };
    let info = inspect(&path).expect("valid");
    assert_eq!(info.architecture.as_deref(), Some("qwen2"));
    assert_eq!(info.layers, Some(28));
    // 1.54B weights plus the 233M-element output matrix (151936 x 1536).
    assert_eq!(info.parameter_count, 1_777_088_000);
    assert_eq!(info.file_type.as_deref(), Some("Q4_K_M"));
    assert_eq!(
        (info.heads, info.kv_heads, info.head_dim),
        (Some(12), Some(2), Some(128))
    );
    assert_eq!(info.vocab_size, Some(151_936));
    let mix: Vec<_> = info.quantization.iter().map(|q| q.ggml_type).collect();
    assert_eq!(mix, [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::F32]);
}

#[test]
fn the_qwen_pair_shares_a_vocabulary() {
    let (Some(small), Some(large)) = (model(QWEN_05B), model(QWEN_15B)) else {
        return;
    };
    let a = vocabulary(&small).expect("valid");
    let b = vocabulary(&large).expect("valid");
    assert_eq!(compare_vocab(&a, &b), Ok(()));
    assert_eq!(a.fingerprint(), b.fingerprint());
    let (ia, ib) = (
        inspect(&small).expect("valid"),
        inspect(&large).expect("valid"),
    );
    assert_eq!(ia.vocab_fingerprint, ib.vocab_fingerprint);
}

#[test]
fn smollm2_and_qwen_are_refused_at_the_first_differing_token() {
    let (Some(smol), Some(qwen)) = (model(SMOLLM2), model(QWEN_15B)) else {
        return;
    };
    let a = vocabulary(&smol).expect("valid");
    let b = vocabulary(&qwen).expect("valid");
    let err = compare_vocab(&a, &b).expect_err("different tokenizers");
    assert_eq!(
        err,
        VocabMismatch::Token {
            id: 0,
            a: "<|endoftext|>".into(),
            b: "!".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "the vocabularies differ at token 0: '<|endoftext|>' vs '!'"
    );
}
