//! GGUF validator and metadata reader, in pure Rust, for untrusted model files.
//!
//! A GGUF file downloaded from the internet is untrusted input, and llama.cpp's loader has had many
//! overflow bugs. Canopy therefore validates every file here before handing it to llama.cpp:
//!
//! - magic `GGUF` and version 2 or 3 (little-endian);
//! - tensor and key-value counts bounded by the bytes left in the file;
//! - every string and array length checked against the bytes left *before* allocating, and the
//!   whole header bounded by [`MAX_HEADER_BYTES`];
//! - known value types, arrays nested at most [`MAX_ARRAY_DEPTH`] deep, non-empty unique keys;
//! - `general.alignment` a non-zero power of two stored as uint32 (default [`DEFAULT_ALIGNMENT`]);
//! - unique tensor names of at most [`MAX_TENSOR_NAME`] bytes, at most [`MAX_DIMS`] dimensions,
//!   element counts and byte sizes computed with overflow checks, known ggml types, rows made of
//!   whole quantization blocks;
//! - each tensor's data aligned, inside the file (the data section starts at the aligned end of the
//!   header), and overlapping no other tensor's data.
//!
//! Only the header is read: a multi-gigabyte model costs the size of its metadata (a few MB for a
//! 150k-token vocabulary), never its weights. Each refusal is a [`GgufError`] that names the check,
//! the key or tensor and the byte offset.
//!
//! ```
//! use canopy_gguf::{validate_bytes, Check, GgmlType, GgufWriter, ModelInfo};
//!
//! let file = GgufWriter::new()
//!     .kv_str("general.architecture", "llama")
//!     .tensor("output_norm.weight", &[64], GgmlType::F32)
//!     .to_bytes();
//! let info = ModelInfo::from_header(&validate_bytes(&file)?);
//! assert_eq!(info.parameter_count, 64);
//!
//! let err = validate_bytes(&file[..40]).unwrap_err();
//! assert_eq!(err.check(), Check::TensorCount);
//! assert_eq!(
//!     err.to_string(),
//!     "invalid GGUF at byte 8: tensor count 1 cannot fit in the 16 bytes left"
//! );
//! # Ok::<(), canopy_gguf::GgufError>(())
//! ```
//!
//! Architecture invariant: this crate does no IO beyond reading the file it is given, and knows
//! nothing of llama.cpp, SQLite or the desktop app.

mod error;
mod header;
mod info;
mod parse;
mod types;
mod value;
mod vocab;
mod writer;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

pub use error::{Check, GgufError};
pub use header::{GgufHeader, MetadataEntry, TensorInfo};
pub use info::{ModelInfo, QuantShare};
pub use types::{file_type_name, GgmlType, ValueType};
pub use value::{Array, Value};
pub use vocab::{compare_vocab, fingerprint, VocabMismatch, Vocabulary, MAX_VOCAB_SIZE_DIFFERENCE};
pub use writer::{split_bytes, GgufWriter, SPLIT_COUNT_KEY, SPLIT_NO_KEY, SPLIT_TENSORS_COUNT_KEY};

/// The alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// The longest tensor name in bytes (ggml's `GGML_MAX_NAME` less the terminating NUL).
pub const MAX_TENSOR_NAME: u64 = 63;
/// The deepest nesting of metadata arrays: an array of arrays is allowed, one level more is not.
pub const MAX_ARRAY_DEPTH: u32 = 2;
/// The largest header (metadata and tensor infos) accepted: 512 MiB, far above any real model's
/// (a 256k-token vocabulary with its merges takes tens of MB).
pub const MAX_HEADER_BYTES: u64 = 512 << 20;
/// The metadata key holding the data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Reads and validates the header of the GGUF file at `path`, without reading the tensor data.
///
/// Fails with [`GgufError::Open`] when the file cannot be opened, [`GgufError::Read`] when reading
/// fails, and with the variant naming the failed check when the file is not a valid GGUF.
pub fn read_header(path: &Path) -> Result<GgufHeader, GgufError> {
    let open_err = |source| GgufError::Open {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(open_err)?;
    let len = file.metadata().map_err(open_err)?.len();
    parse::parse(BufReader::with_capacity(1 << 16, file), len)
}

/// Checks that the file at `path` is a valid GGUF (see the crate docs for the checks).
///
/// Fails like [`read_header`].
pub fn validate(path: &Path) -> Result<(), GgufError> {
    read_header(path).map(|_| ())
}

/// Reads and validates a GGUF file held in memory (the whole file, so that tensor data offsets can
/// be checked against its length).
///
/// Fails with the variant naming the failed check when `bytes` are not a valid GGUF.
pub fn validate_bytes(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
    parse::parse(bytes, bytes.len() as u64)
}

/// Validates the GGUF file at `path` and summarises the model, without loading its weights.
///
/// Fails like [`read_header`].
pub fn inspect(path: &Path) -> Result<ModelInfo, GgufError> {
    read_header(path).map(|h| ModelInfo::from_header(&h))
}

/// Validates the GGUF file at `path` and reads its tokenizer vocabulary.
///
/// Fails like [`read_header`]. A file without a tokenizer gives an empty vocabulary.
pub fn vocabulary(path: &Path) -> Result<Vocabulary, GgufError> {
    read_header(path).map(|h| Vocabulary::from_header(&h))
}
