//! Profiling this machine: system facts, the GPU and its copy speeds, host memory bandwidth and,
//! for a model pair, the engine's cost curves in the placement the chat will use and the pair's
//! acceptance vector. One grid, one prompt set (`assets/prompts.json`), one placement policy and
//! one saved schema for every front end.

use std::path::{Path, PathBuf};

use canopy_hw::{
    AcceptanceRecord, CostModel, CurveGrid, CurvePoint, Footprint, GpuProbeOptions, GpuStatus,
    GridTimes, HostBandwidth, HostBandwidthOptions, LayerSplit, ModelCurve, ModelRef, PassTimer,
    PlacementDecision, Profile, ProfileCurves, ProfileKind, Spread, SystemFacts, TimerError,
    SCHEMA_VERSION,
};
use canopy_types::Placement;
use canopy_worker::{
    AcceptanceRequest, CancelFlag, Event, Job, JobResult, MeasureRequest, MeasureResult,
    TimedPoint, WorkerError,
};

use crate::error::{CoreError, CoreResult};
use crate::Core;

/// Positions measured per prompt for the acceptance vector (a prompt stops early at end of text).
pub const ACCEPTANCE_POSITIONS: u32 = 64;
/// Candidates per position in a measured acceptance vector.
pub const ACCEPTANCE_WIDTH: usize = 8;

/// The stages of a profile, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ProfileStage {
    /// CPU, memory and GPU facts.
    Detect,
    /// Host memory and host↔GPU copy speeds.
    Bandwidth,
    /// The engine's pass times for the pair.
    Costs,
    /// The pair's acceptance vector.
    Acceptance,
}

/// What a front end hears while a profile runs. Every method has an empty default.
pub trait ProfileObserver {
    /// Progress within `stage`: `done` of `total` steps, with a note for people.
    fn progress(&mut self, _stage: ProfileStage, _done: usize, _total: usize, _note: &str) {}
    /// `stage` finished; `profile` holds everything measured so far.
    fn finished(&mut self, _stage: ProfileStage, _profile: &Profile, _note: &str) {}
}

/// What to profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSpec {
    /// The target whose pass times to measure, and its draft, whose level times and acceptance
    /// to measure; without a target only the machine is measured.
    pub target: Option<PathBuf>,
    pub draft: Option<PathBuf>,
    /// Fewer sizes, repeats and prompts: seconds rather than minutes.
    pub quick: bool,
    /// The profile's name; default: the GPU's or the CPU's.
    pub name: Option<String>,
    /// Where the target runs while timed (`auto`: as the chat will run it).
    pub placement: Placement,
    /// Largest target tree to time and widest draft level.
    pub max_tree: u32,
    pub max_level: u32,
    /// The front end that asked, recorded in the profile's source.
    pub origin: String,
    /// RPC helpers holding part of the target while it is timed, as generation will run it.
    pub rpc: Vec<String>,
}

impl Default for ProfileSpec {
    fn default() -> Self {
        ProfileSpec {
            target: None,
            draft: None,
            quick: false,
            name: None,
            placement: Placement::Auto,
            max_tree: 512,
            max_level: 64,
            origin: "canopy".into(),
            rpc: Vec::new(),
        }
    }
}

fn cancelled() -> CoreError {
    CoreError::user("the profile was cancelled; nothing was saved")
}

/// A model as the profile records it.
fn model_ref(path: &Path, what: &str) -> CoreResult<(ModelRef, Footprint)> {
    let info = canopy_gguf::inspect(path)
        .map_err(|e| CoreError::user(format!("{what} model {}: {e}", path.display())))?;
    let layers = info.layers.and_then(|l| u32::try_from(l).ok());
    let model = ModelRef {
        name: path
            .file_stem()
            .map_or_else(|| what.to_owned(), |s| s.to_string_lossy().into_owned()),
        bytes: info.file_size,
        params: Some(info.parameter_count),
        layers,
        path: Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())),
    };
    Ok((model, Footprint::from_info(&info)))
}

