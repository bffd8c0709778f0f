//! Facts about this machine (through `sysinfo`) and its host memory bandwidth (measured).

use std::time::Instant;

use serde::{Deserialize, Serialize};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use crate::{HwError, Spread};

/// What the operating system says about this machine's processor, memory and itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemFacts {
    /// The processor's brand string, e.g. "AMD Ryzen 9 7950X 16-Core Processor".
    pub cpu_model: String,
    /// The instruction set architecture, e.g. "x86_64".
    pub cpu_arch: String,
    /// Physical cores, when the platform reports them.
    pub physical_cores: Option<usize>,
    /// Logical processors (hardware threads) this process can see.
    pub logical_cores: usize,
    /// The reported processor frequency in MHz, when known.
    pub cpu_frequency_mhz: Option<u64>,
    pub ram_total_bytes: u64,
    /// Memory the OS could give to new allocations without swapping, at the time of profiling.
    pub ram_available_bytes: u64,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: Option<String>,
    /// llama.cpp's x86-64 CPU variant the worker loads here (`zen4`, `sapphirerapids`, …; see
    /// [`crate::cpu_variant`]): kernels differ between variants, and so do pass times and results.
    /// `None` off x86-64 and in profiles written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_variant: Option<String>,
}

/// Reads this machine's facts. Cannot fail: what the platform does not report is `None` or "unknown".
pub fn system_facts() -> SystemFacts {
    let sys = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_frequency())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    let cpus = sys.cpus();
    let cpu_model = cpus
        .first()
        .map(|c| c.brand().trim().to_owned())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    let frequency = cpus.first().map(|c| c.frequency()).filter(|f| *f > 0);
    let logical = if cpus.is_empty() {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cpus.len()
    };
    SystemFacts {
        cpu_model,
        cpu_arch: System::cpu_arch(),
        physical_cores: System::physical_core_count(),
        logical_cores: logical,
        cpu_frequency_mhz: frequency,
        ram_total_bytes: sys.total_memory(),
        ram_available_bytes: sys.available_memory(),
        os_name: System::name().unwrap_or_else(|| std::env::consts::OS.to_owned()),
        os_version: System::long_os_version()
            .or_else(System::os_version)
            .unwrap_or_else(|| "unknown".to_owned()),
        kernel_version: System::kernel_version(),
        cpu_variant: crate::cpu_variant::expected(),
    }
}

/// How host memory bandwidth is measured.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBandwidthOptions {
    /// Size of the source (and of the destination) buffer. Should be far larger than the caches.
    pub buffer_bytes: usize,
    /// Timed copies (after one untimed warm-up copy).
    pub repeats: usize,
    /// Threads copying disjoint slices at once (llama.cpp's CPU path reads weights with all cores).
    pub threads: usize,
}

impl HostBandwidthOptions {
    /// 64 MiB buffers, 3 repeats: a few hundred milliseconds.
    pub fn quick(threads: usize) -> Self {
        HostBandwidthOptions {
            buffer_bytes: 64 << 20,
            repeats: 3,
            threads: threads.max(1),
        }
    }

    /// 512 MiB buffers, 7 repeats.
    pub fn full(threads: usize) -> Self {
        HostBandwidthOptions {
            buffer_bytes: 512 << 20,
            repeats: 7,
            threads: threads.max(1),
        }
    }
}

/// Measured host memory bandwidth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostBandwidth {
    pub buffer_bytes: u64,
    pub threads: usize,
    /// Copy bandwidth in GB/s (10^9 bytes per second), counting the bytes read plus the bytes written
    /// (the STREAM "copy" convention), which approximates how fast the cores can read weights.
    pub copy_gb_per_s: Spread,
}

/// Measures host memory bandwidth by copying a large buffer with `threads` threads, reporting the
/// median and spread of `repeats` timed copies. `progress(done, total)` is called after each copy.
///
/// Fails with [`HwError::InvalidSetting`] for zero repeats or a buffer under 1 MiB, and with
/// [`HwError::HostAlloc`] when the buffers cannot be allocated.
pub fn measure_host_bandwidth(
    opts: &HostBandwidthOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<HostBandwidth, HwError> {
    if opts.repeats == 0 {
        return Err(HwError::InvalidSetting(
            "host bandwidth needs at least one repeat".into(),
        ));
    }
    if opts.buffer_bytes < (1 << 20) {
        return Err(HwError::InvalidSetting(format!(
            "a host bandwidth buffer of {} bytes is too small to leave the caches (use at least 1 MiB)",
            opts.buffer_bytes
        )));
    }
    let threads = opts.threads.max(1);
    let src = filled_buffer(opts.buffer_bytes, 0x5a)?;
    let mut dst = filled_buffer(opts.buffer_bytes, 0)?;
    let chunk = opts.buffer_bytes.div_ceil(threads);
    let total = opts.repeats + 1;
    let mut samples = Vec::with_capacity(opts.repeats);
    for step in 0..total {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for (d, s) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
                scope.spawn(move || d.copy_from_slice(s));
            }
        });
        let seconds = start.elapsed().as_secs_f64();
        std::hint::black_box(&mut dst);
        if step > 0 {
            samples.push(2.0 * opts.buffer_bytes as f64 / seconds.max(1e-9) / 1e9);
        }
        progress(step + 1, total);
    }
    let copy_gb_per_s = Spread::from_samples(&samples).ok_or_else(|| {
        HwError::InvalidSetting("host bandwidth produced no finite sample".into())
    })?;
    Ok(HostBandwidth {
        buffer_bytes: opts.buffer_bytes as u64,
        threads,
        copy_gb_per_s,
    })
}

/// A buffer of `len` bytes, every page written (so the copy measures memory, not page faults).
fn filled_buffer(len: usize, byte: u8) -> Result<Vec<u8>, HwError> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| HwError::HostAlloc { bytes: len })?;
    buf.resize(len, byte);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_settings() {
        let mut opts = HostBandwidthOptions::quick(1);
        opts.repeats = 0;
        assert!(matches!(
            measure_host_bandwidth(&opts, &mut |_, _| {}),
            Err(HwError::InvalidSetting(_))
        ));
        let mut opts = HostBandwidthOptions::quick(1);
        opts.buffer_bytes = 4096;
        assert!(matches!(
            measure_host_bandwidth(&opts, &mut |_, _| {}),
            Err(HwError::InvalidSetting(_))
        ));
    }
}
