//! The worker's engine: model cache, prompt building, and the jobs of the protocol.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use canopy_plan::{CostTable, Costs, LookupAcceptance, ENGINE};
use canopy_spec::driver::GenError;
use canopy_spec::sampling::{argmax, distribution, SamplingConfig};
use canopy_spec::{
    generate, largest_tree, policy_for, GenConfig, NodeIn, StopReason, Token, TreeModel,
};
use canopy_worker::{
    AcceptanceRequest, AcceptanceResult, ChatRole, CostCurves, EventSink, GenerateRequest,
    GenerateResult, Handler, HandlerError, Job, JobResult, MeasureRequest, MeasureResult,
    Placement, Plan, Prompt, RpcSplit, TimedPoint,
};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use rand::SeedableRng;

use crate::rpc;
use crate::text::TextSink;
use crate::tree::{CellReuse, KvTypes, LlamaTree};

/// Smallest batch: prompt chunks and trees up to this size.
const MIN_BATCH: usize = 512;

/// Engine start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("llama.cpp backend failed to start: {0}")]
    Backend(String),
}

/// Where a loaded model's weights live: its placement and, for a target split over RPC helpers,
/// the helpers and the layer count asked of them. Part of every cache key, so that a model loaded
/// with other helpers (or none) is another model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Residence {
    placement: Placement,
    rpc: Vec<String>,
    rpc_layers: Option<u32>,
}

impl Residence {
    /// All on this machine (the draft, always).
    fn local(placement: Placement) -> Residence {
        Residence {
            placement,
            rpc: Vec::new(),
            rpc_layers: None,
        }
    }

    fn target(placement: Placement, rpc: &[String], rpc_layers: Option<u32>) -> Residence {
        Residence {
            placement,
            rpc: rpc.to_vec(),
            rpc_layers: rpc_layers.filter(|_| !rpc.is_empty()),
        }
    }
}

type ModelKey = (PathBuf, Residence);

/// A loaded model and, for a target split over helpers, the split llama.cpp was given.
struct Loaded {
    model: LlamaModel,
    split: Option<RpcSplit>,
    /// Where llama.cpp put its weights.
    weights: canopy_worker::WeightBuffers,
}

/// What a cached context was made for: reusable only by a request for the same files (unchanged
/// on disk), residences, cache types and sizes.
#[derive(Clone, Debug, PartialEq)]
struct CacheKey {
    target: (ModelKey, FileStamp),
    draft: Option<(ModelKey, FileStamp)>,
    n_ctx: u32,
    n_batch: usize,
    draft_batch: usize,
    inexact: bool,
}

/// The target's context (and the draft's) of a recent conversation, kept with their cells so that
/// a later request sharing the prompt's prefix decodes only what is new.
struct Cached {
    key: CacheKey,
    /// SAFETY: borrows the boxed `LlamaModel`s in `Engine::models` for `key`'s target and draft.
    /// Entries are dropped before any model they borrow is removed (`Engine::keep_only`), and
    /// `Engine::cache` is declared before `Engine::models`, so it is dropped first.
    target: LlamaTree<'static>,
    draft: Option<LlamaTree<'static>>,
    bytes: u64,
}

/// Loads models once per worker and runs jobs over them.
pub struct Engine {
    backend: LlamaBackend,
    /// Recent conversations' contexts, least recently used first. Declared before `models`: the
    /// contexts borrow the models and must be dropped first.
    cache: Vec<Cached>,
    /// Boxed, so that a model's address (which its contexts hold) survives the map growing.
    models: HashMap<ModelKey, Box<Loaded>>,
    /// Cost curves measured in this process, keyed by (target, draft, target's residence).
    calibrations: HashMap<(PathBuf, PathBuf, Residence), Costs>,
    /// Lookup acceptance as the last generation of each target measured it: how often this model
    /// copies what the conversation holds, where the next generation's `auto` starts from.
    lookup_measured: HashMap<PathBuf, LookupAcceptance>,
    /// Files that passed validation, with the length and time they had then.
    validated: HashMap<PathBuf, FileStamp>,
    threads: i32,
}

/// Deepest tree any plan builds; also the most accepted tokens one commit can hand to the next
/// pass.
const MAX_DEPTH: usize = ENGINE.max_depth;

fn user(msg: impl Into<String>) -> HandlerError {
    HandlerError::user(msg)
}

fn gen_error(e: GenError) -> HandlerError {
    HandlerError::internal(e.to_string())
}

/// Refuses `auto`: the caller resolves the placement from the GPU's facts before sending a job.
fn check_resolved(placement: Placement) -> Result<(), HandlerError> {
    if placement.is_resolved() {
        Ok(())
    } else {
        Err(HandlerError::internal(
            "placement auto reached the worker unresolved; the caller must choose one",
        ))
    }
}

/// The KV cells to allocate for a request of `needed` tokens (prompt plus max tokens) whose
/// passes hold up to `n_batch` cells more: llama.cpp allocates and zeroes a context's whole KV
/// cache when it creates it, so sizing it to the request rather than to the allowed context
/// (`n_ctx`) spares every short request a large allocation. Rounded up to llama.cpp's 256-cell
/// padding, so the attention spans the same cells as in a full-size cache.
fn kv_cells(needed: usize, n_batch: usize, n_ctx: u32) -> u32 {
    let want = (needed + n_batch).next_multiple_of(256);
    want.min(n_ctx as usize) as u32
}

/// The contexts a request needs: their cells and batch, and whether they are kept for the
/// conversation's next request.
struct ContextSize {
    n_batch: usize,
    /// The draft's batch: its widest level, not the whole tree ([`canopy_spec::draft_batch`]).
    draft_batch: usize,
    cells: u32,
    /// Bytes of both KV caches at the whole allowed context.
    full_bytes: f64,
    /// Kept when the budget holds one conversation at the whole allowed context; the contexts
    /// are then made that large, so that later turns fit.
    keep: bool,
}

