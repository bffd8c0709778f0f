//! `canopy profile`: measure this machine (system facts, GPU, host memory bandwidth and, given a
//! draft/target pair, the engine's cost curves) and save the result as a profile.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use canopy_hw::{
    measure_curves, measure_host_bandwidth, probe_gpu, recommend_placement, system_facts,
    AcceptanceRecord, CostModel, CurveGrid, CurveKind, CurvePoint, GpuProbeOptions, GpuStatus,
    GridTimes, HostBandwidthOptions, ModelCurve, ModelRef, ModelSpec, PassTimer, Placement,
    Profile, ProfileCurves, ProfileKind, Spread, TimerError, SCHEMA_VERSION,
};
use canopy_worker::{
    AcceptanceRequest, CancelFlag, Event, Job, JobResult, MeasureRequest, MeasureResult,
    Placement as WorkerPlacement, Supervisor, TimedPoint, WorkerCommand, WorkerError,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::{model_path, rpc_endpoints, supervisor, worker_error};
use crate::error::{CliError, CliResult};
use crate::prompts::load_prompts;

#[derive(clap::Args)]
pub struct Args {
    /// Target model (GGUF) whose pass times to measure; needs --draft.
    #[arg(long, requires = "draft")]
    pub target: Option<PathBuf>,
    /// Draft model (GGUF) whose level times to measure; needs --target.
    #[arg(long, requires = "target")]
    pub draft: Option<PathBuf>,
    /// Fewer sizes, repeats and grid points: a profile in seconds rather than minutes.
    #[arg(long)]
    pub quick: bool,
    /// Print the profile as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where to save the profile (default: <data dir>/profiles/<name>.json).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The profile's name (default: derived from the GPU or CPU).
    #[arg(long)]
    pub name: Option<String>,
    /// Largest target tree size to time.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_tree: u32,
    /// Widest draft level to time.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_level: u32,
    /// Measure the target split over these RPC helpers (`canopy rpc-server`), as `--rpc` runs it.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT]", requires = "target")]
    pub rpc: Option<String>,
}

pub fn run(args: Args) -> CliResult {
    let models = match (&args.target, &args.draft) {
        (Some(t), Some(d)) => Some((model_path(t, "target")?, model_path(d, "draft")?)),
        _ => None,
    };
    let rpc = rpc_endpoints(args.rpc.as_deref())?;
    let hw = hardware(&args)?;
    let mut engine = models
        .map(|(t, d)| WorkerTimer::new(&t, &d, &hw.cost_model, &hw.gpu, rpc))
        .transpose()?;
    let mut profile = assemble(&args, hw, engine.as_mut().map(|t| t as &mut dyn PassTimer))?;
    if let Some(engine) = &mut engine {
        if let Some(curves) = &mut profile.curves {
            curves.target.rpc = engine.rpc_record();
        }
        profile.acceptance = Some(engine.acceptance(args.quick)?);
    }
    finish(&args, &profile)
}

/// What `canopy profile` measures without models.
struct Hardware {
    facts: canopy_hw::SystemFacts,
    host: canopy_hw::HostBandwidth,
    gpu: GpuStatus,
    cost_model: CostModel,
}

fn hardware(args: &Args) -> CliResult<Hardware> {
    let facts = stage("system facts", || Ok(system_facts()))?;
    let threads = facts.physical_cores.unwrap_or(facts.logical_cores);

    let gpu_opts = if args.quick {
        GpuProbeOptions::quick()
    } else {
        GpuProbeOptions::full()
    };
    let bar = counting_bar("GPU");
    let gpu = probe_gpu(&gpu_opts, &mut |done, total| tick(&bar, done, total))
        .context("profiling the GPU")?;
    bar.finish_with_message(gpu.summary());

    let host_opts = if args.quick {
        HostBandwidthOptions::quick(threads)
    } else {
        HostBandwidthOptions::full(threads)
    };
    let bar = counting_bar("host memory bandwidth");
    let host = measure_host_bandwidth(&host_opts, &mut |done, total| tick(&bar, done, total))
        .context("measuring host memory bandwidth")?;
    bar.finish_with_message(format!("{:.1} GB/s", host.copy_gb_per_s.median));

    let cost_model = CostModel::from_measurements(&facts, Some(&host), &gpu);
    Ok(Hardware {
        facts,
        host,
        gpu,
        cost_model,
    })
}

/// The grid to time: powers of two up to `--max-tree` / `--max-level` and the two budgets around the
/// op-offload threshold (on a GPU). `--quick` stops at 32 target tokens and 8 draft nodes on a CPU
/// (where a pass grows with its size) and at 256 / 16 on a GPU (where it is nearly flat).
fn grid(args: &Args, threshold: Option<usize>, has_gpu: bool) -> CliResult<CurveGrid> {
    let threshold = threshold.filter(|_| has_gpu);
    let (max_n, max_k) = if args.quick {
        let (n, k) = if has_gpu { (256, 16) } else { (32, 8) };
        (
            (args.max_tree as usize).min(n),
            (args.max_level as usize).min(k),
        )
    } else {
        (args.max_tree as usize, args.max_level as usize)
    };
    CurveGrid::standard(max_n, max_k, threshold, false).map_err(|e| CliError::user(e.to_string()))
}

fn assemble(args: &Args, hw: Hardware, timer: Option<&mut dyn PassTimer>) -> CliResult<Profile> {
    let Hardware {
        facts,
        host,
        gpu,
        cost_model,
    } = hw;
    let has_gpu = gpu.info().is_some();
    let mut curves = None;
    let mut placement = None;
    if let Some(timer) = timer {
        let threshold = timer.placement().map(|p| p.op_offload_min_batch as usize);
        let grid = grid(args, threshold, has_gpu)?;
        let (repeats, warmup) = if args.quick { (3, 1) } else { (5, 2) };
        let bar = counting_bar("engine cost curves");
        let measured = measure_curves(timer, &grid, repeats, warmup, &mut |step| {
            let what = match step.kind {
                CurveKind::Target => "target",
                CurveKind::Draft => "draft",
            };
            bar.set_message(format!("{what} n={}", step.n));
            tick(&bar, step.done, step.total);
        })
        .context("measuring the engine's cost curves")?;
        bar.finish_with_message("done");
        let target_placement = timer.placement();
        placement = target_placement;
        if let Some((target, draft)) = timer.models() {
            let draft_placement = Placement {
                resident_layers: if has_gpu {
                    draft.layers.unwrap_or(0)
                } else {
                    0
                },
                op_offload_min_batch: target_placement.map_or(32, |p| p.op_offload_min_batch),
            };
            curves = Some(ProfileCurves {
                target: ModelCurve {
                    model: target,
                    placement: target_placement.unwrap_or(Placement {
                        resident_layers: 0,
                        op_offload_min_batch: 32,
                    }),
                    curve: measured.target,
                    rpc: None,
                },
                draft: ModelCurve {
                    model: draft,
                    placement: draft_placement,
                    curve: measured.draft,
                    rpc: None,
                },
                warmup: measured.warmup,
                repeats: measured.repeats,
            });
        }
    }

    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_name(&gpu, &facts.cpu_model));
    Ok(Profile {
        schema_version: SCHEMA_VERSION,
        name: canopy_hw::profile::slug(&name),
        kind: ProfileKind::Measured,
        source: format!(
            "measured on this machine by `canopy profile{}` ({} {})",
            if args.quick { " --quick" } else { "" },
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION")
        ),
        created_at: canopy_hw::profile::now_rfc3339(),
        machine: Some(facts),
        host_memory: Some(host),
        gpu,
        cost_model,
        curves,
        acceptance: None,
        op_offload_min_batch: placement
            .filter(|_| has_gpu)
            .map(|p| p.op_offload_min_batch),
        resident_layers: placement.map(|p| p.resident_layers),
    })
}

