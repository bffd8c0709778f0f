//! Writes small, valid GGUF files: fixtures for tests of anything that reads models.

use crate::error::GgufError;
use crate::types::GgmlType;
use crate::value::{Array, Value};
use crate::DEFAULT_ALIGNMENT;

/// The metadata key of a split file's index, counted from 0 (`uint16`, as llama.cpp writes it).
pub const SPLIT_NO_KEY: &str = "split.no";
/// The metadata key of the number of files in a split model (`uint16`).
pub const SPLIT_COUNT_KEY: &str = "split.count";
/// The metadata key of the number of tensors in all files of a split model together (`int32`).
pub const SPLIT_TENSORS_COUNT_KEY: &str = "split.tensors.count";

/// Builds a GGUF (version 3) file in memory: metadata pairs and tensors whose data is zero bytes
/// unless given.
///
/// Tensors are laid out one after another, each padded to the alignment, as llama.cpp writes them.
/// The writer does not check its input: it can also write invalid files on purpose.
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

/// A tensor to write: name, dimensions, type, and its data (zeros when `None`).
type PendingTensor = (String, Vec<u64>, GgmlType, Option<Vec<u8>>);

impl GgufWriter {
    /// An empty file: no metadata, no tensors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata pair.
    pub fn kv(mut self, key: impl Into<String>, value: Value) -> Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// Adds a string metadata pair.
    pub fn kv_str(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.kv(key, Value::String(value.into()))
    }

    /// Adds a `uint32` metadata pair.
    pub fn kv_u32(self, key: impl Into<String>, value: u32) -> Self {
        self.kv(key, Value::U32(value))
    }

    /// Adds a tokenizer: `tokenizer.ggml.model`, `.tokens`, `.bos_token_id` and `.eos_token_id`.
    pub fn vocabulary(self, model: &str, tokens: &[&str], bos: u32, eos: u32) -> Self {
        self.kv_str("tokenizer.ggml.model", model)
            .kv(
                "tokenizer.ggml.tokens",
                Value::Array(Array::String(
                    tokens.iter().map(|t| (*t).to_owned()).collect(),
                )),
            )
            .kv_u32("tokenizer.ggml.bos_token_id", bos)
            .kv_u32("tokenizer.ggml.eos_token_id", eos)
    }

    /// Adds a tensor of the given dimensions (row length first) and type, filled with zero bytes.
    pub fn tensor(mut self, name: impl Into<String>, dims: &[u64], ggml_type: GgmlType) -> Self {
        self.tensors
            .push((name.into(), dims.to_vec(), ggml_type, None));
        self
    }

    /// Adds a tensor with its data. `data` should hold exactly the tensor's byte size; shorter data
    /// is padded with zero bytes, longer data is cut.
    pub fn tensor_with_data(
        mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        data: Vec<u8>,
    ) -> Self {
        self.tensors
            .push((name.into(), dims.to_vec(), ggml_type, Some(data)));
        self
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let alignment = self
            .metadata
            .iter()
            .find_map(|(k, v)| match (k.as_str(), v) {
                (crate::ALIGNMENT_KEY, Value::U32(a)) if a.is_power_of_two() => Some(u64::from(*a)),
                _ => None,
            })
            .unwrap_or(DEFAULT_ALIGNMENT);
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut out, key);
            out.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        let mut sizes = Vec::with_capacity(self.tensors.len());
        for (name, dims, ty, _) in &self.tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            let elements: u64 = dims.iter().product();
            let size = elements / ty.block_size() * ty.type_size();
            sizes.push(size);
            offset += size.div_ceil(alignment) * alignment;
        }
        if !self.tensors.is_empty() {
            pad(&mut out, alignment);
            for ((_, _, _, data), size) in self.tensors.iter().zip(sizes) {
                let start = out.len();
                if let Some(data) = data {
                    out.extend_from_slice(&data[..data.len().min(size as usize)]);
                }
                out.resize(start + size as usize, 0);
                pad(&mut out, alignment);
            }
        }
        out
    }
}

/// Splits a GGUF file held in memory into `parts` files the way llama.cpp's `gguf-split` does:
/// tensors in order, about the same number in each part; every metadata pair in the first part;
/// `split.no` (from 0), `split.count` and `split.tensors.count` in every part. The parts are named
/// `NAME-00001-of-0000N.gguf` and so on by the caller.
///
/// Fails like [`crate::validate_bytes`] when `file` is not a valid GGUF. `parts` is clamped to
/// 1..=the number of tensors (and to `u16::MAX`).
pub fn split_bytes(file: &[u8], parts: usize) -> Result<Vec<Vec<u8>>, GgufError> {
    let header = crate::validate_bytes(file)?;
    let tensors = header.tensors();
    let parts = parts.clamp(1, tensors.len().clamp(1, usize::from(u16::MAX)));
    let per_part = tensors.len().div_ceil(parts).max(1);
    let total = i32::try_from(tensors.len()).unwrap_or(i32::MAX);
    let split_keys = |w: GgufWriter, no: usize| {
        w.kv(SPLIT_NO_KEY, Value::U16(no as u16))
            .kv(SPLIT_COUNT_KEY, Value::U16(parts as u16))
            .kv(SPLIT_TENSORS_COUNT_KEY, Value::I32(total))
    };
    let mut out = Vec::with_capacity(parts);
    for no in 0..parts {
        let mut writer = GgufWriter::new();
        if no == 0 {
            for entry in header.metadata() {
                if !entry.key.starts_with("split.") {
                    writer = writer.kv(entry.key.clone(), entry.value.clone());
                }
            }
        }
        writer = split_keys(writer, no);
        let chunk = tensors.iter().skip(no * per_part).take(per_part);
        for t in chunk {
            let start = t.data_start as usize;
            let data = file[start..start + t.n_bytes as usize].to_vec();
            writer = writer.tensor_with_data(t.name.clone(), &t.dims, t.ggml_type, data);
        }
        out.push(writer.to_bytes());
    }
    Ok(out)
}

fn pad(out: &mut Vec<u8>, alignment: u64) {
    let len = out.len() as u64;
    out.resize((len.div_ceil(alignment) * alignment) as usize, 0);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&a.element_type().id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    fn each<T: Copy>(out: &mut Vec<u8>, v: &[T], f: impl Fn(T) -> Value) {
        for &x in v {
            put_value(out, &f(x));
        }
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => each(out, v, Value::I8),
        Array::U16(v) => each(out, v, Value::U16),
        Array::I16(v) => each(out, v, Value::I16),
        Array::U32(v) => each(out, v, Value::U32),
        Array::I32(v) => each(out, v, Value::I32),
        Array::F32(v) => each(out, v, Value::F32),
        Array::Bool(v) => each(out, v, Value::Bool),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::Array(v) => v.iter().for_each(|inner| put_array(out, inner)),
        Array::U64(v) => each(out, v, Value::U64),
        Array::I64(v) => each(out, v, Value::I64),
        Array::F64(v) => each(out, v, Value::F64),
    }
}
