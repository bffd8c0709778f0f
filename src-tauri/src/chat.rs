//! Chat commands: conversations and messages, and the chat turn streamed over a Tauri channel.
//! Every rule (bounds, pairs, placement, saving) is the application core's.

use canopy_core::PlacementDecision;
use canopy_core::{ChatObserver, ChatSettings, ModelPair};
use canopy_core::{Conversation, ConversationId, Message, MessageId, SearchHit};
use canopy_types::{Placement, Plan, Source};
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::{AppState, Task};

/// What the generation channel carries to the window.
#[derive(Clone, Debug, Serialize, ts_rs::TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    /// Generation is starting: the plan asked for and where the target runs.
    Started {
        plan: Plan,
        placement: PlacementDecision,
    },
    /// A long phase before the first token (loading a model, calibrating), 0..=1.
    Progress {
        phase: String,
        fraction: f64,
    },
    /// The reply now exists in the history (saved with its first piece).
    Reply {
        #[ts(type = "number")]
        reply_id: MessageId,
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

#[tauri::command]
pub fn list_conversations(state: State<'_, AppState>) -> CommandResult<Vec<Conversation>> {
    Ok(state.core().conversations()?)
}

#[tauri::command]
pub fn search_messages(state: State<'_, AppState>, query: String) -> CommandResult<Vec<SearchHit>> {
    Ok(state.core().search_messages(&query)?)
}

#[tauri::command]
pub fn create_conversation(
    state: State<'_, AppState>,
    title: String,
    target: Option<String>,
    draft: Option<String>,
) -> CommandResult<Conversation> {
    let pair = ModelPair { target, draft };
    Ok(state
        .core()
        .create_conversation(&title, Some(&pair), None, None)?)
}

/// Sets the models a conversation generates with from now on.
#[tauri::command]
pub fn set_conversation_models(
    state: State<'_, AppState>,
    id: i64,
    pair: ModelPair,
) -> CommandResult<Conversation> {
    Ok(state
        .core()
        .set_conversation_models(conversation_id(id)?, &pair)?)
}

#[tauri::command]
pub fn rename_conversation(
    state: State<'_, AppState>,
    id: i64,
    title: String,
) -> CommandResult<()> {
    Ok(state
        .core()
        .rename_conversation(conversation_id(id)?, &title)?)
}

#[tauri::command]
pub fn delete_conversation(state: State<'_, AppState>, id: i64) -> CommandResult<()> {
    if state.inner.is_running(Task::Generation) {
        return Err(CommandError::busy(
            "a reply is being generated; stop it before deleting conversations",
        ));
    }
    Ok(state.core().delete_conversation(conversation_id(id)?)?)
}

#[tauri::command]
pub fn conversation_messages(
    state: State<'_, AppState>,
    conversation: i64,
) -> CommandResult<Vec<Message>> {
    Ok(state.core().messages(conversation_id(conversation)?)?)
}

#[tauri::command]
pub fn add_user_message(
    state: State<'_, AppState>,
    conversation: i64,
    parent: Option<i64>,
    content: String,
) -> CommandResult<Message> {
    let parent = parent.map(message_id).transpose()?;
    Ok(state
        .core()
        .add_user_message(conversation_id(conversation)?, parent, &content)?)
}

#[tauri::command]
pub fn load_settings(state: State<'_, AppState>) -> CommandResult<ChatSettings> {
    Ok(state.core().chat_settings()?)
}

#[tauri::command]
pub fn save_settings(state: State<'_, AppState>, settings: ChatSettings) -> CommandResult<()> {
    Ok(state.core().save_chat_settings(&settings)?)
}

/// The models new conversations start with.
#[tauri::command]
pub fn get_model_pair(state: State<'_, AppState>) -> CommandResult<ModelPair> {
    Ok(state.core().default_pair()?)
}

#[tauri::command]
pub fn set_model_pair(state: State<'_, AppState>, pair: ModelPair) -> CommandResult<ModelPair> {
    state.core().set_default_pair(&pair)?;
    Ok(pair)
}

/// Where the target of `pair` would run with `placement` on this machine.
#[tauri::command]
pub async fn placement_preview(
    state: State<'_, AppState>,
    pair: ModelPair,
    placement: Placement,
) -> CommandResult<Option<PlacementDecision>> {
    let app = state.inner().clone();
    tauri::async_runtime::spawn_blocking(move || Ok(app.core().placement_for(&pair, placement)?))
        .await
        .map_err(CommandError::internal)?
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
    let app = state.inner().clone();
    tauri::async_runtime::spawn_blocking(move || app.core().restart_worker())
        .await
        .map_err(CommandError::internal)
}

/// Passes the core's turn events on to the window.
struct Forward<'c>(&'c Channel<ChatEvent>);

impl ChatObserver for Forward<'_> {
    fn started(&mut self, plan: Plan, placement: &PlacementDecision) {
        let _ = self.0.send(ChatEvent::Started {
            plan,
            placement: placement.clone(),
        });
    }

    fn progress(&mut self, phase: &str, fraction: f64) {
        let _ = self.0.send(ChatEvent::Progress {
            phase: phase.to_owned(),
            fraction,
        });
    }

    fn reply_created(&mut self, reply_id: MessageId) {
        let _ = self.0.send(ChatEvent::Reply { reply_id });
    }

    fn token(&mut self, text: &str, sources: &[Source]) {
        let _ = self.0.send(ChatEvent::Token {
            text: text.to_owned(),
            sources: sources.to_vec(),
        });
    }
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
    settings: ChatSettings,
    on_event: Channel<ChatEvent>,
) -> CommandResult<Message> {
    let conversation = conversation_id(conversation)?;
    let parent = message_id(parent)?;
    let guard = state.start(Task::Generation)?;
    let app = state.inner().clone();
    let outcome = tauri::async_runtime::spawn_blocking(move || {
        let cancel = &app.inner.generation_cancel;
        cancel.reset();
        app.core().reply(
            conversation,
            parent,
            &settings,
            &mut Forward(&on_event),
            cancel,
        )
    })
    .await
    .map_err(CommandError::internal)?;
    drop(guard);
    let outcome = outcome?;
    outcome.result?;
    outcome
        .reply
        .ok_or_else(|| CommandError::internal("the engine finished without a reply"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_positive() {
        assert!(conversation_id(0).is_err());
        assert!(message_id(-4).is_err());
        assert_eq!(conversation_id(3).unwrap(), ConversationId(3));
    }
}