/// Saves the profile (file and SQLite store) and prints it.
fn finish(args: &Args, profile: &Profile) -> CliResult {
    let path = match &args.output {
        Some(path) => path.clone(),
        None => canopy_hw::profiles_dir()
            .map_err(|e| CliError::user(e.to_string()))?
            .join(format!("{}.json", profile.name)),
    };
    profile.save(&path).context("saving the profile")?;
    canopy_store::Store::open_default()
        .and_then(|store| store.save_profile(&profile.name, &profile.to_json()))
        .context("saving the profile in the store")?;
    eprintln!("saved profile to {}", path.display());

    if args.json {
        println!("{}", profile.to_json());
    } else {
        print_summary(profile);
    }
    Ok(())
}

/// A model as the profile records it, and as the cost model sees it.
fn describe_model(path: &Path, what: &str) -> CliResult<(ModelRef, ModelSpec)> {
    let info = canopy_gguf::inspect(path)
        .map_err(|e| CliError::user(format!("{what} model {}: {e}", path.display())))?;
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
    let spec = ModelSpec {
        bytes: info.file_size.max(1),
        params: info.parameter_count.max(1),
        layers: layers.unwrap_or(1).max(1),
    };
    Ok((model, spec))
}

/// The worker's placement for a target placed as `placement` on a machine with or without a GPU.
pub fn worker_placement(
    placement: &Placement,
    layers: Option<u32>,
    has_gpu: bool,
) -> WorkerPlacement {
    match (has_gpu, placement.resident_layers) {
        (false, _) => WorkerPlacement::Cpu,
        (true, 0) => WorkerPlacement::Stream,
        (true, r) if layers.is_some_and(|l| r >= l) => WorkerPlacement::Gpu,
        (true, r) => WorkerPlacement::Partial { layers: r },
    }
}

