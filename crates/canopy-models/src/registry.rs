//! The model registry: every GGUF file Canopy knows, in its own SQLite database
//! (`<data dir>/library.db`).
//!
//! Writes take `BEGIN IMMEDIATE`; the database runs in WAL mode with `synchronous=FULL` and a busy
//! timeout, so the app and the CLI can use it at the same time. The schema version lives in
//! `PRAGMA user_version`; a database from a newer Canopy is refused, never rewritten.
//! A file is validated with `canopy_gguf` before it is registered. Its sha256 is computed in the
//! background ([`Library::start_hashing`]); until then the row's hash state reads `hashing`.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use canopy_gguf::ModelInfo;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use rusqlite_migration::{Migrations, M};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::download::Downloaded;
use crate::error::ModelsError;
use crate::split::ModelFiles;

/// The schema, one migration per version (`PRAGMA user_version` = number applied).
/// Version 2 adds the parts of split models (`model_parts`, one row per file, part 1 included;
/// no rows for a single-file model), so version 1 databases open unchanged.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE models (
    id            INTEGER PRIMARY KEY,
    path          TEXT NOT NULL UNIQUE,
    file_name     TEXT NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT,
    hash_state    TEXT NOT NULL CHECK (hash_state IN ('hashing', 'done', 'failed')),
    hash_error    TEXT,
    hashed_bytes  INTEGER NOT NULL DEFAULT 0,
    metadata      TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('draft', 'target', 'both')),
    managed       INTEGER NOT NULL,
    added_at      INTEGER NOT NULL,
    last_used_at  INTEGER
) STRICT;
"#,
    r#"
CREATE TABLE model_parts (
    model_id  INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    part      INTEGER NOT NULL,
    path      TEXT NOT NULL UNIQUE,
    size      INTEGER NOT NULL,
    sha256    TEXT,
    PRIMARY KEY (model_id, part)
) STRICT;
"#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a writer waits for another one before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Hash progress is reported this often (bytes).
const HASH_REPORT_EVERY: u64 = 16 << 20;
/// Hash progress is stored in the row this often (bytes), so other processes can show it.
const HASH_STORE_EVERY: u64 = 128 << 20;

/// A registry id.
pub type ModelId = i64;

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A small model that proposes tokens.
    Draft,
    /// A large model that verifies them.
    Target,
    /// Either.
    Both,
}

impl Role {
    /// `draft`, `target` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Draft => "draft",
            Role::Target => "target",
            Role::Both => "both",
        }
    }

    /// Parses `draft`, `target` or `both`.
    ///
    /// Fails with [`ModelsError::UnknownRole`] for anything else.
    pub fn parse(s: &str) -> Result<Role, ModelsError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "draft" => Ok(Role::Draft),
            "target" => Ok(Role::Target),
            "both" => Ok(Role::Both),
            _ => Err(ModelsError::UnknownRole(s.to_string())),
        }
    }

    /// The role a model of `parameters` weights most likely plays: below 2 billion a draft,
    /// from 10 billion a target, in between either.
    pub fn guess(parameters: u64) -> Role {
        if parameters < 2_000_000_000 {
            Role::Draft
        } else if parameters < 10_000_000_000 {
            Role::Both
        } else {
            Role::Target
        }
    }
}

/// Where the sha256 of a registered file stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum HashState {
    /// Being computed (or waiting to be); `done` bytes hashed so far.
    Hashing { done: u64 },
    /// Computed; see [`ModelRecord::sha256`].
    Done,
    /// Reading the file failed.
    Failed { reason: String },
}

/// One registered model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRecord {
    /// Registry id.
    pub id: ModelId,
    /// Absolute path of the file.
    pub path: PathBuf,
    /// File name.
    pub file_name: String,
    /// Size in bytes when registered.
    pub size: u64,
    /// sha256, lowercase hex, once computed.
    pub sha256: Option<String>,
    /// Where the sha256 stands.
    pub hash: HashState,
    /// What the GGUF header says.
    pub info: ModelInfo,
    /// Draft, target or both.
    pub role: Role,
    /// True when the file lies inside the models folder (copied, downloaded or fetched there).
    pub managed: bool,
    /// Unix seconds when registered.
    pub added_at: i64,
    /// Unix seconds when last used, if ever.
    pub last_used_at: Option<i64>,
    /// False when the file (or, for a split model, any of its parts) is no longer on disk.
    pub present: bool,
    /// For a model split over several files: every part in order, the first being [`Self::path`]
    /// (the path llama.cpp loads); [`Self::size`] is their sum. Empty for a single file.
    pub parts: Vec<ModelPart>,
}

