//! llama.cpp's backends, loaded at run time.
//!
//! Canopy links llama.cpp's core (libllama, libggml, libggml-base) and loads its backends as
//! plug-ins (`GGML_BACKEND_DL`): the CPU backend in every variant llama.cpp builds for x86-64
//! (`libggml-cpu-haswell.so`, `-skylakex`, `-zen4`, …), the RPC backend, and a GPU backend
//! (`libggml-cuda.so`) where one was installed beside them. One binary then runs on any x86-64
//! processor, with or without a GPU.
//!
//! The CPU variant is Canopy's choice, not ggml's: ggml scores the variants by CPUID alone, which
//! loads AMX or AVX-512 code into processes that may not execute it (see [`canopy_hw::cpu_variant`]).
//! Canopy loads the best variant this process may run by path, or the one `CANOPY_CPU_VARIANT`
//! names; off x86-64, ggml chooses.
//!
//! The backends are looked for in one folder, the first of these that holds a CPU backend:
//! `$CANOPY_BACKENDS_DIR`; the executable's folder (a build's target folder, the GPU kit);
//! `<executable>/../lib/canopy` (the Debian package); the folder llama-cpp-sys-2 built them into
//! (tests run from cargo). The current folder is never searched.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_sys_2 as sys;

/// What [`load`] found.
#[derive(Debug, Clone)]
pub struct Backends {
    /// The folder the backends were loaded from; `None` when no folder had a CPU backend.
    pub dir: Option<PathBuf>,
    /// The CPU variant loaded for this processor (`haswell`, `skylakex`, …), read from the
    /// library mapped into the process.
    pub cpu_variant: Option<String>,
    /// How the variant was chosen (x86-64): better variants skipped and why, or a forced one.
    pub choice: Option<canopy_hw::cpu_variant::VariantChoice>,
    /// Why no CPU backend could be loaded, when one was found but none may run (or
    /// `CANOPY_CPU_VARIANT` named one that cannot).
    pub error: Option<String>,
    /// The registered backends' names, the CPU first (`CPU`, `CUDA`, `RPC`, …).
    pub names: Vec<String>,
}

impl Backends {
    /// One line for users: `CPU (haswell), CUDA, RPC from /usr/lib/canopy`.
    #[must_use]
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .names
            .iter()
            .map(|n| match (n.as_str(), &self.cpu_variant, &self.choice) {
                ("CPU", Some(_), Some(choice)) => format!("CPU ({choice})"),
                ("CPU", Some(v), None) => format!("CPU ({v})"),
                _ => n.clone(),
            })
            .collect();
        match &self.dir {
            Some(dir) => format!("{} from {}", names.join(", "), dir.display()),
            None => "none".to_owned(),
        }
    }

    /// An error for users when there is no CPU backend to run on.
    ///
    /// # Errors
    /// When no CPU backend was loaded.
    pub fn require_cpu(&self) -> Result<(), String> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if self.names.iter().any(|n| n == "CPU") {
            return Ok(());
        }
        let exe = std::env::current_exe().map_or_else(
            |_| "the executable".into(),
            |p| {
                p.parent()
                    .map_or_else(|| p.display().to_string(), |d| d.display().to_string())
            },
        );
        Err(format!(
            "llama.cpp's CPU backend (libggml-cpu-*.so) was not found in {exe} or \
             {exe}/../lib/canopy: reinstall Canopy, or set CANOPY_BACKENDS_DIR to the folder \
             that holds it"
        ))
    }
}

/// Loads the backends once per process and says what was loaded.
pub fn load() -> &'static Backends {
    static LOADED: OnceLock<Backends> = OnceLock::new();
    LOADED.get_or_init(|| {
        // ggml reports each library it loads; users see only what Canopy says, and Canopy keeps
        // the lines that say where weights were put (see `buffer_lines`).
        // SAFETY: installs a callback with ggml's signature; ggml keeps it for the process.
        unsafe { sys::llama_log_set(Some(sink), std::ptr::null_mut()) };
        let dir = candidates()
            .into_iter()
            .find(|d| has_cpu_backend(d))
            .map(|d| d.canonicalize().unwrap_or(d));
        let (choice, error) = match &dir {
            Some(dir) => load_from(dir),
            None => (None, None),
        };
        // SAFETY: plain reads of ggml's backend registry.
        let count = unsafe { sys::ggml_backend_reg_count() };
        let mut names: Vec<String> = (0..count)
            .filter_map(|i| {
                // SAFETY: `i` is below the registry's count; names are static C strings.
                let name = unsafe { sys::ggml_backend_reg_name(sys::ggml_backend_reg_get(i)) };
                (!name.is_null()).then(|| {
                    // SAFETY: non-null, NUL-terminated, owned by the registry.
                    unsafe { std::ffi::CStr::from_ptr(name) }
                        .to_string_lossy()
                        .into_owned()
                })
            })
            .collect();
        // The CPU first, then the others in the order ggml registered them.
        names.sort_by_key(|n| n != "CPU");
        Backends {
            dir,
            cpu_variant: loaded_cpu_variant(),
            choice,
            error,
            names,
        }
    })
}