/// Times passes of the real engine through the worker process: a whole grid in one `Measure` job
/// (the worker warms up once per point and reports median, min and max), or single passes.
pub struct WorkerTimer {
    supervisor: Supervisor,
    target: (PathBuf, ModelRef),
    draft: (PathBuf, ModelRef),
    placement: Placement,
    worker_placement: WorkerPlacement,
    /// RPC helpers holding part of the target, and the split the worker last reported.
    rpc: Vec<String>,
    rpc_split: Option<canopy_worker::RpcSplit>,
}

impl WorkerTimer {
    /// Inspects both models and chooses the target's placement for this hardware: without a GPU
    /// everything on the CPU; with one, the resident layers and op-offload threshold of
    /// [`canopy_hw::recommend_placement`] (the threshold goes to the worker's environment).
    ///
    /// Fails with a user error when a model is not a valid GGUF file.
    pub fn new(
        target: &Path,
        draft: &Path,
        model: &CostModel,
        gpu: &GpuStatus,
        rpc: Vec<String>,
    ) -> CliResult<Self> {
        let (target_ref, target_spec) = describe_model(target, "target")?;
        let (draft_ref, _) = describe_model(draft, "draft")?;
        let placement = match gpu.info() {
            // Split over helpers, every local layer sits on the local GPU (see `--placement gpu`).
            Some(_) if !rpc.is_empty() => Placement {
                resident_layers: target_ref.layers.unwrap_or(u32::MAX / 2),
                op_offload_min_batch: canopy_hw::model::LLAMA_DEFAULT_OP_OFFLOAD_MIN_BATCH,
            },
            Some(info) => recommend_placement(
                model,
                &target_spec,
                draft_ref.bytes,
                info.facts.vram_free_bytes,
            ),
            None => Placement {
                resident_layers: 0,
                op_offload_min_batch: canopy_hw::model::LLAMA_DEFAULT_OP_OFFLOAD_MIN_BATCH,
            },
        };
        let has_gpu = gpu.info().is_some();
        let mut supervisor = supervisor()?;
        if has_gpu {
            let program = std::env::current_exe().map_err(|e| {
                CliError::Failure(anyhow::anyhow!("cannot find the canopy executable: {e}"))
            })?;
            supervisor.set_command(WorkerCommand {
                program,
                args: vec!["worker".into()],
                env: vec![(
                    "GGML_OP_OFFLOAD_MIN_BATCH".into(),
                    placement.op_offload_min_batch.to_string().into(),
                )],
            });
        }
        Ok(WorkerTimer {
            supervisor,
            worker_placement: worker_placement(&placement, target_ref.layers, has_gpu),
            target: (target.to_owned(), target_ref),
            draft: (draft.to_owned(), draft_ref),
            placement,
            rpc,
            rpc_split: None,
        })
    }

    /// The helpers and split the target was measured with; `None` when it was all local.
    pub fn rpc_record(&self) -> Option<canopy_hw::RpcRecord> {
        (!self.rpc.is_empty()).then(|| canopy_hw::RpcRecord {
            helpers: self.rpc.clone(),
            remote_layers: self.rpc_split.map(|s| s.remote),
            total_layers: self.rpc_split.map(|s| s.total),
        })
    }

