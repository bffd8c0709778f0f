//! The Canopy desktop app: adapts the library crates to Tauri commands and channels.
//!
//! Architecture invariant: no engine, storage or model logic lives here; every command validates
//! its arguments, calls a library crate, and turns failures into one-line [`error::CommandError`]s.

mod chat;
mod error;
mod models;
mod profile;
mod state;
mod worker;

use std::path::PathBuf;

use serde::Serialize;
use tauri::State;

pub use worker::worker_main;

use crate::error::CommandResult;
use crate::state::AppState;

/// Facts the window shows in its status bar and empty states.
#[derive(Serialize)]
struct AppInfo {
    version: &'static str,
    data_dir: PathBuf,
    models_dir: PathBuf,
    engine: bool,
}

#[tauri::command]
fn app_info(state: State<'_, AppState>) -> CommandResult<AppInfo> {
    Ok(AppInfo {
        version: env!("CARGO_PKG_VERSION"),
        data_dir: state.inner.data_dir.clone(),
        models_dir: state.inner.data_dir.join("models"),
        engine: worker::HAS_ENGINE,
    })
}

/// `$CANOPY_HOME`, else the platform data directory followed by `canopy`.
fn data_dir() -> Result<PathBuf, String> {
    canopy_store::data_dir().map_err(|e| e.to_string())
}

/// Starts the window; exits with a message when the window system cannot start.
pub fn run() {
    let data_dir = match data_dir() {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("canopy: {err}");
            std::process::exit(1);
        }
    };
    let state = AppState::new(data_dir, worker::command());
    let result = tauri::Builder::default()
        .manage(state)
        .invoke_handler(tauri::generate_handler![
            app_info,
            chat::list_conversations,
            chat::search_messages,
            chat::create_conversation,
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
            profile::latest_profile,
            profile::run_profile,
            profile::cancel_profile,
        ])
        .run(tauri::generate_context!());
    if let Err(err) = result {
        eprintln!("canopy: the window could not start: {err}");
        std::process::exit(1);
    }
}
