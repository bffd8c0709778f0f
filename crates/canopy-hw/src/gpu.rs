//! GPU facts and transfer bandwidths through the CUDA driver API.
//!
//! With the `cuda` feature the driver library (libcuda) is loaded at run time: building needs no CUDA
//! toolkit, and a machine without a driver or a GPU gets [`GpuStatus::NotFound`] rather than a crash.
//! Without the feature every probe answers [`GpuStatus::NotBuilt`].

use serde::{Deserialize, Serialize};

use crate::{HwError, Spread};

/// What the profiler found out about the GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GpuStatus {
    /// This build of Canopy was compiled without CUDA support.
    NotBuilt,
    /// CUDA support is built in, but no usable CUDA GPU is present; `reason` says why.
    NotFound { reason: String },
    /// The GPU used for speculation (device 0).
    Found(Box<GpuInfo>),
}

impl GpuStatus {
    /// One line for people: "NVIDIA GeForce RTX 4090 (compute 8.9, 24.0 GB)", "no CUDA GPU found: ...",
    /// or "this build has no CUDA support".
    pub fn summary(&self) -> String {
        match self {
            GpuStatus::NotBuilt => "this build has no CUDA support".to_owned(),
            GpuStatus::NotFound { reason } => format!("no CUDA GPU found: {reason}"),
            GpuStatus::Found(info) => format!(
                "{} (compute {}.{}, {:.1} GB)",
                info.facts.name,
                info.facts.compute_capability.major,
                info.facts.compute_capability.minor,
                info.facts.vram_total_bytes as f64 / 1e9
            ),
        }
    }

    /// The GPU's facts and bandwidths, if one was found.
    pub fn info(&self) -> Option<&GpuInfo> {
        match self {
            GpuStatus::Found(info) => Some(info),
            _ => None,
        }
    }
}

/// A GPU's facts and, when measured, its bandwidths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub facts: GpuFacts,
    /// `None` in reference profiles and when bandwidths were not measured.
    pub bandwidths: Option<GpuBandwidths>,
    /// Names of any further CUDA devices (Canopy uses device 0).
    #[serde(default)]
    pub other_devices: Vec<String>,
}

/// A CUDA compute capability such as 8.9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeCapability {
    pub major: u32,
    pub minor: u32,
}

/// Static facts about one GPU, as reported by the driver (or taken from vendor specs in a reference profile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuFacts {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: ComputeCapability,
    pub vram_total_bytes: u64,
    /// Free device memory at the time of profiling; `None` in reference profiles.
    pub vram_free_bytes: Option<u64>,
    pub multiprocessors: Option<u32>,
    /// Peak (boost) core clock in MHz.
    pub clock_mhz: Option<u32>,
    /// Memory bus width in bits and peak memory clock in MHz, from which the theoretical bandwidth follows.
    pub memory_bus_bits: Option<u32>,
    pub memory_clock_mhz: Option<u32>,
    /// Theoretical device memory bandwidth in GB/s (2 transfers per memory clock × bus width).
    pub theoretical_memory_gb_per_s: Option<f64>,
    /// Peak dense FP16 tensor throughput (FP32 accumulate) in TFLOP/s, estimated from the SM count,
    /// the clock and the per-SM rate of this compute capability; see [`peak_fp16_tensor_tflops`].
    pub peak_fp16_tflops: Option<f64>,
}

/// Bandwidth at one transfer size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandwidthPoint {
    pub bytes: u64,
    /// GB/s (10^9 bytes per second).
    pub gb_per_s: Spread,
}

/// Measured transfer bandwidths of one GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuBandwidths {
    /// Host→device from page-locked (pinned) host memory, one point per transfer size.
    pub h2d_pinned: Vec<BandwidthPoint>,
    /// Host→device from ordinary (pageable) host memory.
    pub h2d_pageable: Vec<BandwidthPoint>,
    pub d2h_pinned: Vec<BandwidthPoint>,
    pub d2h_pageable: Vec<BandwidthPoint>,
    /// Device-to-device copy, counting bytes read plus bytes written (≈ device memory bandwidth).
    pub d2d: BandwidthPoint,
}

impl GpuBandwidths {
    /// Median pinned host→device bandwidth at the largest size measured (what weight streaming gets).
    pub fn h2d_pinned_gb_per_s(&self) -> Option<f64> {
        largest(&self.h2d_pinned)
    }

    /// Median pageable host→device bandwidth at the largest size measured.
    pub fn h2d_pageable_gb_per_s(&self) -> Option<f64> {
        largest(&self.h2d_pageable)
    }
}

