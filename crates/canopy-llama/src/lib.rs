//! llama.cpp adapter: loads GGUF models, runs [`canopy_spec`]'s speculation loop over llama.cpp
//! contexts, and serves the worker protocol of [`canopy_worker`].
//!
//! Architecture invariant: this crate knows nothing of SQLite, Tauri or the command line. It is the
//! only crate that links llama.cpp, and it runs only inside the worker process.

pub mod backends;
mod engine;
mod quantize;
pub mod rpc;
mod text;
pub mod tree;

pub use engine::{Engine, EngineError};
pub use quantize::{quantize, QuantType};
pub use tree::LlamaTree;

/// Runs the inference worker on stdin/stdout until the caller shuts it down or goes away.
///
/// # Errors
/// Fails when llama.cpp's backend cannot start or stdout cannot be written.
pub fn serve_worker() -> std::io::Result<()> {
    let mut engine = Engine::new().map_err(std::io::Error::other)?;
    canopy_worker::serve(&mut engine)
}
