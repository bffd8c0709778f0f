//! Protocol version 3: one JSON object per line.
//!
//! Caller → worker: [`Request`]. Worker → caller: [`Event`]. The worker greets with
//! [`Event::Hello`] naming its protocol version; a caller refuses a worker of another version.

use std::path::PathBuf;

pub use canopy_types::{ChatRole, Placement, Plan, Sampling, Source, StopReason};
use serde::{Deserialize, Serialize};

/// Version of the line protocol; bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 3;

/// What the caller asks of the worker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Run one job; events for it carry the same `id`.
    Run { id: u64, job: Box<Job> },
    /// Stop the job `id` at the next safe point (between decoding steps).
    Cancel { id: u64 },
    /// Exit cleanly.
    Shutdown,
}

/// A unit of work for the worker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    Generate(GenerateRequest),
    Measure(MeasureRequest),
    Acceptance(AcceptanceRequest),
}

/// The outcome of a [`Job`], one variant per job kind.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobResult {
    Generate(GenerateResult),
    Measure(MeasureResult),
    Acceptance(AcceptanceResult),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

/// The prompt: chat messages rendered with the model's chat template, or raw text used as is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "format", content = "value", rename_all = "snake_case")]
pub enum Prompt {
    Chat(Vec<ChatMessage>),
    Raw(String),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GenerateRequest {
    pub target: PathBuf,
    #[serde(default)]
    pub draft: Option<PathBuf>,
    pub prompt: Prompt,
    pub sampling: Sampling,
    pub max_tokens: u32,
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub plan: Plan,
    /// Context size in tokens; `None` = [`default_context`] of the model's training context.
    #[serde(default)]
    pub context: Option<u32>,
    /// Where the target's weights live; resolved (never `auto`) by the time it reaches a worker.
    #[serde(default)]
    pub placement: Placement,
    /// Acceptance vector to plan with (e.g. from a stored profile); `None` = measure it.
    #[serde(default)]
    pub acceptance: Option<Vec<f64>>,
    /// Measured cost curves to plan with (from a profile): `(n, seconds)` points.
    #[serde(default)]
    pub costs: Option<CostCurves>,
    /// For benchmarks only: the KV cache as before exact caching (llama.cpp's default f16 types,
    /// accepted cells kept out of position order instead of decoded again). Faster on a CPU;
    /// greedy output may then differ from target-only output at near ties.
    #[serde(default)]
    pub inexact_cache: bool,
    /// RPC helpers (`host:port`, see [`parse_rpc_endpoints`]) that hold part of the target's
    /// layers; empty = everything on this machine. The draft always stays local.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rpc: Vec<String>,
    /// With [`GenerateRequest::rpc`]: how many of the target's layers (counting the output layer)
    /// go to the helpers; `None` = in proportion to free memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_layers: Option<u32>,
    /// Bytes of KV cache the worker may keep after this request, for later requests that share
    /// the prompt's prefix (the conversation so far): 0 keeps nothing. The cache holds the target's
    /// and the draft's contexts of recent conversations, least recently used evicted first.
    #[serde(default)]
    pub kv_cache_bytes: u64,
    /// `auto` only: leave out candidates matched in the conversation so far (prompt lookup),
    /// which it otherwise merges into its trees where they pay.
    #[serde(default)]
    pub no_lookup: bool,
    /// GPU memory (bytes, on every GPU the job uses) that must stay free once the models are
    /// loaded and the contexts created, for what llama.cpp allocates while it runs; less fails the
    /// job with [`JobErrorKind::GpuMemory`] before anything is generated. 0 = not checked.
    #[serde(default)]
    pub gpu_floor_bytes: u64,
}

pub use canopy_types::DEFAULT_CONTEXT;

/// The context a request without one runs with, for a model trained on `n_ctx_train` tokens:
/// that, clamped to 256..=[`DEFAULT_CONTEXT`].
pub fn default_context(n_ctx_train: u32) -> u32 {
    n_ctx_train.clamp(256, DEFAULT_CONTEXT)
}

/// Why an RPC helper address was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RpcEndpointError {
    #[error("no RPC helper given: use host:port[,host:port]")]
    Empty,
    #[error("invalid RPC helper {0:?}: use host:port, e.g. 192.168.1.20:50052")]
    Form(String),
    #[error("invalid RPC helper {endpoint:?}: port must be 1..=65535")]
    Port { endpoint: String },
    #[error("invalid RPC helper {0:?}: IPv6 addresses are not supported by llama.cpp's RPC client; use a host name or an IPv4 address")]
    Ipv6(String),
    #[error("RPC helper {0} is given twice")]
    Duplicate(String),
    #[error("at most {max} RPC helpers, got {found}")]
    TooMany { found: usize, max: usize },
}