impl ContextSize {
    fn of(
        req: &GenerateRequest,
        target: &LlamaModel,
        draft: Option<&Path>,
        prompt: &[Token],
        largest: usize,
    ) -> Result<ContextSize, HandlerError> {
        let n_ctx = req
            .context
            .unwrap_or_else(|| canopy_worker::default_context(target.n_ctx_train()));
        if n_ctx < 16 {
            return Err(user(format!(
                "context must be at least 16 tokens, got {n_ctx}"
            )));
        }
        let needed = prompt.len() + req.max_tokens as usize;
        if needed > n_ctx as usize {
            return Err(user(format!(
                "the prompt ({} tokens) plus max tokens ({}) exceeds the context of {n_ctx} tokens: shorten the prompt, lower --max-tokens or raise --context",
                prompt.len(),
                req.max_tokens
            )));
        }
        // Room for the largest tree plus the accepted tokens a commit may hand to the next pass.
        let n_batch = MIN_BATCH.max(largest + MAX_DEPTH);
        let kv_bytes = |path: &Path| {
            canopy_gguf::inspect(path)
                .map(|info| canopy_hw::Footprint::from_info(&info).kv_bytes(n_ctx))
                .ok()
        };
        let full_bytes = kv_bytes(&req.target).unwrap_or(f64::INFINITY)
            + draft.map_or(Some(0.0), kv_bytes).unwrap_or(f64::INFINITY);
        let keep = req.kv_cache_bytes > 0 && full_bytes <= req.kv_cache_bytes as f64;
        Ok(ContextSize {
            n_batch,
            draft_batch: canopy_spec::draft_batch(largest),
            cells: if keep {
                n_ctx
            } else {
                kv_cells(needed, n_batch, n_ctx)
            },
            full_bytes,
            keep,
        })
    }
}

/// The cached contexts of `key` sharing the longest prefix with the prompt, taken out of the
/// cache for the length of the job (a failed job leaves no half-updated cache behind). Without
/// one, older entries make room for the new contexts first: where the GPU holds the cache the
/// budget is one conversation, and two at once might not fit.
fn take_cached(
    cache: &mut Vec<Cached>,
    key: &CacheKey,
    prompt: &[Token],
    size: &ContextSize,
    req: &GenerateRequest,
) -> Option<Cached> {
    let found = cache
        .iter()
        .enumerate()
        .filter(|(_, c)| c.key == *key)
        .map(|(i, c)| (i, c.target.reusable(prompt)))
        .filter(|&(_, shared)| shared > 0)
        .max_by_key(|&(_, shared)| shared)
        .map(|(i, _)| cache.remove(i));
    if found.is_none() {
        let budget = if size.keep { req.kv_cache_bytes } else { 0 };
        while !cache.is_empty()
            && cache.iter().map(|c| c.bytes).sum::<u64>() as f64 + size.full_bytes > budget as f64
        {
            cache.remove(0);
        }
    }
    found
}

/// Puts a conversation's contexts back, most recent last; least recently used go first until
/// the budget holds.
fn keep_cached(cache: &mut Vec<Cached>, entry: Cached, budget: u64) {
    cache.push(entry);
    while cache.iter().map(|c| c.bytes).sum::<u64>() > budget {
        cache.remove(0);
    }
}

/// Fresh contexts for the target and the draft.
fn new_contexts(
    backend: &LlamaBackend,
    threads: i32,
    req: &GenerateRequest,
    size: &ContextSize,
    target_model: &LlamaModel,
    draft_model: Option<&LlamaModel>,
) -> Result<(LlamaTree<'static>, Option<LlamaTree<'static>>), HandlerError> {
    let reuse = if req.inexact_cache {
        CellReuse::Refill
    } else {
        CellReuse::Ordered
    };
    let kv = |placement| match req.inexact_cache {
        true => KvTypes::Default,
        false => kv_types(backend, placement),
    };
    let cells = size.cells;
    let _ = crate::backends::take_error_lines();
    // A context that did not fit is the GPU's shortfall only where it was to go on a GPU.
    let on_gpu = |e: HandlerError, what: &str| {
        let errors = crate::backends::take_error_lines();
        let gpu =
            (what == "draft" || req.placement.uses_gpu()) && least_free_gpu_memory().is_some();
        match gpu && crate::backends::says_out_of_memory(&errors) {
            true => HandlerError::gpu_memory(
                format!("the {what}'s context did not fit in the GPU's memory: {e}"),
                None,
            ),
            false => e,
        }
    };
    let target_kv = kv(req.placement);
    let mut target = LlamaTree::create(
        backend,
        threads,
        target_model,
        cells,
        size.n_batch,
        target_kv,
    )
    .map_err(|e| on_gpu(e, "target"))?;
    target.set_cell_reuse(reuse);
    let draft = match draft_model {
        Some(model) => {
            let kv = kv(Placement::Gpu);
            let mut tree = LlamaTree::create(backend, threads, model, cells, size.draft_batch, kv)
                .map_err(|e| on_gpu(e, "draft"))?;
            tree.set_cell_reuse(reuse);
            Some(tree)
        }
        None => None,
    };
    // SAFETY: the trees borrow models boxed in `Engine::models`; see `Cached::target`. They are
    // used for one job and stored in `Engine::cache` only under the key of those models.
    Ok(unsafe {
        (
            std::mem::transmute::<LlamaTree<'_>, LlamaTree<'static>>(target),
            draft.map(|d| std::mem::transmute::<LlamaTree<'_>, LlamaTree<'static>>(d)),
        )
    })
}

/// The least free memory of this process's GPUs, as llama.cpp's devices report it (RPC helpers'
/// devices are not local); `None` without a GPU.
fn least_free_gpu_memory() -> Option<u64> {
    use llama_cpp_2::LlamaBackendDeviceType as Type;
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| matches!(d.device_type, Type::Gpu | Type::IntegratedGpu) && d.backend != "RPC")
        .map(|d| d.memory_free as u64)
        .min()
}

