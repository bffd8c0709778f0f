//! Automatic placement: where the draft and the target's layers go on this machine.
//!
//! A pure function of the GPU's facts and the models' sizes, so every case is unit-tested with
//! made-up facts. The rule: with no usable GPU, everything on the CPU. With one, the draft goes
//! wholly on the GPU with its KV cache; then as many target layers stay resident as fit beside it,
//! each with its share of the target's KV cache, after a safety margin and staging room for the
//! weights streamed through the GPU; the remaining layers stream from pinned host memory on every
//! large pass. A target that fits whole runs whole on the GPU. A draft that does not fit leaves
//! everything on the CPU (the engine keeps the draft where the target's small passes run).

use canopy_types::Placement;
use serde::{Deserialize, Serialize};

use crate::gpu::GpuFacts;

/// llama.cpp's default `GGML_OP_OFFLOAD_MIN_BATCH`.
pub const DEFAULT_OP_OFFLOAD_MIN_BATCH: u32 = 32;

/// What placement needs to know of a model (from its GGUF header).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// Weight bytes (the file size).
    pub bytes: u64,
    /// Transformer layers.
    pub layers: u32,
    /// KV cache bytes per token of context, all layers together.
    pub kv_bytes_per_token: u64,
    /// Weights (parameters): with the bytes, how much arithmetic a pass does, which decides
    /// from what batch a streamed layer is faster on the GPU than on the CPU. (Absent, as 0,
    /// from records written before it was kept.)
    #[serde(default)]
    pub params: u64,
}

impl Footprint {
    /// From a GGUF summary; KV at 2 bytes per element (f16 keys and values).
    pub fn from_info(info: &canopy_gguf::ModelInfo) -> Footprint {
        let layers = info.layers.unwrap_or(1).clamp(1, u32::MAX as u64) as u32;
        let kv_heads = info.kv_heads.or(info.heads).unwrap_or(0);
        let head_dim = info.head_dim.unwrap_or(0);
        Footprint {
            bytes: info.file_size,
            layers,
            kv_bytes_per_token: 2 * 2 * layers as u64 * kv_heads * head_dim,
            // A file without tensors counted: about two weights per byte (4-bit quantizations).
            params: match info.parameter_count {
                0 => info.file_size.saturating_mul(2),
                n => n,
            },
        }
    }

    /// The cost model's view of these weights.
    pub fn spec(&self) -> crate::ModelSpec {
        crate::ModelSpec {
            bytes: self.bytes.max(1),
            params: self.params.max(1),
            layers: self.layers.max(1),
        }
    }

    fn layer_bytes(&self) -> f64 {
        self.bytes as f64 / self.layers.max(1) as f64
    }

    /// Bytes of a KV cache of `context` tokens (f16 keys and values).
    pub fn kv_bytes(&self, context: u32) -> f64 {
        self.kv_bytes_per_token as f64 * context as f64
    }
}

/// A resolved placement and what it means, in numbers and in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PlacementDecision {
    /// The placement the engine runs with (never `auto`).
    pub placement: Placement,
    /// Whether `auto` chose it (else the user did).
    pub automatic: bool,
    /// Whether the draft runs on the GPU.
    pub draft_on_gpu: bool,
    /// Target layers resident on the GPU, of `target_layers`.
    pub resident_layers: u32,
    pub target_layers: u32,
    /// Target weight bytes streamed over PCIe by one large pass (0 when none stream).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub streamed_bytes_per_pass: u64,
    /// `GGML_OP_OFFLOAD_MIN_BATCH` for the worker; `None` without a GPU.
    pub op_offload_min_batch: Option<u32>,
    /// One line for people: "draft on the GPU; 18 of 80 target layers resident, 27.4 GB streamed per pass".
    pub summary: String,
}