fn largest(points: &[BandwidthPoint]) -> Option<f64> {
    points
        .iter()
        .max_by_key(|p| p.bytes)
        .map(|p| p.gb_per_s.median)
}

/// How the GPU is measured.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuProbeOptions {
    /// Transfer sizes in bytes.
    pub sizes: Vec<usize>,
    /// Timed transfers per size and kind (after one untimed warm-up).
    pub repeats: usize,
    /// Measure bandwidths at all (false: facts only).
    pub measure_bandwidth: bool,
}

impl GpuProbeOptions {
    /// 16 and 64 MiB, 3 repeats.
    pub fn quick() -> Self {
        GpuProbeOptions {
            sizes: vec![16 << 20, 64 << 20],
            repeats: 3,
            measure_bandwidth: true,
        }
    }

    /// 1, 16, 64 and 256 MiB, 5 repeats.
    pub fn full() -> Self {
        GpuProbeOptions {
            sizes: vec![1 << 20, 16 << 20, 64 << 20, 256 << 20],
            repeats: 5,
            measure_bandwidth: true,
        }
    }
}

/// Looks for a CUDA GPU and, if one is found and `opts.measure_bandwidth`, measures its bandwidths.
/// `progress(done, total)` is called after each timed or warm-up transfer.
///
/// "No driver", "no device" and "built without CUDA" are not errors: they are answered as
/// [`GpuStatus::NotFound`] or [`GpuStatus::NotBuilt`]. Fails with [`HwError::InvalidSetting`] for an
/// empty size list or zero repeats, and with [`HwError::Cuda`] when a driver call fails after a
/// device was found (out of device memory, say).
pub fn probe_gpu(
    opts: &GpuProbeOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<GpuStatus, HwError> {
    if opts.measure_bandwidth && (opts.sizes.is_empty() || opts.repeats == 0) {
        return Err(HwError::InvalidSetting(
            "GPU bandwidth needs at least one transfer size and one repeat".into(),
        ));
    }
    if opts.sizes.contains(&0) {
        return Err(HwError::InvalidSetting("a transfer size of 0 bytes".into()));
    }
    probe_impl(opts, progress)
}

#[cfg(not(feature = "cuda"))]
fn probe_impl(
    _opts: &GpuProbeOptions,
    _progress: &mut dyn FnMut(usize, usize),
) -> Result<GpuStatus, HwError> {
    Ok(GpuStatus::NotBuilt)
}

#[cfg(feature = "cuda")]
fn probe_impl(
    opts: &GpuProbeOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<GpuStatus, HwError> {
    cuda::probe(opts, progress)
}

/// Peak dense FP16 tensor-core throughput with FP32 accumulation, in TFLOP/s:
/// `SMs × clock × FLOP per SM per clock`, where the per-SM rate depends on the compute capability
/// (512 for GeForce Turing/Ampere/Ada/Blackwell 7.5/8.6/8.9/12.x, 1024 for Volta 7.0, 2048 for
/// A100 8.0, 4096 for Hopper 9.0, 8192 for Blackwell datacenter 10.x; 512 when unknown).
/// Checks: RTX 4090 128 SMs × 2520 MHz × 512 = 165.2; RTX 3090 82 × 1695 × 512 = 71.2;
/// RTX 2080 Ti 68 × 1545 × 512 = 53.8; RTX 5090 170 × 2407 × 512 = 209.5 (the vendors' figures).
pub fn peak_fp16_tensor_tflops(cc: ComputeCapability, multiprocessors: u32, clock_mhz: u32) -> f64 {
    let per_sm_per_clock = match (cc.major, cc.minor) {
        (7, 0) | (7, 2) => 1024.0,
        (8, 0) => 2048.0,
        (9, _) => 4096.0,
        (10, _) => 8192.0,
        _ => 512.0,
    };
    multiprocessors as f64 * clock_mhz as f64 * 1e6 * per_sm_per_clock / 1e12
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::sync::Arc;
    use std::time::Instant;

    use cudarc::driver::{sys, CudaContext, CudaStream, DriverError};

    use super::*;

    fn cuda_err(action: &'static str) -> impl FnOnce(DriverError) -> HwError {
        move |e| HwError::Cuda {
            action,
            message: format!("{e:?}"),
        }
    }

    pub(super) fn probe(
        opts: &GpuProbeOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<GpuStatus, HwError> {
        // SAFETY: only tries to open the driver library by its usual names.
        if !unsafe { sys::is_culib_present() } {
            return Ok(GpuStatus::NotFound {
                reason: "the NVIDIA driver library (libcuda) is not installed or not on the library path"
                    .into(),
            });
        }
        // The dynamic loader panics on a missing symbol (a driver older than CUDA 12.0); turn that
        // into an answer rather than a crash.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            probe_loaded(opts, progress)
        })) {
            Ok(result) => result,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "unknown failure".into());
                Ok(GpuStatus::NotFound {
                    reason: format!("the CUDA driver could not be used ({message}); Canopy needs a driver for CUDA 12.0 or newer"),
                })
            }
        }
    }

    fn probe_loaded(
        opts: &GpuProbeOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<GpuStatus, HwError> {
        if let Err(e) = cudarc::driver::result::init() {
            return Ok(GpuStatus::NotFound {
                reason: format!("the CUDA driver did not initialise ({e:?})"),
            });
        }
        let count = match CudaContext::device_count() {
            Ok(n) => n,
            Err(e) => {
                return Ok(GpuStatus::NotFound {
                    reason: format!("the CUDA driver could not count devices ({e:?})"),
                })
            }
        };
        if count <= 0 {
            return Ok(GpuStatus::NotFound {
                reason: "the CUDA driver reports no devices".into(),
            });
        }
        let ctx = CudaContext::new(0).map_err(cuda_err("opening device 0"))?;
        let facts = facts(&ctx)?;
        let mut other_devices = Vec::new();
        for ordinal in 1..count {
            if let Ok(dev) = cudarc::driver::result::device::get(ordinal) {
                if let Ok(name) = cudarc::driver::result::device::get_name(dev) {
                    other_devices.push(name);
                }
            }
        }
        let bandwidths = if opts.measure_bandwidth {
            Some(bandwidths(&ctx, opts, progress)?)
        } else {
            None
        };
        Ok(GpuStatus::Found(Box::new(GpuInfo {
            facts,
            bandwidths,
            other_devices,
        })))
    }

    fn facts(ctx: &Arc<CudaContext>) -> Result<GpuFacts, HwError> {
        use sys::CUdevice_attribute as A;
        let name = ctx.name().map_err(cuda_err("reading the device name"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(cuda_err("reading the compute capability"))?;
        let total = ctx
            .total_mem()
            .map_err(cuda_err("reading the device memory size"))?;
        let free = ctx.mem_get_info().ok().map(|(free, _)| free as u64);
        let attr = |a| ctx.attribute(a).ok().and_then(|v| u32::try_from(v).ok());
        let multiprocessors = attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        // The driver reports clocks in kHz.
        let clock_mhz = attr(A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE).map(|k| k / 1000);
        let memory_clock_mhz = attr(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE).map(|k| k / 1000);
        let memory_bus_bits = attr(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH);
        let cc = ComputeCapability {
            major: major.max(0) as u32,
            minor: minor.max(0) as u32,
        };
        let theoretical_memory_gb_per_s = match (memory_clock_mhz, memory_bus_bits) {
            (Some(clock), Some(bits)) => Some(2.0 * clock as f64 * 1e6 * bits as f64 / 8.0 / 1e9),
            _ => None,
        };
        let peak_fp16_tflops = match (multiprocessors, clock_mhz) {
            (Some(sms), Some(clock)) => Some(peak_fp16_tensor_tflops(cc, sms, clock)),
            _ => None,
        };
        Ok(GpuFacts {
            ordinal: 0,
            name,
            compute_capability: cc,
            vram_total_bytes: total as u64,
            vram_free_bytes: free,
            multiprocessors,
            clock_mhz,
            memory_bus_bits,
            memory_clock_mhz,
            theoretical_memory_gb_per_s,
            peak_fp16_tflops,
        })
    }

    #[derive(Clone, Copy)]
    enum Kind {
        H2dPinned,
        H2dPageable,
        D2hPinned,
        D2hPageable,
    }

    fn bandwidths(
        ctx: &Arc<CudaContext>,
        opts: &GpuProbeOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<GpuBandwidths, HwError> {
        let stream = ctx.new_stream().map_err(cuda_err("creating a stream"))?;
        let max = opts.sizes.iter().copied().max().unwrap_or(1 << 20);
        let per_size = opts.repeats + 1;
        let total = 4 * opts.sizes.len() * per_size + per_size;
        let mut done = 0;
        let mut tick = |progress: &mut dyn FnMut(usize, usize)| {
            done += 1;
            progress(done, total);
        };

        // SAFETY: the pinned buffer is written (zeroed) below before any read.
        let mut pinned = unsafe { ctx.alloc_pinned_with_flags::<u8>(max, 0) }
            .map_err(cuda_err("allocating pinned host memory"))?;
        pinned
            .as_mut_slice()
            .map_err(cuda_err("mapping pinned host memory"))?
            .fill(0x5a);
        let mut pageable = vec![0x5au8; max];
        let mut device = stream
            .alloc_zeros::<u8>(max)
            .map_err(cuda_err("allocating device memory"))?;

        let mut out: [Vec<BandwidthPoint>; 4] = Default::default();
        for (slot, kind) in [
            Kind::H2dPinned,
            Kind::H2dPageable,
            Kind::D2hPinned,
            Kind::D2hPageable,
        ]
        .into_iter()
        .enumerate()
        {
            for &size in &opts.sizes {
                let mut samples = Vec::with_capacity(opts.repeats);
                for step in 0..per_size {
                    let start = Instant::now();
                    let mut dst = device.slice_mut(0..size);
                    match kind {
                        Kind::H2dPinned => {
                            let src = pinned
                                .as_slice()
                                .map_err(cuda_err("mapping pinned host memory"))?;
                            stream.memcpy_htod(&src[..size], &mut dst)
                        }
                        Kind::H2dPageable => stream.memcpy_htod(&pageable[..size], &mut dst),
                        Kind::D2hPinned => {
                            let host = pinned
                                .as_mut_slice()
                                .map_err(cuda_err("mapping pinned host memory"))?;
                            stream.memcpy_dtoh(&dst, &mut host[..size])
                        }
                        Kind::D2hPageable => stream.memcpy_dtoh(&dst, &mut pageable[..size]),
                    }
                    .map_err(cuda_err("copying between host and device"))?;
                    sync(&stream)?;
                    let seconds = start.elapsed().as_secs_f64();
                    if step > 0 {
                        samples.push(size as f64 / seconds.max(1e-9) / 1e9);
                    }
                    tick(progress);
                }
                out[slot].push(point(size, &samples)?);
            }
        }

        // Device-to-device: copy the first half of a buffer onto the second half.
        let half = (max / 2).max(1);
        let mut samples = Vec::with_capacity(opts.repeats);
        for step in 0..per_size {
            let (src, mut dst) = device.split_at_mut(half);
            let len = src.len().min(dst.len());
            let start = Instant::now();
            stream
                .memcpy_dtod(&src.slice(0..len), &mut dst.slice_mut(0..len))
                .map_err(cuda_err("copying within the device"))?;
            sync(&stream)?;
            let seconds = start.elapsed().as_secs_f64();
            if step > 0 {
                samples.push(2.0 * len as f64 / seconds.max(1e-9) / 1e9);
            }
            tick(progress);
        }
        let d2d = point(half, &samples)?;
        let [h2d_pinned, h2d_pageable, d2h_pinned, d2h_pageable] = out;
        Ok(GpuBandwidths {
            h2d_pinned,
            h2d_pageable,
            d2h_pinned,
            d2h_pageable,
            d2d,
        })
    }

    fn sync(stream: &Arc<CudaStream>) -> Result<(), HwError> {
        stream.synchronize().map_err(cuda_err("waiting for a copy"))
    }

    fn point(size: usize, samples: &[f64]) -> Result<BandwidthPoint, HwError> {
        Ok(BandwidthPoint {
            bytes: size as u64,
            gb_per_s: Spread::from_samples(samples).ok_or_else(|| HwError::Cuda {
                action: "timing a copy",
                message: "no finite sample".into(),
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_peaks_match_vendor_figures() {
        let cc = |major, minor| ComputeCapability { major, minor };
        let close = |a: f64, b: f64| (a - b).abs() < 0.2;
        assert!(close(peak_fp16_tensor_tflops(cc(8, 9), 128, 2520), 165.2));
        assert!(close(peak_fp16_tensor_tflops(cc(8, 6), 82, 1695), 71.2));
        assert!(close(peak_fp16_tensor_tflops(cc(7, 5), 68, 1545), 53.8));
        assert!(close(peak_fp16_tensor_tflops(cc(12, 0), 170, 2407), 209.5));
    }

    #[test]
    fn summaries() {
        assert_eq!(
            GpuStatus::NotBuilt.summary(),
            "this build has no CUDA support"
        );
        let s = GpuStatus::NotFound { reason: "x".into() };
        assert_eq!(s.summary(), "no CUDA GPU found: x");
    }
}
