//! Protocol version 2: one JSON object per line.
//!
//! Caller → worker: [`Request`]. Worker → caller: [`Event`]. The worker greets with
//! [`Event::Hello`] naming its protocol version; a caller refuses a worker of another version.

use std::path::PathBuf;

pub use canopy_types::{ChatRole, Placement, Plan, Sampling, Source, StopReason};
use serde::{Deserialize, Serialize};

/// Version of the line protocol; bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 2;

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
}

/// Largest context used when a request names none.
pub const DEFAULT_CONTEXT: u32 = 4096;

/// The context a request without one runs with, for a model trained on `n_ctx_train` tokens:
/// that, clamped to 256..=[`DEFAULT_CONTEXT`].
pub fn default_context(n_ctx_train: u32) -> u32 {
    n_ctx_train.clamp(256, DEFAULT_CONTEXT)
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
    pub repeats: u32,
    #[serde(default)]
    pub placement: Placement,
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
    pub draft: Vec<TimedPoint>,
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
        result: JobResult,
    },
    Error {
        id: u64,
        kind: ErrorKind,
        message: String,
    },
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was wrong (missing file, prompt too long, ...): the user can fix it.
    User,
    /// The worker failed for another reason.
    Internal,
}
