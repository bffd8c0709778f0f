//! The model library as front ends see it: models resolved by id or path, fit badges for this
//! machine, and draft pairing checked once per library state (reading vocabularies is the slow
//! part, so verdicts are cached until the library changes).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use canopy_models::{fit, Badge, MachineFacts, ModelId, ModelRecord, ModelShape, Pairing, Verdict};
use serde::Serialize;

use crate::error::{CoreError, CoreResult};
use crate::settings::ModelPair;
use crate::Core;

/// What a download fetches: files of the hub, verified against its listed sha256s, or one URL
/// with its expected checksum.
pub enum DownloadSource {
    Hub {
        hub: canopy_models::Hub,
        plan: canopy_models::hub::HubDownload,
    },
    Url(canopy_models::DownloadRequest),
}

/// A downloaded model, registered.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub record: ModelRecord,
    /// True when every file matched a sha256; false when some were checked by size only.
    pub checksum_verified: bool,
}

impl DownloadSource {
    /// Bytes to fetch, when known.
    pub fn size(&self) -> Option<u64> {
        match self {
            DownloadSource::Hub { plan, .. } => Some(plan.size()),
            DownloadSource::Url(r) => r.expected.size,
        }
    }
}

/// Pairings per target, valid for one state of the library.
#[derive(Default)]
pub(crate) struct PairCache {
    entries: Mutex<HashMap<ModelId, (u64, Pairing)>>,
}

/// A registered model as the library and the chat show it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ModelView {
    /// The library id, as text: the form model pairs and commands take.
    pub id: String,
    /// The file name without `.gguf`.
    pub name: String,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub path: PathBuf,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub file_size: u64,
    pub architecture: Option<String>,
    pub quantization: Option<String>,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub parameters: Option<u64>,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub context_length: Option<u64>,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub vocab_size: Option<u64>,
    /// `draft`, `target` or `both`.
    pub role: String,
    /// `None` when the file is missing from disk.
    #[cfg_attr(feature = "ts", ts(type = "\"fits\" | \"tight\" | \"too-big\" | null"))]
    pub fit: Option<Badge>,
    pub fit_reason: String,
}

/// One registered model judged as a draft for a target.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PairView {
    /// The draft's library id, as text.
    pub draft_id: String,
    pub draft_name: String,
    pub compatible: bool,
    /// Why not, in one sentence; empty when compatible.
    pub reason: String,
}

/// The file name without `.gguf`: what people call the model (GGUF `general.name` is often vaguer).
pub fn display_name(file_name: &str) -> String {
    let lower = file_name.to_ascii_lowercase();
    match lower.strip_suffix(".gguf") {
        Some(stem) => file_name[..stem.len()].to_owned(),
        None => file_name.to_owned(),
    }
}

impl ModelView {
    /// `record` with its fit on `machine`.
    pub fn of(record: &ModelRecord, machine: &MachineFacts) -> ModelView {
        let info = &record.info;
        let (fit, fit_reason) = if record.present {
            let estimate = fit::estimate(
                machine,
                &ModelShape::from_info(info),
                None,
                canopy_types::DEFAULT_CONTEXT.into(),
            );
            (Some(estimate.badge), estimate.reason)
        } else {
            (None, "the file is missing from disk".to_owned())
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
}

fn parse_id(id: &str) -> CoreResult<ModelId> {
    id.trim()
        .parse::<ModelId>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| CoreError::user(format!("{id:?} is not a model id")))
}

impl Core {
    /// The library record of the model `id`.
    ///
    /// # Errors
    /// When `id` is not an id, the model is unknown or the library cannot be read.
    pub fn model(&self, id: &str) -> CoreResult<ModelRecord> {
        let id = parse_id(id)?;
        Ok(self.library()?.get(id)?)
    }

    /// The file of a model named by library id or by path: a library model must still be on disk;
    /// a path need not be in the library.
    ///
    /// # Errors
    /// A user error when the library's file is gone or the path does not exist.
    pub fn resolve_model(&self, id_or_path: &str) -> CoreResult<PathBuf> {
        if parse_id(id_or_path).is_ok() && !Path::new(id_or_path).exists() {
            let record = self.model(id_or_path)?;
            if !record.present || !record.path.is_file() {
                return Err(CoreError::user(format!(
                    "the file of {} is gone ({}); import it again",
                    record.file_name,
                    record.path.display()
                )));
            }
            return Ok(record.path);
        }
        let path = PathBuf::from(id_or_path);
        if !path.is_file() {
            return Err(CoreError::user(format!(
                "model not found: {id_or_path}; import it in the library again"
            )));
        }
        Ok(path)
    }

