//! Downloads from a Hugging Face style model hub, verified against the hub's own checksums.
//!
//! A file is named by a [`HubFile`]: `hf:OWNER/REPO/PATH.gguf` (revision `main`),
//! `hf:OWNER/REPO@REVISION/PATH.gguf`, or a resolve URL
//! `https://huggingface.co/OWNER/REPO/resolve/REVISION/PATH` (a `blob` URL works too).
//! The hub's repository tree listing (`GET /api/models/{repo}/tree/{revision}/{folder}`) gives each
//! file's size and, for LFS files, its sha256 (`lfs.oid`), so a download is verified without
//! anyone typing a checksum. Downloads go through `/{repo}/resolve/{revision}/{path}`, which
//! redirects to storage; they resume like every download (see [`crate::download`]).
//!
//! The endpoint comes from `HF_ENDPOINT` (default <https://huggingface.co>) and the token from
//! `HF_TOKEN` or the caller. The token is sent only to the endpoint (never after a redirect) and
//! never appears in a message or a `Debug` output.

use std::fmt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use crate::download::{
    available_space, check_file_name, download_authorized, DownloadError, DownloadEvent,
    DownloadRequest, Downloaded, Expected,
};
pub use crate::error::HubError;
use crate::error::ModelsError;
use crate::fit::{FitEstimate, MachineFacts};
use crate::registry::{Library, ModelRecord};
use crate::split::SplitName;

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The revision of a reference that names none.
pub const DEFAULT_REVISION: &str = "main";
/// The most pages of a tree listing followed (the hub pages long listings).
const MAX_PAGES: usize = 100;

/// Characters escaped in a path segment (everything but unreserved ones).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One file in a hub repository at a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubFile {
    /// `OWNER/NAME`.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Path of the file inside the repository.
    pub path: String,
}

impl HubFile {
    /// Reads `hf:OWNER/REPO/PATH`, `hf:OWNER/REPO@REVISION/PATH` or a hub URL
    /// `http(s)://HOST/OWNER/REPO/resolve/REVISION/PATH` (or `/blob/`; query and fragment ignored,
    /// percent-escapes decoded).
    ///
    /// Fails with [`HubError::BadReference`] for anything else, an invalid repository name, or a
    /// path with `..`, empty or hidden segments.
    pub fn parse(reference: &str) -> Result<HubFile, HubError> {
        let given = reference.trim();
        let bad = |reason: &str| HubError::BadReference {
            given: given.to_string(),
            reason: reason.to_string(),
        };
        let (repo, revision, path) = if let Some(rest) = given.strip_prefix("hf:") {
            let rest = rest.trim_start_matches('/');
            let mut it = rest.splitn(3, '/');
            let (Some(owner), Some(name), Some(path)) = (it.next(), it.next(), it.next()) else {
                return Err(bad("it names no file"));
            };
            let (name, revision) = match name.split_once('@') {
                Some((n, r)) if !r.is_empty() => (n, r.to_string()),
                Some(_) => return Err(bad("the revision after @ is empty")),
                None => (name, DEFAULT_REVISION.to_string()),
            };
            (format!("{owner}/{name}"), revision, path.to_string())
        } else if let Some((_, rest)) = given.split_once("://") {
            let rest = rest.split(['?', '#']).next().unwrap_or_default();
            let Some((_, url_path)) = rest.split_once('/') else {
                return Err(bad("the URL has no path"));
            };
            let segments: Vec<&str> = url_path.split('/').collect();
            if segments.len() < 5 || !matches!(segments[2], "resolve" | "blob") {
                return Err(bad(
                    "the URL is not of the form /OWNER/REPO/resolve/REVISION/PATH",
                ));
            }
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| bad("the URL has an invalid percent-escape"))
            };
            let path = segments[4..]
                .iter()
                .map(|s| decode(s))
                .collect::<Result<Vec<_>, _>>()?
                .join("/");
            (
                format!("{}/{}", segments[0], segments[1]),
                decode(segments[3])?,
                path,
            )
        } else {
            return Err(bad("it starts with neither hf: nor http(s)://"));
        };
        check_repo(&repo).map_err(|_| bad(&format!("{repo:?} is not a repository name")))?;
        check_path(&path).map_err(|reason| bad(&reason))?;
        if revision.trim().is_empty() || revision.contains("..") {
            return Err(bad("the revision is empty or contains '..'"));
        }
        Ok(HubFile {
            repo,
            revision,
            path,
        })
    }

    /// The file name: the last segment of the path.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// The folder of the file inside the repository (`""` at the top).
    pub fn folder(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(d, _)| d)
    }

    /// Another file of the same folder, repository and revision.
    fn sibling(&self, file_name: &str) -> HubFile {
        let path = match self.folder() {
            "" => file_name.to_string(),
            dir => format!("{dir}/{file_name}"),
        };
        HubFile {
            repo: self.repo.clone(),
            revision: self.revision.clone(),
            path,
        }
    }
}