impl Core {
    /// Measures this machine (and the pair in `spec`), saves the profile in the store and under
    /// the profiles directory, and returns it with the file written. Cancelling stops at the next
    /// safe point and saves nothing.
    ///
    /// # Errors
    /// A user error for unusable models or a cancel; an internal error when a measurement fails.
    pub fn run_profile(
        &self,
        spec: &ProfileSpec,
        observer: &mut dyn ProfileObserver,
        cancel: &CancelFlag,
    ) -> CoreResult<(Profile, PathBuf)> {
        if spec.draft.is_some() && spec.target.is_none() {
            return Err(CoreError::user(
                "choose a target for the draft to be measured against",
            ));
        }
        let resolve = |p: &PathBuf| self.resolve_model(&p.to_string_lossy());
        let target = spec.target.as_ref().map(resolve).transpose()?;
        let draft = spec.draft.as_ref().map(resolve).transpose()?;
        let facts = canopy_hw::system_facts();
        let mut profile = self.new_profile(spec, facts.clone());
        observer.finished(ProfileStage::Detect, &profile, &profile.gpu.summary());
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let (host, gpu) = self.bandwidths(spec.quick, &facts, observer)?;
        // Placement decisions from here on (the op-offload threshold) use these figures.
        self.set_measured(host.clone(), gpu.clone());
        profile.cost_model = CostModel::from_measurements(&facts, Some(&host), &gpu);
        profile.host_memory = Some(host);
        profile.gpu = gpu;
        observer.finished(ProfileStage::Bandwidth, &profile, &bandwidth_note(&profile));
        if let Some(target) = target {
            if cancel.is_cancelled() {
                return Err(cancelled());
            }
            self.measure_models(
                spec,
                &target,
                draft.as_deref(),
                &mut profile,
                observer,
                cancel,
            )?;
        }
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let path = self.save_profile(&profile)?;
        Ok((profile, path))
    }

    fn new_profile(&self, spec: &ProfileSpec, facts: SystemFacts) -> Profile {
        let gpu = self.gpu().clone();
        let name = spec.name.clone().unwrap_or_else(|| match gpu.info() {
            Some(info) => info.facts.name.clone(),
            None => format!("cpu {}", facts.cpu_model),
        });
        Profile {
            schema_version: SCHEMA_VERSION,
            name: canopy_hw::profile::slug(&name),
            kind: ProfileKind::Measured,
            source: format!(
                "measured on this machine by {}{} (canopy {})",
                spec.origin,
                if spec.quick { " (quick)" } else { "" },
                env!("CARGO_PKG_VERSION")
            ),
            created_at: canopy_hw::profile::now_rfc3339(),
            cost_model: CostModel::from_measurements(&facts, None, &gpu),
            machine: Some(facts),
            host_memory: None,
            gpu,
            curves: None,
            acceptance: None,
            op_offload_min_batch: None,
            resident_layers: None,
            placement: None,
        }
    }

    fn bandwidths(
        &self,
        quick: bool,
        facts: &SystemFacts,
        observer: &mut dyn ProfileObserver,
    ) -> CoreResult<(HostBandwidth, GpuStatus)> {
        let threads = facts.physical_cores.unwrap_or(facts.logical_cores);
        let options = if quick {
            HostBandwidthOptions::quick(threads)
        } else {
            HostBandwidthOptions::full(threads)
        };
        let host = canopy_hw::measure_host_bandwidth(&options, &mut |done, total| {
            observer.progress(
                ProfileStage::Bandwidth,
                done,
                total * 2,
                "copying a large buffer in RAM",
            )
        })
        .map_err(|e| CoreError::internal(format!("measuring host memory bandwidth: {e}")))?;
        let gpu = if self.gpu().info().is_some() {
            let options = if quick {
                GpuProbeOptions::quick()
            } else {
                GpuProbeOptions::full()
            };
            canopy_hw::probe_gpu(&options, &mut |done, total| {
                observer.progress(
                    ProfileStage::Bandwidth,
                    total + done,
                    total * 2,
                    "timing host↔GPU copies",
                )
            })
            .map_err(|e| CoreError::internal(format!("measuring the GPU: {e}")))?
        } else {
            self.gpu().clone()
        };
        Ok((host, gpu))
    }