/// The backends ggml looks for besides the CPU's, in the order `ggml_backend_load_all` loads them.
const OTHER_BACKENDS: &[&str] = &[
    "blas", "zendnn", "cann", "cuda", "hip", "metal", "rpc", "sycl", "vulkan", "virtgpu", "opencl",
    "hexagon", "musa", "openvino",
];

/// Loads the backends in `dir`: on x86-64 the CPU variant Canopy chooses and every other backend
/// by path; elsewhere whatever ggml chooses.
fn load_from(
    dir: &Path,
) -> (
    Option<canopy_hw::cpu_variant::VariantChoice>,
    Option<String>,
) {
    if !cfg!(target_arch = "x86_64") {
        if let Some(c) = dir.to_str().and_then(|s| CString::new(s).ok()) {
            // SAFETY: a NUL-terminated path; ggml loads each backend's best library from it.
            unsafe { sys::ggml_backend_load_all_from_path(c.as_ptr()) };
        }
        return (None, None);
    }
    for name in OTHER_BACKENDS {
        let path = dir.join(format!("libggml-{name}.so"));
        if path.is_file() {
            load_library(&path);
        }
    }
    let installed = installed_cpu_variants(dir);
    if installed.is_empty() {
        // A build without variants has one CPU backend for the processor it was built for.
        let single = dir.join("libggml-cpu.so");
        return match load_library(&single) {
            true => (None, None),
            false => (
                None,
                Some(format!(
                    "llama.cpp's CPU backend {} did not load: reinstall Canopy",
                    single.display()
                )),
            ),
        };
    }
    // Asks for AMX before any CPU code is loaded.
    let features = canopy_hw::cpu_variant::Features::probe();
    let forced = std::env::var("CANOPY_CPU_VARIANT")
        .ok()
        .filter(|v| !v.is_empty());
    match canopy_hw::cpu_variant::choose(&installed, &features, forced.as_deref()) {
        Ok(choice) => {
            let error = match &choice.variant {
                Some(variant) => {
                    let path = dir.join(format!("libggml-cpu-{variant}.so"));
                    (!load_library(&path)).then(|| {
                        format!(
                            "llama.cpp's CPU backend {} did not load: reinstall Canopy, or set \
                             CANOPY_CPU_VARIANT to another variant",
                            path.display()
                        )
                    })
                }
                None => Some(format!(
                    "none of llama.cpp's CPU backends in {} runs on this processor ({}): \
                     reinstall Canopy",
                    dir.display(),
                    choice
                        .skipped
                        .iter()
                        .map(|s| format!("{}: {}", s.variant, s.why))
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
            };
            (Some(choice), error)
        }
        Err(e) => (None, Some(e)),
    }
}

/// Loads and registers one backend library; false when ggml refused it.
fn load_library(path: &Path) -> bool {
    let Some(c) = path.to_str().and_then(|s| CString::new(s).ok()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path of a ggml backend library; ggml registers it on success and
    // returns null (having checked its score) otherwise.
    !unsafe { sys::ggml_backend_load(c.as_ptr()) }.is_null()
}

/// The CPU variants installed in `dir` (`haswell` for `libggml-cpu-haswell.so`).
fn installed_cpu_variants(dir: &Path) -> Vec<String> {
    let mut variants: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("libggml-cpu-")
                        .and_then(|v| v.strip_suffix(".so"))
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    variants.sort();
    variants
}

/// Where llama.cpp's log goes: nowhere (the default), standard error (`CANOPY_LLAMA_LOG=1`), or
/// appended to a file (`CANOPY_LLAMA_LOG=/absolute/path`).
enum LogTarget {
    Quiet,
    Stderr,
    File(std::sync::Mutex<std::fs::File>),
}

fn log_target() -> &'static LogTarget {
    static TARGET: OnceLock<LogTarget> = OnceLock::new();
    TARGET.get_or_init(|| match std::env::var_os("CANOPY_LLAMA_LOG") {
        None => LogTarget::Quiet,
        Some(v) if Path::new(&v).is_absolute() => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&v)
            .map_or(LogTarget::Stderr, |f| {
                LogTarget::File(std::sync::Mutex::new(f))
            }),
        Some(_) => LogTarget::Stderr,
    })
}

/// At most this many log lines about buffers are kept.
const BUFFER_LINES: usize = 256;

fn kept_lines() -> &'static std::sync::Mutex<Vec<String>> {
    static KEPT: OnceLock<std::sync::Mutex<Vec<String>>> = OnceLock::new();
    KEPT.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

/// llama.cpp's log lines since the last call that say where weights and caches were put
/// ("CUDA_Host model buffer size = …") or that pinning host memory failed, in order (at most
/// 256 are kept between calls).
pub fn take_buffer_lines() -> Vec<String> {
    std::mem::take(&mut *kept_lines().lock().unwrap_or_else(|p| p.into_inner()))
}

/// Where the weights went, from the [`take_buffer_lines`] logged while one model loaded: MiB per kind
/// of buffer ("CUDA_Host model buffer size = 16745.03 MiB" is pinned host memory), and whether
/// pinning failed (llama.cpp then falls back to plain host memory and says so at debug level).
pub fn weight_buffers(lines: &[String]) -> canopy_worker::WeightBuffers {
    let mut w = canopy_worker::WeightBuffers::default();
    for line in lines {
        if line.contains("pinned memory") && line.contains("failed") {
            w.pinning_failed = true;
            continue;
        }
        let Some((head, size)) = line.split_once(" model buffer size =") else {
            continue;
        };
        let Some(mib) = size
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f32>().ok())
        else {
            continue;
        };
        let kind = head.split_whitespace().last().unwrap_or_default();
        if kind == "CUDA_Host" {
            w.pinned_mib += mib;
        } else if kind.starts_with("CPU") || kind == "AMX" {
            w.pageable_mib += mib;
            if kind == "AMX" || kind == "CPU_REPACK" {
                w.repacked_mib += mib;
            }
        } else {
            w.device_mib += mib;
        }
    }
    w
}

