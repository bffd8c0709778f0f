//! The Canopy desktop app: adapts the application core (`canopy_core`) to Tauri commands and
//! channels.
//!
//! Architecture invariant: no bounds, schemas, saving loops or placement rules live here; every
//! command converts its arguments, calls the core, and turns failures into one-line
//! [`error::CommandError`]s.

mod bindings;
mod chat;
#[cfg(test)]
mod command_list;
mod error;
mod models;
mod profile;
mod server;
mod state;
mod worker;

use std::path::PathBuf;

use serde::Serialize;
use tauri::State;

pub use worker::worker_main;

use crate::error::CommandResult;
use crate::state::AppState;

/// Facts the window shows in its status bar and empty states.
#[derive(Serialize, ts_rs::TS)]
struct AppInfo {
    version: &'static str,
    #[ts(type = "string")]
    data_dir: PathBuf,
    #[ts(type = "string")]
    models_dir: PathBuf,
    engine: bool,
    /// This machine's GPU in one line ("this build has no CUDA support", "NVIDIA ... 24.0 GB").
    gpu: String,
}

#[tauri::command]
fn app_info(state: State<'_, AppState>) -> CommandResult<AppInfo> {
    let core = state.core();
    Ok(AppInfo {
        version: env!("CARGO_PKG_VERSION"),
        data_dir: core.data_dir().to_path_buf(),
        models_dir: core.models_dir(),
        engine: worker::HAS_ENGINE,
        gpu: core.gpu().summary(),
    })
}

/// `$CANOPY_HOME`, else the platform data directory followed by `canopy`.
fn data_dir() -> Result<PathBuf, String> {
    canopy_core::Core::default_data_dir().map_err(|e| e.to_string())
}

/// Why no window can open here, when that is known before trying: on Linux and the BSDs the
/// window system is found through `WAYLAND_DISPLAY` or `DISPLAY`, and without either GTK's
/// initialisation fails inside the windowing library with a panic.
fn no_display() -> Option<&'static str> {
    let unix_desktop = cfg!(any(
        target_os = "linux",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    ));
    let set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    (unix_desktop && !set("WAYLAND_DISPLAY") && !set("DISPLAY")).then_some(
        "no display to open the window on (DISPLAY and WAYLAND_DISPLAY are unset); start the \
         app from a desktop session, or use the `canopy` command line",
    )
}

/// A window system that refuses the connection (a stale DISPLAY) still fails by a panic in the
/// windowing library: say it in one line rather than with a trace, unless a trace was asked for
/// with RUST_BACKTRACE.
fn one_line_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            return default_hook(info);
        }
        let payload = info.payload();
        let message = (payload.downcast_ref::<&str>().copied())
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("unknown error");
        let first = message.lines().next().unwrap_or_default();
        eprintln!("canopy: {first}");
    }));
}

/// Starts the window; exits with a one-line message when the window system cannot start.
pub fn run() {
    if let Some(reason) = no_display() {
        eprintln!("canopy: {reason}");
        std::process::exit(2);
    }
    one_line_panics();
    let data_dir = match data_dir() {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("canopy: {err}");
            std::process::exit(1);
        }
    };
    let engine = canopy_core::WorkerEngine::new(worker::command());
    let state = AppState::new(canopy_core::Core::new(data_dir, Box::new(engine)));
    let serving = std::sync::Arc::clone(&state.inner);
    let result = tauri::Builder::default()
        .setup(move |_| {
            tauri::async_runtime::spawn(server::start_if_enabled(serving));
            Ok(())
        })
        .manage(state)
        .invoke_handler(tauri::generate_handler![
            app_info,
            chat::list_conversations,
            chat::search_messages,
            chat::create_conversation,
            chat::set_conversation_models,
            chat::placement_preview,
            chat::rename_conversation,
            chat::delete_conversation,
            chat::conversation_messages,
            chat::add_user_message,
            chat::generate_reply,
            chat::stop_generation,
            chat::restart_worker,
            chat::load_settings,
            chat::save_settings,
            chat::get_model_pair,
            chat::set_model_pair,
            models::list_models,
            models::library_usage,
            models::import_model,
            models::scan_models,
            models::remove_model,
            models::inspect_model,
            models::model_pairings,
            models::model_catalog,
            models::download_model,
            models::cancel_download,
            models::hub_search,
            models::hub_files,
            models::hub_drafts,
            models::hub_token_status,
            models::set_hub_token,
            profile::latest_profile,
            profile::run_profile,
            profile::cancel_profile,
            server::server_status,
            server::set_server,
        ])
        .run(tauri::generate_context!());
    if let Err(err) = result {
        eprintln!("canopy: the window could not start: {err}");
        std::process::exit(1);
    }
}
