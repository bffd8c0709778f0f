//! From a choice of models and settings to a generation request the worker can run: files checked,
//! context checked against the model and the machine, placement resolved, `auto` given the
//! measurements of the matching profile.

use std::path::{Path, PathBuf};

use canopy_gguf::ModelInfo;
use canopy_hw::{Footprint, PlacementDecision};
use canopy_types::{Placement, Plan, Sampling};
use canopy_worker::{
    CancelFlag, CostCurves, Event, GenerateRequest, GenerateResult, Job, JobResult, Prompt,
    WorkerError,
};

use crate::error::{CoreError, CoreResult};
use crate::Core;

/// A placement rule over this GPU's facts and an op-offload threshold per resident layer count.
pub(crate) type Decide<'a> =
    dyn Fn(Option<&canopy_hw::GpuFacts>, &dyn Fn(u32) -> Option<u32>) -> PlacementDecision + 'a;

/// Smallest context the engine runs with.
const MIN_CONTEXT: u32 = 16;

/// Which models, how to speculate, where the weights live: the part of a request that stays the
/// same across the prompts of a chat or a server.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelChoice {
    pub target: PathBuf,
    pub draft: Option<PathBuf>,
    pub plan: Plan,
    pub placement: Placement,
    /// Context in tokens; `None` = the model's training context, at most 4096.
    pub context: Option<u32>,
    /// With `auto`: plan with this profile (name or file) instead of the saved profile measured for
    /// these files and placement.
    pub profile: Option<String>,
    /// RPC helpers (`host:port`, `canopy rpc-server` on other machines) holding part of the
    /// target's layers; empty = all on this machine.
    pub rpc: Vec<String>,
    /// With helpers and the CPU placement: how many of the target's last layers go to them
    /// (default: by their free memory).
    pub rpc_layers: Option<u32>,
}

impl ModelChoice {
    /// Plain decoding of `target` in the automatic placement.
    pub fn target_only(target: PathBuf) -> ModelChoice {
        ModelChoice {
            target,
            draft: None,
            plan: Plan::None,
            placement: Placement::Auto,
            context: None,
            profile: None,
            rpc: Vec::new(),
            rpc_layers: None,
        }
    }
}

/// A request ready for the worker, and how it was decided.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub request: GenerateRequest,
    pub decision: PlacementDecision,
    /// The profile `auto` plans with, if any.
    pub profile: Option<String>,
    /// What the placement was decided from, to decide it again when the GPU's memory runs short.
    pub(crate) sizes: Sizes,
}

/// What a request's placement was decided from.
#[derive(Clone, Debug)]
pub(crate) struct Sizes {
    pub target: Footprint,
    pub draft: Option<Footprint>,
    pub context: u32,
    /// [`Core::gpu_reserve`] when the placement was decided.
    pub reserve: u64,
}

/// Checks that `path` is a file, with a message naming the model's role.
fn check_file(path: &Path, what: &str) -> CoreResult<()> {
    if !path.exists() {
        return Err(CoreError::user(format!(
            "{what} model not found: {}",
            path.display()
        )));
    }
    if !path.is_file() {
        return Err(CoreError::user(format!(
            "{what} model is not a file: {}",
            path.display()
        )));
    }
    Ok(())
}

fn inspect(path: &Path, what: &str) -> CoreResult<ModelInfo> {
    check_file(path, what)?;
    canopy_gguf::inspect(path).map_err(|e| {
        CoreError::user(format!(
            "{what} model {} is not a valid GGUF file: {e}",
            path.display()
        ))
    })
}