/// Resolves `requested` for this machine: `auto` by the rule in the module documentation, any
/// other placement kept as the user asked (with its numbers filled in). `threshold` chooses the
/// op-offload threshold for a number of resident layers (from the cost model when one is known).
pub fn decide(
    requested: Placement,
    gpu: Option<&GpuFacts>,
    target: &Footprint,
    draft: Option<&Footprint>,
    context: u32,
    threshold: &dyn Fn(u32) -> Option<u32>,
) -> PlacementDecision {
    let placement = match (requested, gpu) {
        (Placement::Auto, None) => Placement::Cpu,
        (Placement::Auto, Some(gpu)) => auto(gpu, target, draft, context),
        // A placement that needs a GPU on a machine without one runs on the CPU, and says so:
        // never report a placement that did not happen.
        (other, None) if other.uses_gpu() => Placement::Cpu,
        (other, _) => other,
    };
    let mut decision = describe(
        placement,
        requested == Placement::Auto,
        gpu,
        target,
        threshold,
    );
    if placement != requested && requested != Placement::Auto {
        decision.summary =
            format!("CPU only: placement {requested} needs a GPU and this machine has none usable");
    }
    decision
}

/// Bytes kept free on the GPU for compute buffers and fragmentation: 1 GiB or 5%, the larger.
fn margin(free: f64) -> f64 {
    ((1u64 << 30) as f64).max(0.05 * free)
}

fn auto(gpu: &GpuFacts, target: &Footprint, draft: Option<&Footprint>, context: u32) -> Placement {
    let free = gpu.vram_free_bytes.unwrap_or(gpu.vram_total_bytes) as f64;
    let draft_need = draft.map_or(0.0, |d| d.bytes as f64 + d.kv_bytes(context));
    let room = free - margin(free) - draft_need;
    if draft.is_some() && room <= 0.0 {
        return Placement::Cpu;
    }
    if target.bytes as f64 + target.kv_bytes(context) <= room {
        return Placement::Gpu;
    }
    let per_layer = target.layer_bytes() + target.kv_bytes(context) / target.layers.max(1) as f64;
    // Two layers' worth of staging for the weights that stream through the GPU.
    let budget = room - 2.0 * target.layer_bytes();
    let resident = if budget <= 0.0 {
        0
    } else {
        ((budget / per_layer).floor() as u64).min(target.layers.saturating_sub(1) as u64) as u32
    };
    match resident {
        0 => Placement::Stream,
        layers => Placement::Partial { layers },
    }
}

/// The decision for `placement`, which [`replan`] chose for `auto` after the GPU's memory ran
/// short; its summary says so.
pub fn decide_replanned(
    placement: Placement,
    gpu: Option<&GpuFacts>,
    target: &Footprint,
    threshold: &dyn Fn(u32) -> Option<u32>,
) -> PlacementDecision {
    let mut decision = describe(placement, true, gpu, target, threshold);
    decision.summary = format!(
        "{} (re-planned: the GPU's memory ran short)",
        decision.summary
    );
    decision
}

/// GPU memory that must stay free once the models are loaded and their contexts created (their
/// compute buffers included): what llama.cpp allocates while it runs (CUDA's memory pool, cuBLAS's
/// workspace) and what other programs take meanwhile. 512 MiB or 2% of the card, the larger. The
/// worker checks it before generating; a shortfall makes `auto` re-plan ([`replan`]).
pub fn runtime_floor(gpu: &GpuFacts) -> u64 {
    (512u64 << 20).max(gpu.vram_total_bytes / 50)
}

/// `gpu` with `reserve` bytes fewer free: what placement plans with once a run has shown that
/// more must stay free than its rule keeps (see [`replan`]).
pub fn with_reserve(gpu: &GpuFacts, reserve: u64) -> GpuFacts {
    let mut gpu = gpu.clone();
    let free = gpu.vram_free_bytes.unwrap_or(gpu.vram_total_bytes);
    gpu.vram_free_bytes = Some(free.saturating_sub(reserve));
    gpu
}

