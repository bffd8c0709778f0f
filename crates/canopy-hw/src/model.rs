//! The analytic cost model: predicted pass times from a handful of hardware figures.
//!
//! Used where nothing was measured (reference profiles, predictions for a target this machine cannot
//! hold, such as a 70B model), and to choose llama.cpp's op-offload threshold and the number of target
//! layers kept resident in VRAM. Every figure is a model-based prediction, not a measurement.
//!
//! # The model
//!
//! A target of `B` weight bytes and `P` parameters over `L` layers keeps `r` layers resident in VRAM
//! (`B_r = B·r/L` bytes, `P_r = P·r/L` parameters); the rest (`B_s`, `P_s`) lives in host RAM. One pass
//! over `n` new tokens costs, with `roof(bytes, flops, bw, rate) = max(bytes/bw, flops/rate)`:
//!
//! * `n ≥ op_offload_min_batch` (llama.cpp copies each host weight to the GPU and runs it there):
//!   `B_s / h2d + roof(B, 2·P·n, device bandwidth, GPU FLOP/s) + GPU overhead`.
//!   The copy is synchronous (no overlap), and the streamed weights are read again from VRAM.
//! * `n < op_offload_min_batch` (llama.cpp runs host weights on the CPU):
//!   `roof(B_r, 2·P_r·n, device bandwidth, GPU FLOP/s) + roof(B_s, 2·P_s·n, host bandwidth, CPU FLOP/s)`
//!   plus the overheads of the devices used.
//! * No GPU: `roof(B, 2·P·n, host bandwidth, CPU FLOP/s) + CPU overhead`.
//!
//! A draft lives on the GPU when there is one: `roof(B_d, 2·P_d·k, device bandwidth, GPU FLOP/s)` plus
//! the GPU overhead per level of `k` nodes; otherwise the CPU formula. Attention and KV-cache traffic
//! are ignored (small next to the weights for trees of a few hundred tokens and short contexts).

use serde::{Deserialize, Serialize};

use crate::gpu::GpuStatus;
use crate::system::{HostBandwidth, SystemFacts};
use crate::HwError;

/// Fraction of the peak FP16 tensor throughput that llama.cpp's mixed-precision matrix kernels are
/// assumed to reach on large batches. An assumption of this model, not a measurement.
pub const GPU_TENSOR_EFFICIENCY: f64 = 0.5;

/// Effective CPU throughput per physical core on llama.cpp's quantized kernels, in GFLOP/s. Anchored
/// on the build machine's measurement (Qwen2.5-Coder-1.5B Q4_K_M, 32 tokens in 1.17 s on 2 cores:
/// 2 · 1.54e9 · 32 / 1.17 ≈ 84 GFLOP/s, so about 42 per core).
pub const CPU_GFLOPS_PER_CORE: f64 = 40.0;

/// Fixed cost of one pass (graph build, kernel launches, synchronisation), assumed.
pub const GPU_PASS_OVERHEAD_S: f64 = 0.002;
pub const CPU_PASS_OVERHEAD_S: f64 = 0.002;

/// llama.cpp's default `GGML_OP_OFFLOAD_MIN_BATCH`.
pub const LLAMA_DEFAULT_OP_OFFLOAD_MIN_BATCH: u32 = 32;

/// The largest op-offload threshold this model will choose (beyond it the GPU path is never used
/// for the tree sizes Canopy plans).
pub const MAX_OP_OFFLOAD_MIN_BATCH: u32 = 4096;

/// The hardware figures the cost model needs. Bandwidths in GB/s (10^9 bytes/s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// How fast the CPU cores can read weights from RAM.
    pub host_memory_gb_per_s: f64,
    /// Effective CPU throughput on llama.cpp's kernels, GFLOP/s.
    pub cpu_gflops: f64,
    pub cpu_pass_overhead_s: f64,
    /// `None` on a machine without a usable GPU.
    pub gpu: Option<GpuCostModel>,
}

