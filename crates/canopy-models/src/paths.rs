//! Where unfinished downloads wait, and where the real test models live.
//!
//! The library's own folders are the caller's: the application core passes its data folder's
//! `models` folder and registry file to [`crate::Library::open`]. Only the tests' models fall back
//! to that folder themselves (`scripts/fetch-models` fills it), through the one data-folder rule
//! of `canopy_store::data_dir`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ModelsError;

/// The manifest of the real models the tests and the demo use (also read by `scripts/fetch-models`).
const TEST_MODELS_JSON: &str = include_str!("../../../assets/test-models.json");

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

/// The folder holding the fetched test models: `$CANOPY_TEST_MODELS` if set, else the data
/// folder's `models` (where `scripts/fetch-models` puts them).
///
/// Fails when neither `CANOPY_TEST_MODELS`, `CANOPY_HOME` nor a platform data folder exists.
pub fn test_models_dir() -> Result<PathBuf, ModelsError> {
    if let Some(dir) = std::env::var_os("CANOPY_TEST_MODELS").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    canopy_store::data_dir()
        .map(|dir| dir.join("models"))
        .map_err(|_| ModelsError::NoDataDir)
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
