//! Everything that can go wrong while reading a GGUF file.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a GGUF file was refused.
///
/// Every variant about the file's contents carries the byte `offset` of the field that failed and,
/// where there is one, the metadata key or tensor name it belongs to. [`GgufError::check`] names the
/// failed check in a stable, machine-readable form. Displays as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened or its size could not be read.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Reading failed part way (the file shrank while being read, or the disk failed).
    #[error("cannot read GGUF at byte {offset}: {source}")]
    Read {
        /// Where the failed read started.
        offset: u64,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The file has no bytes at all.
    #[error("invalid GGUF at byte 0: the file is empty")]
    Empty,
    /// A fixed-size field runs past the end of the file.
    #[error("invalid GGUF at byte {offset}: {what} needs {needed} bytes but only {left} are left")]
    Truncated {
        /// Where the field starts.
        offset: u64,
        /// The header field, key or tensor name being read.
        field: String,
        /// The same, described for a sentence ("the value of 'general.name'").
        what: String,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the file.
        left: u64,
    },
    /// The first four bytes are not `GGUF`.
    #[error("invalid GGUF at byte {offset}: magic {} is not \"GGUF\"", Escaped(.found))]
    Magic {
        /// Always 0.
        offset: u64,
        /// The bytes found instead.
        found: [u8; 4],
    },
    /// The format version is not 2 or 3.
    #[error(
        "invalid GGUF at byte {offset}: version {version} is not supported (only 2 and 3 are)"
    )]
    Version {
        /// Always 4.
        offset: u64,
        /// The version found.
        version: u32,
    },
    /// The file is a big-endian GGUF; only little-endian files are read.
    #[error("invalid GGUF at byte {offset}: the file is big-endian (version {version} byte-swapped); only little-endian files are supported")]
    ByteOrder {
        /// Always 4.
        offset: u64,
        /// The version as written, byte-swapped.
        version: u32,
    },
    /// The tensor count cannot be true: even the smallest tensor infos would not fit.
    #[error(
        "invalid GGUF at byte {offset}: tensor count {count} cannot fit in the {left} bytes left"
    )]
    TensorCount {
        /// Where the count is stored.
        offset: u64,
        /// The count found.
        count: u64,
        /// Bytes left after the counts.
        left: u64,
    },
    /// The key-value count cannot be true: even the smallest pairs would not fit.
    #[error("invalid GGUF at byte {offset}: kv count {count} cannot fit in the {left} bytes left beside the tensor infos")]
    KvCount {
        /// Where the count is stored.
        offset: u64,
        /// The count found.
        count: u64,
        /// Bytes left once the tensor infos' minimum size is set aside.
        left: u64,
    },
    /// A string's length runs past the end of the file.
    #[error("invalid GGUF at byte {offset}: string length {len} in {what} runs past the end of the file ({left} bytes left)")]
    StringLength {
        /// Where the length is stored.
        offset: u64,
        /// The header field, key or tensor name being read.
        field: String,
        /// The same, described for a sentence ("the value of 'general.name'").
        what: String,
        /// The length found.
        len: u64,
        /// Bytes left after the length.
        left: u64,
    },
    /// An array's element count cannot fit in the bytes left.
    #[error("invalid GGUF at byte {offset}: array {} claims {len} elements (at least {min_bytes} bytes) but only {left} bytes are left", Quoted(.field))]
    ArrayLength {
        /// Where the count is stored.
        offset: u64,
        /// The key.
        field: String,
        /// The count found.
        len: u64,
        /// The smallest number of bytes that many elements take (saturating).
        min_bytes: u64,
        /// Bytes left after the count.
        left: u64,
    },
    /// The metadata and tensor infos together are larger than any real model's header.
    #[error("invalid GGUF at byte {offset}: {} would make the header larger than {limit} bytes", Quoted(.field))]
    HeaderSize {
        /// Where the oversized field starts.
        offset: u64,
        /// The key or tensor being read.
        field: String,
        /// The header size limit, [`crate::MAX_HEADER_BYTES`].
        limit: u64,
    },
    /// A metadata value has a type id outside the GGUF specification.
    #[error("invalid GGUF at byte {offset}: {} has unknown value type {value_type}", Quoted(.field))]
    ValueType {
        /// Where the type id is stored.
        offset: u64,
        /// The key.
        field: String,
        /// The type id found.
        value_type: u32,
    },
    /// Arrays nested deeper than [`crate::MAX_ARRAY_DEPTH`].
    #[error("invalid GGUF at byte {offset}: arrays in {} are nested deeper than {max} levels", Quoted(.field))]
    ArrayDepth {
        /// Where the too-deep array's element type is stored.
        offset: u64,
        /// The key.
        field: String,
        /// The deepest nesting allowed.
        max: u32,
    },
    /// A metadata key is the empty string.
    #[error("invalid GGUF at byte {offset}: metadata key {index} is empty")]
    EmptyKey {
        /// Where the key starts.
        offset: u64,
        /// The position of the pair in the metadata.
        index: u64,
    },
    /// A metadata key or tensor name is not UTF-8.
    #[error("invalid GGUF at byte {offset}: {what} is not valid UTF-8")]
    NotUtf8 {
        /// Where the string starts.
        offset: u64,
        /// Which string ("metadata key 3", "tensor name 12").
        what: String,
    },
    /// Two metadata pairs share a key.
    #[error("invalid GGUF at byte {offset}: metadata key {} appears twice", Quoted(.key))]
    DuplicateKey {
        /// Where the second occurrence starts.
        offset: u64,
        /// The key.
        key: String,
    },
    /// `general.alignment` is not stored as a uint32.
    #[error(
        "invalid GGUF at byte {offset}: general.alignment must be a uint32 but is a {value_type}"
    )]
    AlignmentType {
        /// Where the value starts.
        offset: u64,
        /// The type it has instead.
        value_type: &'static str,
    },
    /// `general.alignment` is zero or not a power of two.
    #[error("invalid GGUF at byte {offset}: general.alignment {alignment} is not a non-zero power of two")]
    Alignment {
        /// Where the value starts.
        offset: u64,
        /// The alignment found.
        alignment: u32,
    },
    /// A tensor name is longer than llama.cpp accepts.
    #[error("invalid GGUF at byte {offset}: tensor name {} is {len} bytes long; at most {max} are allowed", Quoted(.tensor))]
    TensorNameLength {
        /// Where the name starts.
        offset: u64,
        /// The name.
        tensor: String,
        /// Its length in bytes.
        len: u64,
        /// The longest name allowed, [`crate::MAX_TENSOR_NAME`].
        max: u64,
    },
    /// Two tensors share a name.
    #[error("invalid GGUF at byte {offset}: tensor name {} appears twice", Quoted(.tensor))]
    DuplicateTensor {
        /// Where the second occurrence starts.
        offset: u64,
        /// The name.
        tensor: String,
    },
    /// A tensor has more dimensions than ggml supports.
    #[error("invalid GGUF at byte {offset}: tensor {} has {n_dims} dimensions; at most {max} are allowed", Quoted(.tensor))]
    Dims {
        /// Where the dimension count is stored.
        offset: u64,
        /// The tensor.
        tensor: String,
        /// The count found.
        n_dims: u32,
        /// The most allowed, [`crate::MAX_DIMS`].
        max: u32,
    },
    /// A tensor dimension does not fit ggml's signed 64-bit sizes.
    #[error("invalid GGUF at byte {offset}: dimension {index} of tensor {} is {value}, beyond the signed 64-bit range", Quoted(.tensor))]
    Dimension {
        /// Where the dimension is stored.
        offset: u64,
        /// The tensor.
        tensor: String,
        /// Which dimension (0-based).
        index: u32,
        /// The value found.
        value: u64,
    },
    /// The product of a tensor's dimensions overflows.
    #[error("invalid GGUF at byte {offset}: element count of tensor {} with shape {dims:?} overflows 63 bits", Quoted(.tensor))]
    ElementCount {
        /// Where the dimensions start.
        offset: u64,
        /// The tensor.
        tensor: String,
        /// Its dimensions.
        dims: Vec<u64>,
    },
    /// A tensor's ggml type id is unknown or was removed from the format.
    #[error("invalid GGUF at byte {offset}: tensor {} has unknown ggml type {ggml_type}", Quoted(.tensor))]
    TensorType {
        /// Where the type id is stored.
        offset: u64,
        /// The tensor.
        tensor: String,
        /// The type id found.
        ggml_type: u32,
    },
    /// A tensor's row length is not a whole number of quantization blocks.
    #[error("invalid GGUF at byte {offset}: tensor {} has {row} elements per row, not a multiple of the {ggml_type} block size {block}", Quoted(.tensor))]
    RowSize {
        /// Where the type id is stored.
        offset: u64,
        /// The tensor.
        tensor: String,
        /// Elements per row (the first dimension).
        row: u64,
        /// The type's name.
        ggml_type: &'static str,
        /// The type's block size.
        block: u64,
    },
    /// A tensor's size in bytes overflows.
    #[error("invalid GGUF at byte {offset}: byte size of tensor {} overflows 63 bits", Quoted(.tensor))]
    ByteSize {
        /// Where the type id is stored.
        offset: u64,
        /// The tensor.
        tensor: String,
    },
    /// A tensor's data offset is not a multiple of the alignment.
    #[error("invalid GGUF at byte {offset}: tensor {} data offset {data_offset} is not a multiple of the alignment {alignment}", Quoted(.tensor))]
    MisalignedOffset {
        /// Where the data offset is stored.
        offset: u64,
        /// The tensor.
        tensor: String,
        /// The offset found, relative to the data section.
        data_offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor's data lies (partly) past the end of the file.
    #[error("invalid GGUF at byte {offset}: tensor {} data at bytes {start}..{end} lies past the end of the file ({file_len} bytes)", Quoted(.tensor))]
    DataBounds {
        /// Where the data offset is stored.
        offset: u64,
        /// The tensor.
        tensor: String,
        /// Absolute file offset of the data's first byte (saturating).
        start: u64,
        /// Absolute file offset one past the data's last byte (saturating).
        end: u64,
        /// The file's size.
        file_len: u64,
    },
    /// Two tensors' data overlap.
    #[error("invalid GGUF at byte {offset}: tensor {} data at bytes {start}..{end} overlaps tensor {}", Quoted(.tensor), Quoted(.other))]
    Overlap {
        /// Where the data offset of `tensor` is stored.
        offset: u64,
        /// The tensor whose data starts later.
        tensor: String,
        /// Absolute file offset of its data's first byte.
        start: u64,
        /// Absolute file offset one past its data's last byte.
        end: u64,
        /// The tensor it overlaps.
        other: String,
    },
}

