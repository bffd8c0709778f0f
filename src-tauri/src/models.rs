//! Model library commands: the core's library services (registry, pairing, fit, downloads,
//! catalog) for the window.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use canopy_core::{
    DeleteFile, DownloadEvent, HubDraftView, HubEvent, HubFileView, HubRepoView, HubTokenStatus,
    ImportMode, ModelDetails, ModelRecord, ModelView, PairView,
};
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::{AppState, Task};

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct CatalogEntry {
    pub id: String,
    pub name: String,
    pub url: String,
    #[ts(type = "number | null")]
    pub size: Option<u64>,
    pub description: String,
}

/// A download's progress as the window shows it.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DownloadProgress {
    Progress {
        #[ts(type = "number")]
        received: u64,
        #[ts(type = "number | null")]
        total: Option<u64>,
        bytes_per_second: f64,
    },
    Verifying,
}

fn view(state: &AppState, record: &ModelRecord) -> ModelView {
    ModelView::of(record, &state.core().machine_facts())
}

#[tauri::command]
pub fn list_models(state: State<'_, AppState>) -> CommandResult<Vec<ModelView>> {
    Ok(state.core().model_views()?)
}

/// Disk usage of the library.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct LibraryUsage {
    pub models: usize,
    /// Bytes of all registered files.
    #[ts(type = "number")]
    pub total_bytes: u64,
    /// Bytes of the files inside the models folder.
    #[ts(type = "number")]
    pub managed_bytes: u64,
    #[ts(type = "string")]
    pub models_dir: PathBuf,
}

#[tauri::command]
pub fn library_usage(state: State<'_, AppState>) -> CommandResult<LibraryUsage> {
    let library = state.core().library_listing()?;
    Ok(LibraryUsage {
        models: library.listing.models.len(),
        total_bytes: library.listing.total_bytes,
        managed_bytes: library.listing.managed_bytes,
        models_dir: library.models_dir,
    })
}

/// Registers a file the user chose, where it lies; the library validates it as GGUF first.
#[tauri::command]
pub async fn import_model(state: State<'_, AppState>, path: String) -> CommandResult<ModelView> {
    let path = chosen_file(&path)?;
    let app = state.inner().clone();
    tauri::async_runtime::spawn_blocking(move || {
        let record = app.core().import_model(&path, ImportMode::Reference)?;
        Ok(view(&app, &record))
    })
    .await
    .map_err(CommandError::internal)?
}

/// A path the user typed or picked: absolute, an existing regular `.gguf` file, resolved.
fn chosen_file(path: &str) -> CommandResult<PathBuf> {
    let raw = Path::new(path.trim());
    if path.trim().is_empty() {
        return Err(CommandError::user("enter the path of a .gguf file"));
    }
    if !raw.is_absolute() {
        return Err(CommandError::user(format!(
            "{} is not an absolute path",
            raw.display()
        )));
    }
    if raw
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        != Some("gguf".into())
    {
        return Err(CommandError::user(format!(
            "{} is not a .gguf file",
            raw.display()
        )));
    }
    let resolved = std::fs::canonicalize(raw)
        .map_err(|e| CommandError::user(format!("cannot open {}: {e}", raw.display())))?;
    if !resolved.is_file() {
        return Err(CommandError::user(format!(
            "{} is not a regular file",
            raw.display()
        )));
    }
    Ok(resolved)
}

/// Registers every valid `.gguf` file in the models folder; returns the new ones.
#[tauri::command]
pub async fn scan_models(state: State<'_, AppState>) -> CommandResult<Vec<ModelView>> {
    let app = state.inner().clone();
    tauri::async_runtime::spawn_blocking(move || {
        let report = app.core().scan_models(None)?;
        Ok(report.added.iter().map(|r| view(&app, r)).collect())
    })
    .await
    .map_err(CommandError::internal)?
}

/// Removes a model from the library; with `delete_file`, also deletes its file if it lies in
/// the models folder (files elsewhere are never deleted from the app).
#[tauri::command]
pub fn remove_model(
    state: State<'_, AppState>,
    id: String,
    delete_file: bool,
) -> CommandResult<()> {
    let id = state.core().model(&id)?.id;
    let mode = if delete_file {
        DeleteFile::InsideModelsDir
    } else {
        DeleteFile::Keep
    };
    state.core().remove_model(id, mode)?;
    Ok(())
}

#[tauri::command]
pub async fn inspect_model(state: State<'_, AppState>, id: String) -> CommandResult<ModelDetails> {
    let app = state.inner().clone();
    tauri::async_runtime::spawn_blocking(move || Ok(app.core().model_details(&id)?))
        .await
        .map_err(CommandError::internal)?
}

#[tauri::command]
pub async fn model_pairings(
    state: State<'_, AppState>,
    target: String,
) -> CommandResult<Vec<PairView>> {
    let app = state.inner().clone();
    tauri::async_runtime::spawn_blocking(move || Ok(app.core().pair_views(&target)?))
        .await
        .map_err(CommandError::internal)?
}