    /// Times the target (and the draft) in the placement generation will use and measures the
    /// pair's acceptance.
    fn measure_models(
        &self,
        spec: &ProfileSpec,
        target: &Path,
        draft: Option<&Path>,
        profile: &mut Profile,
        observer: &mut dyn ProfileObserver,
        cancel: &CancelFlag,
    ) -> CoreResult<()> {
        let (target_ref, target_fp) = model_ref(target, "target")?;
        let draft = draft
            .map(|d| model_ref(d, "draft").map(|m| (d.to_owned(), m)))
            .transpose()?;
        canopy_worker::validate_rpc_endpoints(&spec.rpc)
            .map_err(|e| CoreError::user(e.to_string()))?;
        let has_gpu = profile.gpu.info().is_some();
        let (mut decision, both_paths) = self.profiling_decision(
            spec,
            &target_fp,
            draft.as_ref().map(|(_, (_, fp))| fp),
            has_gpu,
        );
        let threshold = decision
            .op_offload_min_batch
            .filter(|_| has_gpu && !both_paths)
            .map(|t| t as usize);
        let grid = grid(spec, threshold, has_gpu)?;
        let (repeats, warmup) = if spec.quick { (3, 1) } else { (5, 2) };
        let split = LayerSplit {
            resident_layers: decision.resident_layers,
            op_offload_min_batch: decision
                .op_offload_min_batch
                .unwrap_or(canopy_hw::placement::DEFAULT_OP_OFFLOAD_MIN_BATCH),
        };
        let mut timer = EngineTimer {
            core: self,
            target: (target.to_owned(), target_ref),
            draft: draft
                .as_ref()
                .map(|(path, (model, _))| (path.clone(), model.clone())),
            decision: decision.clone(),
            split,
            cancel,
            rpc: spec.rpc.clone(),
            rpc_split: None,
            prefix: if has_gpu { PROFILE_PREFIX } else { 0 },
        };
        observer.progress(ProfileStage::Costs, 0, 1, "loading the models");
        let mut timed = timer.time_curves(&grid, repeats, warmup, observer)?;
        if both_paths {
            timer.time_host_path(&mut timed, &mut decision, observer)?;
        }
        timer.record_curves(profile, timed, &decision);
        profile.op_offload_min_batch = decision.op_offload_min_batch.filter(|_| has_gpu);
        profile.resident_layers = Some(decision.resident_layers);
        profile.placement = Some(decision.placement);
        observer.finished(ProfileStage::Costs, profile, &decision.summary);
        if timer.draft.is_none() {
            return Ok(());
        }
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let acceptance = timer.acceptance(spec.quick, observer)?;
        let note = format!(
            "{} positions per prompt, first candidate accepted {:.0}% of the time",
            if spec.quick {
                ACCEPTANCE_POSITIONS / 2
            } else {
                ACCEPTANCE_POSITIONS
            },
            acceptance.p.first().copied().unwrap_or(0.0) * 100.0
        );
        profile.acceptance = Some(acceptance);
        observer.finished(ProfileStage::Acceptance, profile, &note);
        Ok(())
    }

    /// The placement generation will use, and whether its host layers are timed both ways.
    ///
    /// A streamed target on a GPU is timed both ways llama.cpp can run its host layers (copied
    /// to the GPU for every pass, and run by the CPU), and the op-offload threshold is where the
    /// two measured curves cross, unless the user set GGML_OP_OFFLOAD_MIN_BATCH.
    fn profiling_decision(
        &self,
        spec: &ProfileSpec,
        target: &Footprint,
        draft: Option<&Footprint>,
        has_gpu: bool,
    ) -> (PlacementDecision, bool) {
        let mut decision = self.decide_placement(
            self.placement_with_helpers(spec.placement, &spec.rpc),
            target,
            draft,
            canopy_worker::DEFAULT_CONTEXT,
        );
        let both_paths = has_gpu
            && decision.placement.streams()
            && decision.op_offload_min_batch.is_some()
            && crate::request::forced_op_offload_min_batch().is_none();
        if both_paths {
            decision.op_offload_min_batch = Some(1);
        }
        (decision, both_paths)
    }
}

/// Pass times measured for a profile, before they are recorded in it.
struct Timed {
    target: canopy_hw::CostCurve,
    draft: Option<canopy_hw::CostCurve>,
    warmup: usize,
    repeats: usize,
    offload_paths: Option<canopy_hw::OffloadPaths>,
}

/// A failed measurement: the user's cancel, else an internal error saying what failed.
fn measuring_failed(cancel: &CancelFlag, e: &dyn std::fmt::Display) -> CoreError {
    if cancel.is_cancelled() {
        cancelled()
    } else {
        CoreError::internal(format!("measuring the engine's pass times: {e}"))
    }
}

