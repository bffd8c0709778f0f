//! Errors of the model library.

use std::io;
use std::path::PathBuf;

/// Anything that can go wrong in the model library, with the facts a user needs to act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelsError {
    /// No `CANOPY_HOME` and no platform data directory.
    #[error("cannot find a data directory (no home directory); set CANOPY_HOME")]
    NoDataDir,
    /// `assets/test-models.json` is malformed.
    #[error("assets/test-models.json is malformed: {0}")]
    Manifest(String),
    /// A test model id that the manifest does not list.
    #[error("unknown test model {id:?}; known: {known}")]
    UnknownTestModel { id: String, known: String },
    /// A test model that has not been fetched.
    #[error("model {id} is not fetched: run scripts/fetch-models --all (looked for {})", path.display())]
    TestModelMissing { id: String, path: PathBuf },
    /// A file-system operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The registry database failed.
    #[error("model library database {}: {source}", path.display())]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The registry database was written by a newer Canopy.
    #[error("model library database {} has schema version {found}, newer than this build supports ({supported}); use a newer canopy", path.display())]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A file that is not a valid GGUF model.
    #[error("{}: {source}", path.display())]
    InvalidGguf {
        path: PathBuf,
        #[source]
        source: canopy_gguf::GgufError,
    },
    /// A registry id that does not exist.
    #[error("no model with id {0} in the library (see `canopy models list`)")]
    NotFound(i64),
    /// A path that is not registered.
    #[error("{} is not in the library (see `canopy models list`)", .0.display())]
    PathNotRegistered(PathBuf),
    /// The file is registered already.
    #[error("{} is already in the library as model {id}", path.display())]
    AlreadyRegistered { path: PathBuf, id: i64 },
    /// A file name taken in the models folder.
    #[error("{} already exists in the models folder; remove or rename it first", .0.display())]
    DestinationExists(PathBuf),
    /// Deleting a file outside the models folder without an explicit request.
    #[error("refusing to delete {}: it is outside the models folder {}; it was only referenced", path.display(), models_dir.display())]
    OutsideModelsDir { path: PathBuf, models_dir: PathBuf },
    /// A role name that is not draft, target or both.
    #[error("unknown role {0:?}: use draft, target or both")]
    UnknownRole(String),
    /// A download failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// A schema migration of the registry database failed.
    #[error("cannot migrate the model library database {}: {reason}", path.display())]
    Migration { path: PathBuf, reason: String },
    /// A registry row whose stored metadata cannot be read back.
    #[error("model {id} has unreadable metadata in the library ({reason}); remove it and import the file again")]
    Metadata { id: i64, reason: String },
    /// The catalog asset is malformed.
    #[error("assets/catalog.json is malformed: {0}")]
    Catalog(String),
    /// A part of a split model other than the first was given.
    #[error("{} is a later part of a split model; import or load its first part {} instead", path.display(), first.display())]
    SplitNotFirst { path: PathBuf, first: PathBuf },
    /// A part of a split model is absent.
    #[error("split model {} is incomplete: part {part} of {count} ({}) is missing", first.display(), missing.display())]
    SplitPartMissing {
        first: PathBuf,
        missing: PathBuf,
        part: u32,
        count: u32,
    },
    /// The parts of a split model do not belong together.
    #[error("split model {} is inconsistent: {reason}", path.display())]
    SplitInvalid { path: PathBuf, reason: String },
    /// A hub request failed.
    #[error(transparent)]
    Hub(#[from] HubError),
}

impl ModelsError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ModelsError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// True for errors caused by the user's input (a bad file, an unknown id, a refused delete)
    /// rather than by the machine; the CLI maps these to exit code 2.
    pub fn is_user_error(&self) -> bool {
        match self {
            ModelsError::NoDataDir
            | ModelsError::UnknownTestModel { .. }
            | ModelsError::TestModelMissing { .. }
            | ModelsError::SchemaTooNew { .. }
            | ModelsError::InvalidGguf { .. }
            | ModelsError::NotFound(_)
            | ModelsError::PathNotRegistered(_)
            | ModelsError::AlreadyRegistered { .. }
            | ModelsError::DestinationExists(_)
            | ModelsError::OutsideModelsDir { .. }
            | ModelsError::UnknownRole(_)
            | ModelsError::Download(_)
            | ModelsError::SplitNotFirst { .. }
            | ModelsError::SplitPartMissing { .. }
            | ModelsError::SplitInvalid { .. }
            | ModelsError::Hub(_) => true,
            ModelsError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ),
            ModelsError::Manifest(_)
            | ModelsError::Db { .. }
            | ModelsError::Migration { .. }
            | ModelsError::Metadata { .. }
            | ModelsError::Catalog(_) => false,
        }
    }
}