/// The least free memory of this process's GPUs, when `floor` asks for a check, failing as
/// [`check_gpu_floor`] does.
fn gpu_free_above_floor(floor: u64) -> Result<Option<u64>, HandlerError> {
    let free = match floor {
        0 => None,
        _ => least_free_gpu_memory(),
    };
    check_gpu_floor(free, floor)?;
    Ok(free)
}

/// Prepares the target's and the draft's contexts for a generation over `prompt`
/// ([`LlamaTree::resume`]); the prompt tokens the target's cache holds already.
fn resume(
    target: &mut LlamaTree<'static>,
    draft: Option<&mut LlamaTree<'static>>,
    prompt: &[Token],
) -> Result<usize, HandlerError> {
    let internal = |e: canopy_spec::ModelError| HandlerError::internal(e.to_string());
    let reused = target.resume(prompt).map_err(internal)?;
    if let Some(d) = draft {
        d.resume(prompt).map_err(internal)?;
    }
    Ok(reused)
}

/// Fails, with the shortfall, when a GPU has less than `floor` bytes `free` once the models are
/// loaded and the contexts created (their compute buffers included): llama.cpp allocates more
/// while it runs, and aborts when that fails. A floor of 0, or no GPU, checks nothing.
fn check_gpu_floor(free: Option<u64>, floor: u64) -> Result<(), HandlerError> {
    match free {
        Some(free) if free < floor => Err(HandlerError::gpu_memory(
            format!(
                "with the models and their contexts loaded the GPU has {} MiB free, less than the {} MiB llama.cpp needs while it runs",
                free >> 20,
                floor >> 20
            ),
            Some(floor - free),
        )),
        _ => Ok(()),
    }
}

/// The costs `auto` plans from: a profile's curves, else this process's calibration of these
/// models in this residence (measured on first use).
fn auto_costs(
    req: &GenerateRequest,
    calibrations: &mut HashMap<(PathBuf, PathBuf, Residence), Costs>,
    (target, draft): (&mut LlamaTree<'static>, Option<&mut LlamaTree<'static>>),
    prompt: &[Token],
    largest: usize,
    events: &mut EventSink,
) -> Result<Costs, HandlerError> {
    if let Some(curves) = &req.costs {
        return costs_from(curves).map_err(user);
    }
    events.progress("calibrating", 0.0);
    let key = (
        req.target.clone(),
        req.draft.clone().unwrap_or_default(),
        Residence::target(req.placement, &req.rpc, req.rpc_layers),
    );
    if let Some(c) = calibrations.get(&key) {
        return Ok(c.clone());
    }
    let c = calibrate(target, draft, prompt, largest, events)?;
    calibrations.insert(key, c.clone());
    Ok(c)
}

/// A finished generation's result (the plan, the cost disagreement and the weights are the
/// caller's to fill in).
fn result_of(stats: &canopy_spec::GenStats, sink: &TextSink<'_>, reused: usize) -> GenerateResult {
    let tokens = stats.tokens as u64;
    GenerateResult {
        text: sink.text.clone(),
        tokens,
        prefill_tokens: (stats.prefill_tokens - reused) as u64,
        prefix_reused_tokens: reused as u64,
        lookup_tokens: stats.lookup_tokens as u64,
        lookup_accepted: stats.lookup_accepted as u64,
        cost_disagreement: None,
        prefill_ms: stats.prefill_secs * 1e3,
        decode_ms: stats.decode_secs * 1e3,
        tokens_per_second: if stats.decode_secs > 0.0 {
            tokens as f64 / stats.decode_secs
        } else {
            0.0
        },
        stop_reason: stats.stop_reason.unwrap_or(StopReason::MaxTokens),
        plan: String::new(),
        steps: stats.steps as u64,
        mean_accepted_per_step: stats.mean_accepted_per_step(),
        accepted_histogram: stats.accepted_histogram.clone(),
        budget: stats.max_budget as u32,
        depth: stats.max_depth as u32,
        draft_ms: stats.draft_secs * 1e3,
        verify_ms: stats.verify_secs * 1e3,
        provenance: sink.provenance.clone(),
        token_ids: sink.tokens.clone(),
        margins: stats
            .margins
            .iter()
            .take(sink.tokens.len())
            .copied()
            .collect(),
        target_weights: None,
        gpu_free_bytes: None,
    }
}

/// Length and modification time of a file validated earlier.
type FileStamp = (u64, Option<std::time::SystemTime>);

/// Checks that `path` names a readable GGUF file, with a message the user can act on. A file
/// validated before with the same length and modification time is not parsed again (a chat turn
/// or a server request would otherwise re-read every header and vocabulary).
fn check_model_file(
    validated: &mut HashMap<PathBuf, FileStamp>,
    path: &Path,
    what: &str,
) -> Result<(), HandlerError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        user(format!(
            "{what} model {} cannot be read: {e}",
            path.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(user(format!(
            "{what} model {} is not a file",
            path.display()
        )));
    }
    let stamp = (meta.len(), meta.modified().ok());
    if stamp.1.is_some() && validated.get(path) == Some(&stamp) {
        return Ok(());
    }
    validated.remove(path);
    canopy_gguf::validate(path).map_err(|e| {
        user(format!(
            "{what} model {} is not a valid GGUF file: {e}",
            path.display()
        ))
    })?;
    validated.insert(path.to_path_buf(), stamp);
    Ok(())
}

/// `params` with no GPU at all: no device gets a layer, llama.cpp's op offload has no device to
/// copy weights to, and the weights stay in plain (not pinned) host memory. What `cpu` means on a
/// machine with a GPU.
fn cpu_only(params: LlamaModelParams) -> Result<LlamaModelParams, llama_cpp_2::LlamaCppError> {
    params.with_n_gpu_layers(0).with_devices(&[])
}

