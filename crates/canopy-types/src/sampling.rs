//! Sampling settings that cannot be built invalid.

use serde::{Deserialize, Serialize};

/// Highest temperature accepted (the OpenAI API's limit too).
pub const MAX_TEMPERATURE: f32 = 2.0;
/// Largest top-k accepted; 0 turns top-k off.
pub const MAX_TOP_K: u32 = 1000;
/// Largest repetition penalty accepted; 1 turns it off.
pub const MAX_REPEAT_PENALTY: f32 = 2.0;
/// Largest presence or frequency penalty accepted in magnitude (the OpenAI API's limit too).
pub const MAX_PRESENCE_FREQUENCY_PENALTY: f32 = 2.0;
/// Largest penalty window accepted, in tokens. Every tree node counts the tokens of its own window,
/// so the window bounds the work the penalties add to a step.
pub const MAX_REPEAT_LAST_N: u32 = 4096;

/// Penalties on tokens that occur among the latest tokens of the context (llama.cpp's
/// `repeat_penalty`, `frequency_penalty` and `presence_penalty` over `repeat_last_n` tokens).
///
/// For every token that occurs `c > 0` times in the window, llama.cpp's rule: a positive logit is
/// divided by `repeat` and a negative one multiplied by it, then `c · frequency + presence` is
/// subtracted. The window is the last `last_n` tokens of the prompt, the output so far and, under
/// speculation, the drafted tokens before the position being scored.
///
/// A plain value (any numbers); [`Sampling::with_penalties`] and [`Penalties::check`] check it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Penalties {
    /// How many of the latest tokens the penalties look at; 0 turns them off.
    pub last_n: u32,
    /// Repetition penalty; 1 turns it off, above 1 discourages repeats.
    pub repeat: f32,
    /// Subtracted from a token's logit once per occurrence in the window; 0 turns it off.
    pub frequency: f32,
    /// Subtracted from the logit of every token that occurs in the window; 0 turns it off.
    pub presence: f32,
}

impl Penalties {
    /// No penalty (llama.cpp's defaults: a window of 64 tokens, repeat 1, frequency and presence 0).
    pub const NONE: Penalties = Penalties {
        last_n: 64,
        repeat: 1.0,
        frequency: 0.0,
        presence: 0.0,
    };

    /// Whether these penalties change no logit.
    pub fn is_off(&self) -> bool {
        self.last_n == 0 || (self.repeat == 1.0 && self.frequency == 0.0 && self.presence == 0.0)
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// When the repetition penalty is not a number in `(0, 2]`, the frequency or presence penalty
    /// not in `[-2, 2]`, or the window longer than 4096 tokens.
    pub fn check(&self) -> Result<(), SamplingError> {
        if !self.repeat.is_finite() || self.repeat <= 0.0 || self.repeat > MAX_REPEAT_PENALTY {
            return Err(SamplingError::RepeatPenalty(self.repeat));
        }
        let range = -MAX_PRESENCE_FREQUENCY_PENALTY..=MAX_PRESENCE_FREQUENCY_PENALTY;
        if !self.frequency.is_finite() || !range.contains(&self.frequency) {
            return Err(SamplingError::FrequencyPenalty(self.frequency));
        }
        if !self.presence.is_finite() || !range.contains(&self.presence) {
            return Err(SamplingError::PresencePenalty(self.presence));
        }
        if self.last_n > MAX_REPEAT_LAST_N {
            return Err(SamplingError::RepeatLastN(self.last_n));
        }
        Ok(())
    }
}

impl Default for Penalties {
    /// [`Penalties::NONE`].
    fn default() -> Self {
        Penalties::NONE
    }
}

/// How the next token is drawn from the target's distribution; temperature 0 is greedy decoding.
///
/// The settings apply in llama.cpp's order: penalties, then top-k, top-p and min-p (on the
/// penalised logits at temperature 1), then temperature.
///
/// Built only through [`Sampling::new`] and the `with_` methods (or deserialised through the same
/// checks), so every value in the program is valid.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "Fields", into = "Fields")]
pub struct Sampling {
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    penalties: Penalties,
    seed: u64,
}

/// The serialised form of [`Sampling`], checked on the way in. The fields added after the first
/// four may be absent; absent, they change nothing. They are always written, so the front end's
/// type has every field.
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
    /// Keep the tokens at least P times as likely as the most likely one; 0 turns it off.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    min_p: Option<f32>,
    /// Repetition penalty over the last `repeat_last_n` tokens; 1 turns it off; at most 2.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    repeat_penalty: Option<f32>,
    /// The window of the three penalties, in tokens; 0 turns them off; 64 when absent.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    repeat_last_n: Option<u32>,
    /// Subtracted per occurrence in the window; 0 turns it off; between -2 and 2.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    frequency_penalty: Option<f32>,
    /// Subtracted once for any occurrence in the window; 0 turns it off; between -2 and 2.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    presence_penalty: Option<f32>,
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
    #[error("min-p must be between 0 and 1 (0 turns it off), got {0}")]
    MinP(f32),
    #[error(
        "repeat-penalty must be above 0 and at most {MAX_REPEAT_PENALTY} (1 turns it off), got {0}"
    )]
    RepeatPenalty(f32),
    #[error("frequency-penalty must be between -{MAX_PRESENCE_FREQUENCY_PENALTY} and {MAX_PRESENCE_FREQUENCY_PENALTY}, got {0}")]
    FrequencyPenalty(f32),
    #[error("presence-penalty must be between -{MAX_PRESENCE_FREQUENCY_PENALTY} and {MAX_PRESENCE_FREQUENCY_PENALTY}, got {0}")]
    PresencePenalty(f32),
    #[error("repeat-last-n must be at most {MAX_REPEAT_LAST_N} tokens (0 turns the penalties off), got {0}")]
    RepeatLastN(u32),
}

