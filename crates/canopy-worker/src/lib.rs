//! The inference worker: a versioned line protocol and the supervisor that runs it in a child process.
//!
//! llama.cpp aborts the whole process on some failures (a batch larger than `n_batch`, CUDA
//! out-of-memory during compute). Canopy therefore never runs a model in the process that holds the
//! user's chat: the caller (CLI or desktop app) owns a [`Supervisor`], which starts a worker child and
//! speaks [`protocol`] to it over stdin/stdout. When the worker dies the supervisor reports
//! [`WorkerError::Crashed`], the caller keeps whatever was streamed, and the next request starts a fresh
//! worker.
//!
//! Architecture invariant: this crate knows nothing of llama.cpp. The worker side is a [`Handler`]
//! implemented elsewhere and driven by [`serve`].

pub mod protocol;
mod server;
mod supervisor;

pub use protocol::*;
pub use server::{serve, EventSink, Handler, HandlerError};
pub use supervisor::{CancelFlag, Supervisor, WorkerCommand, WorkerError};
