//! The chat turn: one user message in, one saved reply out.
//!
//! Every user message is saved before anything runs; the reply is saved as it streams (at least
//! every second) through [`canopy_store::ReplyWriter`], created with the first piece of text so that
//! a request refused before any output leaves no empty reply. When generation stops early (cancel)
//! or the worker dies, what was generated stays saved as interrupted.

use canopy_hw::PlacementDecision;
use canopy_store::{
    Conversation, ConversationId, GenerationStats, Message, MessageId, NewConversation,
    ReplyWriter, Store, StoreError,
};
use canopy_types::{ChatRole, Plan, Source, StopReason};
use canopy_worker::{CancelFlag, ChatMessage, Event, GenerateResult, Prompt};

use crate::error::{CoreError, CoreResult};
use crate::request::ModelChoice;
use crate::settings::{ChatSettings, ModelPair};
use crate::Core;

/// Longest message a user may send.
pub const MAX_MESSAGE_CHARS: usize = 200_000;
/// Longest conversation title.
pub const MAX_TITLE_CHARS: usize = 120;

/// What a front end hears while a reply is generated. Every method has an empty default.
pub trait ChatObserver {
    /// Generation is about to start: the plan and where the target runs.
    fn started(&mut self, _plan: Plan, _placement: &PlacementDecision) {}
    /// A long phase before the first token (loading a model, calibrating), 0..=1.
    fn progress(&mut self, _phase: &str, _fraction: f64) {}
    /// The reply message now exists in the store (created with the first piece).
    fn reply_created(&mut self, _reply: MessageId) {}
    /// New text of the reply and its tokens' provenance.
    fn token(&mut self, _text: &str, _sources: &[Source]) {}
}

/// How a turn ended.
#[derive(Debug)]
pub struct TurnOutcome {
    /// The saved reply: complete, or interrupted when cancelled or when generation failed after it
    /// began. `None` when nothing was generated.
    pub reply: Option<Message>,
    /// The generation's statistics, or why it failed.
    pub result: Result<GenerateResult, CoreError>,
    /// Where the target ran.
    pub placement: PlacementDecision,
}

