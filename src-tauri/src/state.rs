//! What the app holds while it runs: the application core and which long tasks are running.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use canopy_core::{CancelFlag, Core};

use crate::error::{CommandError, CommandResult};

/// Shared by every command; cheap to clone into blocking tasks.
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub core: Arc<Core>,
    pub server: ServerSlot,
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
    pub fn new(core: Core) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                core: Arc::new(core),
                server: Default::default(),
                generation_cancel: CancelFlag::new(),
                generating: AtomicBool::new(false),
                profile_cancel: CancelFlag::new(),
                profiling: AtomicBool::new(false),
                download_cancel: Arc::new(AtomicBool::new(false)),
                downloading: AtomicBool::new(false),
            }),
        }
    }

    /// The application core.
    pub fn core(&self) -> &Core {
        &self.inner.core
    }

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

impl Inner {
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

/// A running server: where it listens and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub model: String,
    pub stop: tokio::sync::oneshot::Sender<()>,
}

/// The server slot of the app's state.
#[derive(Default)]
pub struct ServerSlot(pub Mutex<Option<Running>>);

impl ServerSlot {
    pub fn stop(&self) {
        let running = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(running) = running {
            let _ = running.stop.send(());
        }
    }
}
