//! A model's summary from its GGUF header: what it is, how big, how quantized, what it costs to run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::header::GgufHeader;
use crate::types::{file_type_name, GgmlType};
use crate::value::Value;
use crate::vocab::fingerprint;

/// Bytes per element of the KV cache in llama.cpp's default f16 cache.
const KV_CACHE_ELEMENT_BYTES: u64 = 2;

/// What a GGUF model is, read from its header without loading the weights.
///
/// Fields the file does not state are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// `general.architecture`, e.g. `"llama"`, `"qwen2"`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// The GGUF format version.
    pub gguf_version: u32,
    /// The size of the file in bytes.
    pub file_size: u64,
    /// The number of weights: the sum of every tensor's element count.
    pub parameter_count: u64,
    /// The number of tensors.
    pub tensor_count: u64,
    /// Per ggml type, how many tensors and bytes use it; largest share first.
    pub quantization: Vec<QuantShare>,
    /// Average bits per weight over all tensors.
    pub bits_per_weight: f64,
    /// The name of `general.file_type`, e.g. `"Q4_K_M"`.
    pub file_type: Option<String>,
    /// `<arch>.context_length`: the context the model was trained for.
    pub context_length: Option<u64>,
    /// `<arch>.block_count`: the number of transformer layers.
    pub layers: Option<u64>,
    /// `<arch>.embedding_length`.
    pub embedding_size: Option<u64>,
    /// `<arch>.attention.head_count` (the largest, when stated per layer).
    pub heads: Option<u64>,
    /// `<arch>.attention.head_count_kv` (the largest, when stated per layer); equals `heads` when absent.
    pub kv_heads: Option<u64>,
    /// Dimension of one attention head: `<arch>.attention.key_length`, else embedding size / heads.
    pub head_dim: Option<u64>,
    /// Whether `tokenizer.chat_template` is present.
    pub has_chat_template: bool,
    /// `tokenizer.ggml.model`, e.g. `"gpt2"`, `"llama"`.
    pub tokenizer_model: Option<String>,
    /// The number of token texts in `tokenizer.ggml.tokens`.
    pub vocab_size: Option<u64>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u64>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: Option<u64>,
    /// sha256 hex of the token texts (see [`crate::fingerprint`]); equal fingerprints, equal texts.
    pub vocab_fingerprint: Option<String>,
    /// Memory the weights take when loaded: the sum of the tensors' byte sizes.
    pub weights_bytes: u64,
    /// KV cache bytes per token of context with llama.cpp's default f16 cache, summed over layers:
    /// `layers * kv_heads * (key_length + value_length) * 2`.
    pub kv_cache_bytes_per_token: Option<u64>,
}

/// How much of a model uses one ggml type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantShare {
    /// The type.
    pub ggml_type: GgmlType,
    /// Tensors of this type.
    pub tensors: u64,
    /// Weights of this type.
    pub elements: u64,
    /// Bytes of this type.
    pub bytes: u64,
}

impl ModelInfo {
    /// Summarises a validated header. Cannot fail: what the file does not state is left `None`.
    pub fn from_header(header: &GgufHeader) -> Self {
        Self::from_split(header, &[])
    }