/// One file of a split model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelPart {
    /// Absolute path of the part.
    pub path: PathBuf,
    /// Size in bytes when registered.
    pub size: u64,
    /// sha256 of the part, lowercase hex, once computed.
    pub sha256: Option<String>,
}

impl ModelRecord {
    /// Every file of the model: the parts of a split model, or the one file.
    pub fn files(&self) -> Vec<&Path> {
        if self.parts.is_empty() {
            vec![self.path.as_path()]
        } else {
            self.parts.iter().map(|p| p.path.as_path()).collect()
        }
    }
}

/// What [`Library::list`] returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing {
    /// Every model, oldest first.
    pub models: Vec<ModelRecord>,
    /// Bytes of all registered files.
    pub total_bytes: u64,
    /// Bytes of the files inside the models folder.
    pub managed_bytes: u64,
}

/// How [`Library::import`] takes a file in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Copy it into the models folder.
    Copy,
    /// Register it where it is.
    Reference,
}

/// Whether [`Library::remove`] also deletes the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteFile {
    /// Keep the file.
    Keep,
    /// Delete it if it lies inside the models folder; refuse otherwise.
    InsideModelsDir,
    /// Delete it wherever it is.
    Anywhere,
}

/// What [`Library::scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanReport {
    /// Newly registered models.
    pub added: Vec<ModelRecord>,
    /// `.gguf` files registered before.
    pub already: Vec<PathBuf>,
    /// `.gguf` files refused, with the validator's reason.
    pub invalid: Vec<(PathBuf, String)>,
}

/// One report from a [`HashJob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashEvent {
    /// `done` of `total` bytes of model `id` hashed.
    Progress { id: ModelId, done: u64, total: u64 },
    /// Model `id` hashed.
    Done { id: ModelId, sha256: String },
    /// Model `id` could not be hashed.
    Failed { id: ModelId, reason: String },
}

/// Background hashing of registered files, started by [`Library::start_hashing`].
#[derive(Debug)]
pub struct HashJob {
    /// Progress and results, in order; closed when the job ends.
    pub events: mpsc::Receiver<HashEvent>,
    handle: JoinHandle<()>,
}

impl HashJob {
    /// Waits for the job to end and returns the final event of each model (Done or Failed),
    /// skipping progress events not yet received.
    pub fn wait(self) -> Vec<HashEvent> {
        let finals = self
            .events
            .iter()
            .filter(|e| !matches!(e, HashEvent::Progress { .. }))
            .collect();
        let _ = self.handle.join();
        finals
    }
}

/// The model registry.
#[derive(Debug)]
pub struct Library {
    conn: Connection,
    db_path: PathBuf,
    models_dir: PathBuf,
}