impl EngineTimer<'_> {
    /// Times the target (and the draft, with its levels) over `grid`.
    fn time_curves(
        &mut self,
        grid: &canopy_hw::CurveGrid,
        repeats: usize,
        warmup: usize,
        observer: &mut dyn ProfileObserver,
    ) -> CoreResult<Timed> {
        let cancel = self.cancel;
        if self.draft.is_some() {
            let measured = canopy_hw::measure_curves(self, grid, repeats, warmup, &mut |step| {
                let what = match step.kind {
                    canopy_hw::CurveKind::Target => "target",
                    canopy_hw::CurveKind::Draft => "draft",
                };
                observer.progress(
                    ProfileStage::Costs,
                    step.done,
                    step.total,
                    &format!("{what} pass over {} tokens", step.n),
                )
            })
            .map_err(|e| measuring_failed(cancel, &e))?;
            return Ok(Timed {
                target: measured.target,
                draft: Some(measured.draft),
                warmup: measured.warmup,
                repeats: measured.repeats,
                offload_paths: None,
            });
        }
        let times = self
            .time_grid(grid, repeats, &mut |f| {
                observer.progress(
                    ProfileStage::Costs,
                    (f * 100.0) as usize,
                    100,
                    "target passes",
                )
            })
            .unwrap_or_else(|| Err("the engine cannot time grids".into()))
            .map_err(|e| measuring_failed(cancel, &e))?;
        Ok(Timed {
            target: canopy_hw::CostCurve {
                points: times.target,
            },
            draft: None,
            warmup: times.warmup,
            repeats,
            offload_paths: None,
        })
    }

    /// Times the small passes again with the host layers on the CPU; the threshold becomes where
    /// the two curves cross, and the target's curve the faster of the two at each size.
    fn time_host_path(
        &mut self,
        timed: &mut Timed,
        decision: &mut PlacementDecision,
        observer: &mut dyn ProfileObserver,
    ) -> CoreResult<()> {
        let host_grid: Vec<usize> = timed
            .target
            .points
            .iter()
            .map(|p| p.n)
            .filter(|&n| n <= HOST_PATH_MAX)
            .collect();
        observer.progress(
            ProfileStage::Costs,
            0,
            1,
            "target passes with the host layers on the CPU",
        );
        let cpu = self
            .measure_host_path(host_grid, timed.repeats)
            .map_err(|e| measuring_failed(self.cancel, &e))?;
        let paths = canopy_hw::OffloadPaths {
            gpu: timed.target.clone(),
            cpu,
        };
        self.split.op_offload_min_batch = paths.threshold();
        timed.target = paths.merged();
        timed.offload_paths = Some(paths);
        decision.op_offload_min_batch = Some(self.split.op_offload_min_batch);
        decision.summary = format!(
            "{}; host layers measured faster on the GPU from {} tokens per pass",
            decision
                .summary
                .split("; host layers run on the GPU")
                .next()
                .unwrap_or(&decision.summary),
            self.split.op_offload_min_batch
        );
        Ok(())
    }

    /// Records the measured curves in `profile`, each with the split it was measured in.
    fn record_curves(&self, profile: &mut Profile, timed: Timed, decision: &PlacementDecision) {
        let split = self.split;
        let rpc = (!self.rpc.is_empty()).then(|| canopy_hw::RpcRecord {
            helpers: self.rpc.clone(),
            remote_layers: self.rpc_split.map(|s| s.remote),
            total_layers: self.rpc_split.map(|s| s.total),
        });
        profile.curves = Some(ProfileCurves {
            target: ModelCurve {
                model: self.target.1.clone(),
                placement: split,
                curve: timed.target,
                rpc,
                offload_paths: timed.offload_paths,
            },
            draft: self
                .draft
                .as_ref()
                .zip(timed.draft)
                .map(|((_, model), curve)| ModelCurve {
                    rpc: None,
                    offload_paths: None,
                    placement: LayerSplit {
                        resident_layers: if decision.draft_on_gpu {
                            model.layers.unwrap_or(0)
                        } else {
                            0
                        },
                        op_offload_min_batch: split.op_offload_min_batch,
                    },
                    model: model.clone(),
                    curve,
                }),
            warmup: timed.warmup,
            repeats: timed.repeats,
        });
    }
}

fn bandwidth_note(profile: &Profile) -> String {
    let ram = profile
        .host_memory
        .as_ref()
        .map_or(0.0, |h| h.copy_gb_per_s.median);
    match profile.gpu.info().and_then(|i| i.bandwidths.as_ref()) {
        Some(b) => format!(
            "RAM {ram:.1} GB/s, host→GPU {:.1} GB/s",
            b.h2d_pinned_gb_per_s().unwrap_or(0.0)
        ),
        None => format!("RAM {ram:.1} GB/s; no GPU to stream to"),
    }
}

