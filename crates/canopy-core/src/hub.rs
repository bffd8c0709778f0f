//! The model hub as every front end sees it: search, a repository's GGUF files with their fit on
//! this machine, the drafts that pair with a hub target, and the access token for gated
//! repositories (saved readable by the user only, never logged, never shown back).

use std::path::PathBuf;

use canopy_models::fit;
use canopy_models::hub::{quant_from_name, DEFAULT_REVISION};
use canopy_models::{Badge, CatalogModel, Hub, HubModel};
use serde::Serialize;

use crate::error::{CoreError, CoreResult};
use crate::library::display_name;
use crate::Core;

/// The saved token's file in the data folder.
const TOKEN_FILE: &str = "hub-token";
/// Longest token accepted (the hub's are under 100 characters).
const MAX_TOKEN_CHARS: usize = 512;

/// A repository found by [`Core::hub_search`].
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HubRepoView {
    /// `OWNER/NAME`.
    pub id: String,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub downloads: Option<u64>,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub likes: Option<u64>,
}

/// One downloadable model of a repository: a file, or a split set as one.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HubFileView {
    /// What a download takes: `hf:OWNER/REPO[@REV]/PATH` (the first part of a split set).
    pub source: String,
    /// The file's name without `.gguf` (of the first part).
    pub name: String,
    /// `Q4_K_M`, `IQ4_XS`, `F16`, …; `None` when the name does not say.
    pub quant: Option<String>,
    /// Total bytes, every part included.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub size: u64,
    /// Files it is made of (1 unless split).
    pub parts: usize,
    /// `None` when it cannot be downloaded (a part is missing on the hub).
    #[cfg_attr(feature = "ts", ts(type = "\"fits\" | \"tight\" | \"too-big\" | null"))]
    pub fit: Option<Badge>,
    /// The fit in one sentence, judged from the size alone before the download.
    pub fit_reason: String,
    /// A model of this file name is already in the library.
    pub in_library: bool,
}

/// A draft offered for a hub target.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HubDraftView {
    /// What a download takes (a catalog id).
    pub source: String,
    pub name: String,
    /// Bytes as the hub page shows them, rounded; `None` when unknown.
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub approx_size: Option<u64>,
    /// Why it is offered.
    pub note: String,
    /// A model of this file name is already in the library.
    pub in_library: bool,
}

/// Where the hub token comes from. The token itself never leaves the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HubTokenStatus {
    /// A token is saved in the data folder (it wins over `HF_TOKEN`).
    pub saved: bool,
    /// `HF_TOKEN` is set in the environment.
    pub from_environment: bool,
}

/// The tokenizer family a model's name tells, for offering drafts before any file is read: the
/// families of the catalog's pairs, most specific first.
fn family(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase().replace(['_', ' '], "-");
    [
        ("qwen2.5-coder", "qwen2.5-coder"),
        ("qwen2.5", "qwen2.5"),
        ("llama-3", "llama-3"),
        ("llama3", "llama-3"),
        ("smollm2", "smollm2"),
    ]
    .into_iter()
    .find(|(needle, _)| name.contains(needle))
    .map(|(_, family)| family)
}

/// The file name a hub path lands under in the models folder.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn hub_error(err: canopy_models::HubError) -> CoreError {
    CoreError::user(err.to_string())
}

impl Core {
    fn token_path(&self) -> PathBuf {
        self.data_dir().join(TOKEN_FILE)
    }

    fn saved_hub_token(&self) -> Option<String> {
        let token = std::fs::read_to_string(self.token_path()).ok()?;
        Some(token.trim().to_owned()).filter(|t| !t.is_empty())
    }

    /// A client of the hub the hub's own tools would use (`HF_ENDPOINT`), with the saved token,
    /// else `HF_TOKEN`.
    ///
    /// # Errors
    /// A user error when `HF_ENDPOINT` is not an http(s) URL.
    pub fn hub(&self) -> CoreResult<Hub> {
        Hub::from_env(self.saved_hub_token()).map_err(hub_error)
    }

    /// Whether a token is saved or set in the environment.
    pub fn hub_token_status(&self) -> HubTokenStatus {
        HubTokenStatus {
            saved: self.saved_hub_token().is_some(),
            from_environment: std::env::var("HF_TOKEN").is_ok_and(|t| !t.trim().is_empty()),
        }
    }

