//! Which registered models can draft for a target, and why the others cannot.
//!
//! A draft must be a different file, smaller than the target, and tokenize exactly like it (same
//! tokenizer type, same token texts id for id, same size, same BOS and EOS), so token ids can pass
//! between the two models unchanged. Every refusal carries its reason; the answer is never an
//! empty list without one.

use std::path::Path;

use canopy_gguf::Vocabulary;
use serde::Serialize;

use crate::fit::fmt_bytes;
use crate::registry::{ModelId, ModelRecord};

/// The verdict on one candidate draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// Usable as a draft for the target.
    Compatible,
    /// Not usable; `reason` is one sentence.
    Refused { reason: String },
}

/// One registered model judged as a draft for the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// Registry id.
    pub id: ModelId,
    /// File name.
    pub file_name: String,
    /// Weights of the model.
    pub parameters: u64,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The answer of [`pairs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pairing {
    /// The target's registry id.
    pub target: ModelId,
    /// Compatible drafts first (smallest first), then the refused ones.
    pub candidates: Vec<Candidate>,
    /// Set when `candidates` has no compatible draft: why, in one sentence.
    pub note: Option<String>,
}

impl Pairing {
    /// The compatible drafts, smallest first.
    pub fn compatible(&self) -> impl Iterator<Item = &Candidate> {
        self.candidates
            .iter()
            .filter(|c| c.verdict == Verdict::Compatible)
    }
}

/// Judges every model in `models` (other than `target` itself) as a draft for `target`.
/// `load_vocab` reads a model's vocabulary (normally [`canopy_gguf::vocabulary`]); each file is read
/// at most once, and only for candidates that pass the cheaper checks. A file that cannot be read
/// is refused with the reason.
pub fn pairs(
    target: &ModelRecord,
    models: &[ModelRecord],
    mut load_vocab: impl FnMut(&Path) -> Result<Vocabulary, String>,
) -> Pairing {
    let mut target_vocab: Option<Result<Vocabulary, String>> = None;
    let mut candidates = Vec::new();
    for m in models.iter().filter(|m| m.id != target.id) {
        let verdict = judge(target, m, &mut target_vocab, &mut load_vocab);
        candidates.push(Candidate {
            id: m.id,
            file_name: m.file_name.clone(),
            parameters: m.info.parameter_count,
            verdict,
        });
    }
    candidates.sort_by_key(|c| (c.verdict != Verdict::Compatible, c.parameters, c.id));
    let note = if candidates.is_empty() {
        Some(format!(
            "no other model is registered; add a smaller model with the same tokenizer as {} (canopy models import FILE or canopy models download URL)",
            target.file_name
        ))
    } else if candidates.iter().all(|c| c.verdict != Verdict::Compatible) {
        Some(format!(
            "none of the {} other registered models can draft for {}; the reason is given for each",
            candidates.len(),
            target.file_name
        ))
    } else {
        None
    };
    Pairing {
        target: target.id,
        candidates,
        note,
    }
}

fn judge(
    target: &ModelRecord,
    draft: &ModelRecord,
    target_vocab: &mut Option<Result<Vocabulary, String>>,
    load_vocab: &mut impl FnMut(&Path) -> Result<Vocabulary, String>,
) -> Verdict {
    let refuse = |reason: String| Verdict::Refused { reason };
    if draft.path == target.path
        || matches!((&draft.sha256, &target.sha256), (Some(a), Some(b)) if a == b)
    {
        return refuse("same file as the target".to_string());
    }
    if !draft.present {
        return refuse(format!("the file {} is missing", draft.path.display()));
    }
    let (dp, tp) = (draft.info.parameter_count, target.info.parameter_count);
    if dp >= tp {
        return refuse(format!(
            "larger than the target ({} vs {} parameters, {} vs {} on disk)",
            fmt_params(dp),
            fmt_params(tp),
            fmt_bytes(draft.size),
            fmt_bytes(target.size)
        ));
    }
    let target_vocab = target_vocab.get_or_insert_with(|| load_vocab(&target.path));
    let target_vocab = match target_vocab {
        Ok(v) => v,
        Err(e) => return refuse(format!("cannot read the target's vocabulary: {e}")),
    };
    let draft_vocab = match load_vocab(&draft.path) {
        Ok(v) => v,
        Err(e) => return refuse(format!("cannot read its vocabulary: {e}")),
    };
    match canopy_gguf::compare_vocab(target_vocab, &draft_vocab) {
        Ok(()) => Verdict::Compatible,
        Err(mismatch) => refuse(format!("{mismatch} (target vs draft)")),
    }
}

/// Parameter counts as people say them: `135M`, `1.5B`, `70.6B`.
pub fn fmt_params(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else if n >= 1_000_000 {
        format!("{}M", (n as f64 / 1e6).round() as u64)
    } else {
        n.to_string()
    }
}