impl Library {
    /// Opens (creating and migrating) the registry database at `db_path`, with imported files going
    /// to `models_dir`.
    ///
    /// Fails when the folders cannot be created, the database cannot be opened or migrated, or it
    /// was written by a newer Canopy ([`ModelsError::SchemaTooNew`]).
    pub fn open(db_path: &Path, models_dir: &Path) -> Result<Library, ModelsError> {
        if let Some(parent) = db_path.parent() {
            fs::create_dir_all(parent).map_err(|e| ModelsError::io("cannot create", parent, e))?;
        }
        fs::create_dir_all(models_dir)
            .map_err(|e| ModelsError::io("cannot create", models_dir, e))?;
        let models_dir = fs::canonicalize(models_dir)
            .map_err(|e| ModelsError::io("cannot resolve", models_dir, e))?;
        let mut conn = connect(db_path)?;
        let db = |source| ModelsError::Db {
            path: db_path.to_path_buf(),
            source,
        };
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db)?;
        if found > SCHEMA_VERSION {
            return Err(ModelsError::SchemaTooNew {
                path: db_path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let migrations = Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
        migrations
            .to_latest(&mut conn)
            .map_err(|e| ModelsError::Migration {
                path: db_path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Library {
            conn,
            db_path: db_path.to_path_buf(),
            models_dir,
        })
    }

    /// The database file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The models folder (canonical path).
    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> ModelsError + '_ {
        move |source| ModelsError::Db {
            path: self.db_path.clone(),
            source,
        }
    }

    /// Validates the GGUF file at `path` and registers it where it is. The first part of a split
    /// model registers the whole set as one model (see [`crate::split`]). `sha256`, when known
    /// (a verified download of a single file), is stored at once; otherwise the row waits for
    /// [`Library::start_hashing`].
    ///
    /// Fails when the file cannot be read, is not a valid GGUF ([`ModelsError::InvalidGguf`]), is
    /// a part of a split model other than the first ([`ModelsError::SplitNotFirst`]) or of an
    /// incomplete or inconsistent set, is registered already, or the database fails.
    pub fn register(
        &mut self,
        path: &Path,
        sha256: Option<&str>,
    ) -> Result<ModelRecord, ModelsError> {
        let shas = sha256.map(|s| vec![s.to_string()]);
        self.register_files(path, shas.as_deref())
    }

    /// [`Library::register`] with the verified sha256 of every file: one for a single file, one
    /// per part, in order, for a split model (a wrong count stores none).
    fn register_files(
        &mut self,
        path: &Path,
        shas: Option<&[String]>,
    ) -> Result<ModelRecord, ModelsError> {
        let path = fs::canonicalize(path).map_err(|e| ModelsError::io("cannot open", path, e))?;
        if let Some(existing) = self.find_by_path(&path)? {
            return Err(ModelsError::AlreadyRegistered {
                path,
                id: existing.id,
            });
        }
        let files = ModelFiles::open(&path)?;
        self.insert(&path, &files, shas)
    }

    fn insert(
        &mut self,
        path: &Path,
        files: &ModelFiles,
        shas: Option<&[String]>,
    ) -> Result<ModelRecord, ModelsError> {
        let info = files.info();
        let parts: Vec<(PathBuf, u64)> = match files {
            ModelFiles::Single(_) => Vec::new(),
            ModelFiles::Split(set) => set.parts.iter().cloned().zip(set.sizes.clone()).collect(),
        };
        let shas = shas.filter(|s| s.len() == parts.len().max(1));
        for (part, _) in parts.iter().skip(1) {
            if let Some(existing) = self.find_by_path(part)? {
                return Err(ModelsError::AlreadyRegistered {
                    path: part.clone(),
                    id: existing.id,
                });
            }
        }
        let sha256 = shas.and_then(|s| s.first()).map(String::as_str);
        let metadata = serde_json::to_string(info).map_err(|e| ModelsError::Metadata {
            id: 0,
            reason: e.to_string(),
        })?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let managed = path.starts_with(&self.models_dir);
        let role = Role::guess(info.parameter_count);
        let (state, bytes_hashed) = match sha256 {
            Some(_) => ("done", info.file_size),
            None => ("hashing", 0),
        };
        let load_path = path_text(path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self_db(&self.db_path))?;
        tx.execute(
            "INSERT INTO models (path, file_name, size, sha256, hash_state, hashed_bytes, metadata,
                                 role, managed, added_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                load_path,
                file_name,
                info.file_size as i64,
                sha256,
                state,
                bytes_hashed as i64,
                metadata,
                role.as_str(),
                managed,
                now(),
            ],
        )
        .map_err(self_db(&self.db_path))?;
        let id = tx.last_insert_rowid();
        for (i, (part, size)) in parts.iter().enumerate() {
            tx.execute(
                "INSERT INTO model_parts (model_id, part, path, size, sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    id,
                    i as i64 + 1,
                    path_text(part),
                    *size as i64,
                    shas.and_then(|s| s.get(i))
                ],
            )
            .map_err(self_db(&self.db_path))?;
        }
        tx.commit().map_err(self_db(&self.db_path))?;
        self.get(id)
    }

    /// Registers a verified download (see [`crate::download::download`]) after validating it as
    /// GGUF. An invalid file is deleted, since it came from the network into the models folder.
    ///
    /// Fails like [`Library::register`].
    pub fn register_download(&mut self, file: &Downloaded) -> Result<ModelRecord, ModelsError> {
        self.register_downloads(std::slice::from_ref(file))
    }

