//! The ways profiling can fail, each carrying the facts a user needs to act.

use std::path::PathBuf;

/// The error type of the errors a [`crate::PassTimer`] may return.
pub type TimerError = Box<dyn std::error::Error + Send + Sync>;

/// An error from the hardware profiler.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    /// A profile file or its directory could not be created, read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid profile document (bad JSON or a field of the wrong shape).
    #[error("{} is not a valid Canopy profile: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The file is JSON but has no usable `schema_version`.
    #[error("{} is not a Canopy profile: it has no numeric schema_version", path.display())]
    MissingSchemaVersion { path: PathBuf },
    /// The profile was written by a newer Canopy whose schema this build does not know.
    #[error("{} was written by a newer Canopy (profile schema version {found}, this build knows up to {supported}); upgrade Canopy or measure this machine again with `canopy profile`", path.display())]
    NewerSchema {
        path: PathBuf,
        found: u64,
        supported: u32,
    },
    /// A profile name is neither a file, a saved profile, nor a built-in reference profile.
    #[error("no profile named '{name}': not a file, not in {}, and not a reference profile (known: {known})", dir.display())]
    UnknownProfile {
        name: String,
        dir: PathBuf,
        known: String,
    },
    /// A setting of a measurement is out of range (zero repeats, an empty grid, ...).
    #[error("invalid measurement setting: {0}")]
    InvalidSetting(String),
    /// A host buffer for the bandwidth measurement could not be allocated.
    #[error("cannot allocate {bytes} bytes of host memory for the bandwidth measurement")]
    HostAlloc { bytes: usize },
    /// The engine failed to run a timed pass.
    #[error("timing one {what} pass over {n} tokens failed: {source}")]
    Timer {
        what: &'static str,
        n: usize,
        #[source]
        source: TimerError,
    },
    /// The engine reported a time that is not a positive finite number of seconds.
    #[error(
        "the {what} pass over {n} tokens reported {seconds} s, which is not a positive finite time"
    )]
    BadTiming {
        what: &'static str,
        n: usize,
        seconds: f64,
    },
    /// A CUDA driver call failed while a GPU was being measured.
    #[error("CUDA error while {action}: {message}")]
    Cuda {
        action: &'static str,
        message: String,
    },
}
