//! The app binary doubles as its own inference worker: `canopy-app --worker`.

use std::ffi::OsString;

use canopy_worker::WorkerCommand;

/// Runs the worker loop on stdin/stdout; returns the process exit code.
pub fn worker_main() -> i32 {
    match serve() {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("canopy worker: {err}");
            1
        }
    }
}

/// Whether this build runs models.
pub const HAS_ENGINE: bool = true;

fn serve() -> std::io::Result<()> {
    canopy_llama::serve_worker()
}

/// How the app starts its worker: this very executable with `--worker`.
pub fn command() -> WorkerCommand {
    let program = std::env::current_exe().unwrap_or_else(|_| "canopy-app".into());
    WorkerCommand {
        program,
        args: vec![OsString::from("--worker")],
        // The engine adds GGML_NO_BACKTRACE (a backtrace would be printed on the protocol's pipe).
        env: Vec::new(),
    }
}