    /// Registers verified downloads as one model: a single file, or every part of a split model
    /// in order (the first is the load path). Each file is validated as GGUF and the set as a
    /// whole; when any check fails every downloaded file is deleted, since they came from the
    /// network into the models folder, and nothing is registered.
    ///
    /// Fails like [`Library::register`]; with no files, as [`ModelsError::SplitInvalid`].
    pub fn register_downloads(&mut self, files: &[Downloaded]) -> Result<ModelRecord, ModelsError> {
        let Some(first) = files.first() else {
            return Err(ModelsError::SplitInvalid {
                path: self.models_dir.clone(),
                reason: "no files were downloaded".to_string(),
            });
        };
        let shas: Vec<String> = files.iter().map(|f| f.sha256.clone()).collect();
        let delete_all = || {
            for f in files {
                let _ = fs::remove_file(&f.path);
            }
        };
        for f in files {
            if let Err(source) = canopy_gguf::validate(&f.path) {
                delete_all();
                return Err(ModelsError::InvalidGguf {
                    path: f.path.clone(),
                    source,
                });
            }
        }
        match self.register_files(&first.path, Some(&shas)) {
            Ok(record) => Ok(record),
            Err(e @ (ModelsError::AlreadyRegistered { .. } | ModelsError::Db { .. })) => Err(e),
            Err(e) => {
                delete_all();
                Err(e)
            }
        }
    }

    /// Imports the GGUF file `file`: copies it into the models folder, or registers it in place.
    ///
    /// Fails when the file is not a valid GGUF (checked before copying), a file of that name is
    /// already in the models folder, the copy fails, or as [`Library::register`] does.
    pub fn import(&mut self, file: &Path, mode: ImportMode) -> Result<ModelRecord, ModelsError> {
        let source = fs::canonicalize(file).map_err(|e| ModelsError::io("cannot open", file, e))?;
        let files = ModelFiles::open(&source)?;
        if mode == ImportMode::Reference || source.starts_with(&self.models_dir) {
            if let Some(existing) = self.find_by_path(&source)? {
                return Err(ModelsError::AlreadyRegistered {
                    path: source,
                    id: existing.id,
                });
            }
            return self.insert(&source, &files, None);
        }
        let sources = match &files {
            ModelFiles::Single(_) => vec![source.clone()],
            ModelFiles::Split(set) => set.parts.clone(),
        };
        let mut dests = Vec::new();
        for part in &sources {
            let name = part.file_name().ok_or_else(|| {
                ModelsError::io("not a file", part, io::ErrorKind::InvalidInput.into())
            })?;
            let dest = self.models_dir.join(name);
            if dest.exists() {
                return Err(ModelsError::DestinationExists(dest));
            }
            dests.push(dest);
        }
        for (i, (part, dest)) in sources.iter().zip(&dests).enumerate() {
            if let Err(e) = copy_in(&self.models_dir, part, dest) {
                for done in &dests[..i] {
                    let _ = fs::remove_file(done);
                }
                return Err(e);
            }
        }
        let dest = &dests[0];
        let files = ModelFiles::open(dest)?;
        self.insert(dest, &files, None)
    }

    /// Registers every valid `.gguf` file under `dir` (recursively, skipping hidden folders and
    /// not following symbolic links to folders); invalid ones are reported with the validator's
    /// reason, and files registered before are listed as such.
    ///
    /// Fails when `dir` cannot be read or the database fails; one unreadable file is reported as
    /// invalid instead.
    pub fn scan(&mut self, dir: &Path) -> Result<ScanReport, ModelsError> {
        let mut files = Vec::new();
        collect_gguf(dir, 0, &mut files)?;
        files.sort();
        let mut report = ScanReport::default();
        for file in files {
            let path = match fs::canonicalize(&file) {
                Ok(p) => p,
                Err(e) => {
                    report.invalid.push((file, e.to_string()));
                    continue;
                }
            };
            if self.find_by_path(&path)?.is_some() {
                report.already.push(path);
                continue;
            }
            match ModelFiles::open(&path) {
                Ok(files) => report.added.push(self.insert(&path, &files, None)?),
                Err(e) => report.invalid.push((path, e.to_string())),
            }
        }
        Ok(report)
    }

