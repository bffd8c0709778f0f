//! Will a draft/target pair run on this machine, and how?
//!
//! The plan Canopy follows: the draft and its KV cache live on the GPU; the target's KV cache
//! comes next; as many target layers as still fit stay resident; the rest of the target's weights
//! live in host RAM and cross PCIe once per verification pass. Without a GPU everything is in RAM.
//! Pure arithmetic over [`MachineFacts`] and [`ModelShape`]s; no I/O except [`MachineFacts::detect`].

use serde::Serialize;

/// VRAM kept free for the CUDA context and llama.cpp's compute buffers.
pub const VRAM_RESERVE_BYTES: u64 = 512 * MIB;
/// RAM kept free for the process itself, the app and the tokenizer.
pub const RAM_RESERVE_BYTES: u64 = GIB;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// What the estimate needs to know about the machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineFacts {
    /// GPU memory in bytes; `None` when there is no usable GPU.
    pub vram_bytes: Option<u64>,
    /// Installed RAM in bytes.
    pub ram_total: u64,
    /// RAM available right now in bytes.
    pub ram_available: u64,
    /// Measured pinned host-to-device bandwidth, bytes per second, where known.
    pub h2d_bytes_per_second: Option<f64>,
}

impl MachineFacts {
    /// RAM from the operating system (via sysinfo); no GPU facts, which only a hardware profile
    /// can give. Never fails; unknown numbers read as 0.
    pub fn detect() -> MachineFacts {
        let mut sys = sysinfo::System::new();
        sys.refresh_memory();
        MachineFacts {
            vram_bytes: None,
            ram_total: sys.total_memory(),
            ram_available: sys.available_memory(),
            h2d_bytes_per_second: None,
        }
    }
}

/// The sizes of one model that matter for memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelShape {
    /// Bytes of weights (tensor data).
    pub weight_bytes: u64,
    /// Transformer blocks.
    pub n_layers: u64,
    /// KV cache bytes per token of context (all layers, f16 cache).
    pub kv_bytes_per_token: u64,
}

impl ModelShape {
    /// The shape of a model from its GGUF summary. A model that does not state its layers counts
    /// as one layer; one without KV cache facts as needing none.
    pub fn from_info(info: &canopy_gguf::ModelInfo) -> ModelShape {
        ModelShape {
            weight_bytes: info.weights_bytes,
            n_layers: info.layers.unwrap_or(1).max(1),
            kv_bytes_per_token: info.kv_cache_bytes_per_token.unwrap_or(0),
        }
    }
}

/// One-word verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Badge {
    /// Runs with room to spare.
    Fits,
    /// Runs, but needs more RAM than is free now or leaves little headroom.
    Tight,
    /// Cannot run as planned on this machine.
    TooBig,
}

impl Badge {
    /// `fits`, `tight` or `too-big`.
    pub fn as_str(self) -> &'static str {
        match self {
            Badge::Fits => "fits",
            Badge::Tight => "tight",
            Badge::TooBig => "too-big",
        }
    }
}

/// The outcome of [`estimate`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitEstimate {
    /// Context length the estimate is for, in tokens.
    pub context_tokens: u64,
    /// VRAM the draft needs with its KV cache (0 without a draft).
    pub draft_vram_bytes: u64,
    /// Whether the draft fits in VRAM with its KV cache; `None` without a GPU or a draft.
    pub draft_fits_in_vram: Option<bool>,
    /// KV cache of the target for the context.
    pub target_kv_bytes: u64,
    /// Whether the target's KV cache is kept in VRAM.
    pub target_kv_in_vram: bool,
    /// Target layers that stay resident in VRAM.
    pub target_layers_resident: u64,
    /// Target layers in all.
    pub target_layers_total: u64,
    /// Bytes copied host-to-device in each verification pass (0 without a GPU: the CPU reads
    /// the weights in place).
    pub bytes_streamed_per_pass: u64,
    /// `bytes_streamed_per_pass / h2d bandwidth`, where the bandwidth is known.
    pub seconds_per_pass: Option<f64>,
    /// Host RAM the plan needs.
    pub ram_needed_bytes: u64,
    /// The verdict.
    pub badge: Badge,
    /// One sentence saying why.
    pub reason: String,
}

