//! Lets `canopy` find llama.cpp's shared libraries beside itself (a target folder, the GPU kit) or
//! in `../lib/canopy` (the Debian package), wherever it is installed.

fn main() {
    // DT_RPATH rather than DT_RUNPATH: it also serves libllama's own dependencies (libggml*).
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--disable-new-dtags,-rpath,$ORIGIN:$ORIGIN/../lib/canopy"
    );
}