impl fmt::Display for HubFile {
    /// `hf:OWNER/REPO/PATH`, with `@REVISION` unless the revision is `main`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.revision == DEFAULT_REVISION {
            write!(f, "hf:{}/{}", self.repo, self.path)
        } else {
            write!(f, "hf:{}@{}/{}", self.repo, self.revision, self.path)
        }
    }
}

/// True when `reference` should be read as a hub file rather than a plain URL: it starts with
/// `hf:`, or it is a `/resolve/` or `/blob/` URL of the hub at `endpoint`.
pub fn is_hub_reference(reference: &str, endpoint: &str) -> bool {
    let r = reference.trim();
    if r.starts_with("hf:") {
        return true;
    }
    let endpoint = endpoint.trim_end_matches('/');
    let on_hub = r.starts_with(&format!("{endpoint}/")) || r.starts_with("https://huggingface.co/");
    on_hub && HubFile::parse(r).is_ok()
}

fn check_repo(repo: &str) -> Result<(), HubError> {
    let ok_part = |s: &str| {
        !s.is_empty()
            && s.len() <= 96
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if ok_part(owner) && ok_part(name) => Ok(()),
        _ => Err(HubError::BadRepo {
            given: repo.to_string(),
        }),
    }
}

fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("it names no file".to_string());
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!(
                "the path {path:?} has an empty, '.' or '..' segment"
            ));
        }
    }
    Ok(())
}

/// One entry of a repository tree listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HubEntry {
    /// Path inside the repository.
    pub path: String,
    /// Size in bytes (of the real file, for LFS files).
    pub size: u64,
    /// sha256 of the file, lowercase hex, for LFS files (`lfs.oid`); `None` for files kept in git.
    pub sha256: Option<String>,
}

#[derive(Deserialize)]
struct TreeItem {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    lfs: Option<TreeLfs>,
}

#[derive(Deserialize)]
struct TreeLfs {
    oid: String,
    size: u64,
}

/// One repository from a [`Hub::search`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubModel {
    /// `OWNER/NAME`.
    pub id: String,
    /// Downloads in the last month, where the hub says.
    #[serde(default)]
    pub downloads: Option<u64>,
    /// Likes, where the hub says.
    #[serde(default)]
    pub likes: Option<u64>,
    /// The task, e.g. `text-generation`.
    #[serde(default)]
    pub pipeline_tag: Option<String>,
}

/// One downloadable GGUF model in a repository: a single file, or every part of a split set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GgufEntry {
    /// The load path: the file, or the first part of a split set.
    pub path: String,
    /// Every file, in order (one for a single file).
    pub files: Vec<HubEntry>,
    /// Total size in bytes.
    pub size: u64,
    /// True when a part of a split set is missing from the repository.
    pub incomplete: bool,
}

/// The GGUF models of one quantization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuantGroup {
    /// The quantization read from the file names (`Q4_K_M`, `IQ4_XS`, `F16`, …), or `None`.
    pub quant: Option<String>,
    /// The models, smallest first.
    pub entries: Vec<GgufEntry>,
}

/// The quantization named in a GGUF file name: the last `-`, `.` or `_` separated token that
/// reads `Q4_K_M`, `IQ4_XS`, `Q8_0`, `TQ1_0`, `F16`, `BF16`, `F32` and the like (any case),
/// returned in upper case.
pub fn quant_from_name(file_name: &str) -> Option<String> {
    let name = file_name.rsplit('/').next().unwrap_or(file_name);
    let stem = name.strip_suffix(".gguf").unwrap_or(name);
    let stem = match SplitName::parse(name) {
        Some(split) => split.prefix,
        None => stem.to_string(),
    };
    let upper = stem.to_ascii_uppercase();
    let bytes = upper.as_bytes();
    let mut found = None;
    let mut i = 0;
    while i < bytes.len() {
        let at_boundary = i == 0 || matches!(bytes[i - 1], b'-' | b'.' | b'_');
        if at_boundary {
            let mut end = i;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            let token = &upper[i..end];
            if let Some(q) = quant_token(token) {
                found = Some(q);
                i = end;
                continue;
            }
        }
        i += 1;
    }
    found
}