/// How a model known only by its file size would run on `machine`, before it is downloaded:
/// weights about the size, layers and KV cache unknown, so mainly whether it fits in RAM.
pub fn estimate_from_size(machine: &MachineFacts, bytes: u64) -> FitEstimate {
    let shape = ModelShape {
        weight_bytes: bytes,
        n_layers: 1,
        kv_bytes_per_token: 0,
    };
    estimate(machine, &shape, None, canopy_types::DEFAULT_CONTEXT.into())
}

/// Estimates how `target` (with `draft` on the GPU, if any) runs on `machine` for a context of
/// `context_tokens`. Pure; never fails.
pub fn estimate(
    machine: &MachineFacts,
    target: &ModelShape,
    draft: Option<&ModelShape>,
    context_tokens: u64,
) -> FitEstimate {
    let layers = target.n_layers.max(1);
    let per_layer = target.weight_bytes / layers;
    let target_kv = target.kv_bytes_per_token.saturating_mul(context_tokens);
    let draft_need = draft.map_or(0, |d| {
        d.weight_bytes
            .saturating_add(d.kv_bytes_per_token.saturating_mul(context_tokens))
    });

    let Some(vram) = machine.vram_bytes else {
        return estimate_without_gpu(machine, target, target_kv, draft_need, context_tokens);
    };

    let usable = vram.saturating_sub(VRAM_RESERVE_BYTES);
    let draft_fits = draft_need <= usable;
    let after_draft = if draft_fits {
        usable - draft_need
    } else {
        usable
    };
    let target_kv_in_vram = target_kv <= after_draft;
    let for_layers = if target_kv_in_vram {
        after_draft - target_kv
    } else {
        after_draft
    };
    let resident = for_layers
        .checked_div(per_layer)
        .map_or(target.n_layers, |n| n.min(target.n_layers));
    let streamed = if resident >= target.n_layers {
        0
    } else {
        target.weight_bytes.saturating_sub(resident * per_layer)
    };
    let seconds_per_pass = machine
        .h2d_bytes_per_second
        .filter(|bw| *bw > 0.0)
        .map(|bw| streamed as f64 / bw);
    let mut ram_needed = streamed.saturating_add(RAM_RESERVE_BYTES);
    if !target_kv_in_vram {
        ram_needed = ram_needed.saturating_add(target_kv);
    }
    if !draft_fits {
        ram_needed = ram_needed.saturating_add(draft_need);
    }

    let (badge, reason) = if draft.is_some() && !draft_fits {
        (
            Badge::TooBig,
            format!(
                "the draft needs {} of VRAM with its KV cache for {context_tokens} tokens but only {} is usable; choose a smaller draft or a shorter context",
                fmt_bytes(draft_need),
                fmt_bytes(usable)
            ),
        )
    } else if let Some(verdict) = ram_verdict(machine, ram_needed) {
        verdict
    } else if streamed == 0 {
        (
            Badge::Fits,
            format!(
                "everything stays in VRAM: {} of {} target layers resident, nothing streamed per pass",
                resident, target.n_layers
            ),
        )
    } else {
        let time = seconds_per_pass
            .map(|s| format!(" (about {s:.2} s per pass)"))
            .unwrap_or_default();
        (
            Badge::Fits,
            format!(
                "{} of {} target layers stay in VRAM; {} of weights cross PCIe per verification pass{time}",
                resident,
                target.n_layers,
                fmt_bytes(streamed)
            ),
        )
    };
    FitEstimate {
        context_tokens,
        draft_vram_bytes: draft_need,
        draft_fits_in_vram: draft.map(|_| draft_fits),
        target_kv_bytes: target_kv,
        target_kv_in_vram,
        target_layers_resident: resident,
        target_layers_total: target.n_layers,
        bytes_streamed_per_pass: streamed,
        seconds_per_pass,
        ram_needed_bytes: ram_needed,
        badge,
        reason,
    }
}

