//! The validating parser: reads a GGUF header through a reader that knows how many bytes are left,
//! and checks every count and length against them before allocating.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use crate::error::{GgufError, Quoted};
use crate::header::{GgufHeader, MetadataEntry, TensorInfo};
use crate::types::{GgmlType, ValueType};
use crate::value::{Array, Value};
use crate::{DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_HEADER_BYTES, MAX_TENSOR_NAME};

/// The smallest possible metadata pair: key length, type id and a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// The smallest possible tensor info: name length, dimension count, type id and offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;
/// Vectors are never pre-allocated beyond this many elements; they grow as elements really arrive.
const MAX_PREALLOC: u64 = 1 << 16;

/// What is being read, for error messages.
#[derive(Clone, Copy)]
enum Field<'a> {
    /// A fixed header field ("magic", "tensor count").
    Header(&'static str),
    /// The key of the pair at this index, before it is known.
    KeyName(u64),
    /// The value under this key.
    Key(&'a str),
    /// The name of the tensor at this index, before it is known.
    TensorName(u64),
    /// The rest of this tensor's info.
    Tensor(&'a str),
}

impl Field<'_> {
    /// The bare name: what [`GgufError::field`] returns.
    fn name(self) -> String {
        match self {
            Field::Header(s) => s.to_owned(),
            Field::KeyName(i) => format!("metadata key {i}"),
            Field::TensorName(i) => format!("tensor name {i}"),
            Field::Key(s) | Field::Tensor(s) => s.to_owned(),
        }
    }

    /// The name in a sentence.
    fn describe(self) -> String {
        match self {
            Field::Key(k) => format!("the value of {}", Quoted(k)),
            Field::Tensor(t) => format!("the info of tensor {}", Quoted(t)),
            other => other.name(),
        }
    }
}

/// A reader that tracks its position and the bytes left, so no read goes past the end.
struct Bounded<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Bounded<R> {
    fn left(&self) -> u64 {
        self.len - self.pos
    }

    /// Fails unless `n` more bytes exist in the file and stay within the header size limit.
    fn need(&self, n: u64, field: Field<'_>) -> Result<(), GgufError> {
        if n > self.left() {
            return Err(GgufError::Truncated {
                offset: self.pos,
                field: field.name(),
                what: field.describe(),
                needed: n,
                left: self.left(),
            });
        }
        self.within_header(n, self.pos, field)
    }

    /// Fails when `n` more bytes would take the header past [`MAX_HEADER_BYTES`]; `offset` is
    /// where the field that asks for them starts.
    fn within_header(&self, n: u64, offset: u64, field: Field<'_>) -> Result<(), GgufError> {
        if self.pos.saturating_add(n) > MAX_HEADER_BYTES {
            return Err(GgufError::HeaderSize {
                offset,
                field: field.name(),
                limit: MAX_HEADER_BYTES,
            });
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes; the caller has checked they exist.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), GgufError> {
        self.inner
            .read_exact(buf)
            .map_err(|source| GgufError::Read {
                offset: self.pos,
                source,
            })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self, field: Field<'_>) -> Result<[u8; N], GgufError> {
        self.need(N as u64, field)?;
        let mut buf = [0u8; N];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn u32(&mut self, field: Field<'_>) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: Field<'_>) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Reads `n` bytes after checking they exist.
    fn bytes(&mut self, n: u64, field: Field<'_>) -> Result<Vec<u8>, GgufError> {
        self.need(n, field)?;
        let mut buf = vec![0u8; n as usize];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    /// Reads a length-prefixed string's raw bytes, checking the length against the bytes left.
    fn raw_string(&mut self, field: Field<'_>) -> Result<Vec<u8>, GgufError> {
        let offset = self.pos;
        let len = self.u64(field)?;
        if len > self.left() {
            return Err(GgufError::StringLength {
                offset,
                field: field.name(),
                what: field.describe(),
                len,
                left: self.left(),
            });
        }
        self.within_header(len, offset, field)?;
        self.bytes(len, field)
    }

    /// Reads a string value; invalid UTF-8 is replaced, as llama.cpp does not require it in values.
    fn lossy_string(&mut self, field: Field<'_>) -> Result<String, GgufError> {
        let raw = self.raw_string(field)?;
        Ok(String::from_utf8(raw)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// Reads a key or tensor name, which must be UTF-8.
    fn strict_string(&mut self, field: Field<'_>) -> Result<String, GgufError> {
        let offset = self.pos;
        let raw = self.raw_string(field)?;
        String::from_utf8(raw).map_err(|_| GgufError::NotUtf8 {
            offset,
            what: field.name(),
        })
    }

    fn value_type(&mut self, field: Field<'_>) -> Result<ValueType, GgufError> {
        let offset = self.pos;
        let id = self.u32(field)?;
        ValueType::from_id(id).ok_or_else(|| GgufError::ValueType {
            offset,
            field: field.name(),
            value_type: id,
        })
    }

    /// Reads one value of type `ty`; `depth` is the number of arrays it sits in.
    fn value(&mut self, ty: ValueType, field: Field<'_>, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array(field)?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(field)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(field)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(field)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(field)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(field)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(field)?)),
            ValueType::Bool => Value::Bool(self.array::<1>(field)?[0] != 0),
            ValueType::String => Value::String(self.lossy_string(field)?),
            ValueType::Array => Value::Array(self.array_value(field, depth + 1)?),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(field)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(field)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(field)?)),
        })
    }

    /// Reads an array's element type, count and elements; `depth` counts this array.
    fn array_value(&mut self, field: Field<'_>, depth: u32) -> Result<Array, GgufError> {
        let type_offset = self.pos;
        if depth > MAX_ARRAY_DEPTH {
            return Err(GgufError::ArrayDepth {
                offset: type_offset,
                field: field.name(),
                max: MAX_ARRAY_DEPTH,
            });
        }
        let elem = self.value_type(field)?;
        let count_offset = self.pos;
        let len = self.u64(field)?;
        let min_bytes = len.checked_mul(elem.min_size());
        match min_bytes {
            Some(bytes) if bytes <= self.left() => {
                self.within_header(bytes, count_offset, field)?
            }
            _ => {
                return Err(GgufError::ArrayLength {
                    offset: count_offset,
                    field: field.name(),
                    len,
                    min_bytes: min_bytes.unwrap_or(u64::MAX),
                    left: self.left(),
                })
            }
        }

        if let Some(size) = elem.fixed_size() {
            // Checked above: len * size bytes exist and fit the header limit.
            let raw = self.bytes(len * size, field)?;
            return Ok(decode_fixed(elem, &raw));
        }
        let mut items = Vec::with_capacity(len.min(MAX_PREALLOC) as usize);
        match elem {
            ValueType::String => {
                for _ in 0..len {
                    items.push(self.lossy_string(field)?);
                }
                Ok(Array::String(items))
            }
            _ => {
                let mut arrays = Vec::with_capacity(len.min(MAX_PREALLOC) as usize);
                for _ in 0..len {
                    arrays.push(self.array_value(field, depth + 1)?);
                }
                Ok(Array::Array(arrays))
            }
        }
    }
}

/// Decodes little-endian fixed-size elements; `raw.len()` is a multiple of the element size.
fn decode_fixed(elem: ValueType, raw: &[u8]) -> Array {
    fn each<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        raw.chunks_exact(N)
            .map(|c| {
                let mut b = [0u8; N];
                b.copy_from_slice(c);
                f(b)
            })
            .collect()
    }
    match elem {
        ValueType::U8 => Array::U8(raw.to_vec()),
        ValueType::I8 => Array::I8(each(raw, i8::from_le_bytes)),
        ValueType::Bool => Array::Bool(raw.iter().map(|&b| b != 0).collect()),
        ValueType::U16 => Array::U16(each(raw, u16::from_le_bytes)),
        ValueType::I16 => Array::I16(each(raw, i16::from_le_bytes)),
        ValueType::U32 => Array::U32(each(raw, u32::from_le_bytes)),
        ValueType::I32 => Array::I32(each(raw, i32::from_le_bytes)),
        ValueType::F32 => Array::F32(each(raw, f32::from_le_bytes)),
        ValueType::U64 => Array::U64(each(raw, u64::from_le_bytes)),
        ValueType::I64 => Array::I64(each(raw, i64::from_le_bytes)),
        ValueType::F64 => Array::F64(each(raw, f64::from_le_bytes)),
        // Not fixed-size; never passed here.
        ValueType::String | ValueType::Array => Array::U8(Vec::new()),
    }
}

/// Parses and validates a GGUF header from `inner`, a reader positioned at the start of a file
/// that is `len` bytes long. Reads only the header, never the tensor data.
pub(crate) fn parse<R: Read>(inner: R, len: u64) -> Result<GgufHeader, GgufError> {
    if len == 0 {
        return Err(GgufError::Empty);
    }
    let mut r = Bounded { inner, pos: 0, len };
    let (version, tensor_count, kv_count) = read_counts(&mut r)?;
    let (metadata, index) = read_metadata(&mut r, kv_count)?;
    let alignment = alignment_of(&metadata, &index)?;
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(tensor_count.min(MAX_PREALLOC) as usize);
    let mut names: HashSet<String> =
        HashSet::with_capacity(tensor_count.min(MAX_PREALLOC) as usize);
    for i in 0..tensor_count {
        let tensor = read_tensor_info(&mut r, i, &names)?;
        names.insert(tensor.name.clone());
        tensors.push(tensor);
    }
    // The data section starts at the aligned end of the header.
    let data_offset = r.pos.div_ceil(alignment) * alignment;
    place_tensors(&mut tensors, data_offset, alignment, len)?;
    check_overlaps(&tensors)?;
    Ok(GgufHeader {
        version,
        metadata,
        index,
        tensors,
        alignment,
        data_offset,
        file_len: len,
    })
}

/// The magic, the version and the tensor and metadata counts, each count bounded by the bytes
/// left for its smallest possible records.
fn read_counts<R: Read>(r: &mut Bounded<R>) -> Result<(u32, u64, u64), GgufError> {
    let magic: [u8; 4] = r.array(Field::Header("magic"))?;
    if &magic != b"GGUF" {
        return Err(GgufError::Magic {
            offset: 0,
            found: magic,
        });
    }
    let version = r.u32(Field::Header("version"))?;
    if !matches!(version, 2 | 3) {
        if matches!(version.swap_bytes(), 2 | 3) {
            return Err(GgufError::ByteOrder { offset: 4, version });
        }
        return Err(GgufError::Version { offset: 4, version });
    }
    let tensor_count = r.u64(Field::Header("tensor count"))?;
    let kv_count = r.u64(Field::Header("kv count"))?;

    let left = r.left();
    let tensor_min = match tensor_count.checked_mul(MIN_TENSOR_INFO_BYTES) {
        Some(bytes) if bytes <= left => bytes,
        _ => {
            return Err(GgufError::TensorCount {
                offset: 8,
                count: tensor_count,
                left,
            })
        }
    };
    let kv_left = left - tensor_min;
    if kv_count
        .checked_mul(MIN_KV_BYTES)
        .is_none_or(|b| b > kv_left)
    {
        return Err(GgufError::KvCount {
            offset: 16,
            count: kv_count,
            left: kv_left,
        });
    }
    Ok((version, tensor_count, kv_count))
}

/// The `kv_count` metadata entries, each key non-empty and unique, with an index by key.
fn read_metadata<R: Read>(
    r: &mut Bounded<R>,
    kv_count: u64,
) -> Result<(Vec<MetadataEntry>, HashMap<String, usize>), GgufError> {
    let mut metadata: Vec<MetadataEntry> = Vec::with_capacity(kv_count.min(MAX_PREALLOC) as usize);
    let mut index: HashMap<String, usize> =
        HashMap::with_capacity(kv_count.min(MAX_PREALLOC) as usize);
    for i in 0..kv_count {
        let offset = r.pos;
        let key = r.strict_string(Field::KeyName(i))?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey { offset, index: i });
        }
        if index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { offset, key });
        }
        let ty = r.value_type(Field::Key(&key))?;
        let value = r.value(ty, Field::Key(&key), 0)?;
        index.insert(key.clone(), metadata.len());
        metadata.push(MetadataEntry { key, value, offset });
    }
    Ok((metadata, index))
}

