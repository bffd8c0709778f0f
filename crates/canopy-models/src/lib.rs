//! The local model library: where models live, which ones Canopy knows, which pairs can speculate
//! together, whether they fit this machine, and verified downloads of new ones.
//!
//! - [`paths`]: the data directory and the real test models;
//! - [`registry`]: the SQLite registry of GGUF files (scan, import, remove, list, background sha256);
//! - [`pairing`]: every registered model judged as a draft for a target, with a reason for each refusal;
//! - [`fit`]: how a pair runs on a machine (VRAM, resident layers, bytes per pass, RAM);
//! - [`download`]: resumable, verified HTTP(S) downloads into the models folder;
//! - [`hub`]: files on a Hugging Face style hub (`hf:OWNER/REPO/FILE.gguf`): search, GGUF listings
//!   grouped by quantization, downloads verified against the hub's sha256;
//! - [`split`]: models split over several GGUF files, registered as one model;
//! - [`catalog`]: recommended target/draft pairs with their hub URLs.
//!
//! Architecture invariant: every file is validated by `canopy_gguf` before it is registered, and
//! this crate never loads weights or talks to llama.cpp.

pub mod catalog;
pub mod download;
mod error;
pub mod fit;
pub mod hub;
pub mod pairing;
pub mod paths;
pub mod registry;
pub mod split;

pub use catalog::{catalog, Catalog, CatalogModel, CatalogPair};
pub use download::{download, DownloadError, DownloadEvent, DownloadRequest, Downloaded, Expected};
pub use error::ModelsError;
pub use fit::{estimate, fmt_bytes, Badge, FitEstimate, MachineFacts, ModelShape};
pub use hub::{
    quant_from_name, GgufEntry, Hub, HubDownload, HubEntry, HubError, HubEvent, HubFile, HubModel,
    HubPart, QuantGroup,
};
pub use pairing::{pairs, Candidate, Pairing, Verdict};
pub use paths::test_model;
pub use registry::{
    DeleteFile, HashEvent, HashJob, HashState, ImportMode, Library, Listing, ModelId, ModelPart,
    ModelRecord, Role, ScanReport,
};
pub use split::{ModelFiles, SplitName, SplitSet};

/// [`pairs`] over the whole library for `target`, reading vocabularies with `canopy_gguf`.
///
/// Fails when the registry cannot be listed.
pub fn library_pairs(library: &Library, target: &ModelRecord) -> Result<Pairing, ModelsError> {
    let models = library.list()?.models;
    Ok(pairs(target, &models, |path| {
        canopy_gguf::vocabulary(path).map_err(|e| e.to_string())
    }))
}

/// Downloads `request` into the library's models folder (see [`download()`]), validates the file
/// as GGUF and registers it with its verified sha256. An invalid file is deleted; a failed download
/// registers nothing.
///
/// Fails with [`ModelsError::Download`] when the download fails, [`ModelsError::InvalidGguf`]
/// when the file is not a valid GGUF, or when the registry fails.
pub fn download_and_register(
    library: &mut Library,
    request: &DownloadRequest,
    cancel: &std::sync::atomic::AtomicBool,
    on_event: &mut dyn FnMut(&DownloadEvent),
) -> Result<(ModelRecord, Downloaded), ModelsError> {
    let models_dir = library.models_dir().to_path_buf();
    let file = download(&models_dir, request, cancel, on_event)?;
    let record = library.register_download(&file)?;
    Ok((record, file))
}
