//! Starting the inference worker from the command line, and the flags every engine command shares.

use std::path::{Path, PathBuf};

use canopy_spec::SamplingConfig;
use canopy_worker::{
    CostCurves, GenerateRequest, Placement, Prompt, Sampling, Supervisor, WorkerCommand,
    WorkerError,
};

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

/// Parses `--rpc host:port[,host:port]`; absent = the target stays on this machine.
pub fn rpc_endpoints(flag: Option<&str>) -> Result<Vec<String>, CliError> {
    match flag {
        None => Ok(Vec::new()),
        Some(list) => canopy_worker::parse_rpc_endpoints(list)
            .map_err(|e| CliError::user(format!("--rpc: {e}"))),
    }
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

/// The model flags of commands that generate (`generate`, `serve`): which models, how to
/// speculate, where the weights live.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// The target model (GGUF file).
    #[arg(long)]
    pub target: PathBuf,
    /// A small draft model sharing the target's vocabulary.
    #[arg(long)]
    pub draft: Option<PathBuf>,
    /// Speculation: none, chain:K, tree:N or auto.
    #[arg(long, default_value = "none")]
    pub plan: String,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(long)]
    pub context: Option<u32>,
    /// Where the target's weights live: cpu, stream, gpu or layers:N.
    #[arg(long, default_value = "cpu")]
    pub placement: String,
    /// With --plan auto: plan with this hardware profile's curves and acceptance vector (name or file)
    /// instead of the newest saved profile measured for these models and placement.
    #[arg(long, value_name = "NAME|PATH")]
    pub profile: Option<String>,
    /// Put part of the target's layers on RPC helpers (`canopy rpc-server` on other machines).
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT]")]
    pub rpc: Option<String>,
    /// With --rpc and placement cpu: how many of the target's last layers (output layer included)
    /// the helpers hold (default: in proportion to free memory).
    #[arg(long, value_name = "N", requires = "rpc")]
    pub rpc_layers: Option<u32>,
}

impl ModelArgs {
    /// A generation request for these models: files checked, placement parsed, and with
    /// `--plan auto` the acceptance vector and cost curves of the matching saved profile.
    ///
    /// # Errors
    /// A user error for a missing model file, a bad placement or an unusable `--profile`.
    pub fn request(
        &self,
        prompt: Prompt,
        sampling: Sampling,
        max_tokens: u32,
        stop: Vec<String>,
    ) -> Result<GenerateRequest, CliError> {
        let target = model_path(&self.target, "target")?;
        let draft = self
            .draft
            .as_deref()
            .map(|d| model_path(d, "draft"))
            .transpose()?;
        let placement = placement(&self.placement)?;
        let rpc = rpc_endpoints(self.rpc.as_deref())?;
        let (acceptance, costs) = match (&self.plan[..], &draft) {
            ("auto", Some(d)) => {
                profile_plan(self.profile.as_deref(), &target, d, placement, &rpc)?
            }
            _ => (None, None),
        };
        Ok(GenerateRequest {
            target,
            draft,
            prompt,
            sampling,
            max_tokens,
            stop,
            plan: self.plan.clone(),
            context: self.context,
            placement,
            acceptance,
            costs,
            inexact_cache: false,
            rpc,
            rpc_layers: self.rpc_layers,
        })
    }
}

/// The acceptance vector and cost curves `--plan auto` plans with: those of `--profile`, else of the
/// newest saved profile measured for these files and placement, else none (the worker calibrates).
fn profile_plan(
    spec: Option<&str>,
    target: &Path,
    draft: &Path,
    placement: Placement,
    rpc: &[String],
) -> Result<(Option<Vec<f64>>, Option<CostCurves>), CliError> {
    let profile = match spec {
        Some(spec) => {
            Some(canopy_hw::find_profile(spec).map_err(|e| CliError::user(e.to_string()))?)
        }
        None => crate::cmd::profile::saved_profile_for(target, draft, placement, rpc),
    };
    let Some(profile) = profile else {
        return Ok((None, None));
    };
    let Some((target, draft)) = profile.costs() else {
        return Err(CliError::user(format!(
            "profile {} has no measured cost curves: run `canopy profile --target T --draft D`",
            profile.name
        )));
    };
    eprintln!("planning with profile {}", profile.name);
    Ok((
        profile.acceptance.map(|a| a.p),
        Some(CostCurves { target, draft }),
    ))
}