    /// The model with registry id `id`.
    ///
    /// Fails with [`ModelsError::NotFound`] or when the database fails.
    pub fn get(&self, id: ModelId) -> Result<ModelRecord, ModelsError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM models WHERE id = ?1"),
                [id],
                Row::read,
            )
            .optional()
            .map_err(self.db())?
            .ok_or(ModelsError::NotFound(id))
            .and_then(|r| self.record(r))
    }

    /// The model registered at `path` (compared after resolving the path), if any.
    ///
    /// Fails when the database fails.
    /// A path of any part of a split model finds that model.
    pub fn find_by_path(&self, path: &Path) -> Result<Option<ModelRecord>, ModelsError> {
        let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let row = self
            .conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM models WHERE path = ?1
                     OR id IN (SELECT model_id FROM model_parts WHERE path = ?1)"
                ),
                [path_text(&path)],
                Row::read,
            )
            .optional()
            .map_err(self.db())?;
        row.map(|r| self.record(r)).transpose()
    }

    fn record(&self, row: Row) -> Result<ModelRecord, ModelsError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT path, size, sha256 FROM model_parts WHERE model_id = ?1 ORDER BY part",
            )
            .map_err(self.db())?;
        let parts = stmt
            .query_map([row.id], |r| {
                Ok(ModelPart {
                    path: PathBuf::from(r.get::<_, String>(0)?),
                    size: r.get::<_, i64>(1)?.max(0) as u64,
                    sha256: r.get(2)?,
                })
            })
            .map_err(self.db())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db())?;
        row.into_record(parts)
    }

    /// A model named by registry id (digits) or by path.
    ///
    /// Fails with [`ModelsError::NotFound`] / [`ModelsError::PathNotRegistered`], or when the
    /// database fails.
    pub fn resolve(&self, id_or_path: &str) -> Result<ModelRecord, ModelsError> {
        if let Ok(id) = id_or_path.trim().parse::<ModelId>() {
            if !Path::new(id_or_path).exists() {
                return self.get(id);
            }
        }
        let path = Path::new(id_or_path);
        self.find_by_path(path)?
            .ok_or_else(|| ModelsError::PathNotRegistered(path.to_path_buf()))
    }

    /// Every registered model, oldest first, with the disk usage.
    ///
    /// Fails when the database fails.
    pub fn list(&self) -> Result<Listing, ModelsError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM models ORDER BY id"))
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], Row::read)
            .map_err(self.db())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db())?;
        let models = rows
            .into_iter()
            .map(|r| self.record(r))
            .collect::<Result<Vec<_>, _>>()?;
        let total_bytes = models.iter().map(|m| m.size).sum();
        let managed_bytes = models.iter().filter(|m| m.managed).map(|m| m.size).sum();
        Ok(Listing {
            models,
            total_bytes,
            managed_bytes,
        })
    }

    /// Removes model `id` from the registry and, as `delete` says, its file. Returns the removed
    /// record. The file is deleted before the row, so a failed delete leaves both in place.
    ///
    /// Fails with [`ModelsError::NotFound`], with [`ModelsError::OutsideModelsDir`] when asked to
    /// delete a file outside the models folder with [`DeleteFile::InsideModelsDir`], when the file
    /// cannot be deleted, or when the database fails.
    pub fn remove(&mut self, id: ModelId, delete: DeleteFile) -> Result<ModelRecord, ModelsError> {
        let record = self.get(id)?;
        let inside = record
            .files()
            .iter()
            .all(|f| f.starts_with(&self.models_dir));
        match delete {
            DeleteFile::Keep => {}
            DeleteFile::InsideModelsDir if !inside => {
                return Err(ModelsError::OutsideModelsDir {
                    path: record.path,
                    models_dir: self.models_dir.clone(),
                })
            }
            DeleteFile::InsideModelsDir | DeleteFile::Anywhere => {
                for file in record.files() {
                    match fs::remove_file(file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(ModelsError::io("cannot delete", file, e)),
                    }
                }
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self_db(&self.db_path))?;
        tx.execute("DELETE FROM models WHERE id = ?1", [id])
            .map_err(self_db(&self.db_path))?;
        tx.commit().map_err(self_db(&self.db_path))?;
        Ok(record)
    }

    /// Sets the role of model `id`.
    ///
    /// Fails with [`ModelsError::NotFound`] or when the database fails.
    pub fn set_role(&mut self, id: ModelId, role: Role) -> Result<ModelRecord, ModelsError> {
        let changed = self
            .conn
            .execute(
                "UPDATE models SET role = ?1 WHERE id = ?2",
                params![role.as_str(), id],
            )
            .map_err(self.db())?;
        if changed == 0 {
            return Err(ModelsError::NotFound(id));
        }
        self.get(id)
    }

    /// Records that model `id` was used now.
    ///
    /// Fails with [`ModelsError::NotFound`] or when the database fails.
    pub fn touch(&mut self, id: ModelId) -> Result<(), ModelsError> {
        let changed = self
            .conn
            .execute(
                "UPDATE models SET last_used_at = ?1 WHERE id = ?2",
                params![now(), id],
            )
            .map_err(self.db())?;
        if changed == 0 {
            return Err(ModelsError::NotFound(id));
        }
        Ok(())
    }

    /// Models whose sha256 is still to be computed (including those whose hashing was interrupted).
    ///
    /// Fails when the database fails.
    pub fn pending_hashes(&self) -> Result<Vec<ModelRecord>, ModelsError> {
        Ok(self
            .list()?
            .models
            .into_iter()
            .filter(|m| matches!(m.hash, HashState::Hashing { .. }))
            .collect())
    }

    /// Starts hashing `models` in a background thread, which opens its own connection to the
    /// database and stores each sha256 (and, every 128 MiB, the progress) in the model's row.
    /// Progress and results arrive on [`HashJob::events`]; dropping the receiver does not stop the job.
    pub fn start_hashing(&self, models: &[ModelRecord]) -> HashJob {
        let (tx, rx) = mpsc::channel();
        let db_path = self.db_path.clone();
        // Per model: its id, its files with their sizes, and the total size.
        type Work = (ModelId, Vec<(PathBuf, u64)>, u64);
        let work: Vec<Work> = models
            .iter()
            .map(|m| {
                let files = if m.parts.is_empty() {
                    vec![(m.path.clone(), m.size)]
                } else {
                    m.parts.iter().map(|p| (p.path.clone(), p.size)).collect()
                };
                (m.id, files, m.size)
            })
            .collect();
        let handle = std::thread::spawn(move || {
            let conn = connect(&db_path);
            for (id, files, size) in work {
                let result = match &conn {
                    Ok(conn) => hash_model(conn, id, &files, size, &tx),
                    Err(e) => Err(e.to_string()),
                };
                let event = match result {
                    Ok(sha256) => HashEvent::Done { id, sha256 },
                    Err(reason) => {
                        if let Ok(conn) = &conn {
                            let _ = conn.execute(
                                "UPDATE models SET hash_state = 'failed', hash_error = ?1 WHERE id = ?2",
                                params![reason, id],
                            );
                        }
                        HashEvent::Failed { id, reason }
                    }
                };
                let _ = tx.send(event);
            }
        });
        HashJob { events: rx, handle }
    }
}

