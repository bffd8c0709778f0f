//! Where the target model's weights live.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the target's weights live. The draft always goes wholly on the GPU when there is one.
///
/// Written as text: `auto`, `cpu`, `stream`, `gpu` or `layers:N`. `auto` is a request, not a
/// placement: the application core resolves it from this machine's GPU and the models' sizes
/// before a job reaches the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Placement {
    /// Chosen from the GPU's free memory and the models' sizes.
    #[default]
    Auto,
    /// Everything on the CPU.
    Cpu,
    /// Weights in pinned host memory, streamed to the GPU for large batches (op offload).
    Stream,
    /// `layers` layers resident on the GPU, the rest streamed.
    Partial { layers: u32 },
    /// Every layer on the GPU.
    Gpu,
}

/// A placement that is not one of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid placement {0:?}: use auto, cpu, stream, gpu or layers:N")]
pub struct PlacementError(pub String);

impl Placement {
    /// Whether a GPU is involved.
    pub fn uses_gpu(self) -> bool {
        !matches!(self, Placement::Cpu | Placement::Auto)
    }

    /// Whether some target layers live in host memory while a GPU runs the rest (`stream`,
    /// `layers:N`): the placements whose passes copy weights over PCIe.
    pub fn streams(self) -> bool {
        matches!(self, Placement::Stream | Placement::Partial { .. })
    }

    /// Whether this is a resolved placement (anything but `auto`).
    pub fn is_resolved(self) -> bool {
        !matches!(self, Placement::Auto)
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Auto => f.write_str("auto"),
            Placement::Cpu => f.write_str("cpu"),
            Placement::Stream => f.write_str("stream"),
            Placement::Partial { layers } => write!(f, "layers:{layers}"),
            Placement::Gpu => f.write_str("gpu"),
        }
    }
}

impl FromStr for Placement {
    type Err = PlacementError;

    /// Parses `auto`, `cpu`, `stream`, `gpu` or `layers:N`.
    fn from_str(s: &str) -> Result<Placement, PlacementError> {
        match s.trim() {
            "auto" => Ok(Placement::Auto),
            "cpu" => Ok(Placement::Cpu),
            "stream" => Ok(Placement::Stream),
            "gpu" => Ok(Placement::Gpu),
            other => other
                .strip_prefix("layers:")
                .and_then(|n| n.parse().ok())
                .map(|layers| Placement::Partial { layers })
                .ok_or_else(|| PlacementError(s.to_owned())),
        }
    }
}

impl Serialize for Placement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Placement {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Placement, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "ts")]
impl ts_rs::TS for Placement {
    type WithoutGenerics = Placement;
    type OptionInnerType = Placement;
    fn name(_: &ts_rs::Config) -> String {
        "Placement".to_owned()
    }
    fn docs() -> Option<String> {
        Some("/** `auto`, `cpu`, `stream`, `gpu` or `layers:N`. */\n".to_owned())
    }
    fn decl(_: &ts_rs::Config) -> String {
        r#"type Placement = "auto" | "cpu" | "stream" | "gpu" | `layers:${number}`;"#.to_owned()
    }
    fn decl_concrete(c: &ts_rs::Config) -> String {
        Self::decl(c)
    }
    fn inline(_: &ts_rs::Config) -> String {
        "Placement".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for text in ["auto", "cpu", "stream", "gpu", "layers:0", "layers:40"] {
            let p: Placement = text.parse().unwrap();
            assert_eq!(p.to_string(), text);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Placement>(&json).unwrap(), p);
        }
        for bad in ["", "layers:", "layers:-1", "vram", "GPU"] {
            assert!(bad.parse::<Placement>().is_err(), "{bad}");
        }
        assert_eq!(Placement::default(), Placement::Auto);
        assert!(!Placement::Auto.is_resolved());
    }
}