/// How much of the GPU a placement takes, for ordering: the CPU, then streaming every layer,
/// then more resident layers, then everything.
fn rank(placement: Placement, layers: u32) -> u32 {
    match placement {
        Placement::Cpu | Placement::Auto => 0,
        Placement::Stream => 1,
        Placement::Partial { layers: n } => 1 + n.min(layers),
        Placement::Gpu => 2 + layers,
    }
}

/// The next smaller placement than `placement`: one resident layer fewer, then streaming every
/// layer, then the CPU.
fn one_smaller(placement: Placement, layers: u32) -> Placement {
    match placement {
        Placement::Gpu if layers > 1 => Placement::Partial { layers: layers - 1 },
        Placement::Partial { layers: n } if n.min(layers) > 1 => Placement::Partial {
            layers: n.min(layers) - 1,
        },
        Placement::Gpu | Placement::Partial { .. } => Placement::Stream,
        _ => Placement::Cpu,
    }
}

/// After the GPU ran short of memory with `previous`, which `auto` chose with `reserve` bytes kept
/// free beyond its rule: the placement to try next and the reserve to plan with from now on.
///
/// The reserve grows by the shortfall the worker measured (`short_by`) and one target layer, so
/// that the next choice frees what was missing; where the shortfall is unknown (llama.cpp failed
/// to allocate, or aborted mid-pass), by a quarter of what the resident layers took, and at least
/// [`runtime_floor`], and then by a layer at a time until `auto` itself chooses less, so that
/// later decisions with the reserve land on the same placement. The placement is always smaller
/// than `previous` (fewer resident layers, then every layer streamed, then the CPU); `None` when
/// `previous` already used no GPU.
pub fn replan(
    previous: Placement,
    gpu: &GpuFacts,
    target: &Footprint,
    draft: Option<&Footprint>,
    context: u32,
    reserve: u64,
    short_by: Option<u64>,
) -> Option<(Placement, u64)> {
    if !previous.uses_gpu() {
        return None;
    }
    let layers = target.layers.max(1);
    let resident = match previous {
        Placement::Gpu => layers,
        Placement::Partial { layers: n } => n.min(layers),
        _ => 0,
    };
    let resident_bytes =
        resident as f64 * (target.layer_bytes() + target.kv_bytes(context) / layers as f64);
    let grow = match short_by {
        Some(bytes) => bytes as f64 + target.layer_bytes(),
        None => (resident_bytes / 4.0).max(runtime_floor(gpu) as f64),
    };
    let mut reserve = reserve.saturating_add(grow.ceil() as u64);
    // Grow the reserve until `auto` itself chooses less than `previous`, so that every later
    // decision made with it lands where this one does.
    let free = gpu.vram_free_bytes.unwrap_or(gpu.vram_total_bytes);
    let step = (target.layer_bytes() + target.kv_bytes(context) / layers as f64).ceil() as u64;
    loop {
        let next = auto(&with_reserve(gpu, reserve), target, draft, context);
        if rank(next, layers) < rank(previous, layers) {
            return Some((next, reserve));
        }
        if reserve >= free {
            return Some((one_smaller(previous, layers), reserve));
        }
        reserve = reserve.saturating_add(step.max(1 << 20));
    }
}

