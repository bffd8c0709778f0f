//! Models split over several GGUF files (`NAME-00001-of-00003.gguf`, as llama.cpp's `gguf-split`
//! writes them).
//!
//! llama.cpp loads such a model through its first part and finds the others by name, so Canopy
//! keeps one library entry per set: the first part is the load path, the size is the sum, and the
//! other parts are tracked so that removing the model deletes them all. Every part is validated
//! with `canopy_gguf`, and the set as a whole: `split.count` the same everywhere, `split.no` equal
//! to the part's place, every part present exactly once, and the tensors of all parts adding up
//! to `split.tensors.count`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use canopy_gguf::{GgufHeader, ModelInfo, SPLIT_COUNT_KEY, SPLIT_NO_KEY, SPLIT_TENSORS_COUNT_KEY};

use crate::error::ModelsError;

/// What a file name says about a split set: `PREFIX-0000N-of-0000M.gguf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitName {
    /// The name before `-0000N-of-0000M.gguf`.
    pub prefix: String,
    /// The part's number, from 1.
    pub part: u32,
    /// The number of parts.
    pub count: u32,
}

impl SplitName {
    /// Reads `PREFIX-NNNNN-of-MMMMM.gguf` (five digits each, as llama.cpp names parts), or `None`
    /// for any other name or when the numbers are out of range (0, or part > count).
    pub fn parse(file_name: &str) -> Option<SplitName> {
        let stem = file_name.strip_suffix(".gguf")?;
        let (rest, count) = stem.rsplit_once("-of-")?;
        let (prefix, part) = rest.rsplit_once('-')?;
        let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(part) || !digits(count) || prefix.is_empty() {
            return None;
        }
        let (part, count) = (part.parse().ok()?, count.parse().ok()?);
        if part == 0 || part > count {
            return None;
        }
        Some(SplitName {
            prefix: prefix.to_string(),
            part,
            count,
        })
    }

    /// The file name of part `part` (from 1) of this set.
    pub fn part_name(&self, part: u32) -> String {
        format!("{}-{part:05}-of-{:05}.gguf", self.prefix, self.count)
    }

    /// The file names of every part, in order.
    pub fn part_names(&self) -> Vec<String> {
        (1..=self.count).map(|p| self.part_name(p)).collect()
    }
}

/// A validated split set on disk.
#[derive(Debug, Clone)]
pub struct SplitSet {
    /// Every part, in order; the first is the load path.
    pub parts: Vec<PathBuf>,
    /// Each part's size in bytes, in order.
    pub sizes: Vec<u64>,
    /// The whole model's summary (metadata of the first part, tensors and sizes of all).
    pub info: ModelInfo,
}

/// A GGUF file on disk: a single file, or the first part of a split set.
#[derive(Debug, Clone)]
pub enum ModelFiles {
    /// One self-contained file.
    Single(ModelInfo),
    /// A split set opened through its first part.
    Split(SplitSet),
}

impl ModelFiles {
    /// The model's summary.
    pub fn info(&self) -> &ModelInfo {
        match self {
            ModelFiles::Single(info) => info,
            ModelFiles::Split(set) => &set.info,
        }
    }