/// The context a request runs with: the one asked for, checked against what the model was
/// trained for and what this machine's memory holds, or the model's default.
fn context_for(
    requested: Option<u32>,
    target: &Path,
    info: &ModelInfo,
    footprint: &Footprint,
    ram_bytes: u64,
) -> CoreResult<u32> {
    let trained = info
        .context_length
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let Some(context) = requested else {
        return Ok(canopy_worker::default_context(trained.unwrap_or(0)));
    };
    let name = target.file_name().map_or_else(
        || target.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if context < MIN_CONTEXT {
        return Err(CoreError::user(format!(
            "a context of {context} tokens is too small: use at least {MIN_CONTEXT}"
        )));
    }
    if let Some(trained) = trained.filter(|&t| t > 0 && context > t) {
        return Err(CoreError::user(format!(
            "a context of {context} tokens is beyond the {trained} tokens {name} was trained for: use {trained} or less"
        )));
    }
    let kv = footprint.kv_bytes_per_token as f64 * context as f64;
    if ram_bytes > 0 && kv > ram_bytes as f64 {
        let fits = (ram_bytes as f64 / footprint.kv_bytes_per_token.max(1) as f64) as u64;
        return Err(CoreError::user(format!(
            "a context of {context} tokens needs {:.1} GB of KV cache, more than this machine's {:.1} GB of RAM: use {fits} tokens or less",
            kv / 1e9,
            ram_bytes as f64 / 1e9
        )));
    }
    Ok(context)
}

/// Bytes of KV cache the worker may keep between requests, so that the next turn of a
/// conversation decodes only what is new. `CANOPY_KV_CACHE_MIB` sets it (0 keeps nothing).
/// Otherwise: where the GPU holds any of it, one conversation at the allowed context, which is what
/// the placement already reserved (so the cache never makes the models not fit); on the CPU, a
/// quarter of the memory available now, at most 4 GiB.
pub fn kv_cache_budget(
    decision: &canopy_hw::PlacementDecision,
    target: &Footprint,
    draft: Option<&Footprint>,
    context: u32,
) -> u64 {
    if let Some(mib) = std::env::var("CANOPY_KV_CACHE_MIB")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return mib.saturating_mul(1 << 20);
    }
    let one = target.kv_bytes(context) + draft.map_or(0.0, |d| d.kv_bytes(context));
    if decision.placement.uses_gpu() || decision.draft_on_gpu {
        return one.ceil() as u64;
    }
    let available = canopy_hw::system_facts().ram_available_bytes;
    (available / 4).min(4 << 30).max(one.ceil() as u64)
}

/// `GGML_OP_OFFLOAD_MIN_BATCH` as the user set it for llama.cpp: it wins over Canopy's choice.
pub(crate) fn forced_op_offload_min_batch() -> Option<u32> {
    std::env::var("GGML_OP_OFFLOAD_MIN_BATCH")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&t| t >= 1)
}

impl Core {
    /// With RPC helpers on a machine with a GPU, `auto` keeps every local layer on the GPU and lets
    /// llama.cpp split the rest over the helpers by their free memory; otherwise `requested`.
    pub fn placement_with_helpers(&self, requested: Placement, rpc: &[String]) -> Placement {
        match (requested, rpc.is_empty(), self.gpu().info()) {
            (Placement::Auto, false, Some(_)) => Placement::Gpu,
            _ => requested,
        }
    }

    /// Resolves `requested` for this machine's GPU and these models.
    pub fn decide_placement(
        &self,
        requested: Placement,
        target: &Footprint,
        draft: Option<&Footprint>,
        context: u32,
    ) -> PlacementDecision {
        self.decide_with(target, &|facts, threshold| {
            canopy_hw::decide_placement(requested, facts, target, draft, context, threshold)
        })
    }

    /// A decision made by `decide` from this GPU's facts (less the memory runs have shown must
    /// stay free, [`Core::gpu_reserve`]) and the op-offload threshold the cost model chooses.
    pub(crate) fn decide_with(&self, target: &Footprint, decide: &Decide<'_>) -> PlacementDecision {
        let facts = self
            .gpu()
            .info()
            .map(|i| canopy_hw::with_reserve(&i.facts, self.gpu_reserve()));
        let (model, measured) = self.cost_model();
        let spec = target.spec();
        let forced = forced_op_offload_min_batch();
        let chosen = std::cell::Cell::new(None);
        let threshold = |resident| {
            let own = model.choose_op_offload_min_batch(&spec, resident);
            chosen.set(own);
            own.map(|own| forced.unwrap_or(own))
        };
        let mut decision = decide(facts.as_ref(), &threshold);
        if let Some(t) = decision.op_offload_min_batch {
            let source = if measured { "measured" } else { "default" };
            let how = match (forced, chosen.get()) {
                (Some(_), Some(own)) => format!(
                    "set by GGML_OP_OFFLOAD_MIN_BATCH; from {source} bandwidths Canopy chooses {own}"
                ),
                (Some(_), None) => "set by GGML_OP_OFFLOAD_MIN_BATCH".to_owned(),
                (None, _) if measured => "from measured bandwidths".to_owned(),
                (None, _) => {
                    "from default bandwidths: run `canopy profile` to measure them".to_owned()
                }
            };
            decision.summary = format!(
                "{}; host layers run on the GPU from {t} tokens per pass ({how})",
                decision.summary
            );
        }
        decision
    }