/// A token (or its longest quant-shaped head, for `Q4_K_M_fixed`-style names) that names a type.
fn quant_token(token: &str) -> Option<String> {
    if matches!(token, "F16" | "BF16" | "F32" | "FP16" | "MXFP4") {
        return Some(token.to_string());
    }
    let body = token
        .strip_prefix("IQ")
        .or_else(|| token.strip_prefix("TQ"))
        .or_else(|| token.strip_prefix('Q'))?;
    let mut chars = body.chars();
    if !chars.next()?.is_ascii_digit() {
        return None;
    }
    // Keep the parts that quant names use: digits and K, S, M, L, XS, XXS, XL, NL, 0/1.
    let prefix_len = token.len() - body.len();
    let mut kept = token[..prefix_len + 1].to_string();
    for part in body[1..].split('_').skip(1) {
        let known = matches!(part, "K" | "S" | "M" | "L" | "XS" | "XXS" | "XL" | "NL")
            || (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        if !known {
            break;
        }
        kept.push('_');
        kept.push_str(part);
    }
    if !body[1..].is_empty() && !body[1..].starts_with('_') {
        return None;
    }
    Some(kept)
}

/// Groups the `.gguf` files of a tree listing by quantization; the parts of a split set become one
/// entry (marked incomplete when parts are missing). Groups come smallest first.
pub fn group_gguf_files(entries: &[HubEntry]) -> Vec<QuantGroup> {
    use std::collections::BTreeMap;
    let mut models: Vec<GgufEntry> = Vec::new();
    let mut sets: BTreeMap<(String, String, u32), Vec<Option<HubEntry>>> = BTreeMap::new();
    for e in entries {
        let name = e.path.rsplit('/').next().unwrap_or(&e.path);
        if !name.to_ascii_lowercase().ends_with(".gguf") {
            continue;
        }
        match SplitName::parse(name) {
            Some(split) if split.count > 1 => {
                let folder = e.path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
                let slots = sets
                    .entry((folder, split.prefix.clone(), split.count))
                    .or_insert_with(|| vec![None; split.count as usize]);
                slots[split.part as usize - 1] = Some(e.clone());
            }
            _ => models.push(GgufEntry {
                path: e.path.clone(),
                files: vec![e.clone()],
                size: e.size,
                incomplete: false,
            }),
        }
    }
    for ((folder, prefix, count), slots) in sets {
        let first = SplitName {
            prefix,
            part: 1,
            count,
        }
        .part_name(1);
        let path = if folder.is_empty() {
            first
        } else {
            format!("{folder}/{first}")
        };
        let incomplete = slots.iter().any(Option::is_none);
        let files: Vec<HubEntry> = slots.into_iter().flatten().collect();
        models.push(GgufEntry {
            path,
            size: files.iter().map(|f| f.size).sum(),
            files,
            incomplete,
        });
    }
    let mut groups: BTreeMap<Option<String>, Vec<GgufEntry>> = BTreeMap::new();
    for m in models {
        groups.entry(quant_from_name(&m.path)).or_default().push(m);
    }
    let mut out: Vec<QuantGroup> = groups
        .into_iter()
        .map(|(quant, mut entries)| {
            entries.sort_by(|a, b| a.size.cmp(&b.size).then(a.path.cmp(&b.path)));
            QuantGroup { quant, entries }
        })
        .collect();
    out.sort_by_key(|g| g.entries.first().map_or(0, |e| e.size));
    out
}

/// One file of a planned hub download, with what it must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HubPart {
    /// The file on the hub.
    pub file: HubFile,
    /// Size in bytes (from the tree listing).
    pub size: u64,
    /// sha256 (from the tree listing's LFS metadata); `None` for a file kept in git, which is
    /// then checked by size only.
    pub sha256: Option<String>,
}

