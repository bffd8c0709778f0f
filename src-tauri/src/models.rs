//! Model library commands: adapt `canopy_models` (registry, pairing, fit, downloads, catalog).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use canopy_gguf::{Array, Value};
use canopy_models::{
    fit, Badge, DeleteFile, DownloadEvent as LibraryDownloadEvent, DownloadRequest, Expected,
    ImportMode, MachineFacts, ModelRecord, ModelShape, ModelsError, Verdict,
};
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;

use crate::error::{CommandError, CommandResult, ErrorKind};
use crate::state::{AppState, Task};

impl From<ModelsError> for CommandError {
    fn from(err: ModelsError) -> Self {
        let kind = match &err {
            ModelsError::NotFound(_) | ModelsError::PathNotRegistered(_) => ErrorKind::NotFound,
            e if e.is_user_error() => ErrorKind::User,
            _ => ErrorKind::Internal,
        };
        CommandError::new(kind, err)
    }
}

/// A registered model as the library and the chat show it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    pub id: String,
    pub name: String,
    pub path: PathBuf,
    pub file_size: u64,
    pub architecture: Option<String>,
    pub quantization: Option<String>,
    pub parameters: Option<u64>,
    pub context_length: Option<u64>,
    pub vocab_size: Option<u64>,
    pub role: String,
    /// `fits`, `tight`, `too_big` or `unknown`.
    pub fit: String,
    pub fit_reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairingView {
    pub draft_id: String,
    pub draft_name: String,
    pub compatible: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetadataEntryView {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelDetails {
    pub model: ModelView,
    pub metadata: Vec<MetadataEntryView>,
    pub tensor_count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    pub id: String,
    pub name: String,
    pub url: String,
    pub size: Option<u64>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DownloadEvent {
    Progress {
        received: u64,
        total: Option<u64>,
        bytes_per_second: f64,
    },
    Verifying,
}

fn view(record: &ModelRecord, machine: &MachineFacts) -> ModelView {
    let info = &record.info;
    let (fit, fit_reason) = if !record.present {
        (
            "unknown".to_owned(),
            "the file is missing from disk".to_owned(),
        )
    } else {
        let estimate = fit::estimate(
            machine,
            &ModelShape::from_info(info),
            None,
            fit::DEFAULT_CONTEXT,
        );
        let badge = match estimate.badge {
            Badge::Fits => "fits",
            Badge::Tight => "tight",
            Badge::TooBig => "too_big",
        };
        (badge.to_owned(), estimate.reason)
    };
    ModelView {
        id: record.id.to_string(),
        name: display_name(&record.file_name),
        path: record.path.clone(),
        file_size: record.size,
        architecture: info.architecture.clone(),
        quantization: info.file_type.clone(),
        parameters: Some(info.parameter_count).filter(|&n| n > 0),
        context_length: info.context_length,
        vocab_size: info.vocab_size,
        role: record.role.as_str().to_owned(),
        fit,
        fit_reason,
    }
}

/// The file name without `.gguf`: what people call the model (GGUF `general.name` is often vaguer).
fn display_name(file_name: &str) -> String {
    let lower = file_name.to_ascii_lowercase();
    match lower.strip_suffix(".gguf") {
        Some(stem) => file_name[..stem.len()].to_owned(),
        None => file_name.to_owned(),
    }
}

fn parse_id(id: &str) -> CommandResult<i64> {
    id.trim()
        .parse::<i64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| CommandError::user(format!("{id:?} is not a model id")))
}

fn record(state: &AppState, id: &str) -> CommandResult<ModelRecord> {
    let id = parse_id(id)?;
    Ok(state.inner.library()?.get(id)?)
}

/// The file of the library model `id`. Fails when the model is unknown or its file is gone.
pub fn resolve(state: &AppState, id: &str) -> CommandResult<PathBuf> {
    let record = record(state, id)?;
    if !record.present || !record.path.is_file() {
        return Err(CommandError::user(format!(
            "the file of {} is gone ({}); import it again",
            record.file_name,
            record.path.display()
        )));
    }
    Ok(record.path)
}

/// Fails with the library's reason when `draft` cannot draft for `target`.
pub fn check_pair(state: &AppState, target: &str, draft: &str) -> CommandResult<()> {
    let target_record = record(state, target)?;
    let draft_id = parse_id(draft)?;
    let library = state.inner.library()?;
    let pairing = canopy_models::library_pairs(&library, &target_record)?;
    match pairing.candidates.iter().find(|c| c.id == draft_id) {
        Some(c) => match &c.verdict {
            Verdict::Compatible => Ok(()),
            Verdict::Refused { reason } => Err(CommandError::user(format!(
                "{} cannot draft for {}: {reason}",
                c.file_name, target_record.file_name
            ))),
        },
        None => Err(CommandError::new(
            ErrorKind::NotFound,
            format!("model {draft} is not in the library"),
        )),
    }
}

#[tauri::command]
pub fn list_models(state: State<'_, AppState>) -> CommandResult<Vec<ModelView>> {
    let listing = state.inner.library()?.list()?;
    let machine = state.inner.machine();
    Ok(listing.models.iter().map(|r| view(r, &machine)).collect())
}

/// Disk usage of the library.
#[derive(Debug, Clone, Serialize)]
pub struct LibraryUsage {
    pub models: usize,
    /// Bytes of all registered files.
    pub total_bytes: u64,
    /// Bytes of the files inside the models folder.
    pub managed_bytes: u64,
    pub models_dir: PathBuf,
}

#[tauri::command]
pub fn library_usage(state: State<'_, AppState>) -> CommandResult<LibraryUsage> {
    let library = state.inner.library()?;
    let listing = library.list()?;
    Ok(LibraryUsage {
        models: listing.models.len(),
        total_bytes: listing.total_bytes,
        managed_bytes: listing.managed_bytes,
        models_dir: library.models_dir().to_path_buf(),
    })
}

/// Registers a file the user chose, where it lies; the library validates it as GGUF first.
#[tauri::command]
pub async fn import_model(state: State<'_, AppState>, path: String) -> CommandResult<ModelView> {
    let path = chosen_file(&path)?;
    let app = state.inner().clone();
    tauri::async_runtime::spawn_blocking(move || {
        let record = app.inner.library()?.import(&path, ImportMode::Reference)?;
        Ok(view(&record, &app.inner.machine()))
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
        let mut library = app.inner.library()?;
        let dir = library.models_dir().to_path_buf();
        let report = library.scan(&dir)?;
        let machine = app.inner.machine();
        Ok(report.added.iter().map(|r| view(r, &machine)).collect())
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
    let id = parse_id(&id)?;
    let mode = if delete_file {
        DeleteFile::InsideModelsDir
    } else {
        DeleteFile::Keep
    };
    state.inner.library()?.remove(id, mode)?;
    Ok(())
}

#[tauri::command]
pub async fn inspect_model(state: State<'_, AppState>, id: String) -> CommandResult<ModelDetails> {
    let record = record(&state, &id)?;
    let machine = state.inner.machine();
    tauri::async_runtime::spawn_blocking(move || {
        let header = canopy_gguf::read_header(&record.path)
            .map_err(|e| CommandError::user(format!("{}: {e}", record.path.display())))?;
        let metadata = header
            .metadata()
            .iter()
            .map(|entry| MetadataEntryView {
                key: entry.key.clone(),
                value: describe(&entry.value),
            })
            .collect();
        Ok(ModelDetails {
            model: view(&record, &machine),
            metadata,
            tensor_count: record.info.tensor_count,
        })
    })
    .await
    .map_err(CommandError::internal)?
}

/// A metadata value in one short line: long strings and arrays are summarised.
fn describe(value: &Value) -> String {
    const MAX: usize = 160;
    let text = match value {
        Value::U8(v) => v.to_string(),
        Value::I8(v) => v.to_string(),
        Value::U16(v) => v.to_string(),
        Value::I16(v) => v.to_string(),
        Value::U32(v) => v.to_string(),
        Value::I32(v) => v.to_string(),
        Value::U64(v) => v.to_string(),
        Value::I64(v) => v.to_string(),
        Value::F32(v) => v.to_string(),
        Value::F64(v) => v.to_string(),
        Value::Bool(v) => v.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(array) => describe_array(array),
    };
    let text = text.replace(['\n', '\r'], "⏎");
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}… ({} characters)", &text[..i], text.chars().count()),
        None => text,
    }
}

fn describe_array(array: &Array) -> String {
    let json = serde_json::to_value(array).unwrap_or_default();
    // Serialised as {"Type": [...]}; show the type, the length and the first few items.
    if let Some((kind, items)) = json.as_object().and_then(|o| o.iter().next()) {
        if let Some(items) = items.as_array() {
            let head: Vec<String> = items.iter().take(6).map(|v| v.to_string()).collect();
            let more = if items.len() > 6 { ", …" } else { "" };
            return format!("[{} × {kind}] {}{more}", items.len(), head.join(", "));
        }
    }
    "[array]".to_owned()
}

#[tauri::command]
pub fn model_pairings(
    state: State<'_, AppState>,
    target: String,
) -> CommandResult<Vec<PairingView>> {
    let target = record(&state, &target)?;
    let library = state.inner.library()?;
    let pairing = canopy_models::library_pairs(&library, &target)?;
    let names: std::collections::HashMap<i64, String> = library
        .list()?
        .models
        .into_iter()
        .map(|m| (m.id, display_name(&m.file_name)))
        .collect();
    Ok(pairing
        .candidates
        .iter()
        .map(|c| {
            let (compatible, reason) = match &c.verdict {
                Verdict::Compatible => (true, "same tokenizer, smaller: can draft".to_owned()),
                Verdict::Refused { reason } => (false, reason.clone()),
            };
            PairingView {
                draft_id: c.id.to_string(),
                draft_name: names
                    .get(&c.id)
                    .cloned()
                    .unwrap_or_else(|| c.file_name.clone()),
                compatible,
                reason,
            }
        })
        .collect())
}

#[tauri::command]
pub fn model_catalog() -> CommandResult<Vec<CatalogEntry>> {
    let catalog = canopy_models::catalog()?;
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

/// Downloads a catalog model (by id) or a URL into the models folder, verified and registered.
/// A URL outside the catalog needs the file's sha256.
#[tauri::command]
pub async fn download_model(
    state: State<'_, AppState>,
    source: String,
    sha256: Option<String>,
    on_event: Channel<DownloadEvent>,
) -> CommandResult<ModelView> {
    let source = source.trim().to_owned();
    let catalog = canopy_models::catalog()?;
    let request = if source.starts_with("http://") || source.starts_with("https://") {
        canopy_models::download::check_url(&source).map_err(CommandError::user)?;
        let expected = match (catalog.by_url(&source), sha256.as_deref().map(str::trim)) {
            (_, Some(given)) if !given.is_empty() => Expected {
                sha256: Some(
                    canopy_models::download::parse_sha256(given).map_err(CommandError::user)?,
                ),
                size: None,
            },
            (Some(known), _) => known.expected(),
            (None, _) => {
                return Err(CommandError::user(
                    "this URL is not in the catalog: give the file's sha256 so the download can be verified",
                ))
            }
        };
        DownloadRequest {
            url: source.clone(),
            file_name: None,
            expected,
        }
    } else {
        let Some(model) = catalog.model(&source) else {
            return Err(CommandError::user(format!(
                "{source:?} is neither an http(s) URL nor a catalog id"
            )));
        };
        DownloadRequest {
            url: model.url.clone(),
            file_name: Some(model.file.clone()),
            expected: model.expected(),
        }
    };
    let guard = state.start(Task::Download)?;
    let app = state.inner().clone();
    app.inner.download_cancel.store(false, Ordering::SeqCst);
    let outcome = tauri::async_runtime::spawn_blocking(move || {
        let started = Instant::now();
        let mut first: Option<u64> = None;
        let mut last_sent = Instant::now() - std::time::Duration::from_secs(1);
        let mut on_progress = |event: &LibraryDownloadEvent| {
            let LibraryDownloadEvent::Progress { done, total } = event else {
                return;
            };
            let base = *first.get_or_insert(*done);
            let finished = total.is_some_and(|t| *done >= t);
            if last_sent.elapsed().as_millis() >= 100 || finished {
                last_sent = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let _ = on_event.send(DownloadEvent::Progress {
                    received: *done,
                    total: *total,
                    bytes_per_second: (done - base.min(*done)) as f64 / secs,
                });
            }
            if finished {
                let _ = on_event.send(DownloadEvent::Verifying);
            }
        };
        // The library lock is taken for registration only, so listing stays possible meanwhile.
        let models_dir = app.inner.library()?.models_dir().to_path_buf();
        let file = canopy_models::download(
            &models_dir,
            &request,
            &app.inner.download_cancel,
            &mut on_progress,
        )
        .map_err(|e| CommandError::user(e.to_string()))?;
        let record = app.inner.library()?.register_download(&file)?;
        Ok::<_, CommandError>(view(&record, &app.inner.machine()))
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

    #[test]
    fn models_are_named_after_their_files() {
        assert_eq!(
            display_name("SmolLM2-135M-Instruct.Q4_1.gguf"),
            "SmolLM2-135M-Instruct.Q4_1"
        );
        assert_eq!(display_name("x.GGUF"), "x");
        assert_eq!(display_name("weights"), "weights");
    }

    #[test]
    fn ids_are_positive_integers() {
        assert!(parse_id("12").is_ok());
        assert!(parse_id("0").is_err());
        assert!(parse_id("../x").is_err());
    }

    #[test]
    fn metadata_values_are_one_short_line() {
        assert_eq!(describe(&Value::String("a\nb".into())), "a⏎b");
        let long = describe(&Value::String("x".repeat(500)));
        assert!(long.ends_with("(500 characters)"));
        let array = describe(&Value::Array(Array::U32((0..100).collect())));
        assert!(array.starts_with("[100 × U32] 0, 1, 2"), "{array}");
    }
}
