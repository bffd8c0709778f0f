//! Errors of the model library.

use std::io;
use std::path::PathBuf;

use crate::download::DownloadError;
use crate::hub::HubError;

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