/// The GPU half of [`CostModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuCostModel {
    /// Pinned host→device bandwidth for large transfers.
    pub h2d_gb_per_s: f64,
    pub device_memory_gb_per_s: f64,
    /// Effective (not peak) GPU throughput on large matrix products, TFLOP/s.
    pub tflops: f64,
    pub vram_bytes: u64,
    pub pass_overhead_s: f64,
}

/// The size of a model, as the cost model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Bytes of weights (about the GGUF file size).
    pub bytes: u64,
    pub params: u64,
    /// Repeating transformer blocks (the unit of residency).
    pub layers: u32,
}

impl ModelSpec {
    /// A model of `bytes` bytes whose weights average `bits_per_weight` bits (16 for fp16, about 4.85
    /// for Q4_K_M, 8.5 for Q8_0).
    ///
    /// Fails with [`HwError::InvalidSetting`] when a figure is zero or not finite.
    pub fn from_bits_per_weight(
        bytes: u64,
        bits_per_weight: f64,
        layers: u32,
    ) -> Result<Self, HwError> {
        if !(bits_per_weight.is_finite() && bits_per_weight > 0.0) {
            return Err(HwError::InvalidSetting(format!(
                "{bits_per_weight} bits per weight is not a positive number"
            )));
        }
        let spec = ModelSpec {
            bytes,
            params: (bytes as f64 * 8.0 / bits_per_weight).round() as u64,
            layers,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Fails with [`HwError::InvalidSetting`] when bytes, params or layers is zero.
    pub fn validate(&self) -> Result<(), HwError> {
        if self.bytes == 0 || self.params == 0 || self.layers == 0 {
            return Err(HwError::InvalidSetting(format!(
                "a model needs non-zero bytes, parameters and layers (got {} bytes, {} parameters, {} layers)",
                self.bytes, self.params, self.layers
            )));
        }
        Ok(())
    }

    /// Bytes of one layer (weights spread evenly over the layers).
    pub fn layer_bytes(&self) -> f64 {
        self.bytes as f64 / self.layers as f64
    }
}

/// Where the target's weights are and when llama.cpp moves work to the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSplit {
    /// Target layers kept in VRAM; the others stream from host RAM.
    pub resident_layers: u32,
    /// `GGML_OP_OFFLOAD_MIN_BATCH`: batches at least this large run host weights on the GPU.
    pub op_offload_min_batch: u32,
}

/// Which processor ran the host-resident weights of a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassPath {
    /// Everything on the CPU (no GPU).
    Cpu,
    /// Host weights on the CPU, resident layers (if any) on the GPU: a batch under the threshold.
    CpuBelowThreshold,
    /// Host weights copied to the GPU and run there.
    GpuStreamed,
}

/// A predicted pass time and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PassBreakdown {
    pub path: PassPath,
    /// Copying host weights over PCIe.
    pub transfer_s: f64,
    pub gpu_s: f64,
    pub cpu_s: f64,
    pub overhead_s: f64,
    pub total_s: f64,
}

/// Predicted cost curves, in the shape of the planner's cost tables: (n, seconds) ascending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictedCosts {
    pub target: Vec<(usize, f64)>,
    pub draft: Vec<(usize, f64)>,
}

/// `max(bytes / bandwidth, flops / rate)`: a roofline, with bandwidth in GB/s and rate in FLOP/s.
fn roof(bytes: f64, flops: f64, gb_per_s: f64, flop_per_s: f64) -> f64 {
    (bytes / (gb_per_s * 1e9)).max(flops / flop_per_s)
}