/// Most RPC helpers one target may use (llama.cpp's `GGML_RPC_MAX_SERVERS`).
pub const MAX_RPC_HELPERS: usize = 16;

/// Parses `host:port[,host:port]` into validated endpoints, in order (spaces around commas allowed).
///
/// # Errors
/// When the list is empty, an entry is not `host:port` with a host of letters, digits, `.`, `-`,
/// `_` and a port in 1..=65535, an entry repeats, or there are more than [`MAX_RPC_HELPERS`].
pub fn parse_rpc_endpoints(list: &str) -> Result<Vec<String>, RpcEndpointError> {
    let endpoints: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    if endpoints.is_empty() {
        return Err(RpcEndpointError::Empty);
    }
    validate_rpc_endpoints(&endpoints)?;
    Ok(endpoints)
}

/// Checks endpoints the way [`parse_rpc_endpoints`] does; an empty list is valid (local only).
///
/// # Errors
/// As [`parse_rpc_endpoints`], except for an empty list.
pub fn validate_rpc_endpoints(endpoints: &[String]) -> Result<(), RpcEndpointError> {
    if endpoints.len() > MAX_RPC_HELPERS {
        return Err(RpcEndpointError::TooMany {
            found: endpoints.len(),
            max: MAX_RPC_HELPERS,
        });
    }
    for (i, endpoint) in endpoints.iter().enumerate() {
        if endpoint.starts_with('[') || endpoint.matches(':').count() > 1 {
            return Err(RpcEndpointError::Ipv6(endpoint.clone()));
        }
        let Some((host, port)) = endpoint.split_once(':') else {
            return Err(RpcEndpointError::Form(endpoint.clone()));
        };
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !host_ok {
            return Err(RpcEndpointError::Form(endpoint.clone()));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 && port.chars().all(|c| c.is_ascii_digit()) => {}
            _ => {
                return Err(RpcEndpointError::Port {
                    endpoint: endpoint.clone(),
                })
            }
        }
        if endpoints[..i].contains(endpoint) {
            return Err(RpcEndpointError::Duplicate(endpoint.clone()));
        }
    }
    Ok(())
}