    fn measure(
        &mut self,
        target_grid: Vec<usize>,
        draft_grid: Vec<usize>,
        repeats: usize,
        progress: &mut dyn FnMut(f64),
    ) -> Result<MeasureResult, WorkerError> {
        let job = Job::Measure(MeasureRequest {
            target: self.target.0.clone(),
            draft: (!draft_grid.is_empty()).then(|| self.draft.0.clone()),
            target_grid,
            draft_grid,
            repeats: repeats.try_into().unwrap_or(u32::MAX),
            placement: self.worker_placement,
            rpc: self.rpc.clone(),
            rpc_layers: None,
        });
        let mut on_event = |event: &Event| {
            if let Event::Progress { fraction, .. } = event {
                progress(*fraction);
            }
        };
        match self
            .supervisor
            .run(job, &CancelFlag::new(), &mut on_event)?
        {
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

    /// The pair's greedy positional acceptance vector over the shipped prompt set (fewer
    /// prompts and tokens with `quick`).
    ///
    /// Fails when the worker does.
    pub fn acceptance(&mut self, quick: bool) -> CliResult<AcceptanceRecord> {
        let mut prompts = load_prompts(None)?;
        let tokens_per_prompt = if quick {
            prompts.truncate(2);
            ACCEPTANCE_POSITIONS / 2
        } else {
            ACCEPTANCE_POSITIONS
        };
        let bar = counting_bar("acceptance");
        bar.set_length(100);
        let job = Job::Acceptance(AcceptanceRequest {
            target: self.target.0.clone(),
            draft: self.draft.0.clone(),
            prompts,
            temperature: 0.0,
            width: ACCEPTANCE_WIDTH,
            tokens_per_prompt,
            seed: 0,
        });
        let mut on_event = |event: &Event| {
            if let Event::Progress { fraction, .. } = event {
                bar.set_position((fraction * 100.0) as u64);
            }
        };
        let result = match self
            .supervisor
            .run(job, &CancelFlag::new(), &mut on_event)
            .map_err(worker_error)?
        {
            JobResult::Acceptance(result) => result,
            other => {
                return Err(CliError::Failure(anyhow::anyhow!(
                    "the worker answered an acceptance job with {other:?}"
                )))
            }
        };
        bar.finish_with_message(format!("{} positions", result.positions));
        Ok(AcceptanceRecord {
            draft: self.draft.1.name.clone(),
            target: self.target.1.name.clone(),
            temperature: result.temperature as f64,
            p: result.acceptance,
        })
    }
}

impl PassTimer for WorkerTimer {
    fn target_pass(&mut self, n: usize) -> Result<f64, TimerError> {
        self.single(true, n)
    }

    fn draft_level(&mut self, k: usize) -> Result<f64, TimerError> {
        self.single(false, k)
    }

    fn models(&self) -> Option<(ModelRef, ModelRef)> {
        Some((self.target.1.clone(), self.draft.1.clone()))
    }

    fn placement(&self) -> Option<Placement> {
        Some(self.placement)
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

/// Positions measured per prompt for the acceptance vector (a prompt stops early at end of text).
pub const ACCEPTANCE_POSITIONS: u32 = 64;

/// Candidates per position in a measured acceptance vector.
pub const ACCEPTANCE_WIDTH: usize = 8;

/// The newest saved profile whose curves were measured for these target and draft files in this
/// placement with these RPC helpers (none = all local): profiles under `<data dir>/profiles/` and the newest one in the store. `None` when
/// there is none (unreadable files are skipped).
pub fn saved_profile_for(
    target: &Path,
    draft: &Path,
    placement: WorkerPlacement,
    rpc: &[String],
) -> Option<Profile> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let (target, draft) = (canon(target), canon(draft));
    let matches = |p: &Profile| {
        let Some(c) = &p.curves else { return false };
        let same =
            |m: &ModelRef, want: &Path| m.path.as_deref().map(canon).as_deref() == Some(want);
        same(&c.target.model, &target)
            && same(&c.draft.model, &draft)
            && worker_placement(
                &c.target.placement,
                c.target.model.layers,
                p.gpu.info().is_some(),
            ) == placement
            && c.target.rpc_helpers() == rpc
    };
    let mut found: Vec<Profile> = Vec::new();
    if let Ok(entries) = canopy_hw::profiles_dir().and_then(|dir| {
        std::fs::read_dir(&dir).map_err(|source| canopy_hw::HwError::Io {
            action: "cannot list",
            path: dir,
            source,
        })
    }) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                if let Ok(profile) = canopy_hw::load_profile(&path) {
                    found.push(profile);
                }
            }
        }
    }
    if let Ok(Some((_, _, json))) =
        canopy_store::Store::open_default().and_then(|s| s.latest_profile())
    {
        if let Ok(profile) = Profile::from_json(&json, Path::new("<store>")) {
            found.push(profile);
        }
    }
    found
        .into_iter()
        .filter(matches)
        .max_by(|a, b| a.created_at.cmp(&b.created_at))
}