impl CostModel {
    /// A cost model from what was measured on this machine, filling unmeasured figures with the
    /// documented estimates: CPU throughput = physical cores × [`CPU_GFLOPS_PER_CORE`]; GPU
    /// throughput = estimated peak × [`GPU_TENSOR_EFFICIENCY`] (20 TFLOP/s when unknown); device
    /// bandwidth = measured device copy, else 85% of the theoretical figure; host→device = measured
    /// pinned bandwidth, else 13 GB/s (PCIe 3 x16). Host memory falls back to 20 GB/s when not measured.
    pub fn from_measurements(
        facts: &SystemFacts,
        host: Option<&HostBandwidth>,
        gpu: &GpuStatus,
    ) -> CostModel {
        let cores = facts.physical_cores.unwrap_or(facts.logical_cores).max(1);
        let gpu = gpu.info().map(|info| {
            let bw = info.bandwidths.as_ref();
            GpuCostModel {
                h2d_gb_per_s: bw.and_then(|b| b.h2d_pinned_gb_per_s()).unwrap_or(13.0),
                device_memory_gb_per_s: bw
                    .map(|b| b.d2d.gb_per_s.median)
                    .or(info.facts.theoretical_memory_gb_per_s.map(|t| 0.85 * t))
                    .unwrap_or(300.0),
                tflops: info
                    .facts
                    .peak_fp16_tflops
                    .map_or(20.0, |p| p * GPU_TENSOR_EFFICIENCY),
                vram_bytes: info.facts.vram_total_bytes,
                pass_overhead_s: GPU_PASS_OVERHEAD_S,
            }
        });
        CostModel {
            host_memory_gb_per_s: host.map_or(20.0, |h| h.copy_gb_per_s.median),
            cpu_gflops: cores as f64 * CPU_GFLOPS_PER_CORE,
            cpu_pass_overhead_s: CPU_PASS_OVERHEAD_S,
            gpu,
        }
    }

    /// Fails with [`HwError::InvalidSetting`] naming the first figure that is not positive and finite
    /// (overheads may be zero).
    pub fn validate(&self) -> Result<(), HwError> {
        let mut figures = vec![
            ("host_memory_gb_per_s", self.host_memory_gb_per_s, false),
            ("cpu_gflops", self.cpu_gflops, false),
            ("cpu_pass_overhead_s", self.cpu_pass_overhead_s, true),
        ];
        if let Some(g) = &self.gpu {
            figures.extend([
                ("gpu.h2d_gb_per_s", g.h2d_gb_per_s, false),
                (
                    "gpu.device_memory_gb_per_s",
                    g.device_memory_gb_per_s,
                    false,
                ),
                ("gpu.tflops", g.tflops, false),
                ("gpu.pass_overhead_s", g.pass_overhead_s, true),
            ]);
        }
        for (name, value, zero_ok) in figures {
            if !value.is_finite() || value < 0.0 || (value == 0.0 && !zero_ok) {
                return Err(HwError::InvalidSetting(format!(
                    "cost model figure {name} = {value} is not a positive number"
                )));
            }
        }
        Ok(())
    }

    /// Predicted time of one target pass over `n` new tokens (see the module docs for the formula).
    /// Resident layers beyond the model's layer count count as all layers; without a GPU the placement
    /// is ignored.
    pub fn target_pass(
        &self,
        target: &ModelSpec,
        placement: &LayerSplit,
        n: usize,
    ) -> PassBreakdown {
        let n = n.max(1) as f64;
        let (bytes, params) = (target.bytes as f64, target.params as f64);
        let Some(gpu) = &self.gpu else {
            let cpu_s = roof(
                bytes,
                2.0 * params * n,
                self.host_memory_gb_per_s,
                self.cpu_gflops * 1e9,
            );
            return PassBreakdown {
                path: PassPath::Cpu,
                transfer_s: 0.0,
                gpu_s: 0.0,
                cpu_s,
                overhead_s: self.cpu_pass_overhead_s,
                total_s: cpu_s + self.cpu_pass_overhead_s,
            };
        };
        let share = placement.resident_layers.min(target.layers) as f64 / target.layers as f64;
        let (res_bytes, res_params) = (bytes * share, params * share);
        let (str_bytes, str_params) = (bytes - res_bytes, params - res_params);
        let gpu_rate = gpu.tflops * 1e12;
        if n >= placement.op_offload_min_batch as f64 || str_bytes == 0.0 {
            let transfer_s = str_bytes / (gpu.h2d_gb_per_s * 1e9);
            let gpu_s = roof(
                bytes,
                2.0 * params * n,
                gpu.device_memory_gb_per_s,
                gpu_rate,
            );
            PassBreakdown {
                path: PassPath::GpuStreamed,
                transfer_s,
                gpu_s,
                cpu_s: 0.0,
                overhead_s: gpu.pass_overhead_s,
                total_s: transfer_s + gpu_s + gpu.pass_overhead_s,
            }
        } else {
            let gpu_s = if res_bytes > 0.0 {
                roof(
                    res_bytes,
                    2.0 * res_params * n,
                    gpu.device_memory_gb_per_s,
                    gpu_rate,
                )
            } else {
                0.0
            };
            let cpu_s = roof(
                str_bytes,
                2.0 * str_params * n,
                self.host_memory_gb_per_s,
                self.cpu_gflops * 1e9,
            );
            let overhead_s = self.cpu_pass_overhead_s
                + if res_bytes > 0.0 {
                    gpu.pass_overhead_s
                } else {
                    0.0
                };
            PassBreakdown {
                path: PassPath::CpuBelowThreshold,
                transfer_s: 0.0,
                gpu_s,
                cpu_s,
                overhead_s,
                total_s: gpu_s + cpu_s + overhead_s,
            }
        }
    }

