//! Canopy's shared vocabulary: the words the engine, the worker protocol, the store, the
//! application core and every front end use, each with one type and one meaning.
//!
//! Raw text (a flag, a JSON field, a form input) becomes one of these types once, at the edge, and
//! the typed value travels from there: a [`Plan`] cannot name a tree larger than the engine builds,
//! a [`Sampling`] cannot hold a negative temperature.
//!
//! *Architecture Invariant:* no IO and no dependencies beyond serde; every crate may use it.

mod placement;
mod plan;
mod sampling;

/// Largest context, in tokens, of a request or an estimate that names none: the one default of
/// the worker, the library's fit estimates and every front end.
pub const DEFAULT_CONTEXT: u32 = 4096;

pub use placement::{Placement, PlacementError};
pub use plan::{InvalidPlan, Plan, MAX_CHAIN, MAX_TREE};
pub use sampling::{
    check_min_p, Penalties, Sampling, SamplingError, MAX_PRESENCE_FREQUENCY_PENALTY,
    MAX_REPEAT_LAST_N, MAX_REPEAT_PENALTY, MAX_TEMPERATURE, MAX_TOP_K,
};

use serde::{Deserialize, Serialize};

/// Where an output token came from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Proposed by the draft and accepted by the target.
    Draft,
    /// Produced by the target itself (bonus or correction token, or plain decoding).
    Target,
    /// Proposed by matching the latest tokens against the conversation so far (prompt lookup, at
    /// no model cost) and accepted by the target.
    Lookup,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// End of sequence / end of turn token.
    Eos,
    /// A stop string appeared (it is not part of the text).
    Stop,
    /// The requested number of tokens was generated.
    MaxTokens,
    /// The context window is full.
    ContextFull,
    /// The caller cancelled.
    Cancelled,
}

/// A role in a chat prompt.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl ChatRole {
    /// The lowercase name, as JSON, the store and exports write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

impl std::fmt::Display for ChatRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ChatRole {
    type Err = String;

    /// Parses the lowercase name; fails on any other text.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(ChatRole::System),
            "user" => Ok(ChatRole::User),
            "assistant" => Ok(ChatRole::Assistant),
            other => Err(format!("unknown chat role {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_roles_keep_their_text_forms() {
        for role in [ChatRole::System, ChatRole::User, ChatRole::Assistant] {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""));
            assert_eq!(role.as_str().parse::<ChatRole>(), Ok(role));
        }
        assert!("System".parse::<ChatRole>().is_err());
    }

    #[test]
    fn sources_keep_their_text_forms() {
        // The store and the front end hold these words: adding a source never renames another.
        for (source, text) in [
            (Source::Draft, "\"draft\""),
            (Source::Target, "\"target\""),
            (Source::Lookup, "\"lookup\""),
        ] {
            assert_eq!(serde_json::to_string(&source).unwrap(), text);
            assert_eq!(serde_json::from_str::<Source>(text).unwrap(), source);
        }
    }
}
