//! Generates the permission set of the app's own commands (read from `src/lib.rs`'s handler
//! list, the one list of them), so that a capability can allow exactly the commands its window
//! uses.

include!("src/command_list.rs");

fn main() {
    // llama.cpp's shared libraries: beside the binary (a target folder) or in ../lib/canopy (the
    // Debian package). DT_RPATH rather than DT_RUNPATH: it also serves libllama's own dependencies.
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--disable-new-dtags,-rpath,$ORIGIN:$ORIGIN/../lib/canopy"
    );
    println!("cargo:rerun-if-changed=src/lib.rs");
    let lib_rs = match std::fs::read_to_string("src/lib.rs") {
        Ok(text) => text,
        Err(err) => {
            eprintln!("cannot read src/lib.rs for the command list: {err}");
            std::process::exit(1);
        }
    };
    // The manifest keeps the names for the whole build: a build script may leak them.
    let commands: Vec<&'static str> = handler_commands(&lib_rs)
        .into_iter()
        .map(|name| &*String::leak(name))
        .collect();
    let attributes = tauri_build::Attributes::new()
        .app_manifest(tauri_build::AppManifest::new().commands(commands.leak()));
    if let Err(err) = tauri_build::try_build(attributes) {
        eprintln!("tauri build step failed: {err:#}");
        std::process::exit(1);
    }
}
