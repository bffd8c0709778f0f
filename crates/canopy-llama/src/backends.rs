//! llama.cpp's backends, loaded at run time.
//!
//! Canopy links llama.cpp's core (libllama, libggml, libggml-base) and loads its backends as
//! plug-ins (`GGML_BACKEND_DL`): the CPU backend in every variant llama.cpp builds for x86-64
//! (`libggml-cpu-haswell.so`, `-skylakex`, `-zen4`, …), of which ggml loads the best one this
//! processor runs, the RPC backend, and a GPU backend (`libggml-cuda.so`) where one was installed
//! beside them. One binary then runs on any x86-64 processor, with or without a GPU.
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
    /// The CPU variant ggml chose for this processor (`haswell`, `skylakex`, …), read from the
    /// library it loaded.
    pub cpu_variant: Option<String>,
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
            .map(|n| match (n.as_str(), &self.cpu_variant) {
                ("CPU", Some(v)) => format!("CPU ({v})"),
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
        if std::env::var_os("CANOPY_LLAMA_LOG").is_none() {
            // ggml reports each library it loads; users see only what Canopy says.
            // SAFETY: installs a callback that ignores its arguments; ggml keeps it for the process.
            unsafe { sys::llama_log_set(Some(quiet), std::ptr::null_mut()) };
        }
        let dir = candidates()
            .into_iter()
            .find(|d| has_cpu_backend(d))
            .map(|d| d.canonicalize().unwrap_or(d));
        if let Some(dir) = &dir {
            if let Some(c) = dir.to_str().and_then(|s| CString::new(s).ok()) {
                // SAFETY: a NUL-terminated path; ggml loads each backend's best library from it.
                unsafe { sys::ggml_backend_load_all_from_path(c.as_ptr()) };
            }
        }
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
            names,
        }
    })
}

unsafe extern "C" fn quiet(
    _level: sys::ggml_log_level,
    _text: *const std::os::raw::c_char,
    _user_data: *mut std::os::raw::c_void,
) {
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
    fn the_search_order_ends_with_the_build_folder() {
        let dirs = candidates();
        assert_eq!(
            dirs.last().map(PathBuf::as_path),
            sys::BACKENDS_DIR.map(Path::new)
        );
        assert!(!dirs.iter().any(|d| d == Path::new(".")));
    }
}
