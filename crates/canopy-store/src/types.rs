//! The records the store keeps, as plain data.

use std::fmt;
use std::str::FromStr;

use canopy_types::{ChatRole, Source};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "ts", derive(ts_rs::TS))]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;

            /// Parses a decimal id; fails on anything that is not an integer.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim().parse().map($name)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                i64::column_result(value).map($name)
            }
        }
    };
}

id_type!(
    /// The id of a conversation.
    ConversationId
);
id_type!(
    /// The id of a message; unique across all conversations.
    MessageId
);

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "ts", derive(ts_rs::TS))]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The lowercase name stored in the database and in exports.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            /// Parses the lowercase name; fails on any other text.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value.as_str()?.parse().map_err(|e: String| FromSqlError::Other(e.into()))
            }
        }
    };
}

/// A message's author as a column: [`ChatRole`]'s lowercase name.
pub(crate) struct RoleColumn(pub ChatRole);

impl ToSql for RoleColumn {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.as_str()))
    }
}

impl FromSql for RoleColumn {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map(RoleColumn)
            .map_err(|e: String| FromSqlError::Other(e.into()))
    }
}

text_enum!(
    /// Whether a message's content is final.
    MessageStatus {
        /// Written in full.
        Complete = "complete",
        /// A reply being generated; its content grows.
        Streaming = "streaming",
        /// A reply whose generation stopped early (cancelled or crashed); the content is what was saved.
        Interrupted = "interrupted",
    }
);

/// The settings a new conversation starts with.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct NewConversation {
    pub title: String,
    pub target_model: Option<String>,
    pub draft_model: Option<String>,
    /// Sampling settings as JSON, opaque to the store.
    pub sampling_json: Option<String>,
    /// The speculation plan in use, opaque to the store.
    pub plan: Option<String>,
}

/// A stored conversation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Conversation {
    pub id: ConversationId,
    pub title: String,
    /// Unix time in milliseconds.
    pub created_at: i64,
    /// Unix time in milliseconds of the last change to the conversation or its messages.
    pub updated_at: i64,
    pub target_model: Option<String>,
    pub draft_model: Option<String>,
    pub sampling_json: Option<String>,
    pub plan: Option<String>,
    /// Messages on all branches.
    pub message_count: i64,
}

/// A stored message. Messages form a tree through `parent_id`: a regenerated reply is another
/// assistant message with the same parent, an edited prompt another user message with the same parent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub parent_id: Option<MessageId>,
    pub role: ChatRole,
    pub content: String,
    pub status: MessageStatus,
    /// Unix time in milliseconds.
    pub created_at: i64,
    pub stats: Option<GenerationStats>,
}

/// How an assistant reply was generated.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct GenerationStats {
    /// Output tokens.
    pub tokens: u64,
    /// Prompt tokens evaluated before the first output token.
    pub prefill_tokens: u64,
    pub tokens_per_second: f64,
    /// The speculation plan, as text (for example "n=64 d=8" or "plain").
    pub plan: String,
    /// Verification passes of the target model.
    pub steps: u64,
    pub mean_accepted_per_step: f64,
    pub draft_ms: f64,
    pub verify_ms: f64,
    /// Per output token: produced by the target, or an accepted draft token. Stored as one byte
    /// per token (0 = target, 1 = draft); exports written as numbers by older builds still import.
    #[serde(deserialize_with = "provenance::deserialize")]
    pub provenance: Vec<Source>,
}

/// One full-text search result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SearchHit {
    pub conversation_id: ConversationId,
    pub conversation_title: String,
    pub message_id: MessageId,
    pub role: ChatRole,
    /// A short extract around the match; matched terms are wrapped in `[` and `]`.
    pub snippet: String,
    /// Message creation time, unix milliseconds.
    pub created_at: i64,
}

/// The byte encoding of token provenance in the database.
pub(crate) mod provenance {
    use canopy_types::Source;
    use serde::{Deserialize, Deserializer};

    pub fn to_bytes(sources: &[Source]) -> Vec<u8> {
        sources
            .iter()
            .map(|s| match s {
                Source::Target => 0,
                Source::Draft => 1,
                Source::Lookup => 2,
            })
            .collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> Vec<Source> {
        bytes
            .iter()
            .map(|&b| match b {
                1 => Source::Draft,
                2 => Source::Lookup,
                _ => Source::Target,
            })
            .collect()
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Sources(Vec<Source>),
        Bytes(Vec<u8>),
    }

    /// `["draft", "target", "lookup", ...]`, or the numbers (1 = draft, 2 = lookup) of exports
    /// from older builds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Source>, D::Error> {
        Ok(match Either::deserialize(d)? {
            Either::Sources(s) => s,
            Either::Bytes(b) => from_bytes(&b),
        })
    }
}