fn self_db(path: &Path) -> impl Fn(rusqlite::Error) -> ModelsError + '_ {
    move |source| ModelsError::Db {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens a connection with the registry's settings.
fn connect(db_path: &Path) -> Result<Connection, ModelsError> {
    let db = |source| ModelsError::Db {
        path: db_path.to_path_buf(),
        source,
    };
    let conn = Connection::open(db_path).map_err(db)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
        .map_err(db)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    Ok(conn)
}

/// Hashes every file of model `id` (one, or each part of a split model), reporting progress over
/// `total` bytes; stores each part's sha256 and, as the model's, the first file's.
fn hash_model(
    conn: &Connection,
    id: ModelId,
    files: &[(PathBuf, u64)],
    total: u64,
    events: &mpsc::Sender<HashEvent>,
) -> Result<String, String> {
    let mut first = None;
    let mut base = 0u64;
    for (i, (path, size)) in files.iter().enumerate() {
        let sha = hash_one(conn, id, path, *size, base, total, events)?;
        if files.len() > 1 {
            conn.execute(
                "UPDATE model_parts SET sha256 = ?1 WHERE model_id = ?2 AND part = ?3",
                params![sha, id, i as i64 + 1],
            )
            .map_err(|e| format!("cannot store the sha256: {e}"))?;
        }
        first.get_or_insert(sha);
        base += size;
    }
    let sha = first.unwrap_or_default();
    conn.execute(
        "UPDATE models SET sha256 = ?1, hash_state = 'done', hashed_bytes = ?2, hash_error = NULL
         WHERE id = ?3",
        params![sha, total as i64, id],
    )
    .map_err(|e| format!("cannot store the sha256: {e}"))?;
    Ok(sha)
}

/// Hashes one file of `size` bytes, reporting progress as `base` + bytes done of `total`.
/// Errors are one-line reasons.
fn hash_one(
    conn: &Connection,
    id: ModelId,
    path: &Path,
    size: u64,
    base: u64,
    total: u64,
    events: &mpsc::Sender<HashEvent>,
) -> Result<String, String> {
    let mut file =
        fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut next_report = 0u64;
    let mut next_store = HASH_STORE_EVERY;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        hasher.update(&buf[..n]);
        done += n as u64;
        if done >= next_report {
            let _ = events.send(HashEvent::Progress {
                id,
                done: base + done,
                total,
            });
            next_report = done + HASH_REPORT_EVERY;
        }
        if done >= next_store {
            let _ = conn.execute(
                "UPDATE models SET hashed_bytes = ?1 WHERE id = ?2",
                params![(base + done) as i64, id],
            );
            next_store = done + HASH_STORE_EVERY;
        }
    }
    if done != size {
        return Err(format!(
            "{} changed since it was registered: {done} bytes now, {size} then",
            path.display()
        ));
    }
    let _ = events.send(HashEvent::Progress {
        id,
        done: base + done,
        total,
    });
    Ok(hex::encode(hasher.finalize()))
}

