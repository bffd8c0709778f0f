//! The validator on files written by `GgufWriter`: what it reads back, what it refuses, and that
//! no mutation of a valid file makes it panic.

use std::io::{Seek, SeekFrom, Write};

use canopy_gguf::{
    validate_bytes, Array, Check, GgmlType, GgufWriter, ModelInfo, Value, Vocabulary,
    MAX_HEADER_BYTES,
};
use proptest::prelude::*;

fn tiny_model() -> GgufWriter {
    GgufWriter::new()
        .kv_str("general.architecture", "llama")
        .kv_str("general.name", "tiny")
        .kv_u32("general.file_type", 15)
        .kv_u32("llama.block_count", 2)
        .kv_u32("llama.context_length", 4096)
        .kv_u32("llama.embedding_length", 64)
        .kv_u32("llama.attention.head_count", 4)
        .kv_u32("llama.attention.head_count_kv", 2)
        .kv_str("tokenizer.chat_template", "{{ messages }}")
        .vocabulary("llama", &["<unk>", "<s>", "</s>", "a", "b"], 1, 2)
        .tensor("token_embd.weight", &[256, 5], GgmlType::Q4_K)
        .tensor("blk.0.attn_q.weight", &[64, 64], GgmlType::Q8_0)
        .tensor("output_norm.weight", &[64], GgmlType::F32)
}

#[test]
fn a_written_model_reads_back_with_its_summary() {
    let bytes = tiny_model().to_bytes();
    let header = validate_bytes(&bytes).expect("valid");
    assert_eq!(header.version(), 3);
    assert_eq!(header.alignment(), 32);
    assert_eq!(header.architecture(), Some("llama"));
    assert_eq!(header.tensors().len(), 3);
    let embd = header.tensor("token_embd.weight").expect("tensor");
    assert_eq!((embd.n_elements, embd.n_bytes), (1280, 5 * 144));
    assert_eq!(embd.data_start, header.data_offset());
    assert_eq!(header.data_offset() % 32, 0);

    let info = ModelInfo::from_header(&header);
    assert_eq!(info.parameter_count, 1280 + 4096 + 64);
    assert_eq!(info.weights_bytes, 720 + 128 * 34 + 256);
    assert_eq!(info.file_type.as_deref(), Some("Q4_K_M"));
    assert_eq!(
        (info.layers, info.heads, info.kv_heads, info.head_dim),
        (Some(2), Some(4), Some(2), Some(16))
    );
    assert_eq!(info.kv_cache_bytes_per_token, Some(2 * 2 * (16 + 16) * 2));
    assert_eq!(info.context_length, Some(4096));
    assert!(info.has_chat_template);
    assert_eq!(info.vocab_size, Some(5));
    assert_eq!(info.quantization[0].ggml_type, GgmlType::Q8_0);
    assert_eq!(info.quantization.iter().map(|q| q.tensors).sum::<u64>(), 3);

    let mut back = serde_json_round_trip(&info);
    assert!((back.bits_per_weight - info.bits_per_weight).abs() < 1e-9);
    back.bits_per_weight = info.bits_per_weight;
    assert_eq!(back, info);

    let vocab = Vocabulary::from_header(&header);
    assert_eq!(vocab.tokens[3], "a");
    assert_eq!((vocab.bos, vocab.eos), (Some(1), Some(2)));
    assert_eq!(info.vocab_fingerprint, Some(vocab.fingerprint()));
}

fn serde_json_round_trip(info: &ModelInfo) -> ModelInfo {
    serde_json::from_str(&serde_json::to_string(info).expect("serialize")).expect("deserialize")
}

