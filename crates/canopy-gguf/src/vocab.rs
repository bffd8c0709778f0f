//! Tokenizer vocabularies and the draft/target compatibility check.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Quoted;
use crate::header::GgufHeader;

/// A model's tokenizer vocabulary, as stored under `tokenizer.ggml.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocabulary {
    /// `tokenizer.ggml.model`, e.g. `"gpt2"` or `"llama"`.
    pub model: Option<String>,
    /// The token texts, indexed by token id (`tokenizer.ggml.tokens`; empty when absent).
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
}

impl Vocabulary {
    /// Reads the vocabulary from a validated header. Absent keys become `None` or an empty list.
    pub fn from_header(header: &GgufHeader) -> Self {
        let id = |key: &str| header.get_u64(key).and_then(|v| u32::try_from(v).ok());
        Vocabulary {
            model: header.get_str("tokenizer.ggml.model").map(str::to_owned),
            tokens: header
                .get_array("tokenizer.ggml.tokens")
                .and_then(|a| a.as_strings())
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id"),
        }
    }

    /// The sha256 (lowercase hex) of the token texts; see [`fingerprint`].
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.tokens)
    }
}

/// The sha256 (lowercase hex) of token texts: each text's byte length as a little-endian u64, then
/// its UTF-8 bytes, in id order. Two vocabularies with the same fingerprint have the same texts.
pub fn fingerprint(tokens: &[String]) -> String {
    let mut hasher = Sha256::new();
    for t in tokens {
        hasher.update((t.len() as u64).to_le_bytes());
        hasher.update(t.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why two vocabularies cannot be used as a draft/target pair.
///
/// `a` is always the first vocabulary passed to [`compare_vocab`], `b` the second.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VocabMismatch {
    /// The tokenizer models differ.
    #[error("the tokenizer types differ: {} vs {}", show(.a), show(.b))]
    Model {
        /// The first vocabulary's `tokenizer.ggml.model`.
        a: Option<String>,
        /// The second's.
        b: Option<String>,
    },
    /// A token id maps to different texts.
    #[error("the vocabularies differ at token {id}: {} vs {}", Quoted(.a), Quoted(.b))]
    Token {
        /// The first differing id.
        id: u32,
        /// Its text in the first vocabulary.
        a: String,
        /// Its text in the second.
        b: String,
    },
    /// One vocabulary has more tokens than the other by more than
    /// [`MAX_VOCAB_SIZE_DIFFERENCE`] (the shared ids all agree).
    #[error("the vocabularies have different sizes: {a} vs {b} tokens (the first {} agree; at most {} extra padding tokens are allowed)", .a.min(.b), MAX_VOCAB_SIZE_DIFFERENCE)]
    Size {
        /// Tokens in the first vocabulary.
        a: usize,
        /// Tokens in the second.
        b: usize,
    },
    /// The beginning-of-sequence tokens differ.
    #[error("the BOS tokens differ: {} vs {}", show_id(.a), show_id(.b))]
    Bos {
        /// The first vocabulary's BOS id.
        a: Option<u32>,
        /// The second's.
        b: Option<u32>,
    },
    /// The end-of-sequence tokens differ.
    #[error("the EOS tokens differ: {} vs {}", show_id(.a), show_id(.b))]
    Eos {
        /// The first vocabulary's EOS id.
        a: Option<u32>,
        /// The second's.
        b: Option<u32>,
    },
    /// A vocabulary has no tokens, so nothing can be compared.
    #[error("the {} model has no tokenizer vocabulary", if *.first { "first" } else { "second" })]
    Missing {
        /// Whether it is the first vocabulary that is missing.
        first: bool,
    },
}

fn show(s: &Option<String>) -> String {
    match s {
        Some(s) => Quoted(s).to_string(),
        None => "none".to_owned(),
    }
}

fn show_id(id: &Option<u32>) -> String {
    id.map_or_else(|| "none".to_owned(), |id| id.to_string())
}

/// Vocabularies of one family are often padded to different sizes (Qwen2.5 0.5B and 72B differ by
/// 128 padding tokens); like llama.cpp's speculative decoding, a pair is accepted when every shared
/// id agrees and the sizes differ by at most this much. The engine never lets the draft propose an
/// id outside the target's vocabulary.
pub const MAX_VOCAB_SIZE_DIFFERENCE: usize = 128;

/// Checks that a draft and a target tokenize the same way, so that token ids can pass between them.
///
/// Compares, in this order: that both have tokens, the tokenizer model, the token texts over the
/// shared ids (reporting the first differing id with both texts), the number of tokens (at most [`MAX_VOCAB_SIZE_DIFFERENCE`] apart), BOS and EOS.
///
/// Fails with the first [`VocabMismatch`] found.
pub fn compare_vocab(a: &Vocabulary, b: &Vocabulary) -> Result<(), VocabMismatch> {
    if a.tokens.is_empty() {
        return Err(VocabMismatch::Missing { first: true });
    }
    if b.tokens.is_empty() {
        return Err(VocabMismatch::Missing { first: false });
    }
    if a.model != b.model {
        return Err(VocabMismatch::Model {
            a: a.model.clone(),
            b: b.model.clone(),
        });
    }
    if let Some((id, (ta, tb))) = a
        .tokens
        .iter()
        .zip(&b.tokens)
        .enumerate()
        .find(|(_, (ta, tb))| ta != tb)
    {
        return Err(VocabMismatch::Token {
            id: u32::try_from(id).unwrap_or(u32::MAX),
            a: ta.clone(),
            b: tb.clone(),
        });
    }
    if a.tokens.len().abs_diff(b.tokens.len()) > MAX_VOCAB_SIZE_DIFFERENCE {
        return Err(VocabMismatch::Size {
            a: a.tokens.len(),
            b: b.tokens.len(),
        });
    }
    if a.bos != b.bos {
        return Err(VocabMismatch::Bos { a: a.bos, b: b.bos });
    }
    if a.eos != b.eos {
        return Err(VocabMismatch::Eos { a: a.eos, b: b.eos });
    }
    Ok(())
}

impl fmt::Display for Vocabulary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} vocabulary of {} tokens",
            self.model.as_deref().unwrap_or("unknown"),
            self.tokens.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> Vocabulary {
        Vocabulary {
            model: Some("gpt2".into()),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            bos: Some(0),
            eos: Some(1),
        }
    }

    #[test]
    fn equal_vocabularies_are_compatible() {
        assert_eq!(
            compare_vocab(&vocab(&["a", "b"]), &vocab(&["a", "b"])),
            Ok(())
        );
    }

    #[test]
    fn each_mismatch_is_named_in_one_sentence() {
        let a = vocab(&["a", "b", "c"]);
        let mut b = vocab(&["a", "x\ny", "c"]);
        let err = compare_vocab(&a, &b).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the vocabularies differ at token 1: 'b' vs 'x\\ny'"
        );

        // Padding differences up to MAX_VOCAB_SIZE_DIFFERENCE are accepted, larger ones refused.
        let padded: Vec<String> = (0..3 + MAX_VOCAB_SIZE_DIFFERENCE)
            .map(|i| {
                ["a", "b", "c"]
                    .get(i)
                    .map_or(format!("[PAD{i}]"), |t| t.to_string())
            })
            .collect();
        b = Vocabulary {
            tokens: padded.clone(),
            ..vocab(&[])
        };
        assert_eq!(compare_vocab(&a, &b), Ok(()));
        b.tokens.push("[PAD-extra]".into());
        assert_eq!(
            compare_vocab(&a, &b).unwrap_err().to_string(),
            "the vocabularies have different sizes: 3 vs 132 tokens (the first 3 agree; at most 128 extra padding tokens are allowed)"
        );

        b = vocab(&["a", "b", "c"]);
        b.model = Some("llama".into());
        assert_eq!(
            compare_vocab(&a, &b).unwrap_err().to_string(),
            "the tokenizer types differ: 'gpt2' vs 'llama'"
        );

        b = vocab(&["a", "b", "c"]);
        b.bos = None;
        assert_eq!(
            compare_vocab(&a, &b).unwrap_err().to_string(),
            "the BOS tokens differ: 0 vs none"
        );

        b = vocab(&["a", "b", "c"]);
        b.eos = Some(2);
        assert_eq!(
            compare_vocab(&a, &b).unwrap_err(),
            VocabMismatch::Eos {
                a: Some(1),
                b: Some(2)
            }
        );

        b.tokens.clear();
        assert_eq!(
            compare_vocab(&a, &b).unwrap_err(),
            VocabMismatch::Missing { first: false }
        );
    }

    #[test]
    fn fingerprint_separates_token_boundaries() {
        assert_ne!(
            fingerprint(&["ab".into(), "c".into()]),
            fingerprint(&["a".into(), "bc".into()])
        );
        assert_eq!(fingerprint(&[]).len(), 64);
    }
}