impl SamplingError {
    /// The setting's name as a flag or field spells it (`temperature`, `top-k`, `top-p`, `min-p`,
    /// `repeat-penalty`, `frequency-penalty`, `presence-penalty`, `repeat-last-n`).
    pub fn setting(&self) -> &'static str {
        match self {
            SamplingError::Temperature(_) => "temperature",
            SamplingError::TopK(_) => "top-k",
            SamplingError::TopP(_) => "top-p",
            SamplingError::MinP(_) => "min-p",
            SamplingError::RepeatPenalty(_) => "repeat-penalty",
            SamplingError::FrequencyPenalty(_) => "frequency-penalty",
            SamplingError::PresencePenalty(_) => "presence-penalty",
            SamplingError::RepeatLastN(_) => "repeat-last-n",
        }
    }
}

/// Checks a min-p value.
///
/// # Errors
/// When `min_p` is not a number in `[0, 1]`.
pub fn check_min_p(min_p: f32) -> Result<(), SamplingError> {
    if !min_p.is_finite() || !(0.0..=1.0).contains(&min_p) {
        return Err(SamplingError::MinP(min_p));
    }
    Ok(())
}

impl Sampling {
    /// Checked settings, with no min-p and no penalties.
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
            min_p: 0.0,
            penalties: Penalties::NONE,
            seed,
        })
    }

    /// The same settings with min-p `min_p` (0 turns it off).
    ///
    /// # Errors
    /// When `min_p` is not a number in `[0, 1]`.
    pub fn with_min_p(self, min_p: f32) -> Result<Sampling, SamplingError> {
        check_min_p(min_p)?;
        Ok(Sampling { min_p, ..self })
    }

    /// The same settings with `penalties`.
    ///
    /// # Errors
    /// When a penalty is out of range (see [`Penalties::check`]).
    pub fn with_penalties(self, penalties: Penalties) -> Result<Sampling, SamplingError> {
        penalties.check()?;
        Ok(Sampling { penalties, ..self })
    }

    /// The one default of every front end: `canopy chat` and `canopy generate`'s flags, the app's
    /// chat settings, and the server's sampling extensions a request leaves out. llama.cpp's
    /// defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalties (repeat 1 over
    /// the last 64 tokens, frequency and presence 0), seed 0.
    pub const fn chat_default() -> Sampling {
        Sampling {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            penalties: Penalties::NONE,
            seed: 0,
        }
    }

    /// Greedy decoding: always the target's most likely token.
    pub fn greedy() -> Sampling {
        Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            penalties: Penalties::NONE,
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

    /// 0 = off.
    pub fn min_p(&self) -> f32 {
        self.min_p
    }

    pub fn penalties(&self) -> Penalties {
        self.penalties
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether this is greedy decoding (penalties still apply to the logits it takes the most
    /// likely token of).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// The same settings with another seed.
    pub fn with_seed(self, seed: u64) -> Sampling {
        Sampling { seed, ..self }
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
        let none = Penalties::NONE;
        let penalties = Penalties {
            last_n: f.repeat_last_n.unwrap_or(none.last_n),
            repeat: f.repeat_penalty.unwrap_or(none.repeat),
            frequency: f.frequency_penalty.unwrap_or(none.frequency),
            presence: f.presence_penalty.unwrap_or(none.presence),
        };
        Sampling::new(f.temperature, f.top_k, f.top_p, f.seed)?
            .with_min_p(f.min_p.unwrap_or(0.0))?
            .with_penalties(penalties)
    }
}

impl From<Sampling> for Fields {
    fn from(s: Sampling) -> Fields {
        Fields {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            seed: s.seed,
            min_p: Some(s.min_p),
            repeat_penalty: Some(s.penalties.repeat),
            repeat_last_n: Some(s.penalties.last_n),
            frequency_penalty: Some(s.penalties.frequency),
            presence_penalty: Some(s.penalties.presence),
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
    fn min_p_and_penalties_are_checked() {
        let s = Sampling::chat_default();
        assert_eq!(s.with_min_p(0.05).unwrap().min_p(), 0.05);
        for bad in [-0.1, 1.1, f32::NAN] {
            assert_eq!(s.with_min_p(bad).unwrap_err().setting(), "min-p");
        }
        let ok = Penalties {
            last_n: 64,
            repeat: 1.1,
            frequency: 0.5,
            presence: -0.5,
        };
        assert_eq!(s.with_penalties(ok).unwrap().penalties(), ok);
        let cases = [
            (Penalties { repeat: 0.0, ..ok }, "repeat-penalty"),
            (Penalties { repeat: 2.5, ..ok }, "repeat-penalty"),
            (
                Penalties {
                    frequency: 2.1,
                    ..ok
                },
                "frequency-penalty",
            ),
            (
                Penalties {
                    presence: f32::INFINITY,
                    ..ok
                },
                "presence-penalty",
            ),
            (Penalties { last_n: 5000, ..ok }, "repeat-last-n"),
        ];
        for (p, setting) in cases {
            assert_eq!(s.with_penalties(p).unwrap_err().setting(), setting);
        }
        assert!(Penalties::NONE.is_off());
        assert!(Penalties { last_n: 0, ..ok }.is_off());
        assert!(!ok.is_off());
    }

    #[test]
    fn the_default_is_llama_cpps_and_valid() {
        let d = Sampling::chat_default();
        assert_eq!(
            (d.temperature(), d.top_k(), d.top_p(), d.min_p(), d.seed()),
            (0.8, 40, 0.95, 0.05, 0)
        );
        assert_eq!(d.penalties(), Penalties::NONE);
        assert!(d.penalties().is_off());
        // Built without the checks, so checked here: it survives the checked way in.
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Sampling>(&json).unwrap(), d);
    }

    #[test]
    fn deserialising_checks_the_ranges() {
        let ok: Sampling =
            serde_json::from_str(r#"{"temperature":0.5,"top_k":4,"top_p":0.9,"seed":3}"#).unwrap();
        assert_eq!(ok.seed(), 3);
        assert_eq!(ok.min_p(), 0.0);
        assert_eq!(ok.penalties(), Penalties::NONE);
        let bad = serde_json::from_str::<Sampling>(
            r#"{"temperature":-1,"top_k":4,"top_p":0.9,"seed":3}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("temperature"));
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(serde_json::from_str::<Sampling>(&json).unwrap(), ok);
    }

    #[test]
    fn new_settings_round_trip_and_are_checked_when_read() {
        let s = Sampling::new(0.7, 40, 0.95, 1)
            .unwrap()
            .with_min_p(0.05)
            .unwrap()
            .with_penalties(Penalties {
                last_n: 128,
                repeat: 1.1,
                frequency: 0.2,
                presence: 0.3,
            })
            .unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""repeat_penalty":1.1"#), "{json}");
        assert_eq!(serde_json::from_str::<Sampling>(&json).unwrap(), s);
        let bad = serde_json::from_str::<Sampling>(
            r#"{"temperature":1,"top_k":0,"top_p":1,"seed":0,"min_p":2}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("min-p"));
    }
}
