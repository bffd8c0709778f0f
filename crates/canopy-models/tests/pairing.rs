//! Pairing and fit on the real models: the Qwen2.5-Coder 0.5B/1.5B pair is compatible, SmolLM2 is
//! refused for Qwen with the first differing token, and every refusal has its reason.

mod common;

use canopy_models::{
    estimate, library_pairs, Badge, ImportMode, Library, MachineFacts, ModelShape, Verdict,
};
use common::{real_model, small_gguf, write};

#[test]
fn the_qwen_pair_is_compatible_and_smollm2_is_refused_with_the_first_differing_token() {
    let home = tempfile::tempdir().unwrap();
    let mut lib =
        Library::open(&home.path().join("library.db"), &home.path().join("models")).unwrap();
    let smol = lib
        .import(&real_model("smollm2-135m"), ImportMode::Reference)
        .unwrap();
    let q05 = lib
        .import(&real_model("qwen2.5-coder-0.5b"), ImportMode::Reference)
        .unwrap();
    let q15 = lib
        .import(&real_model("qwen2.5-coder-1.5b"), ImportMode::Reference)
        .unwrap();
    assert_eq!(smol.info.architecture.as_deref(), Some("llama"));
    assert_eq!(q15.info.architecture.as_deref(), Some("qwen2"));

    let pairing = library_pairs(&lib, &q15).unwrap();
    assert_eq!(pairing.note, None);
    assert_eq!(pairing.candidates.len(), 2);
    assert_eq!(pairing.candidates[0].id, q05.id);
    assert_eq!(pairing.candidates[0].verdict, Verdict::Compatible);
    let Verdict::Refused { reason } = &pairing.candidates[1].verdict else {
        panic!("SmolLM2 accepted as a draft for Qwen: {pairing:?}");
    };
    assert_eq!(pairing.candidates[1].id, smol.id);
    assert!(
        reason.starts_with("the vocabularies differ at token "),
        "{reason}"
    );
    assert!(reason.contains(" vs "), "{reason}");

    // For the 0.5B target, the 1.5B is larger and SmolLM2 still has another vocabulary.
    let pairing = library_pairs(&lib, &q05).unwrap();
    assert!(
        pairing.note.as_deref().unwrap().contains("none of the 2"),
        "{pairing:?}"
    );
    let reasons: Vec<String> = pairing
        .candidates
        .iter()
        .map(|c| match &c.verdict {
            Verdict::Refused { reason } => reason.clone(),
            Verdict::Compatible => panic!("{c:?}"),
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("larger than the target")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("differ at token")),
        "{reasons:?}"
    );
}

#[test]
fn a_lone_model_gets_a_reason_not_an_empty_list() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let mut lib =
        Library::open(&home.path().join("library.db"), &home.path().join("models")).unwrap();
    let a = lib
        .import(
            &write(&src.path().join("a.gguf"), &small_gguf(&["a", "b"], 4096)),
            ImportMode::Reference,
        )
        .unwrap();
    let pairing = library_pairs(&lib, &a).unwrap();
    assert!(pairing.candidates.is_empty());
    assert!(pairing.note.unwrap().contains("no other model"));

    // The same first tokens, but more extra tokens than padding explains (more than 128).
    let longer: Vec<String> = ["a", "b"]
        .iter()
        .map(|t| t.to_string())
        .chain((0..=canopy_gguf::MAX_VOCAB_SIZE_DIFFERENCE).map(|i| format!("extra{i}")))
        .collect();
    let longer: Vec<&str> = longer.iter().map(String::as_str).collect();
    let b = lib
        .import(
            &write(&src.path().join("b.gguf"), &small_gguf(&longer, 64)),
            ImportMode::Reference,
        )
        .unwrap();
    let pairing = library_pairs(&lib, &a).unwrap();
    let Verdict::Refused { reason } = &pairing.candidates[0].verdict else {
        panic!("{pairing:?}")
    };
    assert_eq!(pairing.candidates[0].id, b.id);
    assert!(reason.contains("different sizes"), "{reason}");
}

#[test]
fn fit_of_the_real_qwen_pair_by_hand() {
    let q15 = canopy_gguf::inspect(&real_model("qwen2.5-coder-1.5b")).unwrap();
    let q05 = canopy_gguf::inspect(&real_model("qwen2.5-coder-0.5b")).unwrap();
    let target = ModelShape::from_info(&q15);
    let draft = ModelShape::from_info(&q05);
    // Qwen2.5-1.5B: 28 layers, 2 KV heads of 128 dims: 28 * 2 * (128 + 128) * 2 bytes = 28672 B/token.
    assert_eq!(target.n_layers, 28);
    assert_eq!(target.kv_bytes_per_token, 28 * 2 * 256 * 2);
    // Qwen2.5-0.5B: 24 layers, 2 KV heads of 64 dims: 24 * 2 * 128 * 2 = 12288 B/token.
    assert_eq!(draft.n_layers, 24);
    assert_eq!(draft.kv_bytes_per_token, 24 * 2 * 128 * 2);

    // A 1 GiB GPU: usable 512 MiB; the 0.5B draft (about 470 MiB of weights plus 48 MiB of KV for
    // 4096 tokens) does not fit.
    let gib = 1u64 << 30;
    let small_gpu = MachineFacts {
        vram_bytes: Some(gib),
        ram_total: 16 * gib,
        ram_available: 8 * gib,
        h2d_bytes_per_second: Some(12.0e9),
    };
    let fit = estimate(&small_gpu, &target, Some(&draft), 4096);
    assert_eq!(fit.draft_vram_bytes, draft.weight_bytes + 4096 * 12288);
    assert_eq!(
        fit.draft_fits_in_vram,
        Some(draft.weight_bytes + 4096 * 12288 <= 512 << 20)
    );

    // A 4 GiB GPU holds the draft, the target's KV cache and every target layer.
    let gpu = MachineFacts {
        vram_bytes: Some(4 * gib),
        ..small_gpu
    };
    let fit = estimate(&gpu, &target, Some(&draft), 4096);
    assert_eq!(fit.draft_fits_in_vram, Some(true));
    assert_eq!(fit.target_layers_resident, 28);
    assert_eq!(fit.bytes_streamed_per_pass, 0);
    assert_eq!(fit.badge, Badge::Fits);
    // A 2 GiB GPU: usable 1536 MiB; minus draft and target KV (4096 * 28672 = 112 MiB) the rest
    // holds floor(rest / per-layer) layers.
    let gpu2 = MachineFacts {
        vram_bytes: Some(2 * gib),
        ..gpu
    };
    let fit = estimate(&gpu2, &target, Some(&draft), 4096);
    let rest = (1536u64 << 20) - (draft.weight_bytes + 4096 * 12288) - 4096 * 28672;
    let per_layer = target.weight_bytes / 28;
    assert_eq!(fit.target_layers_resident, rest / per_layer);
    assert_eq!(
        fit.bytes_streamed_per_pass,
        target.weight_bytes - fit.target_layers_resident * per_layer
    );
}