/// The check a [`GgufError`] failed, in a stable form for tests, logs and manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// The file could not be opened or read.
    Io,
    /// The file is empty.
    Empty,
    /// A fixed-size field runs past the end.
    Truncated,
    /// The magic bytes.
    Magic,
    /// The format version.
    Version,
    /// The byte order.
    ByteOrder,
    /// The tensor count bound.
    TensorCount,
    /// The key-value count bound.
    KvCount,
    /// A string length bound.
    StringLength,
    /// An array length bound.
    ArrayLength,
    /// The overall header size bound.
    HeaderSize,
    /// A known value type.
    ValueType,
    /// The array nesting depth.
    ArrayDepth,
    /// A non-empty key.
    EmptyKey,
    /// UTF-8 keys and tensor names.
    NotUtf8,
    /// Unique keys.
    DuplicateKey,
    /// `general.alignment` type.
    AlignmentType,
    /// `general.alignment` value.
    Alignment,
    /// Tensor name length.
    TensorNameLength,
    /// Unique tensor names.
    DuplicateTensor,
    /// Number of dimensions.
    Dims,
    /// Each dimension's range.
    Dimension,
    /// Element count overflow.
    ElementCount,
    /// A known tensor type.
    TensorType,
    /// Rows made of whole blocks.
    RowSize,
    /// Byte size overflow.
    ByteSize,
    /// Aligned data offsets.
    MisalignedOffset,
    /// Data inside the file.
    DataBounds,
    /// No overlapping tensor data.
    Overlap,
}