/// Whether a log line is one [`take_buffer_lines`] keeps.
fn is_buffer_line(line: &str) -> bool {
    line.contains("buffer size") || line.contains("pinned memory")
}

/// At most this many of llama.cpp's error lines are kept between calls of [`take_error_lines`].
const ERROR_LINES: usize = 64;

fn error_lines() -> &'static std::sync::Mutex<Vec<String>> {
    static KEPT: OnceLock<std::sync::Mutex<Vec<String>>> = OnceLock::new();
    KEPT.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

/// llama.cpp's error lines since the last call (at most 64), such as "cudaMalloc failed: out of
/// memory" from a model or context that did not fit on the GPU.
pub fn take_error_lines() -> Vec<String> {
    std::mem::take(&mut *error_lines().lock().unwrap_or_else(|p| p.into_inner()))
}

/// Whether llama.cpp's error lines say that a device's memory ran out.
pub fn says_out_of_memory(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("out of memory") || l.contains("failed to allocate")
    })
}

/// Whether the line being logged continues an error (ggml logs a message's later lines as
/// `GGML_LOG_LEVEL_CONT`).
static IN_ERROR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

unsafe extern "C" fn sink(
    level: sys::ggml_log_level,
    text: *const std::os::raw::c_char,
    _user_data: *mut std::os::raw::c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: ggml passes a NUL-terminated string that lives for the call.
    let text = unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy();
    if is_buffer_line(&text) {
        let mut kept = kept_lines().lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < BUFFER_LINES {
            kept.push(text.trim_end().to_owned());
        }
    }
    use std::sync::atomic::Ordering;
    let error = match level {
        sys::GGML_LOG_LEVEL_ERROR => true,
        sys::GGML_LOG_LEVEL_CONT => IN_ERROR.load(Ordering::Relaxed),
        _ => false,
    };
    IN_ERROR.store(error, Ordering::Relaxed);
    if error {
        let mut kept = error_lines().lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= ERROR_LINES {
            kept.remove(0);
        }
        kept.push(text.trim_end().to_owned());
    }
    match log_target() {
        // Errors still reach stderr, which the supervisor keeps: when llama.cpp aborts (CUDA out
        // of memory mid-pass), the error it logged first is what says why.
        LogTarget::Quiet if error => eprint!("{text}"),
        LogTarget::Quiet => {}
        LogTarget::Stderr => eprint!("{text}"),
        LogTarget::File(f) => {
            use std::io::Write;
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// The folders to look in, in order.
fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("CANOPY_BACKENDS_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.clone());
        dirs.push(exe_dir.join("../lib/canopy"));
    }
    if let Some(dir) = sys::BACKENDS_DIR {
        dirs.push(PathBuf::from(dir));
    }
    dirs
}

fn has_cpu_backend(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libggml-cpu") && name.ends_with(".so")
        })
    })
}