    /// The pairing of every library model as a draft for the library model `target` (an id or
    /// the path it was registered with), computed once per state of the library.
    ///
    /// # Errors
    /// When the target is unknown or the library cannot be read.
    pub fn pairings(&self, target: &str) -> CoreResult<Pairing> {
        let target = self.find_model(target)?;
        self.pairings_of(&target)
    }

    /// As [`Core::pairings`], for a target already found.
    ///
    /// # Errors
    /// When the library cannot be read.
    pub fn pairings_of(&self, target: &ModelRecord) -> CoreResult<Pairing> {
        let library = self.library()?;
        let listing = library.list()?;
        let mut hasher = DefaultHasher::new();
        for m in &listing.models {
            (m.id, &m.path, m.size, m.present).hash(&mut hasher);
        }
        let stamp = hasher.finish();
        let mut cache = self.pairs.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, pairing)) = cache.get(&target.id) {
            if *s == stamp {
                return Ok(pairing.clone());
            }
        }
        let pairing = canopy_models::pairs(target, &listing.models, |path| {
            canopy_gguf::vocabulary(path).map_err(|e| e.to_string())
        });
        cache.insert(target.id, (stamp, pairing.clone()));
        Ok(pairing)
    }

    /// The pairing of every library model as a draft for `target`, as the library shows it.
    ///
    /// # Errors
    /// As [`Core::pairings`].
    pub fn pair_views(&self, target: &str) -> CoreResult<Vec<PairView>> {
        Ok(self
            .pairings(target)?
            .candidates
            .iter()
            .map(|c| PairView {
                draft_id: c.id.to_string(),
                draft_name: display_name(&c.file_name),
                compatible: c.verdict == Verdict::Compatible,
                reason: match &c.verdict {
                    Verdict::Compatible => String::new(),
                    Verdict::Refused { reason } => reason.clone(),
                },
            })
            .collect())
    }

    /// Fails with the library's reason when the library model `draft` cannot draft for `target`.
    ///
    /// # Errors
    /// A user error with the reason, or not-found for an unknown model.
    pub fn check_pair(&self, target: &str, draft: &str) -> CoreResult<()> {
        let draft_id = parse_id(draft)?;
        let pairing = self.pairings(target)?;
        match pairing.candidates.iter().find(|c| c.id == draft_id) {
            Some(c) => match &c.verdict {
                Verdict::Compatible => Ok(()),
                Verdict::Refused { reason } => Err(CoreError::user(format!(
                    "{} cannot draft for this target: {reason}",
                    c.file_name
                ))),
            },
            None => Err(CoreError::NotFound(format!(
                "model {draft} is not in the library"
            ))),
        }
    }

    /// Checks a pair of library ids or paths: each resolves to a file, and a library draft pairs
    /// with a library target (file pairs are checked by the engine when they run).
    ///
    /// # Errors
    /// As [`Core::resolve_model`] and [`Core::check_pair`].
    pub fn check_model_pair(&self, pair: &ModelPair) -> CoreResult<()> {
        if pair.draft.is_some() && pair.target.is_none() {
            return Err(CoreError::user(
                "choose a target for the draft to draft for",
            ));
        }
        if let Some(target) = &pair.target {
            self.resolve_model(target)?;
        }
        if let Some(draft) = &pair.draft {
            self.resolve_model(draft)?;
        }
        if let (Some(t), Some(d)) = (&pair.target, &pair.draft) {
            if parse_id(t).is_ok() && parse_id(d).is_ok() {
                self.check_pair(t, d)?;
            }
        }
        Ok(())
    }

    /// Every library model with its fit on this machine.
    ///
    /// # Errors
    /// When the library cannot be read.
    pub fn model_views(&self) -> CoreResult<Vec<ModelView>> {
        let listing = self.library()?.list()?;
        let machine = self.machine_facts();
        Ok(listing
            .models
            .iter()
            .map(|r| ModelView::of(r, &machine))
            .collect())
    }

    /// What a download of `source` fetches and how it is verified. One checksum policy for every
    /// front end: a catalog id or a hub reference (`hf:OWNER/REPO[@REV]/FILE.gguf`, or a hub
    /// `resolve` URL) is verified against the sha256 the hub lists for each file (every part of a
    /// split model); any other http(s) URL needs the sha256 given here or listed in the catalog,
    /// and is refused before the first byte without one.
    ///
    /// # Errors
    /// A user error for an unknown catalog id, a malformed reference or URL, a bad checksum, a
    /// URL without any checksum, or a hub that cannot be reached or refuses the file.
    pub fn download_source(
        &self,
        source: &str,
        sha256: Option<&str>,
    ) -> CoreResult<DownloadSource> {
        self.download_source_at(source, sha256, None)
    }

    /// As [`Core::download_source`], with a hub file taken at `revision` (a branch, tag or
    /// commit) instead of the one its reference names.
    ///
    /// # Errors
    /// As [`Core::download_source`], and a user error for a revision of a plain URL.
    pub fn download_source_at(
        &self,
        source: &str,
        sha256: Option<&str>,
        revision: Option<&str>,
    ) -> CoreResult<DownloadSource> {
        use canopy_models::download::{check_url, parse_sha256};
        let source = source.trim();
        let catalog = canopy_models::catalog()?;
        let hub = self.hub()?;
        let given = sha256
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_sha256)
            .transpose()
            .map_err(|e| CoreError::user(e.to_string()))?;
        let hub_file = if let Some(model) = catalog.model(source) {
            Some(model.hub_file()?)
        } else if canopy_models::hub::is_hub_reference(source, hub.endpoint()) {
            Some(
                canopy_models::HubFile::parse(source)
                    .map_err(|e| CoreError::user(e.to_string()))?,
            )
        } else {
            None
        };
        if let Some(mut file) = hub_file {
            if let Some(revision) = revision {
                file.revision = revision.to_owned();
            }
            if given.is_some() {
                return Err(CoreError::user(
                    "a hub file is verified against the sha256 the hub lists: give no checksum",
                ));
            }
            let plan = hub
                .plan(&file)
                .map_err(|e| CoreError::user(e.to_string()))?;
            return Ok(DownloadSource::Hub { hub, plan });
        }
        if revision.is_some() {
            return Err(CoreError::user(
                "a revision applies only to hub files (hf:OWNER/REPO/FILE.gguf)",
            ));
        }
        if source.contains("://") {
            check_url(source).map_err(|e| CoreError::user(e.to_string()))?;
        }
        if !(source.starts_with("http://") || source.starts_with("https://")) {
            return Err(CoreError::user(format!(
                "{source:?} is neither a catalog id, a hub file (hf:OWNER/REPO/FILE.gguf) nor an http(s) URL"
            )));
        }
        check_url(source).map_err(|e| CoreError::user(e.to_string()))?;
        let mut expected = catalog
            .by_url(source)
            .map(|m| m.expected())
            .unwrap_or_default();
        if let Some(sha) = given {
            expected.sha256 = Some(sha);
        }
        if expected.sha256.is_none() {
            return Err(CoreError::user(
                "no checksum is known for this URL: give its sha256 (the one its publisher lists) so the download can be verified",
            ));
        }
        Ok(DownloadSource::Url(canopy_models::DownloadRequest {
            url: source.to_owned(),
            file_name: None,
            expected,
        }))
    }

    /// Downloads `source` into the models folder and registers the verified file (or split set)
    /// as one model. The library is locked only to register, so listing stays possible meanwhile.
    /// A URL download reports only [`canopy_models::HubEvent::Download`] events; a hub download
    /// also each part it starts or finds already here.
    ///
    /// # Errors
    /// A user error when the download fails (unreachable, corrupt, cancelled, disk full), or when
    /// the file is not a valid GGUF.
    pub fn download(
        &self,
        source: &DownloadSource,
        cancel: &std::sync::atomic::AtomicBool,
        on_event: &mut dyn FnMut(&canopy_models::HubEvent),
    ) -> CoreResult<Downloaded> {
        match source {
            DownloadSource::Url(request) => {
                let mut forward = |e: &canopy_models::DownloadEvent| {
                    on_event(&canopy_models::HubEvent::Download(e.clone()));
                };
                let file =
                    canopy_models::download(&self.models_dir(), request, cancel, &mut forward)
                        .map_err(|e| CoreError::user(e.to_string()))?;
                Ok(Downloaded {
                    record: self.library()?.register_download(&file)?,
                    checksum_verified: file.checksum_verified,
                })
            }
            DownloadSource::Hub { hub, plan } => {
                let files = hub
                    .fetch(&self.models_dir(), plan, cancel, on_event)
                    .map_err(|e| match e {
                        canopy_models::ModelsError::Download(d) => CoreError::user(d.to_string()),
                        other => CoreError::from(other),
                    })?;
                Ok(Downloaded {
                    record: self.library()?.register_downloads(&files)?,
                    checksum_verified: files.iter().all(|f| f.checksum_verified),
                })
            }
        }
    }

    /// Memory facts of this machine for fit badges, with the GPU's memory when there is one.
    pub fn machine_facts(&self) -> MachineFacts {
        let mut facts = MachineFacts::detect();
        if let Some(info) = self.gpu().info() {
            facts.vram_bytes = Some(info.facts.vram_total_bytes);
        }
        facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
