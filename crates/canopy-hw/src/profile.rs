//! Profiles: a schema-versioned JSON document describing one machine's hardware and its measured
//! (or, for reference profiles, specified) costs.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::curves::CostCurve;
use crate::gpu::GpuStatus;
use crate::model::{CostModel, LayerSplit};
use crate::system::{HostBandwidth, SystemFacts};
use crate::HwError;

/// Measured or predicted (n, seconds) points, ascending in n: the shape of the planner's cost tables.
pub type CostPoints = Vec<(usize, f64)>;

/// The profile schema this build writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// One machine's hardware profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub schema_version: u32,
    /// Short name, also the file name under the profiles directory.
    pub name: String,
    pub kind: ProfileKind,
    /// Where the figures come from. For a measured profile, the machine and command that measured it;
    /// for a reference profile, the specifications and anchors it cites.
    pub source: String,
    /// RFC 3339 UTC time the profile was written.
    pub created_at: String,
    /// Facts of the machine that was measured; `None` in reference profiles.
    pub machine: Option<SystemFacts>,
    /// Measured host memory bandwidth; `None` in reference profiles.
    pub host_memory: Option<HostBandwidth>,
    pub gpu: GpuStatus,
    /// The analytic cost model's figures for this machine.
    pub cost_model: CostModel,
    /// Engine cost curves measured for one draft/target pair, if models were given.
    pub curves: Option<ProfileCurves>,
    /// The draft/target acceptance vector, if measured.
    pub acceptance: Option<AcceptanceRecord>,
    /// Chosen `GGML_OP_OFFLOAD_MIN_BATCH` for the profiled target; `None` without a GPU.
    pub op_offload_min_batch: Option<u32>,
    /// Chosen number of target layers kept resident in VRAM; `None` when no target was profiled.
    pub resident_layers: Option<u32>,
    /// The target's placement the curves were measured in; `None` in profiles written before it
    /// was recorded (then derived from `resident_layers` and the GPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<canopy_types::Placement>,
}

/// Whether a profile was measured on a real machine or assembled from published figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileKind {
    Measured,
    Reference,
}

/// A model as it was profiled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    /// The model's name (file stem or library name).
    pub name: String,
    pub bytes: u64,
    pub params: Option<u64>,
    pub layers: Option<u32>,
    /// The file that was profiled, so that a later run of the same file finds these curves.
    /// Absent in profiles written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// A measured curve with the model and placement it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCurve {
    pub model: ModelRef,
    /// For the target: where its layers were and the op-offload threshold in force. For the draft:
    /// `resident_layers` = all its layers when it ran on the GPU, 0 on the CPU.
    pub placement: LayerSplit,
    pub curve: CostCurve,
    /// For the target: the RPC helpers that held part of its layers while it was measured. Absent
    /// when it was all on this machine (and in profiles written before helpers existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<RpcRecord>,
    /// For a streamed target on a GPU: both ways of running its host layers, timed on the same
    /// weights, from which `placement.op_offload_min_batch` was chosen. Absent where it was not
    /// measured (then the threshold came from the cost model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload_paths: Option<crate::OffloadPaths>,
}

/// The target's split over RPC helpers (`canopy rpc-server`) as it was measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcRecord {
    /// The helpers, `host:port`, in the order given.
    pub helpers: Vec<String>,
    /// The target's last layers (output layer included) that lived on the helpers, of `total_layers`;
    /// `None` where llama.cpp split by free memory over local GPUs and helpers.
    pub remote_layers: Option<u32>,
    pub total_layers: Option<u32>,
}

impl ModelCurve {
    /// The RPC helpers of this curve's model (empty when it was all local).
    pub fn rpc_helpers(&self) -> &[String] {
        self.rpc.as_ref().map_or(&[], |r| &r.helpers)
    }
}

/// The engine cost curves of a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileCurves {
    pub target: ModelCurve,
    /// `None` when only the target was timed (plain decoding).
    #[serde(default)]
    pub draft: Option<ModelCurve>,
    pub warmup: usize,
    pub repeats: usize,
}

/// A positional acceptance vector measured for a draft/target pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptanceRecord {
    pub draft: String,
    pub target: String,
    pub temperature: f64,
    /// `p[k]`: probability that the k-th drawn child (k = 1, 2, …) is accepted.
    pub p: Vec<f64>,
}

impl Profile {
    /// The measured (n, median seconds) target and draft curves, the shape the planner's cost tables
    /// take; `None` when this profile has no measured curves.
    pub fn costs(&self) -> Option<(CostPoints, CostPoints)> {
        let curves = self.curves.as_ref()?;
        let draft = curves.draft.as_ref()?;
        Some((curves.target.curve.medians(), draft.curve.medians()))
    }

