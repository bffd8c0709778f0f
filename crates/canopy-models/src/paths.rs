//! Where Canopy keeps its files, and where the real test models live.
//!
//! The data directory is `$CANOPY_HOME` when that is set, otherwise the platform's data directory
//! followed by `canopy` (`~/.local/share/canopy` on Linux, `~/Library/Application Support/canopy`
//! on macOS). `scripts/fetch-models` uses the same locations.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ModelsError;

/// The manifest of the real models the tests and the demo use (also read by `scripts/fetch-models`).
const TEST_MODELS_JSON: &str = include_str!("../../../assets/test-models.json");

/// The data directory: `$CANOPY_HOME` if set (and not empty), else `<platform data dir>/canopy`.
///
/// Fails when `CANOPY_HOME` is unset and the platform has no data directory (no home directory).
pub fn data_dir() -> Result<PathBuf, ModelsError> {
    canopy_store::data_dir().map_err(|_| ModelsError::NoDataDir)
}

/// `<data dir>/models`: where imported and downloaded models are kept.
///
/// Fails like [`data_dir`].
pub fn models_dir() -> Result<PathBuf, ModelsError> {
    Ok(data_dir()?.join("models"))
}

/// `<data dir>/library.db`: the model registry database.
///
/// Fails like [`data_dir`].
pub fn library_db() -> Result<PathBuf, ModelsError> {
    Ok(data_dir()?.join("library.db"))
}

/// `<models dir>/.partial`: unfinished downloads, kept so that they can be resumed.
pub fn partial_dir(models_dir: &Path) -> PathBuf {
    models_dir.join(".partial")
}

/// One entry of `assets/test-models.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct TestModel {
    /// Short id, e.g. `smollm2-135m`.
    pub id: String,
    /// File name inside the models folder.
    pub file: String,
    /// What the model is.
    pub description: String,
    /// sha256 of the assembled file, lowercase hex.
    pub sha256: String,
    /// Size in bytes, where the manifest records it.
    #[serde(default)]
    pub size: Option<u64>,
}

#[derive(Deserialize)]
struct Manifest {
    models: Vec<TestModel>,
}

/// Every model listed in `assets/test-models.json`.
///
/// The manifest is compiled in; this fails only if it is malformed, which its own test catches.
pub fn test_models() -> Result<Vec<TestModel>, ModelsError> {
    serde_json::from_str::<Manifest>(TEST_MODELS_JSON)
        .map(|m| m.models)
        .map_err(|e| ModelsError::Manifest(e.to_string()))
}

/// The folder holding the fetched test models: `$CANOPY_TEST_MODELS` if set, else [`models_dir`].
///
/// Fails like [`data_dir`].
pub fn test_models_dir() -> Result<PathBuf, ModelsError> {
    if let Some(dir) = std::env::var_os("CANOPY_TEST_MODELS").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    models_dir()
}

/// The path of the fetched test model `id` (an id of `assets/test-models.json`).
///
/// Fails when the id is unknown, or when the file is absent or has the wrong size; the message
/// then says to run `scripts/fetch-models --all`.
pub fn test_model(id: &str) -> Result<PathBuf, ModelsError> {
    let models = test_models()?;
    let Some(model) = models.iter().find(|m| m.id == id) else {
        return Err(ModelsError::UnknownTestModel {
            id: id.to_string(),
            known: models
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let path = test_models_dir()?.join(&model.file);
    let size_ok = match (std::fs::metadata(&path), model.size) {
        (Ok(meta), Some(size)) => meta.is_file() && meta.len() == size,
        (Ok(meta), None) => meta.is_file() && meta.len() > 0,
        (Err(_), _) => false,
    };
    if !size_ok {
        return Err(ModelsError::TestModelMissing {
            id: id.to_string(),
            path,
        });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_and_ids_are_unique() {
        let models = test_models().unwrap();
        assert!(models.len() >= 3);
        let mut ids: Vec<_> = models.iter().map(|m| m.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), models.len());
        for m in &models {
            assert_eq!(m.sha256.len(), 64, "{}", m.id);
        }
    }

    #[test]
    fn unknown_test_model_names_the_known_ones() {
        let err = test_model("no-such-model").unwrap_err().to_string();
        assert!(err.contains("smollm2-135m"), "{err}");
    }
}
