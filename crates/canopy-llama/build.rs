//! Puts llama.cpp's shared libraries beside the binaries in the target folder, where `canopy`,
//! `canopy-app` and the test binaries find them (rpath `$ORIGIN`): libllama, libggml and
//! libggml-base under the names the binaries ask for (`libllama.so.0`), and the run-time-loaded
//! backends (`libggml-cpu-*.so`, `libggml-rpc.so`).
//!
//! llama-cpp-sys-2 links only the unversioned names there (`libllama.so`), which are symlinks to
//! the versioned ones, so they dangle until this script has run; and its build script, run again,
//! fails on a dangling one (`exists()` is false, the hard link finds the name taken). So every
//! versioned library it made is copied, wherever it puts the symlinks.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_BACKENDS_DIR");
    let Some(src) = std::env::var_os("DEP_LLAMA_BACKENDS_DIR").map(PathBuf::from) else {
        return;
    };
    println!("cargo:rerun-if-changed={}", src.display());
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let Some(profile_dir) = out.ancestors().nth(3) else {
        return;
    };
    let libs = src.parent().map(|out| out.join("lib"));
    if let Some(libs) = &libs {
        println!("cargo:rerun-if-changed={}", libs.display());
    }
    let wanted = [(src.clone(), is_backend as fn(&str) -> bool)]
        .into_iter()
        .chain(libs.map(|l| (l, is_soname as fn(&str) -> bool)));
    for (dir, keep) in wanted {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !keep(&name.to_string_lossy()) {
                continue;
            }
            // Symlinks are followed: the copy is the library itself.
            for to in [
                profile_dir.to_path_buf(),
                profile_dir.join("deps"),
                profile_dir.join("examples"),
            ] {
                if to.is_dir() {
                    copy_if_changed(&entry.path(), &to.join(&name));
                }
            }
        }
    }
}

/// `libggml-cpu-haswell.so`, `libggml-rpc.so`, …
fn is_backend(name: &str) -> bool {
    name.starts_with("libggml-") && name.ends_with(".so")
}

/// `libllama.so.0`, `libggml-base.so.0`, …: the names binaries record as needed.
fn is_soname(name: &str) -> bool {
    name.starts_with("lib")
        && name
            .split_once(".so.")
            .is_some_and(|(_, v)| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

fn copy_if_changed(from: &Path, to: &Path) {
    // `metadata` follows symlinks on both sides; a stale symlink at `to` is replaced by the rename.
    let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => a.len() == b.len() && a.modified().ok() == b.modified().ok(),
        _ => false,
    };
    if same(from, to) {
        return;
    }
    // Written beside and renamed, so a binary running meanwhile keeps its mapped copy.
    let tmp = to.with_extension("so.part");
    let copied = std::fs::copy(from, &tmp).and_then(|_| {
        let modified = std::fs::metadata(from)?.modified()?;
        std::fs::File::options()
            .write(true)
            .open(&tmp)?
            .set_modified(modified)?;
        std::fs::rename(&tmp, to)
    });
    if let Err(e) = copied {
        println!(
            "cargo:warning=could not copy {} to {}: {e}",
            from.display(),
            to.display()
        );
    }
}
