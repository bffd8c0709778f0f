//! Sampling settings that cannot be built invalid.

use serde::{Deserialize, Serialize};

/// Highest temperature accepted (the OpenAI API's limit too).
pub const MAX_TEMPERATURE: f32 = 2.0;
/// Largest top-k accepted; 0 turns top-k off.
pub const MAX_TOP_K: u32 = 1000;

/// How the next token is drawn from the target's distribution; temperature 0 is greedy decoding.
///
/// Built only through [`Sampling::new`] (or deserialised through the same checks), so every value
/// in the program is valid.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "Fields", into = "Fields")]
pub struct Sampling {
    temperature: f32,
    top_k: u32,
    top_p: f32,
    seed: u64,
}

/// The serialised form of [`Sampling`], checked on the way in.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
struct Fields {
    /// 0 = greedy; at most 2.
    temperature: f32,
    /// Keep the K most likely tokens; 0 turns it off; at most 1000.
    top_k: u32,
    /// Keep the smallest set of tokens whose probability reaches P; 1 turns it off.
    top_p: f32,
    /// Same seed, same output.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    seed: u64,
}

/// A sampling setting out of range; the message names the setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error("temperature must be between 0 and {MAX_TEMPERATURE}, got {0}")]
    Temperature(f32),
    #[error("top-k must be at most {MAX_TOP_K} (0 turns it off), got {0}")]
    TopK(u32),
    #[error("top-p must be above 0 and at most 1, got {0}")]
    TopP(f32),
}

impl SamplingError {
    /// The setting's name as a flag or field spells it (`temperature`, `top-k`, `top-p`).
    pub fn setting(&self) -> &'static str {
        match self {
            SamplingError::Temperature(_) => "temperature",
            SamplingError::TopK(_) => "top-k",
            SamplingError::TopP(_) => "top-p",
        }
    }
}

impl Sampling {
    /// Checked settings.
    ///
    /// # Errors
    /// When the temperature is not a number in `0..=2`, top-k exceeds 1000, or top-p is not in
    /// `(0, 1]`.
    pub fn new(temperature: f32, top_k: u32, top_p: f32, seed: u64) -> Result<Self, SamplingError> {
        if !temperature.is_finite() || !(0.0..=MAX_TEMPERATURE).contains(&temperature) {
            return Err(SamplingError::Temperature(temperature));
        }
        if top_k > MAX_TOP_K {
            return Err(SamplingError::TopK(top_k));
        }
        if !top_p.is_finite() || top_p <= 0.0 || top_p > 1.0 {
            return Err(SamplingError::TopP(top_p));
        }
        Ok(Sampling {
            temperature,
            top_k,
            top_p,
            seed,
        })
    }

    /// Greedy decoding: always the target's most likely token.
    pub fn greedy() -> Sampling {
        Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }

    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// 0 = off.
    pub fn top_k(&self) -> u32 {
        self.top_k
    }

    /// 1 = off.
    pub fn top_p(&self) -> f32 {
        self.top_p
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether this is greedy decoding.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// The same settings with another seed.
    pub fn with_seed(self, seed: u64) -> Sampling {
        Sampling { seed, ..self }
    }
}

impl Default for Sampling {
    /// Temperature 0.8, top-k 40, top-p 0.95, seed 0 (llama.cpp's defaults).
    fn default() -> Self {
        Sampling {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            seed: 0,
        }
    }
}

#[cfg(feature = "ts")]
impl ts_rs::TS for Sampling {
    type WithoutGenerics = Sampling;
    type OptionInnerType = Sampling;
    fn name(_: &ts_rs::Config) -> String {
        "Sampling".to_owned()
    }
    fn decl(cfg: &ts_rs::Config) -> String {
        format!("type Sampling = {};", <Fields as ts_rs::TS>::inline(cfg))
    }
    fn decl_concrete(cfg: &ts_rs::Config) -> String {
        Self::decl(cfg)
    }
    fn inline(cfg: &ts_rs::Config) -> String {
        <Fields as ts_rs::TS>::inline(cfg)
    }
    fn inline_flattened(cfg: &ts_rs::Config) -> String {
        <Fields as ts_rs::TS>::inline_flattened(cfg)
    }
}

impl TryFrom<Fields> for Sampling {
    type Error = SamplingError;

    fn try_from(f: Fields) -> Result<Self, Self::Error> {
        Sampling::new(f.temperature, f.top_k, f.top_p, f.seed)
    }
}

impl From<Sampling> for Fields {
    fn from(s: Sampling) -> Fields {
        Fields {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            seed: s.seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_settings_exist() {
        assert!(Sampling::new(0.0, 0, 1.0, 0).unwrap().is_greedy());
        assert!(Sampling::new(2.0, 1000, 0.01, 9).is_ok());
        for (t, k, p) in [
            (-0.1, 0, 1.0),
            (f32::NAN, 0, 1.0),
            (2.5, 0, 1.0),
            (0.7, 1001, 1.0),
            (0.7, 40, 0.0),
            (0.7, 40, 1.5),
        ] {
            assert!(Sampling::new(t, k, p, 0).is_err(), "{t} {k} {p}");
        }
        assert_eq!(
            Sampling::new(0.7, 40, 0.0, 0).unwrap_err().setting(),
            "top-p"
        );
    }

    #[test]
    fn deserialising_checks_the_ranges() {
        let ok: Sampling =
            serde_json::from_str(r#"{"temperature":0.5,"top_k":4,"top_p":0.9,"seed":3}"#).unwrap();
        assert_eq!(ok.seed(), 3);
        let bad = serde_json::from_str::<Sampling>(
            r#"{"temperature":-1,"top_k":4,"top_p":0.9,"seed":3}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("temperature"));
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(serde_json::from_str::<Sampling>(&json).unwrap(), ok);
    }
}