impl Engine {
    /// Starts llama.cpp's backend (logs silenced unless `CANOPY_LLAMA_LOG` is set).
    ///
    /// # Errors
    /// When the backend fails to initialise.
    pub fn new() -> Result<Engine, EngineError> {
        crate::backends::load()
            .require_cpu()
            .map_err(EngineError::Backend)?;
        // `backends::load` installed the log callback (quiet unless CANOPY_LLAMA_LOG is set).
        let backend = LlamaBackend::init().map_err(|e| EngineError::Backend(e.to_string()))?;
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get()) as i32;
        Ok(Engine {
            backend,
            cache: Vec::new(),
            models: HashMap::new(),
            calibrations: HashMap::new(),
            lookup_measured: HashMap::new(),
            validated: HashMap::new(),
            threads,
        })
    }

    /// Loads a model once per (file, residence), after [`check_model_file`] validated it (on
    /// every job, so a file changed on disk is validated again).
    fn load(&mut self, path: &Path, residence: &Residence, what: &str) -> Result<(), HandlerError> {
        // canopy-gguf validates every file before llama.cpp reads it (once per file version).
        check_model_file(&mut self.validated, path, what)?;
        let key = (path.to_path_buf(), residence.clone());
        if self.models.contains_key(&key) {
            return Ok(());
        }
        let (params, split) = if residence.rpc.is_empty() {
            let params = rpc::local_params(Self::local_params(residence.placement))
                .map_err(|e| user(e.to_string()))?;
            let params = match residence.placement {
                Placement::Cpu => cpu_only(params).map_err(|e| user(e.to_string()))?,
                _ => params,
            };
            (params, None)
        } else {
            canopy_worker::validate_rpc_endpoints(&residence.rpc)
                .map_err(|e| user(e.to_string()))?;
            rpc::split_params(
                path,
                residence.placement,
                &residence.rpc,
                residence.rpc_layers,
            )
            .map_err(|e| user(e.to_string()))?
        };
        let _ = crate::backends::take_buffer_lines();
        let _ = crate::backends::take_error_lines();
        let loaded = match split {
            // Split over helpers: the local layers in plain buffers, as the helpers keep theirs.
            Some(_) => rpc::load_split(&self.backend, path, &params),
            None => {
                LlamaModel::load_from_file(&self.backend, path, &params).map_err(|e| e.to_string())
            }
        };
        let model = loaded.map_err(|e| {
            let helpers = match residence.rpc.is_empty() {
                true => String::new(),
                false => format!(" with RPC helper {}", residence.rpc.join(", ")),
            };
            let errors = crate::backends::take_error_lines();
            if crate::backends::says_out_of_memory(&errors)
                && residence.placement.uses_gpu()
                && least_free_gpu_memory().is_some()
            {
                return HandlerError::gpu_memory(
                    format!(
                        "{what} model {} did not fit in the GPU's memory with placement {}{helpers}",
                        path.display(),
                        residence.placement
                    ),
                    None,
                );
            }
            user(format!(
                "{what} model {} could not be loaded by llama.cpp{helpers}: {e}",
                path.display()
            ))
        })?;
        let weights = crate::backends::weight_buffers(&crate::backends::take_buffer_lines());
        self.models.insert(
            key,
            Box::new(Loaded {
                model,
                split,
                weights,
            }),
        );
        Ok(())
    }

    /// Loads `path` on the CPU and says where llama.cpp put its weights (tests).
    #[cfg(test)]
    pub(crate) fn load_for_test(&mut self, path: &Path) -> canopy_worker::WeightBuffers {
        let residence = Residence::local(Placement::Cpu);
        self.load(path, &residence, "test").unwrap();
        self.models[&(path.to_path_buf(), residence)]
            .weights
            .clone()
    }

    /// Model parameters for a model all on this machine.
    fn local_params(placement: Placement) -> LlamaModelParams {
        match placement {
            Placement::Cpu | Placement::Auto => LlamaModelParams::default().with_n_gpu_layers(0),
            // Pinned host buffers (no mmap) so that streamed weights cross PCIe at full speed.
            Placement::Stream => LlamaModelParams::default()
                .with_n_gpu_layers(0)
                .with_use_mmap(false),
            Placement::Partial { layers } => LlamaModelParams::default()
                .with_n_gpu_layers(layers)
                .with_use_mmap(false),
            Placement::Gpu => LlamaModelParams::default().with_n_gpu_layers(u32::MAX / 2),
        }
    }

    /// Unloads every model a job does not need, so that switching models never holds two big
    /// targets in memory at once.
    fn keep_only(&mut self, needed: &[Option<(&Path, &Residence)>]) {
        let kept = |(path, residence): &ModelKey| {
            needed
                .iter()
                .flatten()
                .any(|(p, r)| *p == path.as_path() && *r == residence)
        };
        // Contexts first: they borrow the models.
        self.cache
            .retain(|c| kept(&c.key.target.0) && c.key.draft.as_ref().is_none_or(|(d, _)| kept(d)));
        self.models.retain(|key, _| kept(key));
    }

    fn model(&self, path: &Path, residence: &Residence) -> &LlamaModel {
        &self.models[&(path.to_path_buf(), residence.clone())].model
    }

    fn context<'m>(
        &self,
        model: &'m LlamaModel,
        placement: Placement,
        n_ctx: u32,
        n_batch: usize,
    ) -> Result<LlamaTree<'m>, HandlerError> {
        self.context_with(model, placement, n_ctx, n_batch, true)
    }

    /// [`Engine::context`] with llama.cpp's op offload on or off (always off for `cpu`).
    fn context_with<'m>(
        &self,
        model: &'m LlamaModel,
        placement: Placement,
        n_ctx: u32,
        n_batch: usize,
        op_offload: bool,
    ) -> Result<LlamaTree<'m>, HandlerError> {
        let kv = kv_types(&self.backend, placement);
        let op_offload = op_offload && placement != Placement::Cpu;
        LlamaTree::create_with(
            &self.backend,
            self.threads,
            model,
            n_ctx,
            n_batch,
            kv,
            op_offload,
        )
    }

    /// Renders the prompt (chat template or raw text) and tokenizes it.
    ///
    /// # Errors
    /// When the model has no chat template for a chat prompt, or the prompt is empty.
    pub fn prompt_tokens(model: &LlamaModel, prompt: &Prompt) -> Result<Vec<Token>, HandlerError> {
        let text = match prompt {
            Prompt::Raw(text) => text.clone(),
            Prompt::Chat(messages) => {
                let template = model.chat_template(None).map_err(|_| {
                    user("the model has no chat template: use a raw prompt (--raw) instead")
                })?;
                let chat = messages
                    .iter()
                    .map(|m| {
                        let role = match m.role {
                            ChatRole::System => "system",
                            ChatRole::User => "user",
                            ChatRole::Assistant => "assistant",
                        };
                        LlamaChatMessage::new(role.to_owned(), m.content.clone())
                            .map_err(|_| user("a message contains a NUL character"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                model
                    .apply_chat_template(&template, &chat, true)
                    .map_err(|e| {
                        user(format!(
                            "the model's chat template could not be applied: {e}"
                        ))
                    })?
            }
        };
        let vocab = model.vocab();
        let mut tokens: Vec<Token> = vocab
            .tokenize(text.as_bytes(), true, true)
            .into_iter()
            .map(|t| t.0)
            .collect();
        // A template that already writes BOS and a tokenizer that adds one: keep one.
        if tokens.len() >= 2 && tokens[0] == tokens[1] && tokens[0] == vocab.bos().0 {
            tokens.remove(0);
        }
        if tokens.is_empty() {
            return Err(user("the prompt is empty"));
        }
        Ok(tokens)
    }

    fn check_pair(target: &Path, draft: &Path) -> Result<(), HandlerError> {
        let a = canopy_gguf::vocabulary(target)
            .map_err(|e| user(format!("target model {}: {e}", target.display())))?;
        let b = canopy_gguf::vocabulary(draft)
            .map_err(|e| user(format!("draft model {}: {e}", draft.display())))?;
        canopy_gguf::compare_vocab(&a, &b).map_err(|e| {
            user(format!(
                "draft {} cannot speculate for target {}: {e}",
                draft.display(),
                target.display()
            ))
        })
    }

    fn generate(
        &mut self,
        req: &GenerateRequest,
        events: &mut EventSink,
    ) -> Result<GenerateResult, HandlerError> {
        if req.max_tokens == 0 {
            return Err(user("max tokens must be at least 1"));
        }
        check_resolved(req.placement)?;
        let draft_path = self.load_models(req, events)?;
        let residence = Residence::target(req.placement, &req.rpc, req.rpc_layers);
        let draft_residence = Residence::local(Placement::Gpu);
        let stamp = |path: &Path| self.validated.get(path).copied().unwrap_or((0, None));
        let target_key = ((req.target.clone(), residence.clone()), stamp(&req.target));
        let draft_key =
            (draft_path.as_deref()).map(|d| ((d.to_path_buf(), draft_residence.clone()), stamp(d)));
        let Engine {
            backend,
            models,
            calibrations,
            lookup_measured,
            threads,
            cache,
            ..
        } = self;
        let (backend, threads) = (&*backend, *threads);
        let loaded = &models[&(req.target.clone(), residence.clone())];
        let (target_model, target_weights) = (&loaded.model, loaded.weights.clone());
        let prompt = Self::prompt_tokens(target_model, &req.prompt)?;
        let largest = largest_tree(req.plan, req.placement);
        let size = ContextSize::of(req, target_model, draft_path.as_deref(), &prompt, largest)?;
        let key = CacheKey {
            target: target_key,
            draft: draft_key,
            n_ctx: size.cells,
            n_batch: size.n_batch,
            draft_batch: size.draft_batch,
            inexact: req.inexact_cache,
        };
        if req.kv_cache_bytes == 0 {
            cache.clear();
        }
        let (mut target, mut draft) = match take_cached(cache, &key, &prompt, &size, req) {
            Some(c) => (c.target, c.draft),
            None => {
                let draft_model = draft_path
                    .as_ref()
                    .map(|d| &models[&(d.clone(), draft_residence.clone())].model);
                new_contexts(backend, threads, req, &size, target_model, draft_model)?
            }
        };
        // With the contexts made (their compute buffers too), what llama.cpp allocates while it
        // runs must still fit: fail now, before any text, so that the caller can re-plan.
        let gpu_free = gpu_free_above_floor(req.gpu_floor_bytes)?;
        let reused = resume(&mut target, draft.as_mut(), &prompt)?;

        let costs = match req.plan {
            Plan::Auto => Some(auto_costs(
                req,
                calibrations,
                (&mut target, draft.as_mut()),
                &prompt,
                largest,
                events,
            )?),
            _ => None,
        };
        let mut policy = policy_for(
            req.plan,
            req.acceptance.as_deref(),
            costs,
            draft.is_some(),
            !req.no_lookup,
            largest,
        )
        .map_err(|e| user(e.to_string()))?;
        if let Some(measured) = lookup_measured.get(&req.target) {
            policy.start_lookup_from(measured);
        }

        let mut sink = TextSink::new(target_model, events, &req.stop);
        let cfg = GenConfig {
            sampling: SamplingConfig::from(req.sampling),
            max_tokens: req.max_tokens as usize,
            seed: req.sampling.seed(),
        };
        let stats = generate(
            &mut target,
            draft.as_mut().map(|d| d as &mut dyn TreeModel),
            &prompt,
            &cfg,
            policy.as_mut(),
            &mut sink,
        )
        .map_err(gen_error)?;
        sink.flush();
        if let Some(measured) = policy.lookup_acceptance() {
            lookup_measured.insert(req.target.clone(), measured);
        }
        if size.keep {
            keep_cached(
                cache,
                Cached {
                    key,
                    target,
                    draft,
                    bytes: size.full_bytes as u64,
                },
                req.kv_cache_bytes,
            );
        }
        let mut result = result_of(&stats, &sink, reused);
        result.plan = policy.describe();
        // Only a profile's curves can be wrong about this machine; a calibration is this run's.
        result.cost_disagreement = req.costs.as_ref().and(policy.cost_disagreement());
        result.target_weights = Some(target_weights);
        result.gpu_free_bytes = gpu_free;
        Ok(result)
    }

    /// Validates the request's files and loads its models (dropping the others); the draft's
    /// path when the plan uses one.
    fn load_models(
        &mut self,
        req: &GenerateRequest,
        events: &mut EventSink,
    ) -> Result<Option<PathBuf>, HandlerError> {
        let draft_path = match (req.plan, &req.draft) {
            (Plan::None, _) => None,
            (_, Some(d)) => Some(d.clone()),
            // `auto` without a draft model speculates with lookup alone.
            (Plan::Auto, None) => None,
            (_, None) => {
                return Err(user(format!(
                    "plan {} needs a draft model (--draft)",
                    req.plan
                )))
            }
        };
        check_model_file(&mut self.validated, &req.target, "target")?;
        if let Some(d) = &draft_path {
            check_model_file(&mut self.validated, d, "draft")?;
            Self::check_pair(&req.target, d)?;
        }
        events.progress("loading target", 0.0);
        let residence = Residence::target(req.placement, &req.rpc, req.rpc_layers);
        let draft_residence = Residence::local(Placement::Gpu);
        self.keep_only(&[
            Some((&req.target, &residence)),
            draft_path.as_deref().map(|d| (d, &draft_residence)),
        ]);
        self.load(&req.target, &residence, "target")?;
        if let Some(d) = &draft_path {
            events.progress("loading draft", 0.5);
            self.load(d, &draft_residence, "draft")?;
        }
        Ok(draft_path)
    }

    fn measure(
        &mut self,
        req: &MeasureRequest,
        events: &mut EventSink,
    ) -> Result<MeasureResult, HandlerError> {
        if req.repeats == 0 {
            return Err(user("repeats must be at least 1"));
        }
        check_resolved(req.placement)?;
        check_model_file(&mut self.validated, &req.target, "target")?;
        let residence = Residence::target(req.placement, &req.rpc, req.rpc_layers);
        let draft_residence = Residence::local(Placement::Gpu);
        self.keep_only(&[
            Some((&req.target, &residence)),
            req.draft.as_deref().map(|d| (d, &draft_residence)),
        ]);
        self.load(&req.target, &residence, "target")?;
        if let Some(d) = &req.draft {
            check_model_file(&mut self.validated, d, "draft")?;
            self.load(d, &draft_residence, "draft")?;
        }
        let largest = req
            .target_grid
            .iter()
            .chain(&req.draft_grid)
            .copied()
            .max()
            .unwrap_or(1);
        let n_batch = MIN_BATCH.max(largest);
        let model = self.model(&req.target, &residence);
        let probe = Self::prompt_tokens(
            model,
            &Prompt::Raw("The quick brown fox jumps over the lazy dog.".into()),
        )?;
        let prefix: Vec<Token> = probe
            .iter()
            .copied()
            .cycle()
            .take(req.prefix as usize)
            .collect();
        let n_ctx = (2 * n_batch + 64 + prefix.len()) as u32;
        let prefill = |tree: &mut LlamaTree<'_>| -> Result<(), HandlerError> {
            if prefix.is_empty() {
                return Ok(());
            }
            tree.prefill(&prefix)
                .map_err(|e| HandlerError::internal(e.to_string()))
        };
        let mut target = None;
        if !req.target_grid.is_empty() {
            let mut tree = self.context(model, req.placement, n_ctx, n_batch)?;
            prefill(&mut tree)?;
            target = Some(tree);
        }
        let total =
            (req.target_grid.len() + req.host_path_grid.len() + req.draft_grid.len()).max(1) as f64;
        let mut done = 0.0;
        let mut target_points = Vec::new();
        for &n in &req.target_grid {
            if events.is_cancelled() {
                return Err(user("cancelled"));
            }
            if let Some(tree) = target.as_mut() {
                target_points.push(time_pass(tree, &probe, n, req.repeats)?);
            }
            done += 1.0;
            events.progress("target passes", done / total);
        }
        // The same passes with the host layers on the CPU, in a context without op offload: where
        // the two curves cross is where copying the host layers to the GPU starts to pay.
        let mut host_path = Vec::new();
        if !req.host_path_grid.is_empty() && req.placement.streams() {
            drop(target);
            // No prefix here: prefilling it on the CPU would cost more than every timed pass, and
            // a CPU pass of a few tokens is dominated by reading the weights.
            let mut cpu = self.context_with(model, req.placement, n_ctx, n_batch, false)?;
            for &n in &req.host_path_grid {
                if events.is_cancelled() {
                    return Err(user("cancelled"));
                }
                host_path.push(time_pass(&mut cpu, &probe, n, req.repeats)?);
                done += 1.0;
                events.progress("target passes, host layers on the CPU", done / total);
            }
        }
        let mut draft_points = Vec::new();
        if let Some(d) = &req.draft {
            let mut draft = self.context(
                self.model(d, &draft_residence),
                Placement::Gpu,
                n_ctx,
                n_batch,
            )?;
            prefill(&mut draft)?;
            for &k in &req.draft_grid {
                if events.is_cancelled() {
                    return Err(user("cancelled"));
                }
                draft_points.push(time_pass(&mut draft, &probe, k, req.repeats)?);
                done += 1.0;
                events.progress("draft passes", done / total);
            }
        }
        Ok(MeasureResult {
            target: target_points,
            target_host_path: host_path,
            draft: draft_points,
            rpc_split: self.models[&(req.target.clone(), residence.clone())].split,
            target_weights: Some(
                self.models[&(req.target.clone(), residence)]
                    .weights
                    .clone(),
            ),
        })
    }

    fn acceptance(
        &mut self,
        req: &AcceptanceRequest,
        events: &mut EventSink,
    ) -> Result<AcceptanceResult, HandlerError> {
        req.check().map_err(user)?;
        let sampling = SamplingConfig {
            temperature: req.temperature,
            top_k: 0,
            top_p: 1.0,
            ..SamplingConfig::GREEDY
        };
        sampling.validate().map_err(|e| user(e.to_string()))?;
        check_model_file(&mut self.validated, &req.target, "target")?;
        check_model_file(&mut self.validated, &req.draft, "draft")?;
        Self::check_pair(&req.target, &req.draft)?;
        let (target_residence, draft_residence) = (
            Residence::local(Placement::Cpu),
            Residence::local(Placement::Gpu),
        );
        self.keep_only(&[
            Some((&req.target, &target_residence)),
            Some((&req.draft, &draft_residence)),
        ]);
        self.load(&req.target, &target_residence, "target")?;
        self.load(&req.draft, &draft_residence, "draft")?;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(req.seed);
        let mut sum = vec![0.0; req.width];
        let mut positions = 0u64;
        for (i, prompt) in req.prompts.iter().enumerate() {
            if events.is_cancelled() {
                return Err(user("cancelled"));
            }
            let tmodel = self.model(&req.target, &target_residence);
            let dmodel = self.model(&req.draft, &draft_residence);
            let chat = Prompt::Chat(vec![canopy_worker::ChatMessage {
                role: ChatRole::User,
                content: prompt.clone(),
            }]);
            let tokens = Self::prompt_tokens(tmodel, &chat)?;
            let n_ctx = (tokens.len() + req.tokens_per_prompt as usize + 8) as u32;
            let mut t = self.context(tmodel, Placement::Cpu, n_ctx.max(64), MIN_BATCH)?;
            let mut d = self.context(dmodel, Placement::Gpu, n_ctx.max(64), MIN_BATCH)?;
            let (&last, context) = tokens.split_last().ok_or_else(|| user("empty prompt"))?;
            t.prefill(context)
                .map_err(|e| HandlerError::internal(e.to_string()))?;
            d.prefill(context)
                .map_err(|e| HandlerError::internal(e.to_string()))?;
            let mut root = last;
            for _ in 0..req.tokens_per_prompt {
                let one = [NodeIn {
                    token: root,
                    parent: None,
                    logits: true,
                }];
                t.decode(&one)
                    .map_err(|e| HandlerError::internal(e.to_string()))?;
                d.decode(&one)
                    .map_err(|e| HandlerError::internal(e.to_string()))?;
                let (tl, dl) = (t.logits(0), d.logits(0));
                let row = if sampling.is_greedy() {
                    canopy_spec::acceptance::greedy_position(tl, dl, req.width)
                } else {
                    let p = distribution(tl, &sampling);
                    let q = distribution(dl, &sampling);
                    canopy_spec::acceptance::sampled_position(&p, &q, req.width, 4, &mut rng)
                };
                let next = if sampling.is_greedy() {
                    argmax(tl)
                } else {
                    distribution(tl, &sampling).sample(&mut rng).unwrap_or(root)
                };
                for (s, r) in sum.iter_mut().zip(&row) {
                    *s += r;
                }
                positions += 1;
                t.commit(&[0])
                    .map_err(|e| HandlerError::internal(e.to_string()))?;
                d.commit(&[0])
                    .map_err(|e| HandlerError::internal(e.to_string()))?;
                if tmodel.vocab().is_eog(llama_cpp_2::token::LlamaToken(next)) {
                    break;
                }
                root = next;
            }
            events.progress("acceptance", (i + 1) as f64 / req.prompts.len() as f64);
        }
        let acceptance = sum.iter().map(|s| s / positions.max(1) as f64).collect();
        Ok(AcceptanceResult {
            acceptance,
            positions,
            temperature: req.temperature,
        })
    }
}

/// The KV cache types of a model in `placement`: batch-invariant where attention runs on the CPU
/// (weights in host memory, or no GPU at all), llama.cpp's defaults on a GPU.
fn kv_types(backend: &LlamaBackend, placement: Placement) -> KvTypes {
    // Once an RPC helper is connected llama.cpp counts it as GPU offload; only a local GPU counts.
    let local_gpu = match rpc::any_connected() {
        true => !rpc::local_gpus().is_empty(),
        false => backend.supports_gpu_offload(),
    };
    match placement {
        Placement::Cpu | Placement::Stream | Placement::Auto => KvTypes::BatchInvariant,
        Placement::Partial { .. } | Placement::Gpu if local_gpu => KvTypes::Default,
        Placement::Partial { .. } | Placement::Gpu => KvTypes::BatchInvariant,
    }
}

/// Converts measured curves into the planner's cost tables.
fn costs_from(curves: &CostCurves) -> Result<Costs, String> {
    let target = CostTable::new(curves.target.clone())
        .map_err(|e| format!("invalid target cost curve: {e}"))?;
    let draft = CostTable::new(curves.draft.clone())
        .map_err(|e| format!("invalid draft cost curve: {e}"))?;
    Ok(Costs { target, draft })
}

/// The largest size [`calibrate`] fills in between powers of two.
const DENSE_MAX: usize = 16;
/// A segment is steep when its far end costs this much more than its near one.
const STEEP: f64 = 1.3;

/// Times one decode of `n` tokens (a chain hung on the prefix), best of `repeats` after a warm-up.
fn time_pass(
    model: &mut LlamaTree<'_>,
    probe: &[Token],
    n: usize,
    repeats: u32,
) -> Result<TimedPoint, HandlerError> {
    let internal = |e: canopy_spec::ModelError| HandlerError::internal(e.to_string());
    let nodes: Vec<NodeIn> = (0..n)
        .map(|i| NodeIn {
            token: probe[i % probe.len()],
            parent: i.checked_sub(1),
            logits: true,
        })
        .collect();
    let mut times = Vec::with_capacity(repeats as usize);
    for r in 0..=repeats {
        let t0 = Instant::now();
        model.decode(&nodes).map_err(internal)?;
        let _ = model.logits(n - 1).first();
        let dt = t0.elapsed().as_secs_f64();
        model.commit(&[]).map_err(internal)?;
        if r > 0 {
            times.push(dt);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(TimedPoint {
        n,
        median: times[times.len() / 2],
        min: times[0],
        max: times[times.len() - 1],
    })
}

/// Measures this machine's pass times for `auto` when no profile was given: target passes over a
/// doubling grid until a pass costs more than any tree of that size could repay, draft passes over
/// the same grid. Where a segment up to [`DENSE_MAX`] tokens is steep (the CPU path, whose pass
/// grows with its size), its sizes in between are timed too (once each, warm): there llama.cpp's
/// kernels change with the batch and the curve is not a line (see
/// `canopy_hw::CurveGrid::with_every_target_up_to`). On a streamed or resident GPU pass the
/// segments are nearly flat and nothing is added.
fn calibrate(
    target: &mut LlamaTree<'_>,
    mut draft: Option<&mut LlamaTree<'_>>,
    prompt: &[Token],
    max_n: usize,
    events: &mut EventSink,
) -> Result<Costs, HandlerError> {
    const REPEATS: u32 = 2;
    let mut t_points = Vec::new();
    let mut n = 1;
    let mut t1 = None;
    while n <= max_n {
        let p = time_pass(target, prompt, n, REPEATS)?;
        let base = *t1.get_or_insert(p.min);
        t_points.push((n, p.min));
        events.progress(
            "calibrating",
            (n as f64).log2() / (max_n as f64).log2().max(1.0) * 0.7,
        );
        // A tree of n tokens yields at most n tokens, and in practice far fewer than 1 + its depth
        // of ~log2(n)+8: beyond that point bigger trees cannot pay.
        if p.min > base * ((n as f64).log2() + 8.0).min(n as f64 + 1.0) {
            break;
        }
        n *= 2;
    }
    let mut between = Vec::new();
    for pair in t_points.windows(2) {
        let ((n0, s0), (n1, s1)) = (pair[0], pair[1]);
        if n1 <= DENSE_MAX && s1 > s0 * STEEP {
            for m in n0 + 1..n1 {
                between.push((m, time_pass(target, prompt, m, 1)?.min));
            }
        }
    }
    events.progress("calibrating", 0.8);
    let powers: Vec<usize> = t_points.iter().map(|&(n, _)| n).collect();
    t_points.extend(between);
    t_points.sort_by_key(|&(n, _)| n);
    // The draft over the doubling grid. Without a draft model (lookup alone) the draft curve is
    // never used; a flat nanosecond keeps the costs' shape (a cost table takes positive times only).
    let mut d_points = Vec::new();
    for k in powers {
        let seconds = match draft {
            Some(ref mut d) => time_pass(d, prompt, k, REPEATS)?.min,
            None => 1e-9,
        };
        d_points.push((k, seconds));
    }
    events.progress("calibrating", 1.0);
    costs_from(&CostCurves {
        target: t_points,
        draft: d_points,
    })
    .map_err(HandlerError::internal)
}

impl Handler for Engine {
    fn run(&mut self, job: Job, sink: &mut EventSink) -> Result<JobResult, HandlerError> {
        match job {
            Job::Generate(req) => self.generate(&req, sink).map(JobResult::Generate),
            Job::Measure(req) => self.measure(&req, sink).map(JobResult::Measure),
            Job::Acceptance(req) => self.acceptance(&req, sink).map(JobResult::Acceptance),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{check_gpu_floor, cpu_only, kv_cells, Engine, Placement};

    #[test]
    fn cpu_gives_llama_cpp_no_device() {
        crate::backends::load();
        // An empty device list, which llama.cpp reads as "no device" (a default list means every
        // device); gpu-check shows on a GPU machine that `cpu` then allocates nothing there.
        let params = cpu_only(Engine::local_params(Placement::Cpu)).unwrap();
        assert!(params.devices().is_empty(), "{:?}", params.devices());
        assert_eq!(params.n_gpu_layers(), 0);
        // Streaming placements keep the devices llama.cpp finds.
        assert!(!Engine::local_params(Placement::Stream).use_mmap());
    }

    /// Fake free-memory readings: below the floor the job fails as a lack of GPU memory, with
    /// the shortfall, which the core re-plans from.
    #[test]
    fn a_gpu_short_of_its_floor_fails_the_job_with_the_shortfall() {
        let floor = 512 << 20;
        assert!(check_gpu_floor(None, floor).is_ok(), "no GPU");
        assert!(check_gpu_floor(Some(floor), floor).is_ok());
        assert!(check_gpu_floor(Some(0), 0).is_ok(), "nothing to check");
        let err = check_gpu_floor(Some(200 << 20), floor).unwrap_err();
        assert_eq!(
            err.kind,
            canopy_worker::JobErrorKind::GpuMemory {
                short_by_bytes: Some(312 << 20)
            }
        );
        assert!(err.message.contains("200 MiB free"), "{}", err.message);
    }

    #[test]
    fn kv_caches_are_sized_to_the_request_within_the_context() {
        assert_eq!(kv_cells(100, 64, 4096), 256);
        assert_eq!(
            kv_cells(200, 64, 4096),
            512,
            "a pass's cells beyond the request"
        );
        assert_eq!(
            kv_cells(4000, 400, 4096),
            4096,
            "never beyond the allowed context"
        );
        assert_eq!(kv_cells(1, 1, 100), 100);
    }
}
