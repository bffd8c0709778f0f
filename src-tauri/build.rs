//! Generates the permission set of the app's own commands, so that a capability can allow
//! exactly the commands its window uses.

const COMMANDS: &[&str] = &[
    "app_info",
    "list_conversations",
    "search_messages",
    "create_conversation",
    "set_conversation_models",
    "placement_preview",
    "rename_conversation",
    "delete_conversation",
    "conversation_messages",
    "add_user_message",
    "generate_reply",
    "stop_generation",
    "restart_worker",
    "load_settings",
    "save_settings",
    "get_model_pair",
    "set_model_pair",
    "list_models",
    "library_usage",
    "import_model",
    "scan_models",
    "remove_model",
    "inspect_model",
    "model_pairings",
    "model_catalog",
    "download_model",
    "cancel_download",
    "hub_search",
    "hub_files",
    "hub_drafts",
    "hub_token_status",
    "set_hub_token",
    "latest_profile",
    "run_profile",
    "cancel_profile",
    "server_status",
    "set_server",
];

fn main() {
    // llama.cpp's shared libraries: beside the binary (a target folder) or in ../lib/canopy (the
    // Debian package). DT_RPATH rather than DT_RUNPATH: it also serves libllama's own dependencies.
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--disable-new-dtags,-rpath,$ORIGIN:$ORIGIN/../lib/canopy"
    );
    let attributes = tauri_build::Attributes::new()
        .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    if let Err(err) = tauri_build::try_build(attributes) {
        eprintln!("tauri build step failed: {err:#}");
        std::process::exit(1);
    }
}
