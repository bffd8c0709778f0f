//! The application core as the command line uses it, and the flags every engine command shares.
//! Flags become typed values here, once; every rule behind them lives in `canopy_core`.

use std::path::PathBuf;

use canopy_core::{Core, CoreError, ErrorKind, ModelChoice, WorkerEngine};
use canopy_types::{Penalties, Placement, Plan, Sampling};
use canopy_worker::WorkerCommand;

use crate::error::CliError;

/// The application core over `$CANOPY_HOME`, running inference in `canopy worker` children.
///
/// # Errors
/// When this executable cannot be found or there is no data directory.
pub fn core() -> Result<Core, CliError> {
    let program = std::env::current_exe().map_err(|e| {
        CliError::Failure(anyhow::anyhow!("cannot find the canopy executable: {e}"))
    })?;
    let data_dir = Core::default_data_dir().map_err(core_error)?;
    let engine = WorkerEngine::new(worker_command(program));
    Ok(Core::new(data_dir, Box::new(engine)))
}

/// This executable as a worker. A `GGML_OP_OFFLOAD_MIN_BATCH` set by the user is kept unless the
/// placement chooses one.
fn worker_command(program: PathBuf) -> WorkerCommand {
    let mut env = Vec::new();
    if let Some(v) = std::env::var_os("GGML_OP_OFFLOAD_MIN_BATCH") {
        env.push(("GGML_OP_OFFLOAD_MIN_BATCH".into(), v));
    }
    WorkerCommand {
        program,
        args: vec!["worker".into()],
        env,
    }
}

/// Maps a core failure to the command's exit policy: user and not-found errors exit 2.
pub fn core_error(err: CoreError) -> CliError {
    match err.kind() {
        ErrorKind::User | ErrorKind::NotFound | ErrorKind::Unavailable | ErrorKind::Busy => {
            CliError::User(err.to_string())
        }
        ErrorKind::Crashed | ErrorKind::Internal => CliError::Failure(anyhow::Error::new(err)),
    }
}

/// Parses `--rpc host:port[,host:port]`; absent = the target stays on this machine.
pub fn rpc_endpoints(flag: Option<&str>) -> Result<Vec<String>, CliError> {
    match flag {
        None => Ok(Vec::new()),
        Some(list) => canopy_worker::parse_rpc_endpoints(list)
            .map_err(|e| CliError::user(format!("--rpc: {e}"))),
    }
}

/// The default of every sampling flag: the one every front end shares.
const DEFAULT: Sampling = Sampling::chat_default();

/// Sampling flags shared by `generate` and `chat`; their defaults are [`Sampling::chat_default`].
#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Sampling temperature (0 to 2); 0 = greedy decoding.
    #[arg(long, default_value_t = DEFAULT.temperature(), allow_negative_numbers = true)]
    pub temperature: f32,
    /// Keep only the K most likely tokens (0 = off, at most 1000).
    #[arg(long, default_value_t = DEFAULT.top_k())]
    pub top_k: u32,
    /// Keep the smallest set of tokens whose probability reaches P (1 = off).
    #[arg(long, default_value_t = DEFAULT.top_p(), allow_negative_numbers = true)]
    pub top_p: f32,
    /// Keep only the tokens at least P times as likely as the most likely one (0 = off, at most 1).
    #[arg(long, default_value_t = DEFAULT.min_p(), allow_negative_numbers = true)]
    pub min_p: f32,
    /// Divide a repeated token's positive logit by this, multiply a negative one (1 = off, at most
    /// 2).
    #[arg(long, default_value_t = DEFAULT.penalties().repeat, allow_negative_numbers = true)]
    pub repeat_penalty: f32,
    /// How many of the latest tokens the penalties look at (0 = penalties off, at most 4096).
    #[arg(long, value_name = "N", default_value_t = DEFAULT.penalties().last_n)]
    pub repeat_last_n: u32,
    /// Subtract this from a token's logit per occurrence among the latest tokens (-2 to 2, 0 = off).
    #[arg(long, default_value_t = DEFAULT.penalties().frequency, allow_negative_numbers = true)]
    pub frequency_penalty: f32,
    /// Subtract this from the logit of every token among the latest tokens (-2 to 2, 0 = off).
    #[arg(long, default_value_t = DEFAULT.penalties().presence, allow_negative_numbers = true)]
    pub presence_penalty: f32,
    /// Random seed for sampling (same seed, same output).
    #[arg(long, default_value_t = DEFAULT.seed())]
    pub seed: u64,
}

impl SamplingArgs {
    /// Checked sampling settings; the error names the flag.
    pub fn sampling(&self) -> Result<Sampling, CliError> {
        let penalties = Penalties {
            last_n: self.repeat_last_n,
            repeat: self.repeat_penalty,
            frequency: self.frequency_penalty,
            presence: self.presence_penalty,
        };
        Sampling::new(self.temperature, self.top_k, self.top_p, self.seed)
            .and_then(|s| s.with_min_p(self.min_p))
            .and_then(|s| s.with_penalties(penalties))
            .map_err(|e| CliError::user(format!("--{e}")))
    }
}

/// A target, its draft and a prompt set: the flags of the tools that measure a pair (`acceptance`,
/// `bench`).
#[derive(clap::Args, Clone, Debug)]
pub struct PairArgs {
    /// The target model (GGUF file).
    #[arg(long)]
    pub target: PathBuf,
    /// The draft model (GGUF file, same vocabulary).
    #[arg(long)]
    pub draft: PathBuf,
    /// Prompts: a JSON array (strings or {"prompt": ...}) or one per line. Default: the shipped set.
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
}

/// The model flags of every command that generates (`generate`, `chat`, `serve`, `bench`): which
/// models, how to speculate, where the weights live.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// The target model (GGUF file).
    #[arg(long)]
    pub target: PathBuf,
    /// A small draft model sharing the target's vocabulary.
    #[arg(long)]
    pub draft: Option<PathBuf>,
    /// Speculation: none, chain:K, tree:N or auto.
    #[arg(long, default_value = "none", value_parser = parse_plan)]
    pub plan: Plan,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(long)]
    pub context: Option<u32>,
    /// Where the target's weights live: auto (this machine's GPU, if any), cpu, stream, gpu or
    /// layers:N.
    #[arg(long, default_value = "auto", value_parser = parse_placement)]
    pub placement: Placement,
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

pub fn parse_plan(s: &str) -> Result<Plan, String> {
    s.parse()
        .map_err(|e: canopy_types::InvalidPlan| e.to_string())
}

pub fn parse_placement(s: &str) -> Result<Placement, String> {
    s.parse()
        .map_err(|e: canopy_types::PlacementError| e.to_string())
}

impl ModelArgs {
    /// The typed choice the core prepares requests from.
    ///
    /// # Errors
    /// A user error for a malformed `--rpc` list.
    pub fn choice(&self) -> Result<ModelChoice, CliError> {
        Ok(ModelChoice {
            target: self.target.clone(),
            draft: self.draft.clone(),
            plan: self.plan,
            placement: self.placement,
            context: self.context,
            profile: self.profile.clone(),
            rpc: rpc_endpoints(self.rpc.as_deref())?,
            rpc_layers: self.rpc_layers,
        })
    }
}

/// Checks a model path before anything is started, so that a typo is a one-line user error.
pub fn model_path(path: &std::path::Path, what: &str) -> Result<PathBuf, CliError> {
    if !path.is_file() {
        let why = if path.exists() {
            "is not a file"
        } else {
            "not found"
        };
        return Err(CliError::user(format!(
            "{what} model {why}: {}",
            path.display()
        )));
    }
    Ok(path.to_path_buf())
}
