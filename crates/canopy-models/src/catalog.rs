//! The catalog of recommended models and target/draft pairs (`assets/catalog.json`, compiled in).
//!
//! Each model names its file on the hub (`hf:OWNER/REPO/PATH`), so a download takes its size and
//! sha256 from the hub ([`crate::hub`]); entries not confirmed against a stored hub page say so.

use serde::{Deserialize, Serialize};

use crate::download::Expected;
use crate::error::ModelsError;
use crate::hub::{HubFile, DEFAULT_ENDPOINT};

const CATALOG_JSON: &str = include_str!("../../../assets/catalog.json");

/// One downloadable model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogModel {
    /// Short id used by `pairs`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `draft` or `target`.
    pub role: String,
    /// Parameter count as people say it (`70.6B`).
    pub parameters: String,
    /// The file on the hub: `hf:OWNER/REPO/PATH` (the first part of a split model).
    pub source: String,
    /// Resolve URL on the public hub, derived from `source`.
    #[serde(default)]
    pub url: String,
    /// File name it downloads to, derived from `source`.
    #[serde(default)]
    pub file: String,
    /// Files the model is split into (1 for a single file).
    #[serde(default = "one")]
    pub parts: u32,
    /// Size as the hub page shows it, rounded; for display only.
    #[serde(default)]
    pub approx_bytes: Option<u64>,
    /// False where the repository, file name or size was not seen on a hub page.
    #[serde(default)]
    pub confirmed: bool,
    /// What was seen to confirm the entry (or why it is not confirmed).
    #[serde(default)]
    pub evidence: String,
    /// Size in bytes, where verified.
    pub size: Option<u64>,
    /// sha256 of the file, where verified.
    pub sha256: Option<String>,
    /// The id in `assets/test-models.json` of the same model, for the test models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_model: Option<String>,
}

fn one() -> u32 {
    1
}

impl CatalogModel {
    /// The hub file of this model.
    ///
    /// Fails with [`ModelsError::Catalog`] when `source` is not a hub reference (ruled out by tests).
    pub fn hub_file(&self) -> Result<HubFile, ModelsError> {
        HubFile::parse(&self.source)
            .map_err(|e| ModelsError::Catalog(format!("model {}: {e}", self.id)))
    }

    /// What a download of this model must match.
    pub fn expected(&self) -> Expected {
        Expected {
            sha256: self.sha256.clone(),
            size: self.size,
        }
    }
}

/// A recommended target/draft pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogPair {
    /// Target model id.
    pub target: String,
    /// Draft model id.
    pub draft: String,
    /// Why this pair.
    pub note: String,
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Every model.
    pub models: Vec<CatalogModel>,
    /// Recommended pairs, by model id.
    pub pairs: Vec<CatalogPair>,
}

impl Catalog {
    /// The model with `id`.
    pub fn model(&self, id: &str) -> Option<&CatalogModel> {
        self.models.iter().find(|m| m.id == id)
    }

    /// The model downloaded from `url` (exact match, ignoring a `?download=true` style query).
    pub fn by_url(&self, url: &str) -> Option<&CatalogModel> {
        let base = url.split(['?', '#']).next().unwrap_or(url);
        self.models.iter().find(|m| m.url == base)
    }
}

/// The compiled-in catalog.
///
/// Fails with [`ModelsError::Catalog`] only if the asset is malformed, which the tests rule out.
pub fn catalog() -> Result<Catalog, ModelsError> {
    let mut catalog: Catalog =
        serde_json::from_str(CATALOG_JSON).map_err(|e| ModelsError::Catalog(e.to_string()))?;
    for m in &mut catalog.models {
        let file = m.hub_file()?;
        m.url = format!(
            "{DEFAULT_ENDPOINT}/{}/resolve/{}/{}",
            file.repo, file.revision, file.path
        );
        m.file = file.file_name().to_string();
    }
    for pair in &catalog.pairs {
        for id in [&pair.target, &pair.draft] {
            if catalog.model(id).is_none() {
                return Err(ModelsError::Catalog(format!(
                    "pair names unknown model {id:?}"
                )));
            }
        }
    }
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::{check_url, file_name_from_url, parse_sha256};

    #[test]
    fn catalog_is_consistent() {
        let c = catalog().unwrap();
        assert!(c.pairs.len() >= 2);
        for m in &c.models {
            check_url(&m.url).unwrap();
            assert!(m.url.starts_with("https://huggingface.co/"), "{}", m.url);
            assert_eq!(file_name_from_url(&m.url).unwrap(), m.file);
            if let Some(sha) = &m.sha256 {
                parse_sha256(sha).unwrap();
            }
            assert!(m.role == "draft" || m.role == "target", "{}", m.id);
            let file = m.hub_file().unwrap();
            let split = crate::split::SplitName::parse(&m.file);
            assert_eq!(split.as_ref().map_or(1, |s| s.count), m.parts, "{}", m.id);
            assert!(split.is_none_or(|s| s.part == 1), "{} names part 1", m.id);
            assert!(m.confirmed || !m.evidence.is_empty(), "{}", m.id);
            assert_eq!(HubFile::parse(&m.url).unwrap(), file);
        }
        for (target, draft) in [
            ("llama-3.1-70b", "llama-3.2-1b"),
            ("qwen2.5-72b", "qwen2.5-0.5b"),
            ("qwen2.5-coder-32b", "qwen2.5-coder-0.5b"),
            ("llama-3.1-8b", "llama-3.2-1b"),
        ] {
            assert!(
                c.pairs
                    .iter()
                    .any(|p| p.target.starts_with(target) && p.draft.starts_with(draft)),
                "{target} + {draft}"
            );
        }
        assert!(c.models.iter().any(|m| m.parts > 1), "a split model");
        let ids: std::collections::HashSet<_> = c.models.iter().map(|m| &m.id).collect();
        assert_eq!(ids.len(), c.models.len());
        assert!(c.model("llama-3.1-70b-instruct-q4_k_m").is_some());
        assert!(c
            .by_url("https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf?download=true")
            .is_some());
    }

    #[test]
    fn test_models_in_the_catalog_exist_in_the_manifest() {
        let c = catalog().unwrap();
        let manifest = crate::paths::test_models().unwrap();
        for m in c
            .models
            .iter()
            .filter_map(|m| m.test_model.as_ref().map(|t| (m, t)))
        {
            let t = manifest.iter().find(|t| &t.id == m.1).unwrap();
            assert_eq!(t.file, m.0.file);
        }
    }
}
