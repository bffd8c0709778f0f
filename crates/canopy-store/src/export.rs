//! Conversation exports: Markdown for people, JSON for [`crate::Store::import_json`].

use std::collections::HashSet;
use std::fmt::Write as _;

use canopy_types::ChatRole;
use serde::{Deserialize, Serialize};

use crate::{Conversation, GenerationStats, Message, MessageStatus, NewConversation, StoreError};

/// The `format` field of a JSON export.
pub const FORMAT: &str = "canopy.conversation";
/// The newest JSON export version this build reads and the one it writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
pub(crate) struct ExportFile {
    pub format: String,
    pub version: u32,
    pub conversation: ExportConversation,
    pub messages: Vec<ExportMessage>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ExportConversation {
    pub title: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub target_model: Option<String>,
    pub draft_model: Option<String>,
    pub sampling_json: Option<String>,
    pub plan: Option<String>,
}

impl ExportConversation {
    pub fn new_conversation(&self) -> NewConversation {
        NewConversation {
            title: self.title.clone(),
            target_model: self.target_model.clone(),
            draft_model: self.draft_model.clone(),
            sampling_json: self.sampling_json.clone(),
            plan: self.plan.clone(),
        }
    }
}

/// A message with ids local to the file (1, 2, ...), so that an import exports back identically.
#[derive(Serialize, Deserialize)]
pub(crate) struct ExportMessage {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub role: ChatRole,
    pub content: String,
    pub status: MessageStatus,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<GenerationStats>,
}

/// `messages` must be in id order (parents first), as [`crate::Store::messages`] returns them.
pub(crate) fn json(conversation: &Conversation, messages: &[Message]) -> String {
    let local: std::collections::HashMap<_, _> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id, i as i64 + 1))
        .collect();
    let file = ExportFile {
        format: FORMAT.to_string(),
        version: FORMAT_VERSION,
        conversation: ExportConversation {
            title: conversation.title.clone(),
            created_at: conversation.created_at,
            updated_at: conversation.updated_at,
            target_model: conversation.target_model.clone(),
            draft_model: conversation.draft_model.clone(),
            sampling_json: conversation.sampling_json.clone(),
            plan: conversation.plan.clone(),
        },
        messages: messages
            .iter()
            .map(|m| ExportMessage {
                id: local[&m.id],
                parent_id: m.parent_id.and_then(|p| local.get(&p).copied()),
                role: m.role,
                content: m.content.clone(),
                status: m.status,
                created_at: m.created_at,
                stats: m.stats.clone(),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&file).expect("export structs always serialize");
    text.push('\n');
    text
}

/// Reads and checks a JSON export: format, version, unique ids, parents that precede children.
pub(crate) fn parse(text: &str) -> Result<ExportFile, StoreError> {
    let file: ExportFile =
        serde_json::from_str(text).map_err(|e| StoreError::BadImport(e.to_string()))?;
    if file.format != FORMAT {
        return Err(StoreError::BadImport(format!(
            "format is {:?}, expected {FORMAT:?}",
            file.format
        )));
    }
    if file.version > FORMAT_VERSION {
        return Err(StoreError::BadImport(format!(
            "format version {} was written by a newer Canopy (this build reads up to {FORMAT_VERSION})",
            file.version
        )));
    }
    let mut seen = HashSet::new();
    for message in &file.messages {
        if let Some(parent) = message.parent_id {
            if !seen.contains(&parent) {
                return Err(StoreError::BadImport(format!(
                    "message {} names parent {parent}, which does not come before it",
                    message.id
                )));
            }
        }
        if !seen.insert(message.id) {
            return Err(StoreError::BadImport(format!(
                "message id {} appears twice",
                message.id
            )));
        }
    }
    Ok(file)
}

/// The conversation header and one thread (root first) as Markdown.
pub(crate) fn markdown(conversation: &Conversation, thread: &[Message]) -> String {
    let mut out = String::new();
    let title = if conversation.title.trim().is_empty() {
        "Untitled conversation"
    } else {
        conversation.title.trim()
    };
    let _ = writeln!(out, "# {title}\n");
    let mut facts = vec![format!("Created {}", utc_datetime(conversation.created_at))];
    if let Some(model) = &conversation.target_model {
        facts.push(format!("target model `{model}`"));
    }
    if let Some(model) = &conversation.draft_model {
        facts.push(format!("draft model `{model}`"));
    }
    if let Some(plan) = &conversation.plan {
        facts.push(format!("plan `{plan}`"));
    }
    let _ = writeln!(out, "{}\n", facts.join(" · "));
    for message in thread {
        let heading = match message.role {
            ChatRole::System => "System",
            ChatRole::User => "User",
            ChatRole::Assistant => "Assistant",
        };
        let _ = writeln!(out, "## {heading}\n");
        if !message.content.is_empty() {
            let _ = writeln!(out, "{}\n", message.content.trim_end());
        }
        if message.status != MessageStatus::Complete {
            let _ = writeln!(out, "*({}: the reply stopped here)*\n", message.status);
        }
        if let Some(stats) = &message.stats {
            let _ = writeln!(
                out,
                "*{} tokens · {:.1} tokens/s · plan {} · {:.2} accepted per step*\n",
                stats.tokens, stats.tokens_per_second, stats.plan, stats.mean_accepted_per_step
            );
        }
    }
    let hidden = conversation.message_count - thread.len() as i64;
    if hidden > 0 {
        let _ = writeln!(
            out,
            "---\n\n*{hidden} message(s) on other branches are not shown; the JSON export keeps every branch.*"
        );
    }
    out
}

/// `YYYY-MM-DD HH:MM UTC` for unix milliseconds (proleptic Gregorian calendar).
pub fn utc_datetime(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_datetime(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_datetime(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(utc_datetime(1_735_689_599_000), "2024-12-31 23:59 UTC");
        assert_eq!(utc_datetime(-1000), "1969-12-31 23:59 UTC");
    }
}
