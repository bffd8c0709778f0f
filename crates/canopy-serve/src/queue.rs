//! One backend on its own thread, fed first come first served through a bounded queue.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use canopy_core::{CancelFlag, CoreResult, GenerateRequest, GenerateResult};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::error::ApiError;
use crate::Backend;

/// What a running job reports to the request waiting for it.
pub enum Update {
    Text(String),
    Done(Box<CoreResult<GenerateResult>>),
}

struct Job {
    request: GenerateRequest,
    cancel: CancelFlag,
    updates: UnboundedSender<Update>,
}

/// The sending side, shared by all requests.
#[derive(Clone)]
pub struct Queue {
    jobs: SyncSender<Job>,
    capacity: usize,
}

/// A submitted job: its updates, and a guard that cancels it when the request is dropped (the
/// client went away), whether it still waits or already runs.
pub struct Ticket {
    pub updates: UnboundedReceiver<Update>,
    _cancel: CancelOnDrop,
}

struct CancelOnDrop(CancelFlag);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Queue {
    /// Queues a job behind the running one.
    ///
    /// # Errors
    /// 429 when `capacity` jobs already wait, 503 when the backend thread is gone.
    pub fn submit(&self, request: GenerateRequest) -> Result<Ticket, ApiError> {
        let cancel = CancelFlag::new();
        let (updates, receiver) = unbounded_channel();
        let job = Job {
            request,
            cancel: cancel.clone(),
            updates,
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(Ticket {
                updates: receiver,
                _cancel: CancelOnDrop(cancel),
            }),
            Err(TrySendError::Full(_)) => Err(ApiError::queue_full(self.capacity)),
            Err(TrySendError::Disconnected(_)) => Err(ApiError::shutting_down()),
        }
    }
}

/// The backend's thread; [`WorkerThread::stop`] cancels the running job and waits for it.
pub struct WorkerThread {
    handle: JoinHandle<()>,
    running: Arc<Mutex<Option<CancelFlag>>>,
}

impl WorkerThread {
    /// Cancels the running job and waits for the thread once every [`Queue`] is dropped.
    pub async fn stop(self) {
        if let Some(cancel) = lock(&self.running).as_ref() {
            cancel.cancel();
        }
        let handle = self.handle;
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
}

/// Starts the backend's thread with room for `capacity` waiting jobs.
pub fn start(backend: Box<dyn Backend>, capacity: usize) -> (Queue, WorkerThread) {
    // `sync_channel(n)` holds n jobs besides the one the thread has taken off it: exactly the
    // waiting requests.
    let (jobs, receiver) = sync_channel(capacity);
    let running = Arc::new(Mutex::new(None));
    let shared = Arc::clone(&running);
    let handle = std::thread::Builder::new()
        .name("canopy-serve-backend".into())
        .spawn(move || work(backend, &receiver, &shared))
        .expect("spawning a thread");
    (Queue { jobs, capacity }, WorkerThread { handle, running })
}

fn work(mut backend: Box<dyn Backend>, jobs: &Receiver<Job>, running: &Mutex<Option<CancelFlag>>) {
    while let Ok(job) = jobs.recv() {
        // The client left while the job waited.
        if job.cancel.is_cancelled() || job.updates.is_closed() {
            continue;
        }
        *lock(running) = Some(job.cancel.clone());
        let updates = job.updates;
        let outcome = backend.generate(job.request, &job.cancel, &mut |text| {
            let _ = updates.send(Update::Text(text.to_owned()));
        });
        *lock(running) = None;
        let _ = updates.send(Update::Done(Box::new(outcome)));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