/// The variant in the name of the CPU backend library mapped into this process.
fn loaded_cpu_variant() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let file = line.rsplit('/').next()?;
        let variant = file.strip_prefix("libggml-cpu")?.strip_suffix(".so")?;
        Some(variant.strip_prefix('-').unwrap_or("generic").to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_cpu_backend_and_names_its_variant() {
        let b = load();
        assert!(b.require_cpu().is_ok(), "{b:?}");
        assert!(b.names.iter().any(|n| n == "RPC"), "{b:?}");
        let variant = b.cpu_variant.as_deref().expect("a CPU variant");
        assert!(!variant.is_empty());
        assert!(b.describe().starts_with("CPU ("), "{}", b.describe());
    }

    #[test]
    fn weight_buffers_are_read_from_llama_cpp_log_lines() {
        // The H200 run's `layers:45` target, and the CPU backend's own lines.
        let lines: Vec<String> = [
            "load_tensors:        CUDA0 model buffer size = 20418.56 MiB",
            "load_tensors:    CUDA_Host model buffer size = 16745.03 MiB",
            "llama_kv_cache:        CPU KV buffer size =     0.62 MiB",
        ]
        .map(String::from)
        .to_vec();
        let w = weight_buffers(&lines);
        assert_eq!(
            (w.device_mib, w.pinned_mib, w.pageable_mib),
            (20418.56, 16745.03, 0.0)
        );
        assert!(!w.pinning_failed && w.pageable_warning().is_none());

        let failed: Vec<String> = [
            "ggml_cuda_host_malloc: failed to allocate 16745.03 MiB of pinned memory: out of memory",
            "load_tensors:          CPU model buffer size = 16745.03 MiB",
            "load_tensors:        CUDA0 model buffer size = 20418.56 MiB",
        ]
        .map(String::from)
        .to_vec();
        let w = weight_buffers(&failed);
        assert!(w.pinning_failed);
        assert_eq!(w.pageable_mib, 16745.03);
        let warning = w.pageable_warning().unwrap();
        assert!(
            warning.contains("16.4 GiB") && warning.contains("pageable"),
            "{warning}"
        );
    }

    #[test]
    fn loading_a_model_on_the_cpu_logs_its_buffers() {
        // On the CPU backend the weights are in plain host memory, never pinned.
        let Some(model) = std::env::var_os("CANOPY_TEST_MODELS")
            .map(|d| Path::new(&d).join("SmolLM2-135M-Instruct.Q4_1.gguf"))
            .filter(|p| p.is_file())
        else {
            return;
        };
        let mut engine = crate::Engine::new().unwrap();
        let w = engine.load_for_test(&model);
        let lines = format!("{w:?}");
        assert!(w.pageable_mib > 50.0, "{lines:?}");
        assert_eq!(w.pinned_mib, 0.0, "{lines:?}");
        assert!(!w.pinning_failed);
    }

    #[test]
    fn the_search_order_ends_with_the_build_folder() {
        let dirs = candidates();
        assert_eq!(
            dirs.last().map(PathBuf::as_path),
            sys::BACKENDS_DIR.map(Path::new)
        );
        assert!(!dirs.iter().any(|d| d == Path::new(".")));
    }
}
