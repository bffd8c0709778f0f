//! The caller side: starts the worker child, sends jobs, survives its death.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::protocol::{
    Event, GenerateRequest, GenerateResult, Job, JobErrorKind, JobResult, Request, Source,
    PROTOCOL_VERSION,
};

/// How to start a worker process.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Per-process settings such as `GGML_OP_OFFLOAD_MIN_BATCH`, set before the backend starts.
    pub env: Vec<(OsString, OsString)>,
}

/// Set it to stop a running job at the next safe point.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn new() -> Self {
        CancelFlag::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn reset(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a job did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The request was wrong; the message says what to fix.
    #[error("{0}")]
    User(String),
    /// The worker reported a failure of its own.
    #[error("inference failed: {0}")]
    Internal(String),
    /// The GPU's memory ran short before anything was generated (a model, a context or the
    /// memory to keep free did not fit); a smaller placement may succeed.
    #[error("{message}")]
    GpuMemory {
        message: String,
        short_by_bytes: Option<u64>,
    },
    /// The worker process died; the next job starts a fresh one.
    #[error("the inference worker stopped unexpectedly ({status}){detail}; the next request starts a new worker")]
    Crashed { status: String, detail: String },
    #[error("could not start the inference worker {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("the inference worker speaks protocol {found}, this program speaks {expected}: reinstall Canopy")]
    Version { found: u32, expected: u32 },
    #[error("the inference worker sent something unexpected: {0}")]
    Protocol(String),
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    events: Receiver<Result<Event, String>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

/// Owns at most one worker child at a time and restarts it after a crash.
pub struct Supervisor {
    command: WorkerCommand,
    running: Option<Running>,
    next_id: u64,
}

const STDERR_LINES: usize = 20;

impl Supervisor {
    pub fn new(command: WorkerCommand) -> Self {
        Supervisor {
            command,
            running: None,
            next_id: 1,
        }
    }

    /// Changes the worker's command or environment; a running worker is stopped when it differs.
    pub fn set_command(&mut self, command: WorkerCommand) {
        if command != self.command {
            self.shutdown();
            self.command = command;
        }
    }

    /// The process id of the running worker, if any.
    pub fn worker_pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.child.id())
    }

    /// Stops the worker (politely, then by force).
    pub fn shutdown(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = writeln!(running.stdin, "{}", json(&Request::Shutdown));
            drop(running.stdin);
            for _ in 0..50 {
                if let Ok(Some(_)) = running.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }

    /// Generates text, calling `on_token` with each streamed piece.
    ///
    /// # Errors
    /// See [`Supervisor::run`].
    pub fn generate(
        &mut self,
        request: GenerateRequest,
        cancel: &CancelFlag,
        on_token: &mut dyn FnMut(&str, &[Source]),
    ) -> Result<GenerateResult, WorkerError> {
        let mut on_event = |event: &Event| {
            if let Event::Token { text, sources, .. } = event {
                on_token(text, sources);
            }
        };
        match self.run(Job::Generate(request), cancel, &mut on_event)? {
            JobResult::Generate(result) => Ok(result),
            other => Err(WorkerError::Protocol(format!(
                "expected a generation result, got {other:?}"
            ))),
        }
    }

    /// Runs one job in the worker, starting the worker first if needed.
    ///
    /// # Errors
    /// [`WorkerError::User`] when the worker refused the request, [`WorkerError::Crashed`] when it
    /// died (the next call starts a new one), and the other variants for start-up and protocol faults.
    pub fn run(
        &mut self,
        job: Job,
        cancel: &CancelFlag,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<JobResult, WorkerError> {
        if self.running.is_none() {
            self.running = Some(self.start()?);
        }
        let id = self.next_id;
        self.next_id += 1;
        let helpers = rpc_helpers(&job);
        let mut outcome = self.exchange(id, job, cancel, on_event);
        if let Err(WorkerError::Crashed { detail, .. }) = &mut outcome {
            if !helpers.is_empty() {
                *detail = format!("{}{detail}", helpers_fate(&helpers));
            }
        }
        if matches!(
            outcome,
            Err(WorkerError::Crashed { .. } | WorkerError::Protocol(_))
        ) {
            if let Some(mut running) = self.running.take() {
                let _ = running.child.kill();
                let _ = running.child.wait();
            }
        }
        outcome
    }

    fn exchange(
        &mut self,
        id: u64,
        job: Job,
        cancel: &CancelFlag,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<JobResult, WorkerError> {
        let Some(running) = self.running.as_mut() else {
            return Err(WorkerError::Protocol("no worker".into()));
        };
        if writeln!(
            running.stdin,
            "{}",
            json(&Request::Run {
                id,
                job: Box::new(job)
            })
        )
        .and_then(|()| running.stdin.flush())
        .is_err()
        {
            return Err(crashed(running));
        }
        let mut cancel_sent = false;
        loop {
            if cancel.is_cancelled() && !cancel_sent {
                cancel_sent = true;
                let _ = writeln!(running.stdin, "{}", json(&Request::Cancel { id }));
                let _ = running.stdin.flush();
            }
            match running.events.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(event)) => match event {
                    Event::Done { id: done, result } if done == id => return Ok(*result),
                    Event::Error {
                        id: failed,
                        kind,
                        message,
                    } if failed == id || failed == 0 => {
                        return Err(match kind {
                            JobErrorKind::User => WorkerError::User(message),
                            JobErrorKind::Internal => WorkerError::Internal(message),
                            JobErrorKind::GpuMemory { short_by_bytes } => WorkerError::GpuMemory {
                                message,
                                short_by_bytes,
                            },
                        })
                    }
                    Event::Hello { .. } => {
                        return Err(WorkerError::Protocol("a second greeting".into()))
                    }
                    other => on_event(&other),
                },
                Ok(Err(bad_line)) => return Err(WorkerError::Protocol(bad_line)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(crashed(running)),
            }
        }
    }

    fn start(&self) -> Result<Running, WorkerError> {
        let mut command = Command::new(&self.command.program);
        command
            .args(&self.command.args)
            .envs(self.command.env.iter().map(|(k, v)| (k, v)))
            // llama.cpp's abort handler would run gdb and print a backtrace into the protocol.
            .env("GGML_NO_BACKTRACE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group: a Ctrl-C in the terminal reaches the caller, which cancels the
        // job, instead of killing the worker and its loaded models.
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        let spawn_error = |source| WorkerError::Spawn {
            program: self.command.program.display().to_string(),
            source,
        };
        let mut child = command.spawn().map_err(spawn_error)?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(spawn_error(io::Error::other("missing pipes")));
        };

        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_LINES)));
        let tail = Arc::clone(&stderr_tail);
        thread::spawn(move || collect_stderr(stderr, &tail));

        let (tx, events) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parsed = serde_json::from_str::<Event>(&line)
                    .map_err(|err| format!("{err} in {:?}", truncate(&line, 200)));
                if tx.send(parsed).is_err() {
                    break;
                }
            }
        });

        let mut running = Running {
            child,
            stdin,
            events,
            stderr_tail,
        };
        match running.events.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(Event::Hello { protocol, .. })) if protocol == PROTOCOL_VERSION => Ok(running),
            Ok(Ok(Event::Hello { protocol, .. })) => {
                let _ = running.child.kill();
                Err(WorkerError::Version {
                    found: protocol,
                    expected: PROTOCOL_VERSION,
                })
            }
            Ok(Ok(other)) => {
                let _ = running.child.kill();
                Err(WorkerError::Protocol(format!(
                    "expected a greeting, got {other:?}"
                )))
            }
            Ok(Err(bad)) => {
                let _ = running.child.kill();
                Err(WorkerError::Protocol(bad))
            }
            Err(_) => {
                let _ = running.child.kill();
                Err(crashed(&mut running))
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn json(request: &Request) -> String {
    serde_json::to_string(request).unwrap_or_default()
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn collect_stderr(stderr: impl Read, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Waits briefly for the dead worker and describes how it ended.
fn crashed(running: &mut Running) -> WorkerError {
    let mut status = None;
    for _ in 0..100 {
        if let Ok(Some(s)) = running.child.try_wait() {
            status = Some(s);
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let status = match status {
        Some(s) => describe(s),
        None => {
            let _ = running.child.kill();
            let _ = running.child.wait();
            "it stopped answering".to_owned()
        }
    };
    // Give the stderr thread a moment to drain the last lines (an abort message, say).
    thread::sleep(Duration::from_millis(20));
    let tail = running
        .stderr_tail
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // An abort's last line names only the file ("ggml-cuda.cu:109: CUDA error"); the line
    // before it that says the memory ran out is the one that explains it.
    let last = tail
        .iter()
        .rev()
        .find(|l| is_out_of_memory(l))
        .or_else(|| tail.iter().rev().find(|l| !l.trim().is_empty()));
    let detail = last
        .map(|l| format!(": {}", truncate(l.trim(), 300)))
        .unwrap_or_default();
    WorkerError::Crashed { status, detail }
}

/// Whether a line of a worker's output says that a device's memory ran out (CUDA's "out of
/// memory", ggml's failed device allocations).
fn is_out_of_memory(line: &str) -> bool {
    let line = line.to_ascii_lowercase();
    line.contains("out of memory") || line.contains("cudamalloc failed")
}

impl WorkerError {
    /// Whether the job failed because the GPU's memory ran short: reported by the worker, or the
    /// worker died of it (llama.cpp aborts on a CUDA allocation that fails mid-pass).
    pub fn is_gpu_memory(&self) -> bool {
        match self {
            WorkerError::GpuMemory { .. } => true,
            WorkerError::Crashed { detail, .. } => is_out_of_memory(detail),
            _ => false,
        }
    }
}

/// The RPC helpers a job's target is split over.
fn rpc_helpers(job: &Job) -> Vec<String> {
    match job {
        Job::Generate(r) => r.rpc.clone(),
        Job::Measure(r) => r.rpc.clone(),
        Job::Acceptance(_) => Vec::new(),
    }
}

/// How long a dead worker's helpers get to answer a connection attempt.
const HELPER_PROBE: Duration = Duration::from_millis(500);

/// Names the helpers of a job whose worker died: llama.cpp aborts the worker when a helper goes
/// away mid-decode, so the helpers that no longer accept connections are the likely cause.
fn helpers_fate(helpers: &[String]) -> String {
    let lost: Vec<String> = helpers
        .iter()
        .filter_map(|h| {
            probe(h)
                .err()
                .map(|why| format!("RPC helper {h} went away ({why})"))
        })
        .collect();
    if lost.is_empty() {
        format!(
            ": the target was split over RPC helper {}",
            helpers.join(", ")
        )
    } else {
        format!(": {}", lost.join("; "))
    }
}

/// Opens and closes a TCP connection to `host:port`.
fn probe(endpoint: &str) -> Result<(), String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let addrs = endpoint.to_socket_addrs().map_err(|e| e.to_string())?;
    let mut last = "no address".to_owned();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, HELPER_PROBE) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                4 => " (SIGILL)",
                _ => "",
            };
            return format!("killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "unknown status".to_owned(),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::protocol::{Placement, Plan, Prompt, Sampling};

    fn request() -> GenerateRequest {
        GenerateRequest {
            target: "/nonexistent/target.gguf".into(),
            draft: None,
            prompt: Prompt::Raw("hello".into()),
            sampling: Sampling::greedy(),
            max_tokens: 4,
            stop: Vec::new(),
            plan: Plan::None,
            context: None,
            placement: Placement::Gpu,
            acceptance: None,
            costs: None,
            inexact_cache: false,
            rpc: Vec::new(),
            rpc_layers: None,
            kv_cache_bytes: 0,
            no_lookup: false,
            gpu_floor_bytes: 512 << 20,
        }
    }

    /// A supervisor over a shell script that greets like a worker and then runs `then` once the
    /// job arrives.
    fn scripted(then: &str) -> Supervisor {
        let hello = serde_json::to_string(&Event::Hello {
            protocol: PROTOCOL_VERSION,
            version: "test".into(),
        })
        .unwrap();
        Supervisor::new(WorkerCommand {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                format!("echo '{hello}'; read job; {then}").into(),
            ],
            env: Vec::new(),
        })
    }

    fn run(supervisor: &mut Supervisor) -> WorkerError {
        supervisor
            .run(
                Job::Generate(request()),
                &CancelFlag::new(),
                &mut |_: &Event| {},
            )
            .expect_err("the scripted worker fails")
    }

    #[test]
    fn a_worker_killed_by_cuda_running_out_of_memory_says_so() {
        // What llama.cpp writes when a CUDA allocation fails mid-pass, then its abort.
        let mut supervisor = scripted(
            "echo 'CUDA error: out of memory' >&2; \
             echo '  current device: 0, in function alloc at ggml-cuda.cu:466' >&2; \
             echo 'ggml-cuda.cu:109: CUDA error' >&2; kill -ABRT $$",
        );
        let err = run(&mut supervisor);
        assert!(matches!(err, WorkerError::Crashed { .. }), "{err:?}");
        assert!(err.is_gpu_memory(), "{err}");
        assert!(
            err.to_string().contains("CUDA error: out of memory"),
            "{err}"
        );
    }

    #[test]
    fn other_crashes_are_not_taken_for_a_lack_of_gpu_memory() {
        let mut supervisor =
            scripted("echo 'ggml.c:1234: GGML_ASSERT(x) failed' >&2; kill -ABRT $$");
        let err = run(&mut supervisor);
        assert!(matches!(err, WorkerError::Crashed { .. }), "{err:?}");
        assert!(!err.is_gpu_memory(), "{err}");
        assert!(err.to_string().contains("GGML_ASSERT"), "{err}");
    }

    #[test]
    fn a_gpu_memory_error_travels_with_its_shortfall() {
        let event = serde_json::to_string(&Event::Error {
            id: 1,
            kind: JobErrorKind::GpuMemory {
                short_by_bytes: Some(300 << 20),
            },
            message: "the GPU has 212 MiB free".into(),
        })
        .unwrap();
        let mut supervisor = scripted(&format!("echo '{event}'; read more"));
        let err = run(&mut supervisor);
        assert!(err.is_gpu_memory(), "{err:?}");
        match err {
            WorkerError::GpuMemory {
                message,
                short_by_bytes,
            } => {
                assert_eq!(message, "the GPU has 212 MiB free");
                assert_eq!(short_by_bytes, Some(300 << 20));
            }
            other => panic!("expected GpuMemory, got {other:?}"),
        }
    }
}