#[test]
fn per_layer_kv_heads_and_explicit_key_lengths_size_the_cache() {
    let bytes = GgufWriter::new()
        .kv_str("general.architecture", "x")
        .kv_u32("x.block_count", 3)
        .kv_u32("x.embedding_length", 64)
        .kv_u32("x.attention.head_count", 4)
        .kv(
            "x.attention.head_count_kv",
            Value::Array(Array::I32(vec![1, 2, 0])),
        )
        .kv_u32("x.attention.key_length", 32)
        .kv_u32("x.attention.value_length", 8)
        .to_bytes();
    let info = ModelInfo::from_header(&validate_bytes(&bytes).expect("valid"));
    assert_eq!(info.kv_heads, Some(2));
    assert_eq!(info.head_dim, Some(32));
    assert_eq!(info.kv_cache_bytes_per_token, Some(3 * (32 + 8) * 2));
}

#[test]
fn a_custom_alignment_is_honoured_and_checked() {
    let bytes = GgufWriter::new()
        .kv_u32("general.alignment", 256)
        .tensor("a", &[3], GgmlType::F32)
        .tensor("b", &[3], GgmlType::F32)
        .to_bytes();
    let header = validate_bytes(&bytes).expect("valid");
    assert_eq!(header.alignment(), 256);
    assert_eq!(header.tensors()[1].offset, 256);
}

#[test]
fn a_header_past_the_size_limit_is_refused_without_reading_it() {
    // A sparse file just over the limit, whose only key claims a string of nearly all of it.
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    let len = MAX_HEADER_BYTES + 4096;
    file.as_file().set_len(len).expect("sparse file");
    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&0u64.to_le_bytes());
    head.extend_from_slice(&1u64.to_le_bytes());
    head.extend_from_slice(&1u64.to_le_bytes());
    head.push(b'k');
    head.extend_from_slice(&8u32.to_le_bytes());
    head.extend_from_slice(&(len - 64).to_le_bytes());
    file.seek(SeekFrom::Start(0)).expect("seek");
    file.write_all(&head).expect("write");
    let err = canopy_gguf::validate(file.path()).expect_err("refused");
    assert_eq!(err.check(), Check::HeaderSize, "{err}");
    assert_eq!(err.offset(), Some(37));
    assert_eq!(err.field(), Some("k"));
}

#[test]
fn a_missing_file_names_its_path() {
    let err =
        canopy_gguf::inspect(std::path::Path::new("/nonexistent/model.gguf")).expect_err("missing");
    assert_eq!(err.check(), Check::Io);
    assert!(
        err.to_string()
            .starts_with("cannot open /nonexistent/model.gguf: "),
        "{err}"
    );
}

#[test]
fn control_characters_in_names_stay_on_one_line() {
    let bytes = GgufWriter::new()
        .kv_str("evil\nkey\u{1b}[31m", "x")
        .kv_str("evil\nkey\u{1b}[31m", "y")
        .to_bytes();
    let err = validate_bytes(&bytes).expect_err("duplicate");
    let message = err.to_string();
    assert!(
        !message.contains('\n') && !message.contains('\u{1b}'),
        "{message}"
    );
    assert!(message.contains(r"'evil\nkey\u{1b}[31m'"), "{message}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Overwriting, truncating or inserting bytes anywhere never panics, and an accepted file's
    /// tensors always lie inside it.
    #[test]
    fn mutations_of_a_valid_file_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut bytes = tiny_model().to_bytes();
        for (at, byte, kind) in edits {
            let i = at.index(bytes.len());
            match kind {
                0 | 1 => bytes[i] = byte,
                2 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Ok(header) = validate_bytes(&bytes) {
            for t in header.tensors() {
                prop_assert!(t.data_start + t.n_bytes <= bytes.len() as u64);
                prop_assert_eq!(t.offset % header.alignment(), 0);
            }
            let _ = ModelInfo::from_header(&header);
        }
    }

    /// Large counts and lengths placed where the header keeps them are refused before allocating.
    #[test]
    fn big_numbers_in_count_fields_are_refused_cheaply(value in any::<u64>(), at in 0usize..3) {
        let mut bytes = tiny_model().to_bytes();
        let field = [8usize, 16, 24][at];
        bytes[field..field + 8].copy_from_slice(&value.to_le_bytes());
        let _ = validate_bytes(&bytes);
    }
}
