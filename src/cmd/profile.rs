//! `canopy profile`: measure this machine (system facts, GPU, host memory bandwidth and, given a
//! draft/target pair, the engine's cost curves in the placement generation will use and the pair's
//! acceptance vector) and save the result as a profile. The measuring is the application core's;
//! this command adds progress bars and a summary.

use std::path::PathBuf;

use canopy_core::Profile;
use canopy_core::{CancelFlag, ProfileObserver, ProfileSpec, ProfileStage};
use canopy_types::Placement;
use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::{core, core_error, model_path, parse_placement, rpc_endpoints};
use crate::error::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// Target model (GGUF) whose pass times to measure (plain decoding without --draft).
    #[arg(long)]
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
    /// Also write the profile to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The profile's name (default: derived from the GPU or CPU).
    #[arg(long)]
    pub name: Option<String>,
    /// Where the target runs while timed: auto (as generation will run it), cpu, stream, gpu or
    /// layers:N.
    #[arg(long, default_value = "auto", value_parser = parse_placement)]
    pub placement: Placement,
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
    let target = args
        .target
        .as_deref()
        .map(|t| model_path(t, "target"))
        .transpose()?;
    let draft = args
        .draft
        .as_deref()
        .map(|d| model_path(d, "draft"))
        .transpose()?;
    let spec = ProfileSpec {
        target,
        draft,
        quick: args.quick,
        name: args.name.clone(),
        placement: args.placement,
        max_tree: args.max_tree,
        max_level: args.max_level,
        origin: format!(
            "`canopy profile{}`",
            if args.quick { " --quick" } else { "" }
        ),
        rpc: rpc_endpoints(args.rpc.as_deref())?,
    };
    let core = core()?;
    let mut bars = Bars::default();
    let (profile, path) = core
        .run_profile(&spec, &mut bars, &CancelFlag::new())
        .map_err(core_error)?;
    bars.clear();
    if let Some(output) = &args.output {
        profile
            .save(output)
            .map_err(|e| crate::error::CliError::user(e.to_string()))?;
        eprintln!("wrote {}", output.display());
    }
    eprintln!("saved profile to {}", path.display());
    if args.json {
        println!("{}", profile.to_json());
    } else {
        print_summary(&profile);
    }
    Ok(())
}

/// One progress bar per stage on stderr; hidden when stderr is not a terminal.
#[derive(Default)]
struct Bars {
    current: Option<(ProfileStage, ProgressBar)>,
}

impl Bars {
    fn bar(&mut self, stage: ProfileStage) -> &ProgressBar {
        if self.current.as_ref().is_none_or(|(s, _)| *s != stage) {
            self.clear();
            let bar = ProgressBar::new(1);
            let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(stage_name(stage));
            self.current = Some((stage, bar));
        }
        &self.current.as_ref().expect("set above").1
    }

    fn clear(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish_and_clear();
        }
    }
}

fn stage_name(stage: ProfileStage) -> &'static str {
    match stage {
        ProfileStage::Detect => "system",
        ProfileStage::Bandwidth => "bandwidth",
        ProfileStage::Costs => "pass times",
        ProfileStage::Acceptance => "acceptance",
    }
}

impl ProfileObserver for Bars {
    fn progress(&mut self, stage: ProfileStage, done: usize, total: usize, note: &str) {
        let bar = self.bar(stage);
        bar.set_length(total.max(1) as u64);
        bar.set_position(done as u64);
        bar.set_message(note.to_owned());
    }

    fn finished(&mut self, stage: ProfileStage, _profile: &Profile, note: &str) {
        self.clear();
        eprintln!("{:>12}: {note}", stage_name(stage));
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
        if let Some(d) = &c.draft {
            println!(
                "draft        {} ({:.2} GB)",
                d.model.name,
                gb(d.model.bytes)
            );
            for pt in &d.curve.points {
                println!(
                    "  k={:<5} {:>9.4} s  [{:.4}-{:.4}]",
                    pt.n, pt.seconds.median, pt.seconds.min, pt.seconds.max
                );
            }
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
    if let Some(placement) = p.placement {
        println!("placement    {placement}");
    }
}