/// Tokens in the cache before passes are timed on a GPU machine: a few chat turns. Passes attend to
/// every cached token, and where some layers live in host memory their cache is copied to the GPU
/// with them, so an empty cache would time passes cheaper than a chat's. Without a GPU the cache is
/// left empty: prefilling it on a CPU would cost more than the timing itself.
const PROFILE_PREFIX: u32 = 512;

/// The largest pass timed with the host layers on the CPU: beyond it the CPU path, which grows with
/// the batch, is far slower than copying the layers to the GPU on every machine measured.
const HOST_PATH_MAX: usize = 32;

/// The grid to time: powers of two up to the largest tree and level, and the two budgets around
/// the op-offload threshold (on a GPU); without a GPU, also every target size up to 32 (16 in a
/// quick profile). Quick profiles stop at 32 target tokens and 8 draft nodes on a CPU (where a
/// pass grows with its size) and at 256 / 16 on a GPU (where it is nearly flat).
fn grid(spec: &ProfileSpec, threshold: Option<usize>, has_gpu: bool) -> CoreResult<CurveGrid> {
    let (max_n, max_k) = if spec.quick {
        let (n, k) = if has_gpu { (256, 16) } else { (32, 8) };
        (
            (spec.max_tree as usize).min(n),
            (spec.max_level as usize).min(k),
        )
    } else {
        (spec.max_tree as usize, spec.max_level as usize)
    };
    let grid = CurveGrid::standard(max_n, max_k, threshold, false)
        .map_err(|e| CoreError::user(e.to_string()))?;
    // Without a GPU every pass runs on the CPU, whose curve is not a line between powers of two:
    // time every size a tree may take there (to 16 in a quick profile).
    Ok(match has_gpu {
        true => grid,
        false => grid.with_every_target_up_to(if spec.quick { 16 } else { HOST_PATH_MAX }),
    })
}

/// Times passes of the real engine through the core's worker: a whole grid in one `Measure` job.
struct EngineTimer<'a> {
    core: &'a Core,
    target: (PathBuf, ModelRef),
    draft: Option<(PathBuf, ModelRef)>,
    decision: PlacementDecision,
    split: LayerSplit,
    cancel: &'a CancelFlag,
    rpc: Vec<String>,
    /// How llama.cpp split the target over the helpers, as the worker reported it.
    rpc_split: Option<canopy_worker::RpcSplit>,
    /// Tokens in the cache before each timed pass.
    prefix: u32,
}

