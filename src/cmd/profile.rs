//! `canopy profile`: measure this machine (system facts, GPU, host memory bandwidth and, given a
//! draft/target pair, the engine's cost curves) and save the result as a profile.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use canopy_hw::{
    measure_curves, measure_host_bandwidth, probe_gpu, system_facts, CostModel, CurveGrid,
    CurveKind, GpuProbeOptions, GpuStatus, HostBandwidthOptions, ModelCurve, PassTimer, Placement,
    Profile, ProfileCurves, ProfileKind, SCHEMA_VERSION,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{CliError, CliResult};

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
}

pub fn run(args: Args) -> CliResult {
    run_with_timer(args, None)
}

/// `canopy profile` with the engine's pass timer for the cost curves. The engine builds `timer` for
/// `args.target` and `args.draft` (choosing its placement with `canopy_hw::recommend_placement`);
/// `None` profiles the hardware only, and is refused when models were named.
pub fn run_with_timer(args: Args, timer: Option<&mut dyn PassTimer>) -> CliResult {
    if args.target.is_some() && timer.is_none() {
        return Err(CliError::user(
            "measuring cost curves for --target/--draft needs the inference engine, which this build does not provide to `canopy profile`; run it without models to profile the hardware",
        ));
    }

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

    let mut curves = None;
    let mut placement = None;
    if let Some(timer) = timer {
        let threshold = timer.placement().map(|p| p.op_offload_min_batch as usize);
        let grid = CurveGrid::standard(
            args.max_tree as usize,
            args.max_level as usize,
            threshold,
            args.quick,
        )
        .map_err(|e| CliError::user(e.to_string()))?;
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
                resident_layers: if gpu.info().is_some() {
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
                },
                draft: ModelCurve {
                    model: draft,
                    placement: draft_placement,
                    curve: measured.draft,
                },
                warmup: measured.warmup,
                repeats: measured.repeats,
            });
        }
    }

    let has_gpu = gpu.info().is_some();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_name(&gpu, &facts.cpu_model));
    let profile = Profile {
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
    };

    let path = match &args.output {
        Some(path) => path.clone(),
        None => canopy_hw::profiles_dir()
            .map_err(|e| CliError::user(e.to_string()))?
            .join(format!("{}.json", profile.name)),
    };
    profile.save(&path).context("saving the profile")?;
    eprintln!("saved profile to {}", path.display());

    if args.json {
        println!("{}", profile.to_json());
    } else {
        print_summary(&profile);
    }
    Ok(())
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
    if let Some(t) = p.op_offload_min_batch {
        println!("op offload   GGML_OP_OFFLOAD_MIN_BATCH={t}");
    }
    if let Some(r) = p.resident_layers {
        println!("resident     {r} target layers in VRAM");
    }
}