    /// Validates the GGUF file at `path` (canonical) and, when its metadata or name says it is
    /// part of a split set, the whole set.
    ///
    /// Fails with [`ModelsError::InvalidGguf`] when a part is not a valid GGUF,
    /// [`ModelsError::SplitNotFirst`] when `path` is not the set's first part,
    /// [`ModelsError::SplitPartMissing`] when a part is absent, or [`ModelsError::SplitInvalid`]
    /// when the parts disagree.
    pub fn open(path: &Path) -> Result<ModelFiles, ModelsError> {
        let header = read(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let by_name = SplitName::parse(&name);
        let count = header.get_u64(SPLIT_COUNT_KEY);
        let no = header.get_u64(SPLIT_NO_KEY);
        match (count, &by_name) {
            (None | Some(0) | Some(1), None) => {
                return Ok(ModelFiles::Single(ModelInfo::from_header(&header)))
            }
            (None | Some(0) | Some(1), Some(n)) if n.count == 1 => {
                return Ok(ModelFiles::Single(ModelInfo::from_header(&header)))
            }
            _ => {}
        }
        let invalid = |reason: String| ModelsError::SplitInvalid {
            path: path.to_path_buf(),
            reason,
        };
        let Some(split_name) = by_name else {
            return Err(invalid(format!(
                "its metadata says it is part {} of {} of a split model, but its name does not end in -NNNNN-of-NNNNN.gguf, so the other parts cannot be found",
                no.map_or("?".to_string(), |n| (n + 1).to_string()),
                count.unwrap_or(0)
            )));
        };
        if split_name.part != 1 {
            return Err(ModelsError::SplitNotFirst {
                path: path.to_path_buf(),
                first: path.with_file_name(split_name.part_name(1)),
            });
        }
        let Some(count) = count else {
            return Err(invalid(format!(
                "its name says it is part 1 of {} but it has no {SPLIT_COUNT_KEY} metadata",
                split_name.count
            )));
        };
        if count != u64::from(split_name.count) {
            return Err(invalid(format!(
                "its name says {} parts but {SPLIT_COUNT_KEY} says {count}",
                split_name.count
            )));
        }
        let expected_tensors = header
            .get_u64(SPLIT_TENSORS_COUNT_KEY)
            .ok_or_else(|| invalid(format!("part 1 has no {SPLIT_TENSORS_COUNT_KEY} metadata")))?;
        let mut parts = vec![path.to_path_buf()];
        let mut headers = vec![header];
        for part in 2..=split_name.count {
            let part_path = path.with_file_name(split_name.part_name(part));
            if !part_path.is_file() {
                return Err(ModelsError::SplitPartMissing {
                    first: path.to_path_buf(),
                    missing: part_path,
                    part,
                    count: split_name.count,
                });
            }
            headers.push(read(&part_path)?);
            parts.push(part_path);
        }
        let mut names = HashSet::new();
        let mut tensors = 0u64;
        for (i, (h, p)) in headers.iter().zip(&parts).enumerate() {
            let shown = p.display();
            match h.get_u64(SPLIT_NO_KEY) {
                Some(no) if no == i as u64 => {}
                other => {
                    return Err(invalid(format!(
                    "{shown} should be part {} ({SPLIT_NO_KEY} {i}) but its {SPLIT_NO_KEY} is {}",
                    i + 1,
                    other.map_or("missing".to_string(), |n| n.to_string())
                )))
                }
            }
            if h.get_u64(SPLIT_COUNT_KEY) != Some(count) {
                return Err(invalid(format!(
                    "{shown} does not say {SPLIT_COUNT_KEY} {count} like part 1"
                )));
            }
            if let Some(t) = h.get_u64(SPLIT_TENSORS_COUNT_KEY) {
                if t != expected_tensors {
                    return Err(invalid(format!(
                        "{shown} says {SPLIT_TENSORS_COUNT_KEY} {t}, part 1 says {expected_tensors}"
                    )));
                }
            }
            for t in h.tensors() {
                if !names.insert(t.name.as_str()) {
                    return Err(invalid(format!(
                        "tensor {:?} appears in more than one part (again in {shown})",
                        t.name
                    )));
                }
            }
            tensors += h.tensors().len() as u64;
        }
        if tensors != expected_tensors {
            return Err(invalid(format!(
                "the parts hold {tensors} tensors but {SPLIT_TENSORS_COUNT_KEY} says {expected_tensors}"
            )));
        }
        let sizes = headers.iter().map(GgufHeader::file_len).collect();
        let info = ModelInfo::from_split(&headers[0], &headers[1..]);
        Ok(ModelFiles::Split(SplitSet { parts, sizes, info }))
    }
}

fn read(path: &Path) -> Result<GgufHeader, ModelsError> {
    canopy_gguf::read_header(path).map_err(|source| ModelsError::InvalidGguf {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_parse_and_round_trip() {
        let n = SplitName::parse("Llama-3.1-70B-Q4_K_M-00002-of-00003.gguf").unwrap();
        assert_eq!(n.prefix, "Llama-3.1-70B-Q4_K_M");
        assert_eq!((n.part, n.count), (2, 3));
        assert_eq!(n.part_name(1), "Llama-3.1-70B-Q4_K_M-00001-of-00003.gguf");
        assert_eq!(n.part_names().len(), 3);
        for bad in [
            "model.gguf",
            "model-1-of-3.gguf",
            "model-00000-of-00003.gguf",
            "model-00004-of-00003.gguf",
            "-00001-of-00002.gguf",
            "model-00001-of-00002.bin",
        ] {
            assert_eq!(SplitName::parse(bad), None, "{bad}");
        }
    }
}
