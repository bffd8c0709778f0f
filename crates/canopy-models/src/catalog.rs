//! The catalog of recommended models and target/draft pairs (`assets/catalog.json`, compiled in).

use serde::{Deserialize, Serialize};

use crate::download::Expected;
use crate::error::ModelsError;

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
    /// Hub URL of the `.gguf` file.
    pub url: String,
    /// File name it downloads to.
    pub file: String,
    /// Size in bytes, where verified.
    pub size: Option<u64>,
    /// sha256 of the file, where verified.
    pub sha256: Option<String>,
    /// The id in `assets/test-models.json` of the same model, for the test models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_model: Option<String>,
}

impl CatalogModel {
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
    let catalog: Catalog =
        serde_json::from_str(CATALOG_JSON).map_err(|e| ModelsError::Catalog(e.to_string()))?;
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
        }
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
