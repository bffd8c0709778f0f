//! The worker side: reads [`Request`]s from stdin, hands jobs to a [`Handler`], writes [`Event`]s.

use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::protocol::{Event, Job, JobErrorKind, JobResult, Request, Source, PROTOCOL_VERSION};

/// A job failure as the handler reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    pub kind: JobErrorKind,
    pub message: String,
}

impl HandlerError {
    pub fn user(message: impl Into<String>) -> Self {
        HandlerError {
            kind: JobErrorKind::User,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        HandlerError {
            kind: JobErrorKind::Internal,
            message: message.into(),
        }
    }

    /// The GPU's memory ran short, by `short_by_bytes` where that is known.
    pub fn gpu_memory(message: impl Into<String>, short_by_bytes: Option<u64>) -> Self {
        HandlerError {
            kind: JobErrorKind::GpuMemory { short_by_bytes },
            message: message.into(),
        }
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HandlerError {}

/// Where a running job reports progress and tokens; also tells it whether it was cancelled.
pub struct EventSink {
    id: u64,
    out: Arc<Output>,
    cancelled: Arc<AtomicBool>,
}

impl EventSink {
    /// Streams generated text. Write errors mean the caller is gone; the job notices through
    /// [`EventSink::is_cancelled`].
    pub fn token(&mut self, text: String, sources: Vec<Source>) {
        self.send(&Event::Token {
            id: self.id,
            text,
            sources,
        });
    }

    pub fn progress(&mut self, phase: &str, fraction: f64) {
        self.send(&Event::Progress {
            id: self.id,
            phase: phase.to_owned(),
            fraction,
        });
    }

    /// True once the caller asked to cancel this job, or went away.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn send(&self, event: &Event) {
        if write_event(&self.out, event).is_err() {
            self.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs jobs. Implemented by the llama.cpp engine; tests may implement it with anything.
pub trait Handler {
    /// Runs one job to completion, reporting through `sink`.
    ///
    /// # Errors
    /// A [`HandlerError`] of kind `User` for requests the user can fix, `GpuMemory` when the GPU's
    /// memory ran short, `Internal` otherwise.
    fn run(&mut self, job: Job, sink: &mut EventSink) -> Result<JobResult, HandlerError>;
}

/// The protocol's channel: the original stdout, moved to a private descriptor, with descriptor 1
/// pointed at stderr so that nothing a library prints can corrupt the protocol.
#[cfg(unix)]
fn protocol_output() -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    io::stdout().flush()?;
    // SAFETY: plain descriptor calls on descriptors this process owns; the duplicate is owned by
    // the returned File alone.
    unsafe {
        let fd = libc::dup(1);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(std::fs::File::from_raw_fd(fd))
    }
}

#[cfg(not(unix))]
fn protocol_output() -> io::Result<io::Stdout> {
    Ok(io::stdout())
}

type Output = Mutex<ProtocolOut>;
/// The job being run, if any, and its cancel flag.
type Running = Option<(u64, Arc<AtomicBool>)>;
#[cfg(unix)]
type ProtocolOut = std::fs::File;
#[cfg(not(unix))]
type ProtocolOut = io::Stdout;

fn write_event(out: &Output, event: &Event) -> io::Result<()> {
    let mut line = serde_json::to_string(event).map_err(io::Error::other)?;
    line.push('\n');
    let mut out = out.lock().unwrap_or_else(|poison| poison.into_inner());
    out.write_all(line.as_bytes())?;
    out.flush()
}

/// Serves requests from stdin until `Shutdown` or end of input.
///
/// Requests are read on a separate thread so that a `Cancel` reaches a job while it runs.
///
/// # Errors
/// Fails only when stdout cannot be written (the caller is gone).
pub fn serve(handler: &mut dyn Handler) -> io::Result<()> {
    let out = Arc::new(Mutex::new(protocol_output()?));
    write_event(
        &out,
        &Event::Hello {
            protocol: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    )?;

    let current: Arc<Mutex<Running>> = Arc::default();
    let (jobs_tx, jobs_rx) = mpsc::channel::<(u64, Job)>();
    let reader_current = Arc::clone(&current);
    let reader_out = Arc::clone(&out);
    thread::spawn(move || {
        let stdin = io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Request>(&line) {
                Ok(Request::Run { id, job }) => {
                    if jobs_tx.send((id, *job)).is_err() {
                        break;
                    }
                }
                Ok(Request::Cancel { id }) => {
                    let guard = reader_current.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some((running, flag)) = guard.as_ref() {
                        if *running == id {
                            flag.store(true, Ordering::Relaxed);
                        }
                    }
                }
                Ok(Request::Shutdown) => break,
                Err(err) => {
                    let _ = write_event(
                        &reader_out,
                        &Event::Error {
                            id: 0,
                            kind: JobErrorKind::Internal,
                            message: format!("worker received a malformed request: {err}"),
                        },
                    );
                }
            }
        }
        // End of input: cancel whatever runs so the worker exits promptly.
        if let Some((_, flag)) = reader_current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            flag.store(true, Ordering::Relaxed);
        }
    });

    for (id, job) in jobs_rx {
        let cancelled = Arc::new(AtomicBool::new(false));
        *current.lock().unwrap_or_else(|p| p.into_inner()) = Some((id, Arc::clone(&cancelled)));
        let mut sink = EventSink {
            id,
            out: Arc::clone(&out),
            cancelled,
        };
        let event = match handler.run(job, &mut sink) {
            Ok(result) => Event::Done {
                id,
                result: Box::new(result),
            },
            Err(err) => Event::Error {
                id,
                kind: err.kind,
                message: err.message,
            },
        };
        *current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        write_event(&out, &event)?;
    }
    Ok(())
}