/// Measured pass times: `target` = one target decode over n tokens, `draft` = one draft decode over k.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct CostCurves {
    pub target: Vec<(usize, f64)>,
    pub draft: Vec<(usize, f64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GenerateResult {
    pub text: String,
    /// Generated tokens.
    pub tokens: u64,
    pub prefill_tokens: u64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Generated tokens per second of decoding (prefill excluded).
    pub tokens_per_second: f64,
    pub stop_reason: StopReason,
    /// The plan that ran, e.g. `none`, `chain:4`, `tree:32 (depth 6)`.
    pub plan: String,
    /// Target verification passes.
    pub steps: u64,
    pub mean_accepted_per_step: f64,
    /// `accepted_histogram[k]` = steps in which k draft tokens were accepted.
    pub accepted_histogram: Vec<u64>,
    pub budget: u32,
    pub depth: u32,
    pub draft_ms: f64,
    pub verify_ms: f64,
    /// One entry per generated token.
    pub provenance: Vec<Source>,
    /// The generated tokens' ids.
    #[serde(default)]
    pub token_ids: Vec<i32>,
    /// Greedy decoding only: per generated token, the target's top-1 minus top-2 logit where it
    /// was chosen (small = a near tie).
    #[serde(default)]
    pub margins: Vec<f32>,
    /// Where llama.cpp put the target's weights, read from its log when the model was loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_weights: Option<WeightBuffers>,
    /// Prompt tokens whose KV cache a previous request left and this one reused (not decoded
    /// again); `prefill_tokens` counts only those decoded.
    #[serde(default)]
    pub prefix_reused_tokens: u64,
    /// Candidates matched in the conversation (prompt lookup) put in trees, and those accepted.
    #[serde(default)]
    pub lookup_tokens: u64,
    #[serde(default)]
    pub lookup_accepted: u64,
    /// With `auto` planning from a profile's cost curves: how far the pass times measured in this
    /// run were from the profile's, as the largest factor either way (1 = they agree); `None`
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_disagreement: Option<f64>,
    /// Free memory of the GPU (the least free of several) once the models and contexts were
    /// loaded, where the request asked for a floor ([`GenerateRequest::gpu_floor_bytes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_free_bytes: Option<u64>,
}

/// Where llama.cpp put a model's weights, in MiB, from the "model buffer size" lines of its log.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WeightBuffers {
    /// In pinned host memory (`CUDA_Host`): streamed to the GPU at full PCIe speed.
    pub pinned_mib: f32,
    /// In plain host memory (`CPU`, `CPU_Mapped`, repacked CPU buffers).
    pub pageable_mib: f32,
    /// Of `pageable_mib`, repacked for this CPU variant's kernels (`AMX`, `CPU_REPACK`): those
    /// kernels round differently from the plain ones an RPC helper runs.
    #[serde(default)]
    pub repacked_mib: f32,
    /// On GPUs (`CUDA0`, …) and other devices.
    pub device_mib: f32,
    /// llama.cpp failed to pin host memory and fell back to pageable memory.
    pub pinning_failed: bool,
}

impl WeightBuffers {
    /// One line for users when weights meant to stream from pinned memory are not pinned:
    /// streamed passes then cross PCIe at pageable speed.
    pub fn pageable_warning(&self) -> Option<String> {
        self.pinning_failed.then(|| {
            format!(
                "warning: {:.1} GiB of the target's weights are in pageable host memory \
                 (pinning failed), so streamed passes copy them at pageable speed; close other \
                 programs or keep more layers on the GPU",
                self.pageable_mib / 1024.0
            )
        })
    }
}

/// Measure pass times of the engine on this machine (for profiles and `--plan auto`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MeasureRequest {
    pub target: PathBuf,
    #[serde(default)]
    pub draft: Option<PathBuf>,
    /// Budgets at which to time one target pass.
    pub target_grid: Vec<usize>,
    /// Level sizes at which to time one draft pass.
    pub draft_grid: Vec<usize>,
    /// Budgets at which to time one target pass again with the layers in host memory run by the
    /// CPU (llama.cpp's op offload off); only for placements that stream. Run the job with
    /// `GGML_OP_OFFLOAD_MIN_BATCH=1` so that `target` times the other path, the host layers copied
    /// to the GPU for every pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_path_grid: Vec<usize>,
    /// Tokens decoded into each context before any pass is timed, so that passes attend to a
    /// conversation's worth of cache as they do in a chat (0: an empty cache).
    #[serde(default)]
    pub prefix: u32,
    pub repeats: u32,
    #[serde(default)]
    pub placement: Placement,
    /// RPC helpers holding part of the target's layers, as in [`GenerateRequest::rpc`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rpc: Vec<String>,
    /// As in [`GenerateRequest::rpc_layers`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_layers: Option<u32>,
}

/// Median, min and max seconds per grid point.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TimedPoint {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MeasureResult {
    pub target: Vec<TimedPoint>,
    /// The target's passes over `host_path_grid`, host layers on the CPU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_host_path: Vec<TimedPoint>,
    /// Where llama.cpp put the target's weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_weights: Option<WeightBuffers>,
    pub draft: Vec<TimedPoint>,
    /// How the measured target was split over RPC helpers; `None` when it was all local (or when
    /// llama.cpp split it by free memory over local GPUs and helpers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_split: Option<RpcSplit>,
}

/// The target's layers (output layer included) on RPC helpers: the last `remote` of `total`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RpcSplit {
    pub remote: u32,
    pub total: u32,
}