    /// `decision` with the op-offload threshold a saved profile measured for this target file in
    /// this placement on this GPU (where the curves of its two paths cross), when there is one and
    /// the user did not set `GGML_OP_OFFLOAD_MIN_BATCH`.
    pub fn with_measured_threshold(
        &self,
        mut decision: PlacementDecision,
        target: &std::path::Path,
    ) -> PlacementDecision {
        if decision.op_offload_min_batch.is_none() || forced_op_offload_min_batch().is_some() {
            return decision;
        }
        let Some(t) = self.measured_threshold(target, decision.placement) else {
            return decision;
        };
        decision.op_offload_min_batch = Some(t);
        let head = decision
            .summary
            .split("; host layers run on the GPU")
            .next()
            .unwrap_or_default()
            .to_owned();
        decision.summary =
            format!("{head}; host layers run on the GPU from {t} tokens per pass (measured)");
        decision
    }

    /// The op-offload threshold measured for `target` in `placement` by the newest saved profile
    /// of this GPU that timed both paths.
    fn measured_threshold(&self, target: &std::path::Path, placement: Placement) -> Option<u32> {
        let gpu = self.gpu().info()?.facts.name.clone();
        let target = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_owned());
        self.saved_profiles().into_iter().find_map(|p| {
            let curves = p.curves.as_ref()?;
            let same_file = curves
                .target
                .model
                .path
                .as_deref()
                .map(|m| std::fs::canonicalize(m).unwrap_or_else(|_| m.to_owned()))
                == Some(target.clone());
            let same_gpu = p.gpu.info().is_some_and(|i| i.facts.name == gpu);
            (same_file
                && same_gpu
                && crate::profile_view::measured_placement(&p) == Some(placement)
                && curves.target.rpc_helpers().is_empty())
            .then_some(curves.target.offload_paths.as_ref())
            .flatten()
            .map(|_| curves.target.placement.op_offload_min_batch)
        })
    }

    /// Where the target of `pair` would run with `placement` on this machine, at the default
    /// context; `None` without a target.
    ///
    /// # Errors
    /// When a model cannot be resolved or read.
    pub fn placement_for(
        &self,
        pair: &crate::ModelPair,
        placement: Placement,
    ) -> CoreResult<Option<PlacementDecision>> {
        let Some(target) = &pair.target else {
            return Ok(None);
        };
        let target = self.resolve_model(target)?;
        let info = inspect(&target, "target")?;
        let draft = match &pair.draft {
            Some(d) => Some(Footprint::from_info(&inspect(
                &self.resolve_model(d)?,
                "draft",
            )?)),
            None => None,
        };
        let context = context_for(None, &target, &info, &Footprint::from_info(&info), 0)?;
        let decision = self.decide_placement(
            placement,
            &Footprint::from_info(&info),
            draft.as_ref(),
            context,
        );
        Ok(Some(self.with_measured_threshold(decision, &target)))
    }

    /// A request for `prompt` with these models and settings, ready for the worker.
    ///
    /// # Errors
    /// A user error for a missing or invalid model file, a speculative plan without a draft, a
    /// context the model or the machine cannot hold, or a `profile` that does not exist or holds
    /// no measured curves.
    pub fn prepare(
        &self,
        choice: &ModelChoice,
        prompt: Prompt,
        sampling: Sampling,
        max_tokens: u32,
        stop: Vec<String>,
    ) -> CoreResult<Prepared> {
        if max_tokens == 0 {
            return Err(CoreError::user("max tokens must be at least 1"));
        }
        let target_info = inspect(&choice.target, "target")?;
        let target = Footprint::from_info(&target_info);
        // `auto` without a draft model speculates with candidates from the conversation itself
        // (prompt lookup); fixed chains and trees are drawn by a draft model.
        if choice.plan.speculates() && choice.plan != Plan::Auto && choice.draft.is_none() {
            return Err(CoreError::user(format!(
                "plan {} needs a draft model (auto without one speculates from the conversation)",
                choice.plan
            )));
        }
        let draft = match (&choice.draft, choice.plan) {
            (Some(path), plan) if plan.speculates() => {
                Some(Footprint::from_info(&inspect(path, "draft")?))
            }
            _ => None,
        };
        let ram = canopy_hw::system_facts().ram_total_bytes;
        let context = context_for(choice.context, &choice.target, &target_info, &target, ram)?;
        canopy_worker::validate_rpc_endpoints(&choice.rpc)
            .map_err(|e| CoreError::user(e.to_string()))?;
        let requested = self.placement_with_helpers(choice.placement, &choice.rpc);
        let decision = self.decide_placement(requested, &target, draft.as_ref(), context);
        let decision = self.with_measured_threshold(decision, &choice.target);
        let (acceptance, costs, profile) = match (&choice.draft, choice.plan) {
            (Some(d), Plan::Auto) => self.planning_inputs(choice, d, decision.placement)?,
            _ => (None, None, None),
        };
        let request = GenerateRequest {
            target: choice.target.clone(),
            draft: choice.draft.clone().filter(|_| choice.plan.speculates()),
            prompt,
            sampling,
            max_tokens,
            stop,
            plan: choice.plan,
            context: Some(context),
            placement: decision.placement,
            acceptance,
            costs,
            inexact_cache: false,
            rpc: choice.rpc.clone(),
            rpc_layers: choice.rpc_layers,
            kv_cache_bytes: kv_cache_budget(&decision, &target, draft.as_ref(), context),
            no_lookup: false,
            gpu_floor_bytes: self.gpu_floor(&decision, &choice.rpc),
        };
        Ok(Prepared {
            request,
            decision,
            profile,
            sizes: Sizes {
                target,
                draft,
                context,
                reserve: self.gpu_reserve(),
            },
        })
    }

    /// The acceptance vector and cost curves `auto` plans with: those of the chosen profile, else
    /// of the newest profile measured for these files and placement, else none (the worker
    /// calibrates).
    #[allow(clippy::type_complexity)]
    fn planning_inputs(
        &self,
        choice: &ModelChoice,
        draft: &Path,
        placement: Placement,
    ) -> CoreResult<(Option<Vec<f64>>, Option<CostCurves>, Option<String>)> {
        let profile = match &choice.profile {
            Some(spec) => Some(self.find_profile(spec)?),
            None => self.profile_for(&choice.target, draft, placement, &choice.rpc),
        };
        let Some(profile) = profile else {
            return Ok((None, None, None));
        };
        let Some((target, draft)) = profile.costs() else {
            return Err(CoreError::user(format!(
                "profile {} has no measured cost curves: profile the target with its draft first",
                profile.name
            )));
        };
        Ok((
            profile.acceptance.map(|a| a.p),
            Some(CostCurves { target, draft }),
            Some(profile.name),
        ))
    }

    /// Runs a prepared request, passing the worker's events on.
    ///
    /// # Errors
    /// As [`Inference::run`](crate::Inference::run), with user errors as [`CoreError::User`].
    ///
    /// When the GPU's memory runs short before anything is generated and `auto` chose the
    /// placement, it is decided again with more kept free and the request runs again (see
    /// `replan.rs`); `prepared` then holds what ran. Later requests plan with that reserve too.
    pub fn generate(
        &self,
        prepared: &mut Prepared,
        cancel: &CancelFlag,
        on_event: &mut dyn FnMut(&Event),
    ) -> CoreResult<GenerateResult> {
        self.refresh_placement(prepared);
        let mut shortfalls = 0;
        let outcome = loop {
            let job = Job::Generate(prepared.request.clone());
            let offload = prepared.decision.op_offload_min_batch;
            let mut generated = false;
            let outcome = self.engine().run(job, offload, cancel, &mut |event| {
                generated |= matches!(event, Event::Token { .. });
                on_event(event)
            });
            match outcome {
                Err(err) if err.is_gpu_memory() => {
                    shortfalls += 1;
                    self.after_gpu_memory(prepared, err, generated, shortfalls)?;
                }
                other => break other?,
            }
        };
        match outcome {
            JobResult::Generate(result) => {
                if let (Some(name), Some(factor)) = (&prepared.profile, result.cost_disagreement) {
                    self.record_live_check(name, factor);
                }
                Ok(result)
            }
            other => Err(CoreError::Worker(WorkerError::Protocol(format!(
                "expected a generation result, got {other:?}"
            )))),
        }
    }
}