    /// Summarises a model split over several files (llama.cpp's `gguf-split`): the metadata comes
    /// from `first`, the tensors, parameters and sizes from `first` and every header of `others`.
    /// Cannot fail; the caller checks that the parts belong together.
    pub fn from_split(first: &GgufHeader, others: &[GgufHeader]) -> Self {
        let header = first;
        let all_tensors = || {
            std::iter::once(first)
                .chain(others)
                .flat_map(|h| h.tensors().iter())
        };
        let mut shares: BTreeMap<GgmlType, QuantShare> = BTreeMap::new();
        for t in all_tensors() {
            let share = shares.entry(t.ggml_type).or_insert(QuantShare {
                ggml_type: t.ggml_type,
                tensors: 0,
                elements: 0,
                bytes: 0,
            });
            share.tensors += 1;
            share.elements = share.elements.saturating_add(t.n_elements);
            share.bytes = share.bytes.saturating_add(t.n_bytes);
        }
        let mut quantization: Vec<QuantShare> = shares.into_values().collect();
        quantization.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.ggml_type.cmp(&b.ggml_type)));

        let parameter_count = all_tensors().fold(0u64, |acc, t| acc.saturating_add(t.n_elements));
        let weights_bytes = all_tensors().fold(0u64, |acc, t| acc.saturating_add(t.n_bytes));
        let bits_per_weight = if parameter_count == 0 {
            0.0
        } else {
            weights_bytes as f64 * 8.0 / parameter_count as f64
        };

        let layers = header.arch_u64("block_count");
        let embedding_size = header.arch_u64("embedding_length");
        let heads_per_layer = per_layer(header.arch_value("attention.head_count"));
        let kv_per_layer = per_layer(header.arch_value("attention.head_count_kv"))
            .or_else(|| heads_per_layer.clone());
        let heads = heads_per_layer.as_ref().and_then(|h| h.values().max());
        let kv_heads = kv_per_layer.as_ref().and_then(|h| h.values().max());
        let head_dim =
            header
                .arch_u64("attention.key_length")
                .or_else(|| match (embedding_size, heads) {
                    (Some(e), Some(h)) if h > 0 => Some(e / h),
                    _ => None,
                });
        let value_dim = header.arch_u64("attention.value_length").or(head_dim);
        let kv_cache_bytes_per_token = match (layers, &kv_per_layer, head_dim, value_dim) {
            (Some(layers), Some(kv), Some(k), Some(v)) => {
                let heads_total = kv.sum_over(layers);
                heads_total
                    .checked_mul(k.saturating_add(v))
                    .and_then(|x| x.checked_mul(KV_CACHE_ELEMENT_BYTES))
            }
            _ => None,
        };

        let tokens = header
            .get_array("tokenizer.ggml.tokens")
            .and_then(|a| a.as_strings());

        ModelInfo {
            architecture: header.architecture().map(str::to_owned),
            name: header.get_str("general.name").map(str::to_owned),
            gguf_version: header.version(),
            file_size: others
                .iter()
                .fold(first.file_len(), |acc, h| acc.saturating_add(h.file_len())),
            parameter_count,
            tensor_count: all_tensors().count() as u64,
            quantization,
            bits_per_weight,
            file_type: header.get_u64("general.file_type").map(|ft| {
                file_type_name(ft).map_or_else(|| format!("unknown ({ft})"), str::to_owned)
            }),
            context_length: header.arch_u64("context_length"),
            layers,
            embedding_size,
            heads,
            kv_heads,
            head_dim,
            has_chat_template: header.get("tokenizer.chat_template").is_some(),
            tokenizer_model: header.get_str("tokenizer.ggml.model").map(str::to_owned),
            vocab_size: tokens.map(|t| t.len() as u64),
            bos_token_id: header.get_u64("tokenizer.ggml.bos_token_id"),
            eos_token_id: header.get_u64("tokenizer.ggml.eos_token_id"),
            vocab_fingerprint: tokens.map(fingerprint),
            weights_bytes,
            kv_cache_bytes_per_token,
        }
    }
}

/// A head count stated once for every layer, or per layer.
#[derive(Debug, Clone)]
enum PerLayer {
    Same(u64),
    Each(Vec<u64>),
}

impl PerLayer {
    fn values(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match self {
            PerLayer::Same(v) => Box::new(std::iter::once(*v)),
            PerLayer::Each(v) => Box::new(v.iter().copied()),
        }
    }

    /// The sum over `layers` layers (per-layer lists are cut or taken as they are).
    fn sum_over(&self, layers: u64) -> u64 {
        match self {
            PerLayer::Same(v) => v.saturating_mul(layers),
            PerLayer::Each(v) => v
                .iter()
                .take(usize::try_from(layers).unwrap_or(usize::MAX))
                .fold(0u64, |acc, &x| acc.saturating_add(x)),
        }
    }
}

fn per_layer(value: Option<&Value>) -> Option<PerLayer> {
    match value? {
        Value::Array(a) => a.to_u64s().map(PerLayer::Each),
        v => v.as_u64().map(PerLayer::Same),
    }
}