fn describe(
    placement: Placement,
    automatic: bool,
    gpu: Option<&GpuFacts>,
    target: &Footprint,
    threshold: &dyn Fn(u32) -> Option<u32>,
) -> PlacementDecision {
    let layers = target.layers;
    let resident = match placement {
        Placement::Gpu => layers,
        Placement::Partial { layers: r } => r.min(layers),
        _ => 0,
    };
    let streams = matches!(placement, Placement::Stream | Placement::Partial { .. });
    let streamed = if streams {
        (target.layer_bytes() * (layers - resident) as f64) as u64
    } else {
        0
    };
    let on_gpu = placement.uses_gpu() && gpu.is_some();
    let gb = |b: u64| b as f64 / 1e9;
    let summary = match placement {
        Placement::Cpu | Placement::Auto if gpu.is_none() => {
            "CPU only: no usable GPU".to_owned()
        }
        Placement::Cpu | Placement::Auto => {
            "CPU only: the draft does not fit beside a safety margin in the GPU's free memory"
                .to_owned()
        }
        Placement::Gpu => format!("everything on the GPU ({layers} target layers resident)"),
        Placement::Stream => format!(
            "draft on the GPU; all {layers} target layers streamed, {:.1} GB per pass",
            gb(streamed)
        ),
        Placement::Partial { .. } => format!(
            "draft on the GPU; {resident} of {layers} target layers resident, {:.1} GB streamed per pass",
            gb(streamed)
        ),
    };
    let summary = if automatic || placement == Placement::Cpu && gpu.is_none() {
        summary
    } else {
        format!("{summary} (chosen by hand)")
    };
    PlacementDecision {
        placement,
        automatic,
        draft_on_gpu: on_gpu,
        resident_layers: resident,
        target_layers: layers,
        streamed_bytes_per_pass: streamed,
        op_offload_min_batch: on_gpu
            .then(|| threshold(resident).unwrap_or(DEFAULT_OP_OFFLOAD_MIN_BATCH)),
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ComputeCapability;

    const GB: u64 = 1_000_000_000;

    fn card(total: u64, free: u64) -> GpuFacts {
        GpuFacts {
            ordinal: 0,
            name: "test card".into(),
            compute_capability: ComputeCapability { major: 8, minor: 9 },
            vram_total_bytes: total,
            vram_free_bytes: Some(free),
            multiprocessors: None,
            clock_mhz: None,
            memory_bus_bits: None,
            memory_clock_mhz: None,
            theoretical_memory_gb_per_s: None,
            peak_fp16_tflops: None,
        }
    }

    /// Llama-2-70B Q4_K_M: 41.4 GB, 80 layers, GQA (8 KV heads of 128): 320 KiB of KV per token.
    fn llama70b() -> Footprint {
        Footprint {
            bytes: 41_400_000_000,
            layers: 80,
            kv_bytes_per_token: 2 * 2 * 80 * 8 * 128,
            params: 69_000_000_000,
        }
    }

    /// Llama-3.2-1B Q8: 1.3 GB, 16 layers, 8 KV heads of 64.
    fn draft1b() -> Footprint {
        Footprint {
            bytes: 1_300_000_000,
            layers: 16,
            kv_bytes_per_token: 2 * 2 * 16 * 8 * 64,
            params: 1_240_000_000,
        }
    }

    fn fixed(_: u32) -> Option<u32> {
        Some(64)
    }

    #[test]
    fn a_24_gb_card_keeps_part_of_a_41_gb_target_and_streams_the_rest() {
        let d = decide(
            Placement::Auto,
            Some(&card(24 * GB, 23 * GB)),
            &llama70b(),
            Some(&draft1b()),
            4096,
            &fixed,
        );
        let Placement::Partial { layers } = d.placement else {
            panic!("{d:?}")
        };
        // 23 GB free - 1.15 GB margin - 1.43 GB draft - 1.04 GB staging = 19.4 GB for layers of
        // 0.518 GB weights + 0.017 GB KV each.
        assert!((34..=38).contains(&layers), "{layers}");
        assert!(d.draft_on_gpu && d.automatic);
        assert_eq!(d.op_offload_min_batch, Some(64));
        let streamed = d.streamed_bytes_per_pass as f64 / 1e9;
        assert!((20.0..24.0).contains(&streamed), "{streamed}");
        assert!(
            d.summary.contains(&format!("{layers} of 80")),
            "{}",
            d.summary
        );
    }

    #[test]
    fn an_8_gb_card_keeps_a_few_layers() {
        let d = decide(
            Placement::Auto,
            Some(&card(8 * GB, 7_500_000_000)),
            &llama70b(),
            Some(&draft1b()),
            4096,
            &fixed,
        );
        let Placement::Partial { layers } = d.placement else {
            panic!("{d:?}")
        };
        assert!((5..=9).contains(&layers), "{layers}");
    }

    #[test]
    fn a_card_barely_larger_than_the_draft_streams_every_layer() {
        let d = decide(
            Placement::Auto,
            Some(&card(4 * GB, 3_500_000_000)),
            &llama70b(),
            Some(&draft1b()),
            2048,
            &fixed,
        );
        assert_eq!(d.placement, Placement::Stream);
        assert_eq!(d.resident_layers, 0);
        assert_eq!(d.streamed_bytes_per_pass, 41_400_000_000);
    }

    #[test]
    fn a_target_that_fits_runs_whole_on_the_gpu() {
        let small = Footprint {
            bytes: 4_700_000_000,
            layers: 32,
            kv_bytes_per_token: 2 * 2 * 32 * 8 * 128,
            params: 8_000_000_000,
        };
        let d = decide(
            Placement::Auto,
            Some(&card(24 * GB, 23 * GB)),
            &small,
            Some(&draft1b()),
            8192,
            &fixed,
        );
        assert_eq!(d.placement, Placement::Gpu);
        assert_eq!(d.streamed_bytes_per_pass, 0);
        assert_eq!(d.resident_layers, 32);
    }

    #[test]
    fn a_draft_that_does_not_fit_leaves_everything_on_the_cpu() {
        let big_draft = Footprint {
            bytes: 8 * GB,
            layers: 32,
            kv_bytes_per_token: 0,
            params: 14_000_000_000,
        };
        let d = decide(
            Placement::Auto,
            Some(&card(8 * GB, 7 * GB)),
            &llama70b(),
            Some(&big_draft),
            4096,
            &fixed,
        );
        assert_eq!(d.placement, Placement::Cpu);
        assert!(!d.draft_on_gpu);
        assert_eq!(d.op_offload_min_batch, None);
        assert!(d.summary.contains("does not fit"), "{}", d.summary);
    }

    #[test]
    fn no_gpu_means_cpu() {
        let d = decide(
            Placement::Auto,
            None,
            &llama70b(),
            Some(&draft1b()),
            4096,
            &fixed,
        );
        assert_eq!(d.placement, Placement::Cpu);
        assert_eq!(d.summary, "CPU only: no usable GPU");
        assert_eq!(d.streamed_bytes_per_pass, 0);
    }

    #[test]
    fn a_placement_chosen_by_hand_is_kept() {
        let d = decide(
            Placement::Partial { layers: 10 },
            Some(&card(24 * GB, 23 * GB)),
            &llama70b(),
            None,
            4096,
            &fixed,
        );
        assert_eq!(d.placement, Placement::Partial { layers: 10 });
        assert!(!d.automatic);
        assert!(d.summary.ends_with("(chosen by hand)"), "{}", d.summary);
    }

    #[test]
    fn a_gpu_placement_without_a_gpu_runs_on_the_cpu_and_says_so() {
        for asked in [
            Placement::Gpu,
            Placement::Stream,
            Placement::Partial { layers: 10 },
        ] {
            let d = decide(asked, None, &llama70b(), None, 4096, &fixed);
            assert_eq!(d.placement, Placement::Cpu, "{asked}");
            assert!(!d.draft_on_gpu);
            assert_eq!(d.resident_layers, 0);
            assert_eq!(d.op_offload_min_batch, None);
            assert!(
                d.summary.contains(&asked.to_string()) && d.summary.contains("needs a GPU"),
                "{}",
                d.summary
            );
        }
    }

    /// The worker read 200 MiB free after creating the contexts of the placement `auto` chose for
    /// a 24 GB card, against a floor of 512 MiB: the re-plan frees at least what was missing.
    #[test]
    fn a_short_free_vram_reading_re_plans_with_fewer_resident_layers() {
        let gpu = card(24 * GB, 23 * GB);
        let (target, draft) = (llama70b(), draft1b());
        let first = decide(
            Placement::Auto,
            Some(&gpu),
            &target,
            Some(&draft),
            4096,
            &fixed,
        );
        let Placement::Partial { layers: before } = first.placement else {
            panic!("{first:?}")
        };
        let floor = runtime_floor(&gpu);
        assert_eq!(floor, 512 << 20, "2% of 24 GB is below 512 MiB");
        let free_after: u64 = 200 << 20;
        let short_by = floor - free_after;
        let (next, reserve) = replan(
            first.placement,
            &gpu,
            &target,
            Some(&draft),
            4096,
            0,
            Some(short_by),
        )
        .expect("a GPU placement can shrink");
        let Placement::Partial { layers: after } = next else {
            panic!("{next:?}")
        };
        assert!(after < before, "{after} < {before}");
        let per_layer = target.layer_bytes() + target.kv_bytes(4096) / 80.0;
        assert!(
            (before - after) as f64 * per_layer >= short_by as f64,
            "{before} -> {after} layers free {} bytes, {short_by} were missing",
            (before - after) as f64 * per_layer
        );
        assert!(reserve > short_by);
        // Later decisions plan with the reserve and land where the re-plan did.
        let later = decide(
            Placement::Auto,
            Some(&with_reserve(&gpu, reserve)),
            &target,
            Some(&draft),
            4096,
            &fixed,
        );
        assert_eq!(later.placement, next);
    }

    #[test]
    fn re_planning_always_shrinks_and_ends_on_the_cpu() {
        let gpu = card(24 * GB, 23 * GB);
        let (target, draft) = (llama70b(), draft1b());
        // A target that fits whole gives up a layer at least, even for a tiny shortfall.
        let small = Footprint {
            bytes: 4 * GB,
            layers: 32,
            kv_bytes_per_token: 2 * 2 * 32 * 8 * 128,
            params: 8 * GB,
        };
        let (next, reserve) = replan(Placement::Gpu, &gpu, &small, None, 4096, 0, Some(1)).unwrap();
        assert!(
            matches!(next, Placement::Partial { layers } if layers < 32),
            "{next:?}"
        );
        let later = decide(
            Placement::Auto,
            Some(&with_reserve(&gpu, reserve)),
            &small,
            None,
            4096,
            &fixed,
        );
        assert_eq!(
            later.placement, next,
            "later decisions keep the smaller placement"
        );
        // With the shortfall unknown (llama.cpp failed to allocate, or aborted), every re-plan
        // takes a quarter of the resident layers or more, down to streaming, then the CPU.
        let mut placement = Placement::Partial { layers: 36 };
        let mut reserve = 0;
        let mut seen = vec![placement];
        while let Some((next, r)) =
            replan(placement, &gpu, &target, Some(&draft), 4096, reserve, None)
        {
            assert!(
                rank(next, 80) < rank(placement, 80),
                "{placement} -> {next}"
            );
            if let (Placement::Partial { layers: a }, Placement::Partial { layers: b }) =
                (placement, next)
            {
                assert!(b <= a - a / 4, "{a} -> {b}");
            }
            (placement, reserve) = (next, r);
            seen.push(placement);
            assert!(seen.len() < 20, "{seen:?}");
        }
        assert_eq!(placement, Placement::Cpu, "{seen:?}");
        assert!(seen.contains(&Placement::Stream), "{seen:?}");
        assert_eq!(
            replan(
                Placement::Cpu,
                &gpu,
                &target,
                Some(&draft),
                4096,
                0,
                Some(1)
            ),
            None
        );
    }
}