    /// Saves `token` for gated repositories, readable by this user only (mode 0600 on Unix), or
    /// forgets the saved one when `token` is `None` or blank.
    ///
    /// # Errors
    /// A user error for a token with spaces or control characters, or longer than 512
    /// characters; an I/O error when the data folder cannot be written.
    pub fn save_hub_token(&self, token: Option<&str>) -> CoreResult<HubTokenStatus> {
        let path = self.token_path();
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let Some(token) = token else {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(CoreError::Unavailable(format!(
                        "cannot remove {}: {e}",
                        path.display()
                    )))
                }
            }
            return Ok(self.hub_token_status());
        };
        if token.chars().count() > MAX_TOKEN_CHARS || !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(CoreError::user(
                "a hub token is one word of letters, digits and punctuation (copy it from the hub's access token settings)",
            ));
        }
        std::fs::create_dir_all(self.data_dir()).map_err(|e| {
            CoreError::Unavailable(format!("cannot create {}: {e}", self.data_dir().display()))
        })?;
        let partial = path.with_extension("partial");
        write_private(&partial, token.as_bytes())
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|e| CoreError::Unavailable(format!("cannot save {}: {e}", path.display())))?;
        Ok(self.hub_token_status())
    }

    /// GGUF repositories on the hub matching `query`, most downloaded first.
    ///
    /// # Errors
    /// A user error for an empty query or when the hub cannot be reached.
    pub fn hub_search(&self, query: &str, limit: usize) -> CoreResult<Vec<HubRepoView>> {
        let query = query.trim();
        if query.is_empty() {
            return Err(CoreError::user(
                "type a few words of a model's name to search the hub",
            ));
        }
        let found: Vec<HubModel> = self
            .hub()?
            .search(query, limit.clamp(1, 100))
            .map_err(hub_error)?;
        Ok(found
            .into_iter()
            .map(|m| HubRepoView {
                id: m.id,
                downloads: m.downloads,
                likes: m.likes,
            })
            .collect())
    }

    /// The GGUF models of `repo` at `revision` (empty: the default branch), smallest
    /// quantization first, each with its fit on this machine judged from its size.
    ///
    /// # Errors
    /// A user error when the repository or revision does not exist, is gated without a token,
    /// or the hub cannot be reached.
    pub fn hub_files(&self, repo: &str, revision: &str) -> CoreResult<Vec<HubFileView>> {
        let repo = repo.trim().trim_matches('/');
        let revision = Some(revision.trim())
            .filter(|r| !r.is_empty())
            .unwrap_or(DEFAULT_REVISION);
        let groups = self
            .hub()?
            .list_gguf_files(repo, revision)
            .map_err(hub_error)?;
        let machine = self.machine_facts();
        let library = self.library_file_names()?;
        let at = if revision == DEFAULT_REVISION {
            String::new()
        } else {
            format!("@{revision}")
        };
        let mut out = Vec::new();
        for group in groups {
            for entry in group.entries {
                let name = file_name(&entry.path);
                let (fit, fit_reason) = if entry.incomplete {
                    (
                        None,
                        "a part of this split model is missing on the hub".to_owned(),
                    )
                } else {
                    let estimate = fit::estimate_from_size(&machine, entry.size);
                    (Some(estimate.badge), estimate.reason)
                };
                out.push(HubFileView {
                    source: format!("hf:{repo}{at}/{}", entry.path),
                    name: display_name(name),
                    quant: group.quant.clone().or_else(|| quant_from_name(name)),
                    size: entry.size,
                    parts: entry.files.len(),
                    fit,
                    fit_reason,
                    in_library: library.iter().any(|n| n == name),
                });
            }
        }
        Ok(out)
    }

    /// Drafts to download with the hub target `source` (`hf:OWNER/REPO[@REV]/PATH`): the
    /// catalog's drafts of the same tokenizer family, the catalog's own pair first. Whether a
    /// pair really shares a vocabulary is checked from the files once both are in the library.
    ///
    /// # Errors
    /// Only when the compiled-in catalog is malformed, which its tests rule out.
    pub fn hub_drafts(&self, source: &str) -> CoreResult<Vec<HubDraftView>> {
        let catalog = canopy_models::catalog()?;
        let Some(target_family) = family(source) else {
            return Ok(Vec::new());
        };
        let target_file = file_name(source);
        let paired: Option<&str> = catalog
            .models
            .iter()
            .find(|m| m.role == "target" && file_name(&m.source) == target_file)
            .and_then(|t| catalog.pairs.iter().find(|p| p.target == t.id))
            .map(|p| p.draft.as_str());
        let library = self.library_file_names()?;
        let mut drafts: Vec<&CatalogModel> = catalog
            .models
            .iter()
            .filter(|m| m.role == "draft" && family(&m.source) == Some(target_family))
            .filter(|m| file_name(&m.source) != target_file)
            .collect();
        drafts.sort_by_key(|m| (Some(m.id.as_str()) != paired, m.approx_bytes));
        Ok(drafts
            .into_iter()
            .map(|m| HubDraftView {
                source: m.id.clone(),
                name: m.name.clone(),
                approx_size: m.approx_bytes,
                note: if Some(m.id.as_str()) == paired {
                    "the catalog's pair for this target".to_owned()
                } else {
                    format!("same tokenizer family ({target_family}); checked after the download")
                },
                in_library: library.iter().any(|n| n == file_name(&m.source)),
            })
            .collect())
    }

    fn library_file_names(&self) -> CoreResult<Vec<String>> {
        Ok(self
            .library()?
            .list()?
            .models
            .into_iter()
            .map(|m| m.file_name)
            .collect())
    }
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // A file left by an earlier run keeps its mode through `open`: set it again.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_catalog_pairs() {
        assert_eq!(
            family("hf:bartowski/Qwen2.5-Coder-32B-Instruct-GGUF/x.gguf"),
            Some("qwen2.5-coder")
        );
        assert_eq!(family("Qwen2.5-72B-Instruct-Q4_K_M.gguf"), Some("qwen2.5"));
        assert_eq!(family("Meta-Llama-3.1-70B-Instruct"), Some("llama-3"));
        assert_eq!(family("Llama3-8B"), Some("llama-3"));
        assert_eq!(family("mistral-7b"), None);
    }

    #[test]
    fn file_names_are_the_last_path_segment() {
        assert_eq!(file_name("hf:a/b/c/d.gguf"), "d.gguf");
        assert_eq!(file_name("d.gguf"), "d.gguf");
    }
}
