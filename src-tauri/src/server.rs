//! The local OpenAI-compatible server, switched on and off from the app's settings. It is the same
//! server as `canopy serve` (`canopy_serve::Server::start`), serving the chat's default model pair
//! with the chat's plan and placement, on 127.0.0.1 only, through the app's own core (so the models
//! are loaded once for the chat and the server).

use std::sync::Arc;

use canopy_core::ServerSettings;
use canopy_serve::{ServeError, ServeOptions, Server};
use serde::Serialize;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::{AppState, Inner, Running};

/// What the settings panel shows.
#[derive(Clone, Debug, Serialize, ts_rs::TS)]
pub struct ServerStatus {
    pub settings: ServerSettings,
    /// `http://127.0.0.1:PORT/v1` while running.
    pub address: Option<String>,
    /// The model id clients name.
    pub model: Option<String>,
}

fn status(app: &Inner) -> CommandResult<ServerStatus> {
    let settings = app.core.server_settings()?;
    let running = app.server.0.lock().unwrap_or_else(|p| p.into_inner());
    Ok(ServerStatus {
        settings,
        address: running.as_ref().map(|r| format!("http://{}/v1", r.addr)),
        model: running.as_ref().map(|r| r.model.clone()),
    })
}

/// Starts the server with the saved settings and the chat's default models, through the app's
/// own core (the chat and the server share one set of loaded models, one request at a time).
async fn start(app: Arc<Inner>, settings: &ServerSettings) -> CommandResult<()> {
    let core = &app.core;
    let chat = core.chat_settings()?;
    let Some(choice) = core.chat_choice(&core.default_pair()?, &chat)? else {
        return Err(CommandError::user(
            "choose a model in the chat first: the server serves the chat's model",
        ));
    };
    let options = ServeOptions {
        api_key: settings.api_key.clone(),
        ..ServeOptions::loopback(settings.port)
    };
    let (server, served) = Server::start(Arc::clone(core), &choice, options)
        .await
        .map_err(|e| match e {
            ServeError::Core(e) => CommandError::from(e),
            e => CommandError::user(e.to_string()),
        })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let addr = server.local_addr();
    tauri::async_runtime::spawn(async move {
        let _ = server
            .run(async move {
                let _ = stopped.await;
            })
            .await;
    });
    let model = served.model_id().to_owned();
    *app.server.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running { addr, model, stop });
    Ok(())
}

/// Starts the server at launch when the settings say so; a failure is kept for the settings panel.
pub async fn start_if_enabled(app: Arc<Inner>) {
    if let Ok(settings) = app.core.server_settings() {
        if settings.enabled {
            if let Err(err) = start(app, &settings).await {
                eprintln!("canopy: the local server did not start: {err}");
            }
        }
    }
}

#[tauri::command]
pub fn server_status(state: State<'_, AppState>) -> CommandResult<ServerStatus> {
    status(&state.inner)
}

/// Saves the server settings and starts, restarts or stops the server to match them.
#[tauri::command]
pub async fn set_server(
    state: State<'_, AppState>,
    settings: ServerSettings,
) -> CommandResult<ServerStatus> {
    let app = Arc::clone(&state.inner);
    app.core.save_server_settings(&settings)?;
    app.server.stop();
    if settings.enabled {
        if let Err(err) = start(Arc::clone(&app), &settings).await {
            let off = ServerSettings {
                enabled: false,
                ..settings
            };
            app.core.save_server_settings(&off)?;
            return Err(err);
        }
    }
    status(&app)
}
