//! Chat commands: conversations, messages and streamed generation through the worker.

use std::time::{Duration, Instant};

use canopy_store::{
    Conversation, ConversationId, GenerationStats, Message, MessageId, MessageStatus,
    NewConversation, Role, SearchHit,
};
use canopy_worker::{
    ChatMessage, ChatRole, Event, GenerateRequest, GenerateResult, Job, JobResult, Prompt,
    Sampling, Source, StopReason, WorkerError,
};
use serde::{Deserialize, Serialize};
use tauri::ipc::Channel;
use tauri::State;

use crate::error::{CommandError, CommandResult, ErrorKind};
use crate::state::{AppState, Task};

const SETTINGS_KEY: &str = "chat.settings";
const PAIR_KEY: &str = "chat.models";
const MAX_MESSAGE_CHARS: usize = 200_000;
const MAX_TITLE_CHARS: usize = 120;

/// Sampling and speculation settings chosen in the chat's settings panel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GenerateSettings {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub seed: u64,
    pub max_tokens: u32,
    /// `none`, `auto`, `chain:K` or `tree:N`.
    pub plan: String,
}

impl Default for GenerateSettings {
    fn default() -> Self {
        GenerateSettings {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
            seed: 0,
            max_tokens: 512,
            plan: "auto".to_owned(),
        }
    }
}

impl GenerateSettings {
    /// Checks every field; fails with the first problem, phrased for the user.
    pub fn validate(&self) -> CommandResult<()> {
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(CommandError::user("temperature must be between 0 and 2"));
        }
        if self.top_k > 1000 {
            return Err(CommandError::user(
                "top-k must be at most 1000 (0 turns it off)",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(CommandError::user("top-p must be above 0 and at most 1"));
        }
        if !(1..=32_768).contains(&self.max_tokens) {
            return Err(CommandError::user("max tokens must be between 1 and 32768"));
        }
        validate_plan(&self.plan)
    }
}

fn validate_plan(plan: &str) -> CommandResult<()> {
    let ok = match plan.split_once(':') {
        None => matches!(plan, "none" | "auto"),
        Some(("chain", k)) => k.parse::<u32>().is_ok_and(|k| (1..=999).contains(&k)),
        Some(("tree", n)) => n.parse::<u32>().is_ok_and(|n| (1..=1024).contains(&n)),
        Some(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(CommandError::user(format!(
            "plan {plan:?} is not one of none, auto, chain:K (K ≤ 999) or tree:N (N ≤ 1024)"
        )))
    }
}

/// The target and draft models the chat generates with (library ids).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ModelPair {
    pub target: Option<String>,
    pub draft: Option<String>,
}

/// What the generation channel carries to the window.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    Started {
        reply_id: MessageId,
        plan: String,
        budget: u32,
    },
    /// A long phase before the first token (loading a model, calibrating), 0..=1.
    Progress {
        phase: String,
        fraction: f64,
    },
    Token {
        text: String,
        sources: Vec<Source>,
    },
}

fn conversation_id(id: i64) -> CommandResult<ConversationId> {
    if id <= 0 {
        return Err(CommandError::user(format!("{id} is not a conversation id")));
    }
    Ok(ConversationId(id))
}

fn message_id(id: i64) -> CommandResult<MessageId> {
    if id <= 0 {
        return Err(CommandError::user(format!("{id} is not a message id")));
    }
    Ok(MessageId(id))
}