impl EngineTimer<'_> {
    fn run(&self, job: Job, on_event: &mut dyn FnMut(&Event)) -> Result<JobResult, WorkerError> {
        let offload = self.decision.op_offload_min_batch;
        self.core.engine().run(job, offload, self.cancel, on_event)
    }

    fn measure(
        &mut self,
        target_grid: Vec<usize>,
        draft_grid: Vec<usize>,
        repeats: usize,
        progress: &mut dyn FnMut(f64),
    ) -> Result<MeasureResult, WorkerError> {
        self.measure_job(target_grid, draft_grid, Vec::new(), repeats, progress)
    }

    fn measure_job(
        &mut self,
        target_grid: Vec<usize>,
        draft_grid: Vec<usize>,
        host_path_grid: Vec<usize>,
        repeats: usize,
        progress: &mut dyn FnMut(f64),
    ) -> Result<MeasureResult, WorkerError> {
        let job = Job::Measure(MeasureRequest {
            target: self.target.0.clone(),
            draft: self
                .draft
                .as_ref()
                .filter(|_| !draft_grid.is_empty())
                .map(|(path, _)| path.clone()),
            target_grid,
            draft_grid,
            host_path_grid,
            prefix: self.prefix,
            repeats: repeats.try_into().unwrap_or(u32::MAX),
            placement: self.decision.placement,
            rpc: self.rpc.clone(),
            rpc_layers: None,
        });
        let mut on_event = |event: &Event| {
            if let Event::Progress { fraction, .. } = event {
                progress(*fraction);
            }
        };
        match self.run(job, &mut on_event)? {
            JobResult::Measure(result) => {
                if result.rpc_split.is_some() {
                    self.rpc_split = result.rpc_split;
                }
                Ok(result)
            }
            other => Err(WorkerError::Protocol(format!(
                "expected a measurement, got {other:?}"
            ))),
        }
    }

    /// The target's passes over `grid` with its host layers run by the CPU (op offload off).
    fn measure_host_path(
        &mut self,
        grid: Vec<usize>,
        repeats: usize,
    ) -> Result<canopy_hw::CostCurve, WorkerError> {
        let result = self.measure_job(Vec::new(), Vec::new(), grid, repeats, &mut |_| {})?;
        Ok(canopy_hw::CostCurve {
            points: result
                .target_host_path
                .iter()
                .map(|p| canopy_hw::CurvePoint {
                    n: p.n,
                    seconds: canopy_hw::Spread::from_range(p.median, p.min, p.max, repeats.max(1)),
                })
                .collect(),
        })
    }

    fn single(&mut self, target: bool, n: usize) -> Result<f64, TimerError> {
        let (t, d) = if target {
            (vec![n], vec![])
        } else {
            (vec![], vec![n])
        };
        let result = self.measure(t, d, 1, &mut |_| {})?;
        let points = if target { result.target } else { result.draft };
        points
            .first()
            .map(|p| p.median)
            .ok_or_else(|| "the worker returned no timing".into())
    }

    /// The pair's greedy positional acceptance vector over the shipped prompt set (fewer prompts
    /// and tokens when quick).
    fn acceptance(
        &self,
        quick: bool,
        observer: &mut dyn ProfileObserver,
    ) -> CoreResult<AcceptanceRecord> {
        let mut prompts = crate::prompts::load_prompts(None)?;
        let tokens_per_prompt = if quick {
            prompts.truncate(2);
            ACCEPTANCE_POSITIONS / 2
        } else {
            ACCEPTANCE_POSITIONS
        };
        let Some((draft_path, draft_model)) = &self.draft else {
            return Err(CoreError::internal("acceptance needs a draft"));
        };
        let job = Job::Acceptance(AcceptanceRequest {
            target: self.target.0.clone(),
            draft: draft_path.clone(),
            prompts,
            temperature: 0.0,
            width: ACCEPTANCE_WIDTH,
            tokens_per_prompt,
            seed: 0,
        });
        let mut on_event = |event: &Event| {
            if let Event::Progress { fraction, .. } = event {
                let done = (fraction * 100.0) as usize;
                observer.progress(
                    ProfileStage::Acceptance,
                    done,
                    100,
                    "drafting on sample prompts",
                );
            }
        };
        let result = match self.run(job, &mut on_event) {
            Ok(JobResult::Acceptance(result)) => result,
            Ok(other) => {
                return Err(CoreError::internal(format!(
                    "the worker answered an acceptance job with {other:?}"
                )))
            }
            Err(_) if self.cancel.is_cancelled() => return Err(cancelled()),
            Err(e) => return Err(e.into()),
        };
        Ok(AcceptanceRecord {
            draft: draft_model.name.clone(),
            target: self.target.1.name.clone(),
            temperature: result.temperature as f64,
            p: result.acceptance,
        })
    }
}

impl PassTimer for EngineTimer<'_> {
    fn target_pass(&mut self, n: usize) -> Result<f64, TimerError> {
        self.single(true, n)
    }

    fn draft_level(&mut self, k: usize) -> Result<f64, TimerError> {
        self.single(false, k)
    }

    fn models(&self) -> Option<(ModelRef, ModelRef)> {
        let (_, draft) = self.draft.as_ref()?;
        Some((self.target.1.clone(), draft.clone()))
    }

    fn placement(&self) -> Option<LayerSplit> {
        Some(self.split)
    }

    fn time_grid(
        &mut self,
        grid: &CurveGrid,
        repeats: usize,
        progress: &mut dyn FnMut(f64),
    ) -> Option<Result<GridTimes, TimerError>> {
        let points = |v: Vec<TimedPoint>| {
            v.into_iter()
                .map(|p| CurvePoint {
                    n: p.n,
                    seconds: Spread::from_range(p.median, p.min, p.max, repeats),
                })
                .collect()
        };
        Some(
            self.measure(
                grid.target().to_vec(),
                grid.draft().to_vec(),
                repeats,
                progress,
            )
            .map(|r| GridTimes {
                target: points(r.target),
                draft: points(r.draft),
                warmup: 1,
            })
            .map_err(Into::into),
        )
    }
}