/// A download resolved against the hub: every file it takes (one, or each part of a split set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HubDownload {
    /// The files, in order; the first is the load path.
    pub parts: Vec<HubPart>,
}

impl HubDownload {
    /// Total bytes.
    pub fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }

    /// True when every file has a sha256 to verify against.
    pub fn fully_verifiable(&self) -> bool {
        self.parts.iter().all(|p| p.sha256.is_some())
    }

    /// How the model would run on `machine`, judged before the download from its size alone
    /// (weights about the file size, layers and KV cache unknown): mainly whether it fits in RAM.
    pub fn fit(&self, machine: &MachineFacts) -> FitEstimate {
        crate::fit::estimate_from_size(machine, self.size())
    }
}

/// Progress of [`Hub::download`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// Part `part` of `parts` (from 1) starts: `file`, `size` bytes.
    Part {
        part: usize,
        parts: usize,
        file: String,
        size: u64,
    },
    /// Part `part` was already complete in the models folder and its sha256 matched.
    Reused { part: usize, file: String },
    /// Progress of the current part.
    Download(DownloadEvent),
}

/// A client of one hub endpoint, with an optional token.
#[derive(Clone)]
pub struct Hub {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Hub {
    /// A client of `endpoint` (an http(s) URL; a trailing `/` is ignored) with `token` (blank
    /// counts as none).
    ///
    /// Fails with [`HubError::BadEndpoint`] when `endpoint` is not an http(s) URL with a host.
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Hub, HubError> {
        let endpoint = endpoint.trim().trim_end_matches('/').to_string();
        crate::download::check_url(&endpoint).map_err(|e| HubError::BadEndpoint {
            given: endpoint.clone(),
            reason: e.to_string(),
        })?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_global(Some(Duration::from_secs(120)))
            .max_redirects(0)
            .user_agent(concat!("canopy/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Hub {
            endpoint,
            token: token
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            agent,
        })
    }

    /// A client configured like the hub's own tools: endpoint from `HF_ENDPOINT` (default
    /// [`DEFAULT_ENDPOINT`]), token from `HF_TOKEN` unless `token` is given (a token from the
    /// app's settings wins over the environment).
    ///
    /// Fails like [`Hub::new`].
    pub fn from_env(token: Option<String>) -> Result<Hub, HubError> {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = token
            .filter(|t| !t.trim().is_empty())
            .or_else(|| std::env::var("HF_TOKEN").ok());
        Hub::new(&endpoint, token)
    }