    /// Serialises the profile as pretty JSON.
    pub fn to_json(&self) -> String {
        // A Profile holds only strings, numbers, options and vectors: serialising cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a profile from JSON text, refusing a newer schema. `origin` names the text in errors.
    ///
    /// Fails with [`HwError::NewerSchema`] when `schema_version` is above [`SCHEMA_VERSION`],
    /// [`HwError::MissingSchemaVersion`] when it is absent, and [`HwError::Parse`] when the document
    /// does not match the schema or its cost model holds a non-positive figure.
    pub fn from_json(text: &str, origin: &Path) -> Result<Profile, HwError> {
        let parse = |source| HwError::Parse {
            path: origin.to_owned(),
            source,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(parse)?;
        let version = value
            .get("schema_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| HwError::MissingSchemaVersion {
                path: origin.to_owned(),
            })?;
        if version > SCHEMA_VERSION as u64 {
            return Err(HwError::NewerSchema {
                path: origin.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        let profile: Profile = serde_json::from_value(value).map_err(parse)?;
        profile.cost_model.validate().map_err(|e| HwError::Parse {
            path: origin.to_owned(),
            source: serde::de::Error::custom(e.to_string()),
        })?;
        Ok(profile)
    }

    /// Writes the profile to `path` atomically (a temporary file renamed over it), creating the
    /// parent directory.
    ///
    /// Fails with [`HwError::Io`] when the directory or file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), HwError> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| HwError::Io {
                action,
                path,
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json() + "\n").map_err(io("cannot write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("cannot replace", path))
    }
}

/// Reads a profile file.
///
/// Fails with [`HwError::Io`] when the file cannot be read, and as [`Profile::from_json`] does.
pub fn load_profile(path: &Path) -> Result<Profile, HwError> {
    let text = std::fs::read_to_string(path).map_err(|source| HwError::Io {
        action: "cannot read profile",
        path: path.to_owned(),
        source,
    })?;
    Profile::from_json(&text, path)
}

/// The current time as RFC 3339 UTC, seconds precision (for `created_at`).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A file-name-safe version of `name`: lowercase ASCII letters, digits and single dashes.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        "profile".to_owned()
    } else {
        out
    }
}

/// The built-in reference profiles, by name. Their figures are vendor specifications and published
/// anchors, not measurements of any machine Canopy runs on.
pub const REFERENCE_PROFILES: &[(&str, &str)] = &[
    (
        "rtx4090-pcie4",
        include_str!("../../../profiles/rtx4090-pcie4.json"),
    ),
    (
        "rtx3090-pcie4",
        include_str!("../../../profiles/rtx3090-pcie4.json"),
    ),
    (
        "rtx2080ti-pcie3",
        include_str!("../../../profiles/rtx2080ti-pcie3.json"),
    ),
    (
        "rtx5090-pcie5",
        include_str!("../../../profiles/rtx5090-pcie5.json"),
    ),
    ("cpu-only", include_str!("../../../profiles/cpu-only.json")),
];

/// A built-in reference profile by name, `None` for an unknown name.
///
/// Fails (inside the `Some`) only if the built-in document is invalid, which the tests rule out.
pub fn reference_profile(name: &str) -> Option<Result<Profile, HwError>> {
    REFERENCE_PROFILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| Profile::from_json(text, Path::new(&format!("profiles/{n}.json"))))
}

/// Finds a profile by what a user typed: an existing file path, else a profile saved in `dir`
/// (`<name>.json`; the caller's profiles folder), else a built-in reference profile.
///
/// Fails with [`HwError::UnknownProfile`] when none matches, and as [`load_profile`] does.
pub fn find_profile(spec: &str, dir: &Path) -> Result<Profile, HwError> {
    let path = Path::new(spec);
    if path.is_file() {
        return load_profile(path);
    }
    let saved = dir.join(format!("{spec}.json"));
    if saved.is_file() {
        return load_profile(&saved);
    }
    if let Some(profile) = reference_profile(spec) {
        return profile;
    }
    Err(HwError::UnknownProfile {
        name: spec.to_owned(),
        dir: dir.to_owned(),
        known: REFERENCE_PROFILES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("NVIDIA GeForce RTX 4090"), "nvidia-geforce-rtx-4090");
        assert_eq!(slug("  --  "), "profile");
        assert_eq!(slug("a/../b"), "a-b");
    }

    #[test]
    fn now_is_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z'));
    }
}