    /// Predicted time of one draft pass over a level of `k` nodes: on the GPU when there is one and
    /// the draft fits in its memory, else on the CPU.
    pub fn draft_level(&self, draft: &ModelSpec, k: usize) -> f64 {
        let k = k.max(1) as f64;
        let (bytes, params) = (draft.bytes as f64, draft.params as f64);
        match &self.gpu {
            Some(gpu) if draft.bytes < gpu.vram_bytes => {
                roof(
                    bytes,
                    2.0 * params * k,
                    gpu.device_memory_gb_per_s,
                    gpu.tflops * 1e12,
                ) + gpu.pass_overhead_s
            }
            _ => {
                roof(
                    bytes,
                    2.0 * params * k,
                    self.host_memory_gb_per_s,
                    self.cpu_gflops * 1e9,
                ) + self.cpu_pass_overhead_s
            }
        }
    }

    /// Predicted cost tables for the planner: target passes at powers of two up to `max_n` (plus
    /// `max_n` and the two budgets either side of the op-offload threshold, where the curve jumps) and
    /// draft levels at powers of two up to `max_k`.
    ///
    /// Fails with [`HwError::InvalidSetting`] when `max_n` or `max_k` is 0 or a model is invalid.
    pub fn predicted_costs(
        &self,
        target: &ModelSpec,
        draft: &ModelSpec,
        placement: &LayerSplit,
        max_n: usize,
        max_k: usize,
    ) -> Result<PredictedCosts, HwError> {
        target.validate()?;
        draft.validate()?;
        let threshold = self
            .gpu
            .as_ref()
            .map(|_| placement.op_offload_min_batch as usize);
        let grid = crate::CurveGrid::standard(max_n, max_k, threshold, false)?;
        Ok(PredictedCosts {
            target: grid
                .target()
                .iter()
                .map(|&n| (n, self.target_pass(target, placement, n).total_s))
                .collect(),
            draft: grid
                .draft()
                .iter()
                .map(|&k| (k, self.draft_level(draft, k)))
                .collect(),
        })
    }

    /// Chooses `GGML_OP_OFFLOAD_MIN_BATCH`: the smallest batch at which running the host-resident
    /// weights on the GPU (copy + GPU time) is no slower than running them on the CPU, comparing
    /// `B_s/h2d + roof(B_s, 2·P_s·n, device)` with `roof(B_s, 2·P_s·n, host)` for n = 1, 2, ….
    /// llama.cpp applies the threshold per matrix, and every matrix has the same bytes-to-FLOPs
    /// ratio, so the whole-model comparison gives the same answer. Capped at
    /// [`MAX_OP_OFFLOAD_MIN_BATCH`]. `None` without a GPU (nothing to offload to).
    pub fn choose_op_offload_min_batch(
        &self,
        target: &ModelSpec,
        resident_layers: u32,
    ) -> Option<u32> {
        let gpu = self.gpu.as_ref()?;
        let share = resident_layers.min(target.layers) as f64 / target.layers.max(1) as f64;
        let bytes = target.bytes as f64 * (1.0 - share);
        let params = target.params as f64 * (1.0 - share);
        if bytes == 0.0 {
            return Some(1);
        }
        let transfer = bytes / (gpu.h2d_gb_per_s * 1e9);
        let found = (1..=MAX_OP_OFFLOAD_MIN_BATCH).find(|&n| {
            let flops = 2.0 * params * n as f64;
            let on_gpu =
                transfer + roof(bytes, flops, gpu.device_memory_gb_per_s, gpu.tflops * 1e12);
            let on_cpu = roof(
                bytes,
                flops,
                self.host_memory_gb_per_s,
                self.cpu_gflops * 1e9,
            );
            on_gpu <= on_cpu
        });
        Some(found.unwrap_or(MAX_OP_OFFLOAD_MIN_BATCH))
    }
}