/// Copies `source` to `dest` inside the models folder through a temporary file, so that a failed
/// copy leaves nothing under `dest`.
fn copy_in(models_dir: &Path, source: &Path, dest: &Path) -> Result<(), ModelsError> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = crate::paths::partial_dir(models_dir).join(format!("{name}.import"));
    if let Some(parent) = tmp.parent() {
        fs::create_dir_all(parent).map_err(|e| ModelsError::io("cannot create", parent, e))?;
    }
    let copied = fs::copy(source, &tmp)
        .and_then(|_| fs::File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, dest));
    if let Err(e) = copied {
        let _ = fs::remove_file(&tmp);
        return Err(ModelsError::io(
            "cannot copy into the models folder",
            dest,
            e,
        ));
    }
    Ok(())
}

fn collect_gguf(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) -> Result<(), ModelsError> {
    let entries = fs::read_dir(dir).map_err(|e| ModelsError::io("cannot read folder", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ModelsError::io("cannot read folder", dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !name.starts_with('.') && depth < 8 {
                collect_gguf(&path, depth + 1, out)?;
            }
        } else if name.to_ascii_lowercase().ends_with(".gguf") && !name.starts_with('.') {
            out.push(path);
        }
    }
    Ok(())
}

const COLUMNS: &str = "id, path, file_name, size, sha256, hash_state, hash_error, hashed_bytes, \
                       metadata, role, managed, added_at, last_used_at";

struct Row {
    id: ModelId,
    path: String,
    file_name: String,
    size: i64,
    sha256: Option<String>,
    hash_state: String,
    hash_error: Option<String>,
    hashed_bytes: i64,
    metadata: String,
    role: String,
    managed: bool,
    added_at: i64,
    last_used_at: Option<i64>,
}

impl Row {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            id: r.get(0)?,
            path: r.get(1)?,
            file_name: r.get(2)?,
            size: r.get(3)?,
            sha256: r.get(4)?,
            hash_state: r.get(5)?,
            hash_error: r.get(6)?,
            hashed_bytes: r.get(7)?,
            metadata: r.get(8)?,
            role: r.get(9)?,
            managed: r.get(10)?,
            added_at: r.get(11)?,
            last_used_at: r.get(12)?,
        })
    }

    fn into_record(self, parts: Vec<ModelPart>) -> Result<ModelRecord, ModelsError> {
        let info: ModelInfo =
            serde_json::from_str(&self.metadata).map_err(|e| ModelsError::Metadata {
                id: self.id,
                reason: e.to_string(),
            })?;
        let role = Role::parse(&self.role).map_err(|e| ModelsError::Metadata {
            id: self.id,
            reason: e.to_string(),
        })?;
        let hash = match self.hash_state.as_str() {
            "done" => HashState::Done,
            "failed" => HashState::Failed {
                reason: self.hash_error.unwrap_or_default(),
            },
            _ => HashState::Hashing {
                done: self.hashed_bytes.max(0) as u64,
            },
        };
        let path = PathBuf::from(self.path);
        Ok(ModelRecord {
            id: self.id,
            present: path.is_file() && parts.iter().all(|p| p.path.is_file()),
            parts,
            path,
            file_name: self.file_name,
            size: self.size.max(0) as u64,
            sha256: self.sha256,
            hash,
            info,
            role,
            managed: self.managed,
            added_at: self.added_at,
            last_used_at: self.last_used_at,
        })
    }
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
