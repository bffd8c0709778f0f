//! The model registry's services for front ends: list, import, scan, remove, roles, hashing, a
//! file's header, fit estimates and the catalog. The registry itself never leaves the core; each
//! service locks it for its own call and returns plain records.

use std::path::{Path, PathBuf};

use canopy_gguf::{Array, Value};
use canopy_models::{
    Catalog, DeleteFile, FitEstimate, HashJob, ImportMode, Listing, MachineFacts, ModelId,
    ModelRecord, ModelShape, Role, ScanReport,
};
use serde::Serialize;

use crate::error::{CoreError, CoreResult};
use crate::library::ModelView;
use crate::Core;

/// One entry of a GGUF header's metadata, its value in one short line.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MetadataEntryView {
    pub key: String,
    pub value: String,
}

/// A library model with its header's metadata.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ModelDetails {
    pub model: ModelView,
    pub metadata: Vec<MetadataEntryView>,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub tensor_count: u64,
}

/// How a target (with its draft, when one pairs) fits a machine.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub target: ModelRecord,
    /// The draft given, else the first compatible one in the library.
    pub draft: Option<ModelRecord>,
    pub machine: MachineFacts,
    pub estimate: FitEstimate,
}

/// The library's models and the space they take.
#[derive(Debug, Clone, Serialize)]
pub struct LibraryListing {
    #[serde(flatten)]
    pub listing: Listing,
    /// Where imported and downloaded files are kept.
    pub models_dir: PathBuf,
}

impl Core {
    /// Every registered model, with the space the library takes.
    ///
    /// # Errors
    /// When the library cannot be read.
    pub fn library_listing(&self) -> CoreResult<LibraryListing> {
        let library = self.library()?;
        Ok(LibraryListing {
            listing: library.list()?,
            models_dir: library.models_dir().to_path_buf(),
        })
    }

    /// The library model named by id or by the path it was registered with.
    ///
    /// # Errors
    /// Not found when nothing in the library has that id or path.
    pub fn find_model(&self, id_or_path: &str) -> CoreResult<ModelRecord> {
        Ok(self.library()?.resolve(id_or_path)?)
    }

    /// Validates `file` as GGUF and registers it: copied into the models folder, or referenced
    /// where it lies.
    ///
    /// # Errors
    /// A user error when the file cannot be read or is not a valid GGUF model.
    pub fn import_model(&self, file: &Path, mode: ImportMode) -> CoreResult<ModelRecord> {
        Ok(self.library()?.import(file, mode)?)
    }

    /// Registers every valid `.gguf` file under `dir` (the models folder when `None`); the report
    /// names the new, the known and the invalid files with the reason.
    ///
    /// # Errors
    /// When the folder cannot be read.
    pub fn scan_models(&self, dir: Option<&Path>) -> CoreResult<ScanReport> {
        let mut library = self.library()?;
        let dir = dir.map_or_else(|| library.models_dir().to_path_buf(), Path::to_path_buf);
        Ok(library.scan(&dir)?)
    }

    /// Removes a model from the library, deleting its file as `delete` allows.
    ///
    /// # Errors
    /// Not found for an unknown id; a user error when the file lies outside the models folder
    /// and `delete` is [`DeleteFile::InsideModelsDir`].
    pub fn remove_model(&self, id: ModelId, delete: DeleteFile) -> CoreResult<ModelRecord> {
        Ok(self.library()?.remove(id, delete)?)
    }

    /// Marks a model as a target, a draft or either.
    ///
    /// # Errors
    /// Not found for an unknown id.
    pub fn set_model_role(&self, id: ModelId, role: Role) -> CoreResult<ModelRecord> {
        Ok(self.library()?.set_role(id, role)?)
    }

    /// Hashes `models` in the background; the job's events report progress and each sha256,
    /// which is saved in the library as it is found.
    ///
    /// # Errors
    /// When the library cannot be opened.
    pub fn hash_models(&self, models: &[ModelRecord]) -> CoreResult<HashJob> {
        Ok(self.library()?.start_hashing(models))
    }

    /// What a GGUF file holds, read from its header without loading the weights.
    ///
    /// # Errors
    /// A user error naming the file when it is not a valid GGUF file.
    pub fn inspect_file(&self, file: &Path) -> CoreResult<canopy_gguf::ModelInfo> {
        canopy_gguf::inspect(file).map_err(|e| CoreError::user(format!("{}: {e}", file.display())))
    }

    /// A library model with its header's metadata, each value in one short line.
    ///
    /// # Errors
    /// Not found for an unknown id; a user error when the file cannot be read.
    pub fn model_details(&self, id: &str) -> CoreResult<ModelDetails> {
        let record = self.model(id)?;
        let model = ModelView::of(&record, &self.machine_facts());
        let header = canopy_gguf::read_header(&record.path)
            .map_err(|e| CoreError::user(format!("{}: {e}", record.path.display())))?;
        let metadata = header
            .metadata()
            .iter()
            .map(|entry| MetadataEntryView {
                key: entry.key.clone(),
                value: describe(&entry.value),
            })
            .collect();
        Ok(ModelDetails {
            model,
            metadata,
            tensor_count: record.info.tensor_count,
        })
    }

    /// How `target` and `draft` (else the first compatible library draft) fit `machine` with a
    /// context of `context` tokens.
    ///
    /// # Errors
    /// Not found when a model is not in the library.
    pub fn fit_estimate(
        &self,
        target: &str,
        draft: Option<&str>,
        context: u64,
        machine: MachineFacts,
    ) -> CoreResult<FitReport> {
        let target = self.find_model(target)?;
        let draft = match draft {
            Some(d) => Some(self.find_model(d)?),
            None => match self.pairings_of(&target)?.compatible().next() {
                Some(c) => Some(self.library()?.get(c.id)?),
                None => None,
            },
        };
        let estimate = canopy_models::estimate(
            &machine,
            &ModelShape::from_info(&target.info),
            draft
                .as_ref()
                .map(|d| ModelShape::from_info(&d.info))
                .as_ref(),
            context,
        );
        Ok(FitReport {
            target,
            draft,
            machine,
            estimate,
        })
    }

    /// The recommended target/draft pairs and where to download them.
    ///
    /// # Errors
    /// Only if the compiled-in catalog is malformed.
    pub fn catalog(&self) -> CoreResult<Catalog> {
        Ok(canopy_models::catalog()?)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_values_are_one_short_line() {
        assert_eq!(describe(&Value::String("a\nb".into())), "a⏎b");
        let long = describe(&Value::String("x".repeat(500)));
        assert!(long.ends_with("(500 characters)"));
        let array = describe(&Value::Array(Array::U32((0..100).collect())));
        assert!(array.starts_with("[100 × U32] 0, 1, 2"), "{array}");
    }
}