/// Runs one quick stage behind a spinner.
fn stage<T>(what: &str, f: impl FnOnce() -> CliResult<T>) -> CliResult<T> {
    let bar = ProgressBar::new_spinner().with_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    let out = f();
    bar.finish_and_clear();
    out
}

/// A bar on stderr for a stage that reports (done, total); hidden when stderr is not a terminal.
fn counting_bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::new(1);
    let style = ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(what.to_owned());
    bar
}

fn tick(bar: &ProgressBar, done: usize, total: usize) {
    bar.set_length(total as u64);
    bar.set_position(done as u64);
}

fn default_name(gpu: &GpuStatus, cpu_model: &str) -> String {
    match gpu.info() {
        Some(info) => info.facts.name.clone(),
        None => format!("cpu {cpu_model}"),
    }
}

fn print_summary(p: &Profile) {
    let gb = |b: u64| b as f64 / 1e9;
    println!("profile      {}", p.name);
    if let Some(m) = &p.machine {
        let cores = m
            .physical_cores
            .map_or_else(|| "?".to_owned(), |c| c.to_string());
        println!(
            "cpu          {} ({} cores, {} threads)",
            m.cpu_model, cores, m.logical_cores
        );
        println!(
            "ram          {:.1} GB total, {:.1} GB available",
            gb(m.ram_total_bytes),
            gb(m.ram_available_bytes)
        );
        println!("os           {}", m.os_version);
    }
    if let Some(h) = &p.host_memory {
        println!(
            "host memory  {:.1} GB/s (copy, {} threads, {:.1}-{:.1})",
            h.copy_gb_per_s.median, h.threads, h.copy_gb_per_s.min, h.copy_gb_per_s.max
        );
    }
    println!("gpu          {}", p.gpu.summary());
    if let Some(bw) = p.gpu.info().and_then(|i| i.bandwidths.as_ref()) {
        let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} GB/s"));
        println!(
            "pcie         h2d pinned {}, pageable {}",
            fmt(bw.h2d_pinned_gb_per_s()),
            fmt(bw.h2d_pageable_gb_per_s())
        );
        println!("vram copy    {:.0} GB/s", bw.d2d.gb_per_s.median);
    }
    if let Some(c) = &p.curves {
        println!(
            "target       {} ({:.2} GB)",
            c.target.model.name,
            gb(c.target.model.bytes)
        );
        for pt in &c.target.curve.points {
            println!(
                "  n={:<5} {:>9.4} s  [{:.4}-{:.4}]",
                pt.n, pt.seconds.median, pt.seconds.min, pt.seconds.max
            );
        }
        println!(
            "draft        {} ({:.2} GB)",
            c.draft.model.name,
            gb(c.draft.model.bytes)
        );
        for pt in &c.draft.curve.points {
            println!(
                "  k={:<5} {:>9.4} s  [{:.4}-{:.4}]",
                pt.n, pt.seconds.median, pt.seconds.min, pt.seconds.max
            );
        }
    }
    if let Some(a) = &p.acceptance {
        let p: Vec<String> = a.p.iter().map(|x| format!("{x:.3}")).collect();
        println!(
            "acceptance   {} (draft {}, target {}, temperature {})",
            p.join(","),
            a.draft,
            a.target,
            a.temperature
        );
    }
    if let Some(t) = p.op_offload_min_batch {
        println!("op offload   GGML_OP_OFFLOAD_MIN_BATCH={t}");
    }
    if let Some(r) = p.resident_layers {
        println!("resident     {r} target layers in VRAM");
    }
}