/// The placement to run `target` in on this hardware: resident layers by [`choose_resident_layers`]
/// (from `vram_free_bytes`, else the whole VRAM), then the op-offload threshold by
/// [`CostModel::choose_op_offload_min_batch`] for the layers left in host RAM. Without a GPU:
/// nothing resident and llama.cpp's default threshold (unused).
pub fn recommend_placement(
    model: &CostModel,
    target: &ModelSpec,
    draft_bytes: u64,
    vram_free_bytes: Option<u64>,
) -> LayerSplit {
    let Some(gpu) = &model.gpu else {
        return LayerSplit {
            resident_layers: 0,
            op_offload_min_batch: LLAMA_DEFAULT_OP_OFFLOAD_MIN_BATCH,
        };
    };
    let resident_layers = choose_resident_layers(
        vram_free_bytes.unwrap_or(gpu.vram_bytes),
        target,
        draft_bytes,
    );
    LayerSplit {
        resident_layers,
        op_offload_min_batch: model
            .choose_op_offload_min_batch(target, resident_layers)
            .unwrap_or(LLAMA_DEFAULT_OP_OFFLOAD_MIN_BATCH),
    }
}

/// Chooses how many target layers to keep resident in VRAM.
///
/// Rule: every resident layer saves its bytes of PCIe traffic on every streamed pass and runs faster
/// than on the CPU on every small pass, so keep as many as fit. The budget is the free VRAM minus the
/// draft's weights, minus a reserve for KV caches and compute buffers (the larger of 1 GiB and 5% of
/// the free VRAM), minus two layers' worth of staging space for the weights streamed through the
/// GPU; the result is clamped to `0..=target.layers`.
pub fn choose_resident_layers(vram_free_bytes: u64, target: &ModelSpec, draft_bytes: u64) -> u32 {
    let free = vram_free_bytes as f64;
    let reserve = (1u64 << 30) as f64;
    let reserve = reserve.max(0.05 * free) + 2.0 * target.layer_bytes();
    let budget = free - draft_bytes as f64 - reserve;
    if budget <= 0.0 || target.layers == 0 {
        return 0;
    }
    ((budget / target.layer_bytes()).floor() as u64).min(target.layers as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Round figures so that every expected time below can be checked by hand.
    fn model() -> CostModel {
        CostModel {
            host_memory_gb_per_s: 60.0,
            cpu_gflops: 400.0,
            cpu_pass_overhead_s: 0.0,
            gpu: Some(GpuCostModel {
                h2d_gb_per_s: 24.0,
                device_memory_gb_per_s: 1000.0,
                tflops: 100.0,
                vram_bytes: 24_000_000_000,
                pass_overhead_s: 0.0,
            }),
        }
    }

    /// 40 GB, 20 B parameters (fp16), 80 layers of 0.5 GB.
    const TARGET: ModelSpec = ModelSpec {
        bytes: 40_000_000_000,
        params: 20_000_000_000,
        layers: 80,
    };

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn streamed_target_by_hand() {
        let m = model();
        let p = LayerSplit {
            resident_layers: 0,
            op_offload_min_batch: 32,
        };
        // n = 1, CPU path: max(40e9 / 60e9, 2·20e9 / 400e9) = max(0.6667, 0.1).
        let b = m.target_pass(&TARGET, &p, 1);
        assert_eq!(b.path, PassPath::CpuBelowThreshold);
        close(b.total_s, 40.0 / 60.0);
        // n = 31, still CPU, now compute-bound: 2·20e9·31 / 400e9 = 3.1.
        close(m.target_pass(&TARGET, &p, 31).total_s, 3.1);
        // n = 32, GPU: 40e9/24e9 + max(40e9/1e12, 2·20e9·32/1e14) = 1.6667 + 0.04.
        let b = m.target_pass(&TARGET, &p, 32);
        assert_eq!(b.path, PassPath::GpuStreamed);
        close(b.transfer_s, 40.0 / 24.0);
        close(b.total_s, 40.0 / 24.0 + 0.04);
        // n = 1024: compute 2·20e9·1024/1e14 = 0.4096 exceeds the 0.04 s of memory time.
        close(
            m.target_pass(&TARGET, &p, 1024).total_s,
            40.0 / 24.0 + 0.4096,
        );
    }

    #[test]
    fn resident_layers_by_hand() {
        let m = model();
        let p = LayerSplit {
            resident_layers: 20,
            op_offload_min_batch: 32,
        };
        // n = 1: GPU part max(10e9/1e12, 2·5e9/1e14) = 0.01; CPU part max(30e9/60e9, 2·15e9/400e9) = 0.5.
        let b = m.target_pass(&TARGET, &p, 1);
        close(b.gpu_s, 0.01);
        close(b.cpu_s, 0.5);
        close(b.total_s, 0.51);
        // n = 64: 30e9/24e9 + max(40e9/1e12, 2·20e9·64/1e14) = 1.25 + 0.04.
        close(m.target_pass(&TARGET, &p, 64).total_s, 1.29);
        // All layers resident: no transfer at any n.
        let all = LayerSplit {
            resident_layers: 500,
            op_offload_min_batch: 32,
        };
        let b = m.target_pass(&TARGET, &all, 1);
        close(b.transfer_s, 0.0);
        close(b.total_s, 0.04);
    }

    #[test]
    fn cpu_only_and_draft_by_hand() {
        let mut m = model();
        // Draft: 4 GB, 2 B params on the GPU: k = 1 → 4e9/1e12 = 0.004; k = 4096 → 2·2e9·4096/1e14 = 0.16384.
        let draft = ModelSpec {
            bytes: 4_000_000_000,
            params: 2_000_000_000,
            layers: 32,
        };
        close(m.draft_level(&draft, 1), 0.004);
        close(m.draft_level(&draft, 4096), 0.16384);
        m.gpu = None;
        // CPU: max(4e9/60e9, 2·2e9·k/400e9): k = 1 → 0.0667, k = 100 → 1.0.
        close(m.draft_level(&draft, 1), 4.0 / 60.0);
        close(m.draft_level(&draft, 100), 1.0);
        let p = LayerSplit {
            resident_layers: 40,
            op_offload_min_batch: 1,
        };
        let b = m.target_pass(&TARGET, &p, 8);
        assert_eq!(b.path, PassPath::Cpu);
        close(b.total_s, 0.8); // 2·20e9·8 / 400e9
    }

    #[test]
    fn op_offload_threshold_by_hand() {
        let m = model();
        // GPU 1.6667 + max(0.04, 4e-4·n) vs CPU max(0.6667, 0.1·n): the CPU is faster up to n = 17
        // (1.7 < 1.7067) and slower from n = 18 (1.8 > 1.7067).
        assert_eq!(m.choose_op_offload_min_batch(&TARGET, 0), Some(18));
        // A CPU as fast as PCIe at reading weights and ten times faster at arithmetic never loses
        // within the cap.
        let mut fast_cpu = model();
        fast_cpu.host_memory_gb_per_s = 24.0;
        fast_cpu.cpu_gflops = 1e9;
        assert_eq!(
            fast_cpu.choose_op_offload_min_batch(&TARGET, 0),
            Some(MAX_OP_OFFLOAD_MIN_BATCH)
        );
        // A slow CPU loses at once.
        let mut slow_cpu = model();
        slow_cpu.host_memory_gb_per_s = 10.0;
        assert_eq!(slow_cpu.choose_op_offload_min_batch(&TARGET, 0), Some(1));
        // Everything resident: nothing to stream.
        assert_eq!(m.choose_op_offload_min_batch(&TARGET, 80), Some(1));
        let mut cpu_only = model();
        cpu_only.gpu = None;
        assert_eq!(cpu_only.choose_op_offload_min_batch(&TARGET, 0), None);
    }

    #[test]
    fn a_footprint_brings_its_parameters_to_the_threshold() {
        // With its arithmetic left out, streaming never pays and nothing would be offloaded.
        let footprint = crate::placement::Footprint {
            bytes: TARGET.bytes,
            layers: TARGET.layers,
            kv_bytes_per_token: 0,
            params: TARGET.params,
        };
        assert_eq!(
            model().choose_op_offload_min_batch(&footprint.spec(), 0),
            Some(18)
        );
    }

    #[test]
    fn resident_layer_rule_by_hand() {
        // 24 GB free, 4 GB draft, reserve max(1 GiB, 1.2 GB) + 2·0.5 GB = 2.2 GB → 17.8 GB → 35 layers.
        assert_eq!(
            choose_resident_layers(24_000_000_000, &TARGET, 4_000_000_000),
            35
        );
        assert_eq!(
            choose_resident_layers(2_000_000_000, &TARGET, 4_000_000_000),
            0
        );
        assert_eq!(choose_resident_layers(200_000_000_000, &TARGET, 0), 80);
    }

    #[test]
    fn predicted_table_has_the_jump_and_interpolates() {
        let m = model();
        let draft = ModelSpec {
            bytes: 4_000_000_000,
            params: 2_000_000_000,
            layers: 32,
        };
        let p = LayerSplit {
            resident_layers: 0,
            op_offload_min_batch: 18,
        };
        let costs = m.predicted_costs(&TARGET, &draft, &p, 2048, 64).unwrap();
        let ns: Vec<usize> = costs.target.iter().map(|x| x.0).collect();
        assert_eq!(
            ns,
            [1, 2, 4, 8, 16, 17, 18, 32, 64, 128, 256, 512, 1024, 2048]
        );
        // Around the threshold the interpolated curve follows the model exactly.
        let at = |n| crate::interpolate(&costs.target, n).unwrap();
        close(at(17), 1.7);
        close(at(18), 40.0 / 24.0 + 0.04);
        // Between 1024 and 2048 the model is linear (compute-bound), so interpolation is exact.
        close(at(1536), m.target_pass(&TARGET, &p, 1536).total_s);
        assert_eq!(costs.draft.len(), 7);
        assert!(m.predicted_costs(&TARGET, &draft, &p, 0, 8).is_err());
    }

    #[test]
    fn recommended_placement() {
        let p = recommend_placement(&model(), &TARGET, 4_000_000_000, None);
        assert_eq!(p.resident_layers, 35);
        // 45 streamed layers (22.5 GB, 11.25 B params): GPU 22.5/24 + max(0.0225, 2.25e-4·n) = 0.96
        // vs CPU max(0.375, 0.05625·n): 0.956 at n = 17 (CPU faster), 1.0125 at n = 18.
        assert_eq!(p.op_offload_min_batch, 18);
        let mut cpu = model();
        cpu.gpu = None;
        let p = recommend_placement(&cpu, &TARGET, 0, None);
        assert_eq!((p.resident_layers, p.op_offload_min_batch), (0, 32));
    }

    #[test]
    fn bits_per_weight() {
        let q4 = ModelSpec::from_bits_per_weight(41_400_000_000, 4.8, 80).unwrap();
        assert_eq!(q4.params, 69_000_000_000);
        assert!(ModelSpec::from_bits_per_weight(1, 0.0, 1).is_err());
        assert!(ModelSpec::from_bits_per_weight(0, 16.0, 1).is_err());
    }
}
