//! The seam between the application core and inference: [`Inference`] runs one job. The real
//! implementation is [`WorkerEngine`], a supervised worker process; tests drive the core with an
//! in-process fake.

use std::ffi::OsString;

use canopy_worker::{CancelFlag, Event, Job, JobResult, Supervisor, WorkerCommand, WorkerError};

/// Runs inference jobs, one at a time.
pub trait Inference: Send {
    /// Runs `job`, passing every event to `on_event`; stops at the next safe point once `cancel`
    /// is set. `op_offload_min_batch` is the `GGML_OP_OFFLOAD_MIN_BATCH` the job must run with
    /// (llama.cpp reads it once per process, so a change starts a fresh worker).
    ///
    /// # Errors
    /// As [`Supervisor::run`]: a user error for a request that cannot be served, `Crashed` when
    /// the worker died (the next job starts a fresh one), other variants for internal failures.
    fn run(
        &mut self,
        job: Job,
        op_offload_min_batch: Option<u32>,
        cancel: &CancelFlag,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<JobResult, WorkerError>;

    /// Stops the worker, if any; the next job starts a fresh one.
    fn shutdown(&mut self) {}
}

/// The supervised worker process.
pub struct WorkerEngine {
    supervisor: Supervisor,
    command: WorkerCommand,
    offload: Option<u32>,
}

impl WorkerEngine {
    /// A worker started as `command` (the front end's own executable in worker mode). ggml's
    /// backtrace on abort is turned off, since it would write to the protocol's pipe.
    pub fn new(mut command: WorkerCommand) -> WorkerEngine {
        command.env.push(("GGML_NO_BACKTRACE".into(), "1".into()));
        WorkerEngine {
            supervisor: Supervisor::new(command.clone()),
            command,
            offload: None,
        }
    }
}

/// `command` with the op-offload threshold set; with `None` the command's own environment (a
/// threshold the user set, or llama.cpp's default) stays.
fn with_offload(command: &WorkerCommand, offload: Option<u32>) -> WorkerCommand {
    let mut command = command.clone();
    if let Some(n) = offload {
        command
            .env
            .retain(|(k, _)| k.as_os_str() != "GGML_OP_OFFLOAD_MIN_BATCH");
        command.env.push((
            OsString::from("GGML_OP_OFFLOAD_MIN_BATCH"),
            OsString::from(n.to_string()),
        ));
    }
    command
}

impl Inference for WorkerEngine {
    fn run(
        &mut self,
        job: Job,
        op_offload_min_batch: Option<u32>,
        cancel: &CancelFlag,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<JobResult, WorkerError> {
        if op_offload_min_batch != self.offload {
            self.supervisor
                .set_command(with_offload(&self.command, op_offload_min_batch));
            self.offload = op_offload_min_batch;
        }
        self.supervisor.run(job, cancel, on_event)
    }

    fn shutdown(&mut self) {
        self.supervisor.shutdown();
    }
}