/// `general.alignment` (a non-zero power of two as a u32), else the default.
fn alignment_of(
    metadata: &[MetadataEntry],
    index: &HashMap<String, usize>,
) -> Result<u64, GgufError> {
    let Some(&i) = index.get(crate::ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let entry = &metadata[i];
    // The value follows the key (8-byte length + bytes) and its 4-byte type id.
    let value_offset = entry.offset + 8 + crate::ALIGNMENT_KEY.len() as u64 + 4;
    match entry.value {
        Value::U32(a) if a != 0 && a.is_power_of_two() => Ok(u64::from(a)),
        Value::U32(a) => Err(GgufError::Alignment {
            offset: value_offset,
            alignment: a,
        }),
        ref other => Err(GgufError::AlignmentType {
            offset: value_offset,
            value_type: other.value_type().name(),
        }),
    }
}

/// Tensor info `i`: a bounded, unique name; at most [`MAX_DIMS`] dimensions whose product and
/// byte size fit an `i64`; a known type whose blocks divide the rows; the data offset.
fn read_tensor_info<R: Read>(
    r: &mut Bounded<R>,
    i: u64,
    names: &HashSet<String>,
) -> Result<TensorInfo, GgufError> {
    let info_offset = r.pos;
    let name = r.strict_string(Field::TensorName(i))?;
    if name.len() as u64 > MAX_TENSOR_NAME {
        return Err(GgufError::TensorNameLength {
            offset: info_offset,
            len: name.len() as u64,
            tensor: name,
            max: MAX_TENSOR_NAME,
        });
    }
    if names.contains(&name) {
        return Err(GgufError::DuplicateTensor {
            offset: info_offset,
            tensor: name,
        });
    }
    let dims_offset = r.pos;
    let n_dims = r.u32(Field::Tensor(&name))?;
    if n_dims > MAX_DIMS {
        return Err(GgufError::Dims {
            offset: dims_offset,
            tensor: name,
            n_dims,
            max: MAX_DIMS,
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for index in 0..n_dims {
        let offset = r.pos;
        let value = r.u64(Field::Tensor(&name))?;
        if value > i64::MAX as u64 {
            return Err(GgufError::Dimension {
                offset,
                tensor: name,
                index,
                value,
            });
        }
        dims.push(value);
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64);
    let Some(n_elements) = n_elements else {
        return Err(GgufError::ElementCount {
            offset: dims_offset + 4,
            tensor: name,
            dims,
        });
    };
    let type_offset = r.pos;
    let type_id = r.u32(Field::Tensor(&name))?;
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(GgufError::TensorType {
            offset: type_offset,
            tensor: name,
            ggml_type: type_id,
        });
    };
    let row = dims.first().copied().unwrap_or(1);
    let block = ggml_type.block_size();
    if row % block != 0 {
        return Err(GgufError::RowSize {
            offset: type_offset,
            tensor: name,
            row,
            ggml_type: ggml_type.name(),
            block,
        });
    }
    // Rows are whole blocks, so the element count is too.
    let n_bytes = (n_elements / block)
        .checked_mul(ggml_type.type_size())
        .filter(|&n| n <= i64::MAX as u64);
    let Some(n_bytes) = n_bytes else {
        return Err(GgufError::ByteSize {
            offset: type_offset,
            tensor: name,
        });
    };
    let offset = r.u64(Field::Tensor(&name))?;
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        data_start: 0,
        n_elements,
        n_bytes,
        info_offset,
    })
}

/// Places each tensor's data after `data_offset`: aligned, and inside the file's `len` bytes.
fn place_tensors(
    tensors: &mut [TensorInfo],
    data_offset: u64,
    alignment: u64,
    len: u64,
) -> Result<(), GgufError> {
    for t in tensors {
        // The offset field is the last 8 bytes of the info record.
        let field_offset =
            t.info_offset + 8 + t.name.len() as u64 + 4 + 8 * t.dims.len() as u64 + 4;
        if t.offset % alignment != 0 {
            return Err(GgufError::MisalignedOffset {
                offset: field_offset,
                tensor: t.name.clone(),
                data_offset: t.offset,
                alignment,
            });
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= len => t.data_start = start,
            _ => {
                return Err(GgufError::DataBounds {
                    offset: field_offset,
                    tensor: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len: len,
                })
            }
        }
    }
    Ok(())
}

/// Fails when two tensors with data share a byte.
fn check_overlaps(tensors: &[TensorInfo]) -> Result<(), GgufError> {
    let mut order: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    order.sort_by_key(|t| (t.data_start, t.info_offset));
    let mut furthest: Option<&TensorInfo> = None;
    for t in order {
        if let Some(prev) = furthest {
            let prev_end = prev.data_start + prev.n_bytes;
            if t.data_start < prev_end {
                let end = t.data_start + t.n_bytes;
                return Err(GgufError::Overlap {
                    offset: t.info_offset
                        + 8
                        + t.name.len() as u64
                        + 4
                        + 8 * t.dims.len() as u64
                        + 4,
                    tensor: t.name.clone(),
                    start: t.data_start,
                    end,
                    other: prev.name.clone(),
                });
            }
        }
        if furthest.is_none_or(|p| t.data_start + t.n_bytes > p.data_start + p.n_bytes) {
            furthest = Some(t);
        }
    }
    Ok(())
}