    /// The endpoint, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The download URL of `file`: `{endpoint}/{repo}/resolve/{revision}/{path}`.
    pub fn resolve_url(&self, file: &HubFile) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            file.repo,
            encode(&file.revision),
            encode_path(&file.path)
        )
    }

    fn get(&self, url: &str, what: &str) -> Result<ureq::http::Response<ureq::Body>, HubError> {
        let mut call = self.agent.get(url);
        if let Some(token) = &self.token {
            call = call.header("Authorization", format!("Bearer {token}"));
        }
        call.call().map_err(|e| HubError::Connect {
            endpoint: self.endpoint.clone(),
            reason: format!("{what}: {e}"),
        })
    }

    fn json<T: serde::de::DeserializeOwned>(
        response: ureq::http::Response<ureq::Body>,
        what: &str,
    ) -> Result<T, HubError> {
        let bad = |reason: String| HubError::BadAnswer {
            what: what.to_string(),
            reason,
        };
        let text = response
            .into_body()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| bad(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
    }

    /// Searches model repositories whose name matches `query`, filtered to GGUF, most downloaded
    /// first, at most `limit` (1 to 100).
    ///
    /// Fails with [`HubError::Connect`], [`HubError::Status`] or [`HubError::BadAnswer`].
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<HubModel>, HubError> {
        let url = format!(
            "{}/api/models?search={}&filter=gguf&sort=downloads&direction=-1&limit={}",
            self.endpoint,
            encode(query.trim()),
            limit.clamp(1, 100)
        );
        let what = format!("the search {query:?}");
        let response = self.get(&url, &what)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(HubError::Status {
                what,
                code: status,
                message: error_message(&response),
            });
        }
        Self::json(response, &what)
    }

    /// Every file under `folder` (`""` for the whole repository) of `repo` at `revision`,
    /// following the hub's pages.
    ///
    /// Fails with [`HubError::RepoNotFound`], [`HubError::RevisionNotFound`],
    /// [`HubError::FileNotFound`] (no such folder), the gated and token errors, or as
    /// [`Hub::search`] does.
    pub fn tree(
        &self,
        repo: &str,
        revision: &str,
        folder: &str,
    ) -> Result<Vec<HubEntry>, HubError> {
        check_repo(repo)?;
        let mut url = format!(
            "{}/api/models/{repo}/tree/{}",
            self.endpoint,
            encode(revision)
        );
        if !folder.is_empty() {
            url.push('/');
            url.push_str(&encode_path(folder));
        }
        url.push_str("?recursive=true");
        let what = format!("the file list of {repo} at {revision}");
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self.get(&url, &what)?;
            let status = response.status().as_u16();
            if status != 200 {
                let target = HubFile {
                    repo: repo.to_string(),
                    revision: revision.to_string(),
                    path: folder.to_string(),
                };
                return Err(self.status_error(&response, &target, &what));
            }
            let next = next_link(&response);
            let items: Vec<TreeItem> = Self::json(response, &what)?;
            out.extend(items.into_iter().filter(|i| i.kind == "file").map(|i| {
                let (size, sha256) = match i.lfs {
                    Some(lfs) => (lfs.size, Some(lfs.oid.to_ascii_lowercase())),
                    None => (i.size, None),
                };
                HubEntry {
                    path: i.path,
                    size,
                    sha256: sha256.filter(|s| s.len() == 64),
                }
            }));
            match next {
                Some(n) => url = self.absolute(&n),
                None => return Ok(out),
            }
        }
        Err(HubError::BadAnswer {
            what,
            reason: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// The GGUF models of `repo` at `revision`, grouped by quantization (see
    /// [`group_gguf_files`]).
    ///
    /// Fails like [`Hub::tree`].
    pub fn list_gguf_files(&self, repo: &str, revision: &str) -> Result<Vec<QuantGroup>, HubError> {
        Ok(group_gguf_files(&self.tree(repo, revision, "")?))
    }

    /// Resolves `file` into what to download: its size and sha256 from the tree listing and, when
    /// it is a part of a split set, every part of the set. Checks that the files can be
    /// downloaded (a `HEAD` on each resolve URL), so a gated repository or a refused token is
    /// reported before any byte is written.
    ///
    /// Fails with [`HubError::FileNotFound`] (naming the GGUF files the folder has),
    /// [`HubError::SplitIncomplete`], or like [`Hub::tree`].
    pub fn plan(&self, file: &HubFile) -> Result<HubDownload, HubError> {
        let listing = self.tree(&file.repo, &file.revision, file.folder())?;
        let find = |f: &HubFile| listing.iter().find(|e| e.path == f.path);
        let wanted: Vec<HubFile> = match SplitName::parse(file.file_name()) {
            Some(split) if split.count > 1 => {
                split.part_names().iter().map(|n| file.sibling(n)).collect()
            }
            _ => vec![file.clone()],
        };
        if find(file).is_none() {
            let ggufs: Vec<&str> = listing
                .iter()
                .map(|e| e.path.as_str())
                .filter(|p| p.ends_with(".gguf"))
                .take(6)
                .collect();
            let hint = if ggufs.is_empty() {
                format!("; see `canopy models files {}`", file.repo)
            } else {
                format!("; it has {}", ggufs.join(", "))
            };
            return Err(HubError::FileNotFound {
                repo: file.repo.clone(),
                revision: file.revision.clone(),
                path: file.path.clone(),
                hint,
            });
        }
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|w| find(w).is_none())
            .map(|w| w.file_name())
            .collect();
        if !missing.is_empty() {
            return Err(HubError::SplitIncomplete {
                repo: file.repo.clone(),
                first: wanted[0].path.clone(),
                missing: missing.join(", "),
            });
        }
        let mut parts = Vec::new();
        for w in wanted {
            let Some(entry) = find(&w) else { continue };
            self.check_access(&w)?;
            parts.push(HubPart {
                size: entry.size,
                sha256: entry.sha256.clone(),
                file: w,
            });
        }
        Ok(HubDownload { parts })
    }

    /// `HEAD` on the resolve URL without following the redirect: 2xx and 3xx mean the file can
    /// be downloaded.
    fn check_access(&self, file: &HubFile) -> Result<(), HubError> {
        let url = self.resolve_url(file);
        let mut call = self.agent.head(&url);
        if let Some(token) = &self.token {
            call = call.header("Authorization", format!("Bearer {token}"));
        }
        let response = call.call().map_err(|e| HubError::Connect {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        if (200..400).contains(&status) {
            return Ok(());
        }
        Err(self.status_error(&response, file, &file.to_string()))
    }

    /// Downloads every file of `plan` into the library's models folder (each verified against its
    /// own sha256 and size, each resumable) and registers them as one model.
    ///
    /// Refuses before the first byte when the disk lacks room for what is left to download
    /// ([`DownloadError::DiskFull`]). A part already complete in the models folder (from an
    /// earlier, interrupted run) is kept when its sha256 matches. When the files fail validation
    /// they are deleted and nothing is registered.
    ///
    /// Fails with [`ModelsError::Download`] when a download fails, or like
    /// [`Library::register_downloads`].
    pub fn download(
        &self,
        library: &mut Library,
        plan: &HubDownload,
        cancel: &AtomicBool,
        on_event: &mut dyn FnMut(&HubEvent),
    ) -> Result<(ModelRecord, Vec<Downloaded>), ModelsError> {
        let files = self.fetch(library.models_dir(), plan, cancel, on_event)?;
        let record = library.register_downloads(&files)?;
        Ok((record, files))
    }

    /// The download half of [`Hub::download`]: every file of `plan` fetched and verified into
    /// `models_dir`, nothing registered, so a caller can hold its library only to register.
    ///
    /// Fails with [`ModelsError::Download`] when a download fails.
    pub fn fetch(
        &self,
        models_dir: &Path,
        plan: &HubDownload,
        cancel: &AtomicBool,
        on_event: &mut dyn FnMut(&HubEvent),
    ) -> Result<Vec<Downloaded>, ModelsError> {
        let models_dir = models_dir.to_path_buf();
        for part in &plan.parts {
            check_file_name(part.file.file_name())?;
        }
        let partial_dir = crate::paths::partial_dir(&models_dir);
        let needed: u64 = plan
            .parts
            .iter()
            .filter(|p| !models_dir.join(p.file.file_name()).exists())
            .map(|p| {
                let partial = partial_dir.join(format!("{}.part", p.file.file_name()));
                let have = std::fs::metadata(partial).map_or(0, |m| m.len());
                p.size.saturating_sub(have)
            })
            .sum();
        if let Some(available) = available_space(&models_dir) {
            if available < needed {
                return Err(DownloadError::DiskFull {
                    partial: partial_dir,
                    needed,
                    available,
                }
                .into());
            }
        }
        let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let count = plan.parts.len();
        let mut files = Vec::with_capacity(count);
        for (i, part) in plan.parts.iter().enumerate() {
            let name = part.file.file_name().to_string();
            let dest = models_dir.join(&name);
            if let Some(done) = reuse(&dest, part)? {
                on_event(&HubEvent::Reused {
                    part: i + 1,
                    file: name,
                });
                files.push(done);
                continue;
            }
            on_event(&HubEvent::Part {
                part: i + 1,
                parts: count,
                file: name.clone(),
                size: part.size,
            });
            let request = DownloadRequest {
                url: self.resolve_url(&part.file),
                file_name: Some(name),
                expected: Expected {
                    sha256: part.sha256.clone(),
                    size: Some(part.size),
                },
            };
            let file = download_authorized(
                &models_dir,
                &request,
                authorization.as_deref(),
                cancel,
                &mut |e| on_event(&HubEvent::Download(e.clone())),
            )?;
            files.push(file);
        }
        Ok(files)
    }

    /// A `Link` target relative to the endpoint made absolute.
    fn absolute(&self, link: &str) -> String {
        if link.contains("://") {
            link.to_string()
        } else {
            format!("{}/{}", self.endpoint, link.trim_start_matches('/'))
        }
    }

    /// Turns an error answer into the variant that says what to do, from the hub's
    /// `X-Error-Code` header and the status.
    fn status_error(
        &self,
        response: &ureq::http::Response<ureq::Body>,
        target: &HubFile,
        what: &str,
    ) -> HubError {
        let status = response.status().as_u16();
        let code = header(response, "x-error-code").unwrap_or_default();
        let message = header(response, "x-error-message").unwrap_or_default();
        let repo = target.repo.clone();
        let endpoint = self.endpoint.clone();
        let gated = code == "GatedRepo"
            || (matches!(status, 401 | 403)
                && (message.contains("gated") || message.contains("restricted")));
        match (code.as_str(), status) {
            _ if gated && self.token.is_none() => HubError::GatedNeedsToken { repo, endpoint },
            _ if gated => HubError::GatedNoAccess { repo, endpoint },
            ("RepoNotFound", _) | ("", 401) if self.token.is_none() => HubError::RepoNotFound {
                repo,
                endpoint,
                hint:
                    " (a private repository needs HF_TOKEN or the hub token in Canopy's settings)",
            },
            ("RepoNotFound", _) => HubError::RepoNotFound {
                repo,
                endpoint,
                hint: " (or the token has no access to it)",
            },
            ("RevisionNotFound", _) => HubError::RevisionNotFound {
                repo,
                revision: target.revision.clone(),
            },
            ("EntryNotFound", _) | ("", 404) => HubError::FileNotFound {
                repo: repo.clone(),
                revision: target.revision.clone(),
                path: target.path.clone(),
                hint: format!("; see `canopy models files {repo}`"),
            },
            (_, 401 | 403) if self.token.is_some() => HubError::TokenRefused { repo, code: status },
            _ => HubError::Status {
                what: what.to_string(),
                code: status,
                message: error_message(response),
            },
        }
    }
}

/// A part already in the models folder: kept when its size and sha256 (where known) match.
fn reuse(dest: &Path, part: &HubPart) -> Result<Option<Downloaded>, ModelsError> {
    let Ok(meta) = std::fs::metadata(dest) else {
        return Ok(None);
    };
    if meta.len() != part.size {
        return Ok(None);
    }
    let Some(expected) = &part.sha256 else {
        return Ok(None);
    };
    let actual = sha256_file(dest)?;
    if &actual != expected {
        return Ok(None);
    }
    Ok(Some(Downloaded {
        path: dest.to_path_buf(),
        size: part.size,
        sha256: actual,
        checksum_verified: true,
    }))
}

fn sha256_file(path: &Path) -> Result<String, ModelsError> {
    use sha2::{Digest, Sha256};
    let mut file =
        std::fs::File::open(path).map_err(|e| ModelsError::io("cannot open", path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| ModelsError::io("cannot read", path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

/// `: MESSAGE` from the hub's `X-Error-Message`, cut to one short line, or nothing.
fn error_message(response: &ureq::http::Response<ureq::Body>) -> String {
    match header(response, "x-error-message") {
        Some(m) if !m.is_empty() => {
            let line: String = m
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            format!(": {line}")
        }
        _ => String::new(),
    }
}

/// The `rel="next"` target of a `Link` header.
fn next_link(response: &ureq::http::Response<ureq::Body>) -> Option<String> {
    let link = header(response, "link")?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn encode_path(path: &str) -> String {
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let f = HubFile::parse(
            "hf:bartowski/Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        )
        .unwrap();
        assert_eq!(f.repo, "bartowski/Llama-3.2-1B-Instruct-GGUF");
        assert_eq!(f.revision, "main");
        assert_eq!(f.path, "Llama-3.2-1B-Instruct-Q4_K_M.gguf");
        let f = HubFile::parse("hf:Qwen/Qwen2.5-72B-Instruct-GGUF@v1.0/sub/q4-00001-of-00002.gguf")
            .unwrap();
        assert_eq!(
            (f.revision.as_str(), f.path.as_str()),
            ("v1.0", "sub/q4-00001-of-00002.gguf")
        );
        assert_eq!(f.folder(), "sub");
        assert_eq!(
            f.to_string(),
            "hf:Qwen/Qwen2.5-72B-Instruct-GGUF@v1.0/sub/q4-00001-of-00002.gguf"
        );
        let f = HubFile::parse(
            "https://huggingface.co/a/b/resolve/refs%2Fpr%2F1/x%20y.gguf?download=true",
        )
        .unwrap();
        assert_eq!(
            (f.repo.as_str(), f.revision.as_str(), f.path.as_str()),
            ("a/b", "refs/pr/1", "x y.gguf")
        );
        let hub = Hub::new("http://127.0.0.1:9/", None).unwrap();
        assert_eq!(
            hub.resolve_url(&f),
            "http://127.0.0.1:9/a/b/resolve/refs%2Fpr%2F1/x%20y.gguf"
        );
        for bad in [
            "hf:a/b",
            "hf:a/b@/x.gguf",
            "hf:a/../x.gguf",
            "hf:a/b/../x.gguf",
            "hf:a b/c/x.gguf",
            "https://huggingface.co/a/b/tree/main/x.gguf",
            "ftp-ish",
        ] {
            let e = HubFile::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("hf:OWNER/REPO/FILE.gguf") && !e.contains('\n'),
                "{bad}: {e}"
            );
        }
        assert!(is_hub_reference("hf:a/b/c.gguf", DEFAULT_ENDPOINT));
        assert!(is_hub_reference(
            "https://huggingface.co/a/b/resolve/main/c.gguf",
            DEFAULT_ENDPOINT
        ));
        assert!(!is_hub_reference(
            "https://example.com/a/b/resolve/main/c.gguf",
            DEFAULT_ENDPOINT
        ));
    }

    #[test]
    fn quantizations_come_from_file_names() {
        for (name, quant) in [
            ("Meta-Llama-3.1-70B-Instruct-Q4_K_M.gguf", Some("Q4_K_M")),
            ("qwen2.5-0.5b-instruct-q8_0.gguf", Some("Q8_0")),
            ("Llama-3.2-1B-Instruct-IQ4_XS.gguf", Some("IQ4_XS")),
            ("model-f16.gguf", Some("F16")),
            ("Model.BF16.gguf", Some("BF16")),
            ("SmolLM2-135M-Instruct.Q4_1.gguf", Some("Q4_1")),
            (
                "Qwen2.5-72B-Instruct-Q4_K_M-00001-of-00002.gguf",
                Some("Q4_K_M"),
            ),
            (
                "qwen2.5-72b-instruct-q4_k_m-00002-of-00012.gguf",
                Some("Q4_K_M"),
            ),
            ("x-IQ2_XXS.gguf", Some("IQ2_XXS")),
            ("x-UD-Q4_K_XL.gguf", Some("Q4_K_XL")),
            ("Qwen2.5-7B.gguf", None),
            ("mmproj-model.gguf", None),
        ] {
            assert_eq!(quant_from_name(name).as_deref(), quant, "{name}");
        }
    }

    #[test]
    fn files_group_by_quant_and_split_sets_become_one_entry() {
        let e = |path: &str, size| HubEntry {
            path: path.to_string(),
            size,
            sha256: None,
        };
        let groups = group_gguf_files(&[
            e("README.md", 10),
            e("m-Q8_0.gguf", 800),
            e("m-Q4_K_M.gguf", 400),
            e("m-Q4_K_M-00002-of-00002.gguf", 300),
            e("m-Q4_K_M-00001-of-00002.gguf", 300),
            e("big/m-F16-00001-of-00003.gguf", 1000),
            e("big/m-F16-00003-of-00003.gguf", 1000),
        ]);
        let quants: Vec<_> = groups.iter().map(|g| g.quant.clone().unwrap()).collect();
        assert_eq!(quants, ["Q4_K_M", "Q8_0", "F16"]);
        let q4 = &groups[0].entries;
        assert_eq!(q4.len(), 2);
        assert_eq!(q4[0].path, "m-Q4_K_M.gguf");
        assert_eq!(q4[1].path, "m-Q4_K_M-00001-of-00002.gguf");
        assert_eq!(
            (q4[1].size, q4[1].files.len(), q4[1].incomplete),
            (600, 2, false)
        );
        let f16 = &groups[2].entries[0];
        assert_eq!(f16.path, "big/m-F16-00001-of-00003.gguf");
        assert!(f16.incomplete);
    }

    #[test]
    fn the_token_stays_out_of_debug_output() {
        let hub = Hub::new(DEFAULT_ENDPOINT, Some("hf_secret".to_string())).unwrap();
        assert!(!format!("{hub:?}").contains("hf_secret"));
        assert!(hub.has_token());
        assert!(!Hub::new(DEFAULT_ENDPOINT, Some("  ".into()))
            .unwrap()
            .has_token());
    }
}