#[tauri::command]
pub fn model_catalog(state: State<'_, AppState>) -> CommandResult<Vec<CatalogEntry>> {
    let catalog = state.core().catalog()?;
    Ok(catalog
        .models
        .iter()
        .map(|m| CatalogEntry {
            id: m.id.clone(),
            name: m.name.clone(),
            url: m.url.clone(),
            size: m.size,
            description: format!("{} {} ", m.parameters, m.role).trim().to_owned(),
        })
        .collect())
}

/// GGUF repositories on the hub (`HF_ENDPOINT`) matching `query`.
#[tauri::command]
pub async fn hub_search(
    state: State<'_, AppState>,
    query: String,
) -> CommandResult<Vec<HubRepoView>> {
    let app = state.inner().clone();
    tauri::async_runtime::spawn_blocking(move || Ok(app.core().hub_search(&query, 30)?))
        .await
        .map_err(CommandError::internal)?
}

/// A hub repository's GGUF models with their fit on this machine.
#[tauri::command]
pub async fn hub_files(
    state: State<'_, AppState>,
    repo: String,
    revision: Option<String>,
) -> CommandResult<Vec<HubFileView>> {
    let app = state.inner().clone();
    tauri::async_runtime::spawn_blocking(move || {
        Ok(app
            .core()
            .hub_files(&repo, revision.as_deref().unwrap_or_default())?)
    })
    .await
    .map_err(CommandError::internal)?
}

/// Drafts to download with a hub target.
#[tauri::command]
pub fn hub_drafts(state: State<'_, AppState>, source: String) -> CommandResult<Vec<HubDraftView>> {
    Ok(state.core().hub_drafts(&source)?)
}

#[tauri::command]
pub fn hub_token_status(state: State<'_, AppState>) -> HubTokenStatus {
    state.core().hub_token_status()
}

/// Saves the hub token (readable by this user only), or forgets it when `token` is empty.
#[tauri::command]
pub fn set_hub_token(
    state: State<'_, AppState>,
    token: Option<String>,
) -> CommandResult<HubTokenStatus> {
    Ok(state.core().save_hub_token(token.as_deref())?)
}

/// Downloads a catalog model (by id), a hub file (`hf:OWNER/REPO[@REV]/PATH`, every part of a
/// split set) or a URL into the models folder, verified and registered. Hub files are verified
/// against the hub's sha256; a URL outside the catalog needs the file's sha256.
#[tauri::command]
pub async fn download_model(
    state: State<'_, AppState>,
    source: String,
    sha256: Option<String>,
    on_event: Channel<DownloadProgress>,
) -> CommandResult<ModelView> {
    let request = {
        let app = state.inner().clone();
        let sha256 = sha256.clone();
        tauri::async_runtime::spawn_blocking(move || {
            app.core().download_source(&source, sha256.as_deref())
        })
        .await
        .map_err(CommandError::internal)??
    };
    let guard = state.start(Task::Download)?;
    let app = state.inner().clone();
    app.inner.download_cancel.store(false, Ordering::SeqCst);
    let outcome = tauri::async_runtime::spawn_blocking(move || {
        let started = Instant::now();
        let mut first: Option<u64> = None;
        let mut last_sent = Instant::now() - std::time::Duration::from_secs(1);
        let mut on_progress = |event: &HubEvent| {
            let HubEvent::Download(DownloadEvent::Progress { done, total }) = event else {
                return;
            };
            let base = *first.get_or_insert(*done);
            let finished = total.is_some_and(|t| *done >= t);
            if last_sent.elapsed().as_millis() >= 100 || finished {
                last_sent = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let _ = on_event.send(DownloadProgress::Progress {
                    received: *done,
                    total: *total,
                    bytes_per_second: (done - base.min(*done)) as f64 / secs,
                });
            }
            if finished {
                let _ = on_event.send(DownloadProgress::Verifying);
            }
        };
        let downloaded =
            app.core()
                .download(&request, &app.inner.download_cancel, &mut on_progress)?;
        Ok::<_, CommandError>(view(&app, &downloaded.record))
    })
    .await
    .map_err(CommandError::internal)?;
    drop(guard);
    outcome
}

#[tauri::command]
pub fn cancel_download(state: State<'_, AppState>) {
    state.inner.download_cancel.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn chosen_files_must_be_absolute_existing_gguf_files() {
        assert_eq!(chosen_file("").unwrap_err().kind, ErrorKind::User);
        assert!(chosen_file("model.gguf")
            .unwrap_err()
            .message
            .contains("absolute"));
        assert!(chosen_file("/etc/passwd")
            .unwrap_err()
            .message
            .contains(".gguf"));
        assert!(chosen_file("/nonexistent/x.gguf")
            .unwrap_err()
            .message
            .contains("cannot open"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("folder.gguf")).unwrap();
        let folder = dir.path().join("folder.gguf");
        assert!(chosen_file(folder.to_str().unwrap())
            .unwrap_err()
            .message
            .contains("regular file"));
        let file = dir.path().join("m.GGUF");
        std::fs::write(&file, b"x").unwrap();
        assert!(chosen_file(file.to_str().unwrap()).is_ok());
    }
}