/// A conversation title as one trimmed line.
///
/// # Errors
/// A user error when it is empty or longer than [`MAX_TITLE_CHARS`].
pub fn clean_title(title: &str) -> CoreResult<String> {
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.is_empty() {
        return Err(CoreError::user("the title cannot be empty"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(CoreError::user(format!(
            "keep the title under {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(title)
}

/// A title for a conversation from its first message: the first non-empty line, at most 60
/// characters.
pub fn title_from(first_message: &str) -> String {
    const MAX: usize = 60;
    let line = first_message
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", line[..cut].trim_end()),
        None if line.is_empty() => "New conversation".to_owned(),
        None => line,
    }
}

/// The statistics kept with a reply.
pub fn stats_of(r: &GenerateResult) -> GenerationStats {
    GenerationStats {
        tokens: r.tokens,
        prefill_tokens: r.prefill_tokens,
        tokens_per_second: r.tokens_per_second,
        plan: r.plan.clone(),
        steps: r.steps,
        mean_accepted_per_step: r.mean_accepted_per_step,
        draft_ms: r.draft_ms,
        verify_ms: r.verify_ms,
        provenance: r.provenance.clone(),
    }
}

fn find(messages: Vec<Message>, id: MessageId) -> CoreResult<Message> {
    messages
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| CoreError::NotFound(format!("message {id} is gone")))
}

impl Core {
    /// Starts a conversation with `pair` (the default pair when `None`) and an optional system
    /// message, recording the plan and sampling of `settings` when given.
    ///
    /// # Errors
    /// A user error for a bad title or pair; a store error.
    pub fn create_conversation(
        &self,
        title: &str,
        pair: Option<&ModelPair>,
        system: Option<&str>,
        settings: Option<&ChatSettings>,
    ) -> CoreResult<Conversation> {
        let title = clean_title(title)?;
        let pair = match pair {
            Some(pair) => pair.clone(),
            None => self.default_pair()?,
        };
        self.check_model_pair(&pair)?;
        let store = self.store()?;
        let id = store.create_conversation(&NewConversation {
            title,
            target_model: pair.target.clone(),
            draft_model: pair.draft.clone(),
            sampling_json: settings.and_then(|s| serde_json::to_string(&s.sampling).ok()),
            plan: settings.map(|s| s.plan.with_draft(pair.draft.is_some()).to_string()),
        })?;
        if let Some(system) = system.filter(|s| !s.trim().is_empty()) {
            store.add_message(id, None, ChatRole::System, system)?;
        }
        Ok(store.conversation(id)?)
    }

    /// Sets the models a conversation generates with from now on.
    ///
    /// # Errors
    /// A user error for an unusable pair; not found for an unknown conversation.
    pub fn set_conversation_models(
        &self,
        conversation: ConversationId,
        pair: &ModelPair,
    ) -> CoreResult<Conversation> {
        self.check_model_pair(pair)?;
        let store = self.store()?;
        store.set_conversation_models(
            conversation,
            pair.target.as_deref(),
            pair.draft.as_deref(),
        )?;
        Ok(store.conversation(conversation)?)
    }

    /// Saves a user message under `parent` (`None` starts the conversation's first branch).
    ///
    /// # Errors
    /// A user error for an empty or overlong message; a store error when the conversation or
    /// parent does not exist.
    pub fn add_user_message(
        &self,
        conversation: ConversationId,
        parent: Option<MessageId>,
        text: &str,
    ) -> CoreResult<Message> {
        if text.trim().is_empty() {
            return Err(CoreError::user("the message is empty"));
        }
        if text.chars().count() > MAX_MESSAGE_CHARS {
            return Err(CoreError::user(format!(
                "the message is longer than {MAX_MESSAGE_CHARS} characters"
            )));
        }
        let store = self.store()?;
        let id = store.add_message(conversation, parent, ChatRole::User, text)?;
        find(store.messages(conversation)?, id)
    }

    /// The models of `conversation`, resolved to files, as the choice a turn runs with.
    fn conversation_choice(
        &self,
        conversation: &Conversation,
        settings: &ChatSettings,
    ) -> CoreResult<ModelChoice> {
        let pair = ModelPair {
            target: conversation.target_model.clone(),
            draft: conversation.draft_model.clone(),
        };
        self.chat_choice(&pair, settings)?.ok_or_else(|| {
            CoreError::user(
                "choose a model first: import one in the Library, then pick it above the chat",
            )
        })
    }

    /// What the chat runs `pair` with under `settings`: the models resolved to files and checked
    /// as a pair, plain decoding without a draft. `None` without a target.
    ///
    /// # Errors
    /// As [`Core::check_model_pair`].
    pub fn chat_choice(
        &self,
        pair: &ModelPair,
        settings: &ChatSettings,
    ) -> CoreResult<Option<ModelChoice>> {
        let Some(target) = &pair.target else {
            return Ok(None);
        };
        self.check_model_pair(pair)?;
        let draft = pair
            .draft
            .as_deref()
            .map(|d| self.resolve_model(d))
            .transpose()?;
        Ok(Some(ModelChoice {
            target: self.resolve_model(target)?,
            plan: settings.plan.with_draft(draft.is_some()),
            draft,
            placement: settings.placement,
            context: settings.context,
            profile: None,
            rpc: settings.rpc.clone(),
            rpc_layers: None,
        }))
    }

    /// Generates and saves the reply to the user message `user` of `conversation`, with the
    /// conversation's own models and `settings`; stops early once `cancel` is set.
    ///
    /// A failure before generation starts (bad ids, no model, a refused request) is an `Err` and
    /// leaves no reply; a failure during generation keeps the partial reply as interrupted and is
    /// reported in [`TurnOutcome::result`].
    ///
    /// # Errors
    /// As described above; also when the store fails while saving (generation is then stopped).
    pub fn reply(
        &self,
        conversation: ConversationId,
        user: MessageId,
        settings: &ChatSettings,
        observer: &mut dyn ChatObserver,
        cancel: &CancelFlag,
    ) -> CoreResult<TurnOutcome> {
        settings.validate()?;
        let (conv, thread) = {
            let store = self.store()?;
            (store.conversation(conversation)?, store.thread(user)?)
        };
        match thread.last() {
            Some(last) if last.conversation_id != conversation => {
                return Err(CoreError::user(format!(
                    "message {user} belongs to another conversation"
                )))
            }
            Some(last) if last.role != ChatRole::User => {
                return Err(CoreError::user("a reply answers a user message"))
            }
            Some(_) => {}
            None => return Err(CoreError::NotFound(format!("message {user} is gone"))),
        }
        let choice = self.conversation_choice(&conv, settings)?;
        let messages = thread
            .iter()
            .filter(|m| !m.content.is_empty())
            .map(|m| ChatMessage {
                role: m.role,
                content: m.content.clone(),
            })
            .collect();
        let mut prepared = self.prepare(
            &choice,
            Prompt::Chat(messages),
            settings.sampling,
            settings.max_tokens,
            Vec::new(),
        )?;
        observer.started(choice.plan, &prepared.decision);

        let store = self.own_store()?;
        let mut saving = Saving {
            store: &store,
            conversation,
            user,
            writer: None,
            failure: None,
        };
        let result = self.generate(&mut prepared, cancel, &mut |event| match event {
            Event::Token { text, sources, .. } => {
                if let Some(id) = saving.push(text, cancel) {
                    observer.reply_created(id);
                }
                observer.token(text, sources);
            }
            Event::Progress {
                phase, fraction, ..
            } => observer.progress(phase, *fraction),
            _ => {}
        });
        let Saving {
            mut writer,
            failure,
            ..
        } = saving;
        if let Some(err) = failure {
            return Err(err.into());
        }
        if writer.is_none() && result.is_ok() {
            // A finished generation is saved even when it said nothing (an immediate end of text).
            let created = store.reply_writer(conversation, user)?;
            observer.reply_created(created.id());
            writer = Some(created);
        }
        let reply = finish(writer, &result)?;
        let reply = reply
            .map(|id| find(store.messages(conversation)?, id))
            .transpose()?;
        Ok(TurnOutcome {
            reply,
            result,
            placement: prepared.decision,
        })
    }
}

/// The reply being saved: created with the first piece of text.
struct Saving<'s> {
    store: &'s Store,
    conversation: ConversationId,
    user: MessageId,
    writer: Option<ReplyWriter<'s>>,
    failure: Option<StoreError>,
}

impl Saving<'_> {
    /// Saves `text`; returns the reply's id when this piece created it. A store failure cancels
    /// generation, since the reply could not be kept.
    fn push(&mut self, text: &str, cancel: &CancelFlag) -> Option<MessageId> {
        if self.failure.is_some() {
            return None;
        }
        let mut created = None;
        let saved = match self.writer.as_mut() {
            Some(writer) => writer.push(text),
            None => self
                .store
                .reply_writer(self.conversation, self.user)
                .and_then(|mut writer| {
                    created = Some(writer.id());
                    let pushed = writer.push(text);
                    self.writer = Some(writer);
                    pushed
                }),
        };
        if let Err(err) = saved {
            self.failure = Some(err);
            cancel.cancel();
        }
        created
    }
}

/// Ends the reply: complete with its statistics, interrupted when cancelled or failed. The
/// engine's final text (stop strings removed) replaces what streamed.
fn finish(
    writer: Option<ReplyWriter<'_>>,
    result: &Result<GenerateResult, CoreError>,
) -> CoreResult<Option<MessageId>> {
    let Some(mut writer) = writer else {
        return Ok(None);
    };
    let id = match result {
        Ok(result) => {
            if !result.text.is_empty() {
                writer.set_content(&result.text);
            }
            let stats = stats_of(result);
            if result.stop_reason == StopReason::Cancelled {
                writer.interrupt(Some(&stats))?
            } else {
                writer.finish(Some(&stats))?
            }
        }
        Err(_) => writer.interrupt(None)?,
    };
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(clean_title("  a\n b ").unwrap(), "a b");
        assert!(clean_title("   ").is_err());
        assert!(clean_title(&"x".repeat(121)).is_err());
        assert_eq!(title_from("\n  Hello   there\nsecond line"), "Hello there");
        let t = title_from(&"word ".repeat(30));
        assert!(t.ends_with('…'));
        assert_eq!(t.chars().count(), 60);
    }
}