/// Why a hub request failed. Each message is one line that says what to do next; none contains
/// the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// A reference that is neither `hf:OWNER/REPO[@REV]/PATH` nor a resolve URL.
    #[error("cannot read {given:?} as a hub file: {reason} (expected hf:OWNER/REPO/FILE.gguf, hf:OWNER/REPO@REVISION/FILE.gguf or https://huggingface.co/OWNER/REPO/resolve/REVISION/FILE.gguf)")]
    BadReference { given: String, reason: String },
    /// A repository name that is not `OWNER/NAME`.
    #[error(
        "invalid repository name {given:?}: expected OWNER/NAME (letters, digits, '-', '_', '.')"
    )]
    BadRepo { given: String },
    /// `HF_ENDPOINT` (or the given endpoint) is not an http(s) URL.
    #[error("invalid hub endpoint {given:?} (from HF_ENDPOINT or the settings): {reason}")]
    BadEndpoint { given: String, reason: String },
    /// The repository is gated and no token was given.
    #[error("{repo} is a gated repository: accept its terms at {endpoint}/{repo} while signed in, then save a token of that account (`canopy models token`, or the hub panel of the app's library) or set HF_TOKEN")]
    GatedNeedsToken { repo: String, endpoint: String },
    /// The repository is gated and the token has no access.
    #[error("the hub token has no access to the gated repository {repo}: accept its terms at {endpoint}/{repo} with the token's account, or use a token of an account that has")]
    GatedNoAccess { repo: String, endpoint: String },
    /// The token was refused.
    #[error("the hub refused the token for {repo} (HTTP {code}): check the saved token (`canopy models token`, the app's library) or HF_TOKEN")]
    TokenRefused { repo: String, code: u16 },
    /// No such repository (or a private one without a token).
    #[error("no repository {repo} on {endpoint}{hint}")]
    RepoNotFound {
        repo: String,
        endpoint: String,
        hint: &'static str,
    },
    /// The repository exists but the revision does not.
    #[error("repository {repo} has no revision {revision:?}: use a branch, tag or commit that exists (default main)")]
    RevisionNotFound { repo: String, revision: String },
    /// The repository and revision exist but the file does not.
    #[error("repository {repo} has no file {path:?} at revision {revision}{hint}")]
    FileNotFound {
        repo: String,
        revision: String,
        path: String,
        hint: String,
    },
    /// Some parts of a split model are not in the repository.
    #[error("split model {first} in {repo} is incomplete on the hub: missing {missing}")]
    SplitIncomplete {
        repo: String,
        first: String,
        missing: String,
    },
    /// Another HTTP status.
    #[error("HTTP {code} from the hub for {what}{message}")]
    Status {
        what: String,
        code: u16,
        message: String,
    },
    /// The hub could not be reached.
    #[error("cannot reach the hub at {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// The hub's answer could not be read.
    #[error("unreadable answer from the hub for {what}: {reason}")]
    BadAnswer { what: String, reason: String },
}

/// Why a download failed. Each message is one line that says what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "unsupported URL scheme {scheme:?} in {url}: only http and https downloads are allowed"
    )]
    UnsupportedScheme { url: String, scheme: String },
    #[error("invalid file name {name:?}: {reason}")]
    BadFileName { name: String, reason: String },
    #[error("invalid sha256 {given:?}: expected 64 hexadecimal digits")]
    BadChecksum { given: String },
    #[error("nothing to verify the download against: pass --sha256 HEX")]
    NothingToVerify,
    #[error("{} already exists; remove it first or choose another name with --name", path.display())]
    Exists { path: PathBuf },
    #[error("HTTP 404 Not Found: {url} does not exist; check the URL")]
    NotFound { url: String },
    #[error("HTTP {code} from {url}: the server refused the download")]
    Status { url: String, code: u16 },
    #[error("cannot connect for {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the server sent an unusable answer for {url}: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("connection dropped after {done} of {} bytes ({reason}); the partial download is kept in {}: run the same command again to resume", total.map_or("?".to_string(), |t| t.to_string()), partial.display())]
    Dropped {
        done: u64,
        total: Option<u64>,
        reason: String,
        partial: PathBuf,
    },
    #[error("disk full: {} needs {needed} more bytes but only {available} are free; free some space and run the same command again to resume", partial.display())]
    DiskFull {
        partial: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("disk full while writing {}; free some space and run the same command again to resume", partial.display())]
    DiskFullWhileWriting { partial: PathBuf },
    #[error("checksum mismatch for {url}: expected sha256 {expected}, got {actual}; the download was deleted")]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for {url}: expected {expected} bytes, got {actual}; the download was deleted")]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("download cancelled; the partial download is kept in {}: run the same command again to resume", partial.display())]
    Cancelled { partial: PathBuf },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
