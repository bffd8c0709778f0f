//! What the app holds while it runs: the chat store, the inference supervisor and the cancel flags.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use canopy_models::{Library, MachineFacts};
use canopy_store::Store;
use canopy_worker::{CancelFlag, Supervisor, WorkerCommand};

use crate::error::{CommandError, CommandResult, ErrorKind};

/// Shared by every command; cheap to clone into blocking tasks.
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub data_dir: PathBuf,
    /// The store, or why it could not be opened (the window still starts and shows this).
    store: Result<Mutex<Store>, String>,
    /// The model registry, or why it could not be opened.
    library: Result<Mutex<Library>, String>,
    machine: Mutex<Option<MachineFacts>>,
    pub supervisor: Mutex<Supervisor>,
    pub generation_cancel: CancelFlag,
    generating: AtomicBool,
    pub profile_cancel: CancelFlag,
    profiling: AtomicBool,
    pub download_cancel: Arc<AtomicBool>,
    downloading: AtomicBool,
}

/// The long tasks of which at most one of each kind runs at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Generation,
    Profile,
    Download,
}

/// Marks one long task as running and clears the mark when dropped.
pub struct TaskGuard {
    inner: Arc<Inner>,
    task: Task,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.inner.flag(self.task).store(false, Ordering::SeqCst);
    }
}

impl AppState {
    /// Opens the store under `data_dir`; a failure is kept and reported by every store command.
    pub fn new(data_dir: PathBuf, worker: WorkerCommand) -> AppState {
        let store = Store::open(&data_dir.join("canopy.db"))
            .map(Mutex::new)
            .map_err(|e| format!("the chat history could not be opened: {e}"));
        let library = Library::open(&data_dir.join("library.db"), &data_dir.join("models"))
            .map(Mutex::new)
            .map_err(|e| format!("the model library could not be opened: {e}"));
        AppState {
            inner: Arc::new(Inner {
                data_dir,
                store,
                library,
                machine: Mutex::new(None),
                supervisor: Mutex::new(Supervisor::new(worker)),
                generation_cancel: CancelFlag::new(),
                generating: AtomicBool::new(false),
                profile_cancel: CancelFlag::new(),
                profiling: AtomicBool::new(false),
                download_cancel: Arc::new(AtomicBool::new(false)),
                downloading: AtomicBool::new(false),
            }),
        }
    }
}

impl Inner {
    /// The store, locked. Fails when it could not be opened at start-up.
    pub fn store(&self) -> CommandResult<MutexGuard<'_, Store>> {
        match &self.store {
            Ok(store) => Ok(store.lock().unwrap_or_else(|p| p.into_inner())),
            Err(why) => Err(CommandError::new(ErrorKind::Unavailable, why)),
        }
    }

    /// The model registry, locked. Fails when it could not be opened at start-up.
    pub fn library(&self) -> CommandResult<MutexGuard<'_, Library>> {
        match &self.library {
            Ok(library) => Ok(library.lock().unwrap_or_else(|p| p.into_inner())),
            Err(why) => Err(CommandError::new(ErrorKind::Unavailable, why)),
        }
    }

    /// Memory facts of this machine for fit badges, detected once.
    pub fn machine(&self) -> MachineFacts {
        let mut cached = self.machine.lock().unwrap_or_else(|p| p.into_inner());
        cached.get_or_insert_with(MachineFacts::detect).clone()
    }

    pub fn supervisor(&self) -> MutexGuard<'_, Supervisor> {
        self.supervisor.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flag(&self, task: Task) -> &AtomicBool {
        match task {
            Task::Generation => &self.generating,
            Task::Profile => &self.profiling,
            Task::Download => &self.downloading,
        }
    }

    pub fn is_running(&self, task: Task) -> bool {
        self.flag(task).load(Ordering::SeqCst)
    }
}

impl AppState {
    /// Marks `task` as running until the guard is dropped. Fails with a busy error when it already runs.
    pub fn start(&self, task: Task) -> CommandResult<TaskGuard> {
        let busy = match task {
            Task::Generation => "a reply is already being generated; stop it first",
            Task::Profile => "a profile is already running; cancel it first",
            Task::Download => "a download is already running; cancel it first",
        };
        if self
            .inner
            .flag(task)
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(CommandError::busy(busy));
        }
        Ok(TaskGuard {
            inner: Arc::clone(&self.inner),
            task,
        })
    }
}