/// Estimate the positional acceptance vector of a draft/target pair over prompts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AcceptanceRequest {
    pub target: PathBuf,
    pub draft: PathBuf,
    pub prompts: Vec<String>,
    pub temperature: f32,
    /// Candidates per position (length of the vector).
    pub width: usize,
    /// Positions sampled per prompt.
    pub tokens_per_prompt: u32,
    pub seed: u64,
}

/// The most candidates per position an acceptance measurement counts.
pub const MAX_ACCEPTANCE_WIDTH: usize = 64;

impl AcceptanceRequest {
    /// Checks the request's numbers and prompts, before any model is loaded.
    ///
    /// # Errors
    /// A message saying what to change.
    pub fn check(&self) -> Result<(), String> {
        if self.width == 0 || self.width > MAX_ACCEPTANCE_WIDTH {
            return Err(format!(
                "the width must be between 1 and {MAX_ACCEPTANCE_WIDTH}, got {}",
                self.width
            ));
        }
        if self.tokens_per_prompt == 0 {
            return Err("the tokens per prompt must be at least 1".to_owned());
        }
        if self.prompts.is_empty() {
            return Err("no prompts given".to_owned());
        }
        Sampling::new(self.temperature, 0, 1.0, 0)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AcceptanceResult {
    pub acceptance: Vec<f64>,
    pub positions: u64,
    pub temperature: f32,
}

/// What the worker tells the caller.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Hello {
        protocol: u32,
        version: String,
    },
    /// Progress of a long phase (loading a model, measuring), 0..=1.
    Progress {
        id: u64,
        phase: String,
        fraction: f64,
    },
    /// Newly generated text (always whole UTF-8 characters) and its tokens' provenance.
    Token {
        id: u64,
        text: String,
        sources: Vec<Source>,
    },
    Done {
        id: u64,
        /// Boxed: a result is far larger than the other events (serialised the same).
        result: Box<JobResult>,
    },
    Error {
        id: u64,
        kind: JobErrorKind,
        message: String,
    },
}

/// Whether a failed job was the request's fault, as the worker reports it on the wire (the
/// supervisor turns it into a `WorkerError`, which the core classifies).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JobErrorKind {
    /// The request was wrong (missing file, prompt too long, ...): the user can fix it.
    User,
    /// The worker failed for another reason.
    Internal,
    /// The GPU's memory ran short: a model, a context or the memory to keep free did not fit.
    /// Nothing was generated; a smaller placement may succeed.
    GpuMemory {
        /// How many more bytes would have had to be free, where the worker knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        short_by_bytes: Option<u64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_endpoints_parse_and_refuse_by_reason() {
        assert_eq!(
            parse_rpc_endpoints("127.0.0.1:50052, gpu-box.lan:6000"),
            Ok(vec![
                "127.0.0.1:50052".to_owned(),
                "gpu-box.lan:6000".to_owned()
            ])
        );
        assert_eq!(parse_rpc_endpoints(" , "), Err(RpcEndpointError::Empty));
        assert!(matches!(
            parse_rpc_endpoints("localhost"),
            Err(RpcEndpointError::Form(_))
        ));
        assert!(matches!(
            parse_rpc_endpoints("host:0"),
            Err(RpcEndpointError::Port { .. })
        ));
        assert!(matches!(
            parse_rpc_endpoints("host:+80"),
            Err(RpcEndpointError::Port { .. })
        ));
        assert!(matches!(
            parse_rpc_endpoints("[::1]:50052"),
            Err(RpcEndpointError::Ipv6(_))
        ));
        assert!(matches!(
            parse_rpc_endpoints("a:1,a:1"),
            Err(RpcEndpointError::Duplicate(_))
        ));
        assert!(matches!(
            parse_rpc_endpoints("ho st:1"),
            Err(RpcEndpointError::Form(_))
        ));
    }

    #[test]
    fn requests_without_rpc_fields_still_parse() {
        let json = r#"{"target":"t.gguf","target_grid":[1],"draft_grid":[],"repeats":1}"#;
        let req: MeasureRequest = serde_json::from_str(json).unwrap();
        assert!(req.rpc.is_empty());
        assert_eq!(req.rpc_layers, None);
    }
}