fn clean_title(title: &str) -> CommandResult<String> {
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.is_empty() {
        return Err(CommandError::user("the title cannot be empty"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(CommandError::user(format!(
            "keep the title under {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(title)
}

#[tauri::command]
pub fn list_conversations(state: State<'_, AppState>) -> CommandResult<Vec<Conversation>> {
    Ok(state.inner.store()?.list_conversations()?)
}

#[tauri::command]
pub fn search_messages(state: State<'_, AppState>, query: String) -> CommandResult<Vec<SearchHit>> {
    let query = query.trim();
    if query.is_empty() {
        return Ok(Vec::new());
    }
    if query.chars().count() > 200 {
        return Err(CommandError::user("search for at most 200 characters"));
    }
    Ok(state.inner.store()?.search(query)?)
}

#[tauri::command]
pub fn create_conversation(
    state: State<'_, AppState>,
    title: String,
    target: Option<String>,
    draft: Option<String>,
) -> CommandResult<Conversation> {
    let title = clean_title(&title)?;
    let store = state.inner.store()?;
    let id = store.create_conversation(&NewConversation {
        title,
        target_model: target,
        draft_model: draft,
        sampling_json: None,
        plan: None,
    })?;
    Ok(store.conversation(id)?)
}

#[tauri::command]
pub fn rename_conversation(
    state: State<'_, AppState>,
    id: i64,
    title: String,
) -> CommandResult<()> {
    let title = clean_title(&title)?;
    Ok(state
        .inner
        .store()?
        .rename_conversation(conversation_id(id)?, &title)?)
}

#[tauri::command]
pub fn delete_conversation(state: State<'_, AppState>, id: i64) -> CommandResult<()> {
    if state.inner.is_running(Task::Generation) {
        return Err(CommandError::busy(
            "a reply is being generated; stop it before deleting conversations",
        ));
    }
    Ok(state
        .inner
        .store()?
        .delete_conversation(conversation_id(id)?)?)
}

#[tauri::command]
pub fn conversation_messages(
    state: State<'_, AppState>,
    conversation: i64,
) -> CommandResult<Vec<Message>> {
    Ok(state
        .inner
        .store()?
        .messages(conversation_id(conversation)?)?)
}

#[tauri::command]
pub fn add_user_message(
    state: State<'_, AppState>,
    conversation: i64,
    parent: Option<i64>,
    content: String,
) -> CommandResult<Message> {
    let conv = conversation_id(conversation)?;
    let parent = parent.map(message_id).transpose()?;
    if content.trim().is_empty() {
        return Err(CommandError::user("the message is empty"));
    }
    if content.chars().count() > MAX_MESSAGE_CHARS {
        return Err(CommandError::user(format!(
            "the message is longer than {MAX_MESSAGE_CHARS} characters"
        )));
    }
    let store = state.inner.store()?;
    let id = store.add_message(conv, parent, Role::User, &content)?;
    find_message(&store.messages(conv)?, id)
}

fn find_message(messages: &[Message], id: MessageId) -> CommandResult<Message> {
    messages
        .iter()
        .find(|m| m.id == id)
        .cloned()
        .ok_or_else(|| CommandError::new(ErrorKind::NotFound, format!("message {id} is gone")))
}

#[tauri::command]
pub fn load_settings(state: State<'_, AppState>) -> CommandResult<GenerateSettings> {
    let stored = state.inner.store()?.get_setting(SETTINGS_KEY)?;
    Ok(stored
        .and_then(|json| serde_json::from_str::<GenerateSettings>(&json).ok())
        .filter(|s| s.validate().is_ok())
        .unwrap_or_default())
}

#[tauri::command]
pub fn save_settings(state: State<'_, AppState>, settings: GenerateSettings) -> CommandResult<()> {
    settings.validate()?;
    let json = serde_json::to_string(&settings).map_err(CommandError::internal)?;
    Ok(state.inner.store()?.set_setting(SETTINGS_KEY, &json)?)
}

#[tauri::command]
pub fn get_model_pair(state: State<'_, AppState>) -> CommandResult<ModelPair> {
    let stored = state.inner.store()?.get_setting(PAIR_KEY)?;
    Ok(stored
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default())
}

#[tauri::command]
pub fn set_model_pair(state: State<'_, AppState>, pair: ModelPair) -> CommandResult<ModelPair> {
    if let Some(target) = &pair.target {
        crate::models::resolve(&state, target)?;
    }
    if let (Some(target), Some(draft)) = (&pair.target, &pair.draft) {
        crate::models::check_pair(&state, target, draft)?;
    }
    let json = serde_json::to_string(&pair).map_err(CommandError::internal)?;
    state.inner.store()?.set_setting(PAIR_KEY, &json)?;
    Ok(pair)
}

#[tauri::command]
pub fn stop_generation(state: State<'_, AppState>) {
    state.inner.generation_cancel.cancel();
}

/// Stops the worker; the next request starts a fresh one.
#[tauri::command]
pub async fn restart_worker(state: State<'_, AppState>) -> CommandResult<()> {
    if state.inner.is_running(Task::Generation) {
        return Err(CommandError::busy(
            "stop the running reply before restarting the engine",
        ));
    }
    let inner = state.inner.clone();
    tauri::async_runtime::spawn_blocking(move || inner.supervisor().shutdown())
        .await
        .map_err(CommandError::internal)
}

/// Streams a reply to the user message `parent` and returns the saved reply.
///
/// The reply is saved as it grows (at least every second); when generation stops early or the
/// worker dies, what was generated stays saved as interrupted and the error says what happened.
#[tauri::command]
pub async fn generate_reply(
    state: State<'_, AppState>,
    conversation: i64,
    parent: i64,
    settings: GenerateSettings,
    on_event: Channel<ChatEvent>,
) -> CommandResult<Message> {
    settings.validate()?;
    let conv = conversation_id(conversation)?;
    let parent = message_id(parent)?;
    let guard = state.start(Task::Generation)?;
    let app = state.inner().clone();

    // Everything the worker needs, gathered under a short lock.
    let (thread, pair) = {
        let store = app.inner.store()?;
        let thread = store.thread(parent)?;
        let pair = store
            .get_setting(PAIR_KEY)?
            .and_then(|json| serde_json::from_str::<ModelPair>(&json).ok())
            .unwrap_or_default();
        (thread, pair)
    };
    let Some(last) = thread.last() else {
        return Err(CommandError::new(
            ErrorKind::NotFound,
            format!("message {parent} is gone"),
        ));
    };
    if last.conversation_id != conv {
        return Err(CommandError::user(format!(
            "message {parent} belongs to another conversation"
        )));
    }
    if last.role != Role::User {
        return Err(CommandError::user("a reply answers a user message"));
    }
    let Some(target_id) = pair.target.clone() else {
        return Err(CommandError::user(
            "choose a model first: import one in the Library, then pick it above the chat",
        ));
    };
    let target = crate::models::resolve(&state, &target_id)?;
    let draft = match &pair.draft {
        Some(draft_id) => {
            crate::models::check_pair(&state, &target_id, draft_id)?;
            Some(crate::models::resolve(&state, draft_id)?)
        }
        None => None,
    };
    let plan = if draft.is_none() {
        "none".to_owned()
    } else {
        settings.plan.clone()
    };
    let profile = crate::profile::planning_inputs(&state);
    let request = GenerateRequest {
        target,
        draft,
        prompt: Prompt::Chat(
            thread
                .iter()
                .filter(|m| !m.content.is_empty())
                .map(|m| ChatMessage {
                    role: match m.role {
                        Role::System => ChatRole::System,
                        Role::User => ChatRole::User,
                        Role::Assistant => ChatRole::Assistant,
                    },
                    content: m.content.clone(),
                })
                .collect(),
        ),
        sampling: Sampling {
            temperature: settings.temperature,
            top_k: settings.top_k,
            top_p: settings.top_p,
            seed: settings.seed,
        },
        max_tokens: settings.max_tokens,
        stop: Vec::new(),
        plan: plan.clone(),
        context: None,
        placement: Default::default(),
        acceptance: profile.as_ref().and_then(|p| p.acceptance.clone()),
        costs: profile.and_then(|p| p.costs),
        inexact_cache: false,
        rpc: Vec::new(),
        rpc_layers: None,
    };

    let reply_id = app.inner.store()?.begin_reply(conv, parent)?;
    let budget = plan
        .split_once(':')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(if plan == "none" { 1 } else { 0 });
    let _ = on_event.send(ChatEvent::Started {
        reply_id,
        plan: plan.clone(),
        budget,
    });

    let worker_app = app.clone();
    let outcome = tauri::async_runtime::spawn_blocking(move || {
        let inner = &worker_app.inner;
        inner.generation_cancel.reset();
        let mut text = String::new();
        let mut last_commit = Instant::now();
        let mut on_worker_event = |event: &Event| match event {
            Event::Token {
                text: piece,
                sources,
                ..
            } => {
                text.push_str(piece);
                let _ = on_event.send(ChatEvent::Token {
                    text: piece.clone(),
                    sources: sources.clone(),
                });
                if last_commit.elapsed() >= Duration::from_secs(1) {
                    if let Ok(store) = inner.store() {
                        // A failed commit is retried a second later; the final save reports errors.
                        let _ = store.update_reply(reply_id, &text);
                    }
                    last_commit = Instant::now();
                }
            }
            Event::Progress {
                phase, fraction, ..
            } => {
                let _ = on_event.send(ChatEvent::Progress {
                    phase: phase.clone(),
                    fraction: *fraction,
                });
            }
            _ => {}
        };
        let result = inner
            .supervisor()
            .run(
                Job::Generate(request),
                &inner.generation_cancel,
                &mut on_worker_event,
            )
            .and_then(|result| match result {
                JobResult::Generate(result) => Ok(result),
                other => Err(WorkerError::Protocol(format!(
                    "expected a generation result, got {other:?}"
                ))),
            });
        (text, result)
    })
    .await;
    drop(guard);

    let (text, result) = match outcome {
        Ok(pair) => pair,
        Err(join) => {
            let store = app.inner.store()?;
            let _ = store.finish_reply(reply_id, "", MessageStatus::Interrupted, None);
            return Err(CommandError::internal(format!(
                "the generation task failed: {join}"
            )));
        }
    };
    let store = app.inner.store()?;
    match result {
        Ok(result) => {
            let status = if result.stop_reason == StopReason::Cancelled {
                MessageStatus::Interrupted
            } else {
                MessageStatus::Complete
            };
            // The worker's final text is authoritative (stop strings are removed from it).
            let content = if result.text.is_empty() {
                &text
            } else {
                &result.text
            };
            store.finish_reply(reply_id, content, status, Some(&stats_of(&result)))?;
            find_message(&store.messages(conv)?, reply_id)
        }
        Err(err) => {
            store.finish_reply(reply_id, &text, MessageStatus::Interrupted, None)?;
            Err(err.into())
        }
    }
}

fn stats_of(result: &GenerateResult) -> GenerationStats {
    GenerationStats {
        tokens: result.tokens,
        prefill_tokens: result.prefill_tokens,
        tokens_per_second: result.tokens_per_second,
        plan: result.plan.clone(),
        steps: result.steps,
        mean_accepted_per_step: result.mean_accepted_per_step,
        draft_ms: result.draft_ms,
        verify_ms: result.verify_ms,
        provenance: result
            .provenance
            .iter()
            .map(|s| match s {
                Source::Draft => 1,
                Source::Target => 0,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_validated() {
        assert!(GenerateSettings::default().validate().is_ok());
        let bad = |f: fn(&mut GenerateSettings)| {
            let mut s = GenerateSettings::default();
            f(&mut s);
            s.validate().unwrap_err().kind
        };
        assert_eq!(bad(|s| s.temperature = -0.1), ErrorKind::User);
        assert_eq!(bad(|s| s.temperature = f32::NAN), ErrorKind::User);
        assert_eq!(bad(|s| s.top_p = 0.0), ErrorKind::User);
        assert_eq!(bad(|s| s.max_tokens = 0), ErrorKind::User);
        assert_eq!(bad(|s| s.plan = "tree:2048".into()), ErrorKind::User);
        assert_eq!(bad(|s| s.plan = "bush:3".into()), ErrorKind::User);
        for plan in ["none", "auto", "chain:4", "tree:64"] {
            validate_plan(plan).unwrap();
        }
    }

    #[test]
    fn titles_are_one_trimmed_line() {
        assert_eq!(clean_title("  a\n b ").unwrap(), "a b");
        assert!(clean_title("   ").is_err());
        assert!(clean_title(&"x".repeat(121)).is_err());
    }

    #[test]
    fn ids_must_be_positive() {
        assert!(conversation_id(0).is_err());
        assert!(message_id(-4).is_err());
        assert_eq!(conversation_id(3).unwrap(), ConversationId(3));
    }
}
