//! A validated GGUF header: metadata and tensor infos, and typed access to them.

use std::collections::HashMap;

use crate::types::GgmlType;
use crate::value::{Array, Value};

/// One metadata pair.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataEntry {
    /// The key, e.g. `"general.architecture"`.
    pub key: String,
    /// The value.
    pub value: Value,
    /// Where the pair starts in the file.
    pub offset: u64,
}

/// One tensor's description from the header (its data is not read).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `"blk.0.attn_q.weight"`.
    pub name: String,
    /// The dimensions, innermost (row length) first; at most [`crate::MAX_DIMS`].
    pub dims: Vec<u64>,
    /// The element type.
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Absolute file offset of the data's first byte.
    pub data_start: u64,
    /// The number of elements (product of the dimensions).
    pub n_elements: u64,
    /// The number of bytes of data.
    pub n_bytes: u64,
    /// Where the tensor's info record starts in the file.
    pub info_offset: u64,
}

/// A GGUF header that passed every check of [`crate::validate`].
///
/// Holds the metadata and the tensor infos, never the tensor data.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub(crate) version: u32,
    pub(crate) metadata: Vec<MetadataEntry>,
    pub(crate) index: HashMap<String, usize>,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) alignment: u64,
    pub(crate) data_offset: u64,
    pub(crate) file_len: u64,
}

impl GgufHeader {
    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The size of the whole file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The data alignment (`general.alignment`, 32 when absent).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset where the tensor data section starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The metadata pairs, in file order.
    pub fn metadata(&self) -> &[MetadataEntry] {
        &self.metadata
    }

    /// The tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].value)
    }

    /// The string stored under `key`; `None` when absent or not a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// The non-negative integer stored under `key`; `None` when absent or not such an integer.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    /// The array stored under `key`; `None` when absent or not an array.
    pub fn get_array(&self, key: &str) -> Option<&Array> {
        self.get(key).and_then(Value::as_array)
    }

    /// `general.architecture`, e.g. `"llama"` or `"qwen2"`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// The integer under `<architecture>.<suffix>`, e.g. `arch_u64("block_count")`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.get_u64(&format!("{arch}.{suffix}"))
    }

    /// The value under `<architecture>.<suffix>`.
    pub fn arch_value(&self, suffix: &str) -> Option<&Value> {
        let arch = self.architecture()?;
        self.get(&format!("{arch}.{suffix}"))
    }

    /// The tensor named `name`, if any.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}