impl Check {
    /// The check's stable snake_case name, e.g. `"tensor_count"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Io => "io",
            Check::Empty => "empty",
            Check::Truncated => "truncated",
            Check::Magic => "magic",
            Check::Version => "version",
            Check::ByteOrder => "byte_order",
            Check::TensorCount => "tensor_count",
            Check::KvCount => "kv_count",
            Check::StringLength => "string_length",
            Check::ArrayLength => "array_length",
            Check::HeaderSize => "header_size",
            Check::ValueType => "value_type",
            Check::ArrayDepth => "array_depth",
            Check::EmptyKey => "empty_key",
            Check::NotUtf8 => "not_utf8",
            Check::DuplicateKey => "duplicate_key",
            Check::AlignmentType => "alignment_type",
            Check::Alignment => "alignment",
            Check::TensorNameLength => "tensor_name_length",
            Check::DuplicateTensor => "duplicate_tensor",
            Check::Dims => "n_dims",
            Check::Dimension => "dimension",
            Check::ElementCount => "element_count",
            Check::TensorType => "tensor_type",
            Check::RowSize => "row_size",
            Check::ByteSize => "byte_size",
            Check::MisalignedOffset => "misaligned_offset",
            Check::DataBounds => "data_bounds",
            Check::Overlap => "overlap",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl GgufError {
    /// The check that failed.
    pub fn check(&self) -> Check {
        match self {
            GgufError::Open { .. } | GgufError::Read { .. } => Check::Io,
            GgufError::Empty => Check::Empty,
            GgufError::Truncated { .. } => Check::Truncated,
            GgufError::Magic { .. } => Check::Magic,
            GgufError::Version { .. } => Check::Version,
            GgufError::ByteOrder { .. } => Check::ByteOrder,
            GgufError::TensorCount { .. } => Check::TensorCount,
            GgufError::KvCount { .. } => Check::KvCount,
            GgufError::StringLength { .. } => Check::StringLength,
            GgufError::ArrayLength { .. } => Check::ArrayLength,
            GgufError::HeaderSize { .. } => Check::HeaderSize,
            GgufError::ValueType { .. } => Check::ValueType,
            GgufError::ArrayDepth { .. } => Check::ArrayDepth,
            GgufError::EmptyKey { .. } => Check::EmptyKey,
            GgufError::NotUtf8 { .. } => Check::NotUtf8,
            GgufError::DuplicateKey { .. } => Check::DuplicateKey,
            GgufError::AlignmentType { .. } => Check::AlignmentType,
            GgufError::Alignment { .. } => Check::Alignment,
            GgufError::TensorNameLength { .. } => Check::TensorNameLength,
            GgufError::DuplicateTensor { .. } => Check::DuplicateTensor,
            GgufError::Dims { .. } => Check::Dims,
            GgufError::Dimension { .. } => Check::Dimension,
            GgufError::ElementCount { .. } => Check::ElementCount,
            GgufError::TensorType { .. } => Check::TensorType,
            GgufError::RowSize { .. } => Check::RowSize,
            GgufError::ByteSize { .. } => Check::ByteSize,
            GgufError::MisalignedOffset { .. } => Check::MisalignedOffset,
            GgufError::DataBounds { .. } => Check::DataBounds,
            GgufError::Overlap { .. } => Check::Overlap,
        }
    }

    /// The byte offset of the field that failed; `None` when the file could not be opened.
    pub fn offset(&self) -> Option<u64> {
        match self {
            GgufError::Open { .. } => None,
            GgufError::Empty => Some(0),
            GgufError::Read { offset, .. }
            | GgufError::Truncated { offset, .. }
            | GgufError::Magic { offset, .. }
            | GgufError::Version { offset, .. }
            | GgufError::ByteOrder { offset, .. }
            | GgufError::TensorCount { offset, .. }
            | GgufError::KvCount { offset, .. }
            | GgufError::StringLength { offset, .. }
            | GgufError::ArrayLength { offset, .. }
            | GgufError::HeaderSize { offset, .. }
            | GgufError::ValueType { offset, .. }
            | GgufError::ArrayDepth { offset, .. }
            | GgufError::EmptyKey { offset, .. }
            | GgufError::NotUtf8 { offset, .. }
            | GgufError::DuplicateKey { offset, .. }
            | GgufError::AlignmentType { offset, .. }
            | GgufError::Alignment { offset, .. }
            | GgufError::TensorNameLength { offset, .. }
            | GgufError::DuplicateTensor { offset, .. }
            | GgufError::Dims { offset, .. }
            | GgufError::Dimension { offset, .. }
            | GgufError::ElementCount { offset, .. }
            | GgufError::TensorType { offset, .. }
            | GgufError::RowSize { offset, .. }
            | GgufError::ByteSize { offset, .. }
            | GgufError::MisalignedOffset { offset, .. }
            | GgufError::DataBounds { offset, .. }
            | GgufError::Overlap { offset, .. } => Some(*offset),
        }
    }

    /// The metadata key, tensor name or header field the failure is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            GgufError::Truncated { field, .. }
            | GgufError::StringLength { field, .. }
            | GgufError::ArrayLength { field, .. }
            | GgufError::HeaderSize { field, .. }
            | GgufError::ValueType { field, .. }
            | GgufError::ArrayDepth { field, .. } => Some(field),
            GgufError::NotUtf8 { what, .. } => Some(what),
            GgufError::DuplicateKey { key, .. } => Some(key),
            GgufError::AlignmentType { .. } | GgufError::Alignment { .. } => {
                Some("general.alignment")
            }
            GgufError::TensorNameLength { tensor, .. }
            | GgufError::DuplicateTensor { tensor, .. }
            | GgufError::Dims { tensor, .. }
            | GgufError::Dimension { tensor, .. }
            | GgufError::ElementCount { tensor, .. }
            | GgufError::TensorType { tensor, .. }
            | GgufError::RowSize { tensor, .. }
            | GgufError::ByteSize { tensor, .. }
            | GgufError::MisalignedOffset { tensor, .. }
            | GgufError::DataBounds { tensor, .. }
            | GgufError::Overlap { tensor, .. } => Some(tensor),
            GgufError::Magic { .. } => Some("magic"),
            GgufError::Version { .. } | GgufError::ByteOrder { .. } => Some("version"),
            GgufError::TensorCount { .. } => Some("tensor_count"),
            GgufError::KvCount { .. } => Some("kv_count"),
            GgufError::Open { .. }
            | GgufError::Read { .. }
            | GgufError::Empty
            | GgufError::EmptyKey { .. } => None,
        }
    }
}

/// Longest name shown in a message before it is cut.
const SHOWN_NAME_CHARS: usize = 96;

/// Shows a name from the file in single quotes on one line: control characters escaped, long names cut.
pub(crate) struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'")?;
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(SHOWN_NAME_CHARS) {
            if c == '\'' || c == '\\' || c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if chars.next().is_some() {
            f.write_str("…")?;
        }
        f.write_str("'")
    }
}

/// Shows raw bytes as a quoted ASCII string with escapes.
struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &b in self.0 {
            write!(f, "{}", std::ascii::escape_default(b))?;
        }
        f.write_str("\"")
    }
}