/// [`estimate`] on a machine without a GPU: both models run from RAM.
fn estimate_without_gpu(
    machine: &MachineFacts,
    target: &ModelShape,
    target_kv: u64,
    draft_need: u64,
    context_tokens: u64,
) -> FitEstimate {
    let ram_needed = target
        .weight_bytes
        .saturating_add(target_kv)
        .saturating_add(draft_need)
        .saturating_add(RAM_RESERVE_BYTES);
    let (badge, reason) = ram_verdict(machine, ram_needed).unwrap_or_else(|| {
        (
            Badge::Fits,
            format!(
                "no GPU: both models run from RAM ({} needed of {} free); each pass reads the target's {} of weights in place",
                fmt_bytes(ram_needed),
                fmt_bytes(machine.ram_available),
                fmt_bytes(target.weight_bytes)
            ),
        )
    });
    FitEstimate {
        context_tokens,
        draft_vram_bytes: draft_need,
        draft_fits_in_vram: None,
        target_kv_bytes: target_kv,
        target_kv_in_vram: false,
        target_layers_resident: 0,
        target_layers_total: target.n_layers,
        bytes_streamed_per_pass: 0,
        seconds_per_pass: None,
        ram_needed_bytes: ram_needed,
        badge,
        reason,
    }
}

/// `Some` verdict when RAM is the problem: too-big beyond installed RAM, tight beyond free RAM.
fn ram_verdict(machine: &MachineFacts, ram_needed: u64) -> Option<(Badge, String)> {
    if ram_needed > machine.ram_total {
        Some((
            Badge::TooBig,
            format!(
                "needs {} of RAM but the machine has {}",
                fmt_bytes(ram_needed),
                fmt_bytes(machine.ram_total)
            ),
        ))
    } else if ram_needed > machine.ram_available {
        Some((
            Badge::Tight,
            format!(
                "needs {} of RAM; the machine has {} but only {} is free now: close other programs",
                fmt_bytes(ram_needed),
                fmt_bytes(machine.ram_total),
                fmt_bytes(machine.ram_available)
            ),
        ))
    } else {
        None
    }
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `98.3 MiB`, `41.4 GiB`.
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(vram_gib: Option<u64>, ram_total_gib: u64, ram_free_gib: u64) -> MachineFacts {
        MachineFacts {
            vram_bytes: vram_gib.map(|g| g * GIB),
            ram_total: ram_total_gib * GIB,
            ram_available: ram_free_gib * GIB,
            h2d_bytes_per_second: Some(25.0e9),
        }
    }

    /// A 70B-class Q4 target: 80 layers of 512 MiB (40 GiB), 320 KiB of KV cache per token.
    fn target_70b() -> ModelShape {
        ModelShape {
            weight_bytes: 80 * 512 * MIB,
            n_layers: 80,
            kv_bytes_per_token: 320 * 1024,
        }
    }

    /// A 1B-class draft: 1 GiB of weights, 32 KiB of KV per token.
    fn draft_1b() -> ModelShape {
        ModelShape {
            weight_bytes: GIB,
            n_layers: 16,
            kv_bytes_per_token: 32 * 1024,
        }
    }

    #[test]
    fn a_24_gib_gpu_keeps_part_of_a_70b_target() {
        // usable = 24 GiB - 512 MiB = 23.5 GiB; draft = 1 GiB + 4096 * 32 KiB (128 MiB) = 1.125 GiB;
        // target KV = 4096 * 320 KiB = 1.25 GiB; left = 23.5 - 1.125 - 1.25 = 21.125 GiB
        // = 21632 MiB -> 42 layers of 512 MiB (21504 MiB); streamed = 38 * 512 MiB = 19 GiB.
        let fit = estimate(
            &machine(Some(24), 64, 60),
            &target_70b(),
            Some(&draft_1b()),
            4096,
        );
        assert_eq!(fit.draft_vram_bytes, GIB + 128 * MIB);
        assert_eq!(fit.draft_fits_in_vram, Some(true));
        assert_eq!(fit.target_kv_bytes, 1280 * MIB);
        assert!(fit.target_kv_in_vram);
        assert_eq!(fit.target_layers_resident, 42);
        assert_eq!(fit.bytes_streamed_per_pass, 19 * GIB);
        let secs = fit.seconds_per_pass.unwrap();
        assert!((secs - 19.0 * GIB as f64 / 25.0e9).abs() < 1e-9);
        // RAM: 19 GiB streamed + 1 GiB reserve.
        assert_eq!(fit.ram_needed_bytes, 20 * GIB);
        assert_eq!(fit.badge, Badge::Fits);
        assert!(fit.reason.contains("42 of 80"), "{}", fit.reason);
    }

    #[test]
    fn ram_decides_tight_and_too_big() {
        // 8 GiB GPU: usable 7.5 GiB; after draft 6.375; after KV 5.125 GiB = 5248 MiB -> 10 layers;
        // streamed 70 * 512 MiB = 35 GiB; RAM needed 36 GiB.
        let tight = estimate(
            &machine(Some(8), 64, 30),
            &target_70b(),
            Some(&draft_1b()),
            4096,
        );
        assert_eq!(tight.target_layers_resident, 10);
        assert_eq!(tight.ram_needed_bytes, 36 * GIB);
        assert_eq!(tight.badge, Badge::Tight);
        let too_big = estimate(
            &machine(Some(8), 32, 30),
            &target_70b(),
            Some(&draft_1b()),
            4096,
        );
        assert_eq!(too_big.badge, Badge::TooBig);
        assert!(too_big.reason.contains("36.0 GiB"), "{}", too_big.reason);
    }

    #[test]
    fn a_draft_too_big_for_vram_is_refused() {
        let big_draft = ModelShape {
            weight_bytes: 8 * GIB,
            n_layers: 32,
            kv_bytes_per_token: 128 * 1024,
        };
        let fit = estimate(
            &machine(Some(8), 128, 120),
            &target_70b(),
            Some(&big_draft),
            4096,
        );
        assert_eq!(fit.draft_fits_in_vram, Some(false));
        assert_eq!(fit.badge, Badge::TooBig);
        assert!(fit.reason.contains("smaller draft"), "{}", fit.reason);
    }

    #[test]
    fn small_models_stay_resident() {
        // Qwen2.5-Coder-1.5B-sized target on a 24 GiB GPU: nothing streams.
        let target = ModelShape {
            weight_bytes: 1_117_320_768,
            n_layers: 28,
            kv_bytes_per_token: 28 * 2 * 256 * 2,
        };
        let fit = estimate(&machine(Some(24), 16, 8), &target, None, 4096);
        assert_eq!(fit.target_layers_resident, 28);
        assert_eq!(fit.bytes_streamed_per_pass, 0);
        assert_eq!(fit.ram_needed_bytes, GIB);
        assert_eq!(fit.draft_fits_in_vram, None);
        assert_eq!(fit.badge, Badge::Fits);
    }

    #[test]
    fn without_a_gpu_everything_is_in_ram() {
        // 40 GiB + 1.25 GiB KV + 1.125 GiB draft + 1 GiB reserve = 43.375 GiB.
        let fit = estimate(
            &machine(None, 64, 60),
            &target_70b(),
            Some(&draft_1b()),
            4096,
        );
        assert_eq!(fit.ram_needed_bytes, 43 * GIB + 384 * MIB);
        assert_eq!(fit.bytes_streamed_per_pass, 0);
        assert_eq!(fit.target_layers_resident, 0);
        assert_eq!(fit.badge, Badge::Fits);
        let fit = estimate(
            &machine(None, 32, 30),
            &target_70b(),
            Some(&draft_1b()),
            4096,
        );
        assert_eq!(fit.badge, Badge::TooBig);
    }

    #[test]
    fn bytes_format_in_binary_units() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(20 * GIB), "20.0 GiB");
    }
}
