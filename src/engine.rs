//! Starting the inference worker from the command line, and the flags every engine command shares.

use std::path::{Path, PathBuf};

use canopy_spec::SamplingConfig;
use canopy_worker::{Placement, Sampling, Supervisor, WorkerCommand, WorkerError};

use crate::error::CliError;

/// A supervisor whose worker is this same executable run as `canopy worker`.
pub fn supervisor() -> Result<Supervisor, CliError> {
    let program = std::env::current_exe().map_err(|e| {
        CliError::Failure(anyhow::anyhow!("cannot find the canopy executable: {e}"))
    })?;
    let mut env = Vec::new();
    if let Some(v) = std::env::var_os("GGML_OP_OFFLOAD_MIN_BATCH") {
        env.push(("GGML_OP_OFFLOAD_MIN_BATCH".into(), v));
    }
    Ok(Supervisor::new(WorkerCommand {
        program,
        args: vec!["worker".into()],
        env,
    }))
}

/// Maps a worker failure to the command's exit policy.
pub fn worker_error(err: WorkerError) -> CliError {
    match err {
        WorkerError::User(msg) => CliError::User(msg),
        other => CliError::Failure(anyhow::Error::new(other)),
    }
}

/// Checks a model path before anything is started, so that a typo is a one-line user error.
pub fn model_path(path: &Path, what: &str) -> Result<PathBuf, CliError> {
    if !path.exists() {
        return Err(CliError::user(format!(
            "{what} model not found: {}",
            path.display()
        )));
    }
    if !path.is_file() {
        return Err(CliError::user(format!(
            "{what} model is not a file: {}",
            path.display()
        )));
    }
    Ok(path.to_path_buf())
}

/// Sampling and model-placement flags shared by `generate`, `chat` and `bench`.
#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 = greedy decoding.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: u32,
    /// Keep the smallest set of tokens whose probability reaches P (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Random seed for sampling (same seed, same output).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    /// Validated sampling settings.
    pub fn sampling(&self) -> Result<Sampling, CliError> {
        check_sampling(self.temperature, self.top_k, self.top_p)?;
        Ok(Sampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
        })
    }
}

/// Checks sampling flags with the engine's own rules ([`SamplingConfig::validate`]), naming the
/// flag in the message.
pub fn check_sampling(temperature: f32, top_k: u32, top_p: f32) -> Result<(), CliError> {
    SamplingConfig {
        temperature,
        top_k,
        top_p,
    }
    .validate()
    .map_err(|e| CliError::user(format!("--{e}")))
}

/// Parses `--placement cpu|stream|gpu|layers:N`.
pub fn placement(s: &str) -> Result<Placement, CliError> {
    match s {
        "cpu" => Ok(Placement::Cpu),
        "stream" => Ok(Placement::Stream),
        "gpu" => Ok(Placement::Gpu),
        _ => match s.strip_prefix("layers:").and_then(|n| n.parse().ok()) {
            Some(layers) => Ok(Placement::Partial { layers }),
            None => Err(CliError::user(format!(
                "invalid placement {s:?}: use cpu, stream, gpu or layers:N"
            ))),
        },
    }
}
