//! The chat history as every front end reads and edits it: listing, reading, search, renaming,
//! deleting, export and import. Its rules (a search's length, a title's form) are written here once.

use canopy_store::{Conversation, ConversationId, Message, MessageId, SearchHit};

use crate::chat::clean_title;
use crate::error::{CoreError, CoreResult};
use crate::Core;

/// The longest search, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;

/// How a conversation is exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// For people: a Markdown transcript of the conversation's current branch.
    Markdown,
    /// For `import`: every message, branches included.
    Json,
}

impl Core {
    /// Every conversation, most recently updated first.
    ///
    /// # Errors
    /// When the history cannot be read.
    pub fn conversations(&self) -> CoreResult<Vec<Conversation>> {
        Ok(self.store()?.list_conversations()?)
    }

    /// One conversation.
    ///
    /// # Errors
    /// Not found for an unknown id.
    pub fn conversation(&self, id: ConversationId) -> CoreResult<Conversation> {
        Ok(self.store()?.conversation(id)?)
    }

    /// A conversation's messages, every branch, oldest first.
    ///
    /// # Errors
    /// Not found for an unknown id.
    pub fn messages(&self, id: ConversationId) -> CoreResult<Vec<Message>> {
        Ok(self.store()?.messages(id)?)
    }

    /// The newest message of the conversation's newest branch, where a new message continues it.
    ///
    /// # Errors
    /// Not found for an unknown id.
    pub fn latest_leaf(&self, id: ConversationId) -> CoreResult<Option<MessageId>> {
        Ok(self.store()?.latest_leaf(id)?)
    }

    /// Messages matching `query` (full-text), best first; an empty query matches nothing.
    ///
    /// # Errors
    /// A user error for a query over [`MAX_SEARCH_CHARS`] characters.
    pub fn search_messages(&self, query: &str) -> CoreResult<Vec<SearchHit>> {
        let query = query.trim();
        if query.is_empty() {
            return Ok(Vec::new());
        }
        if query.chars().count() > MAX_SEARCH_CHARS {
            return Err(CoreError::user(format!(
                "search for at most {MAX_SEARCH_CHARS} characters"
            )));
        }
        Ok(self.store()?.search(query)?)
    }

    /// Gives a conversation a new title (one line, trimmed, not empty).
    ///
    /// # Errors
    /// A user error for an empty title; not found for an unknown id.
    pub fn rename_conversation(&self, id: ConversationId, title: &str) -> CoreResult<()> {
        let title = clean_title(title)?;
        Ok(self.store()?.rename_conversation(id, &title)?)
    }

    /// Deletes a conversation and its messages.
    ///
    /// # Errors
    /// Not found for an unknown id.
    pub fn delete_conversation(&self, id: ConversationId) -> CoreResult<()> {
        Ok(self.store()?.delete_conversation(id)?)
    }

    /// A conversation as text in `format`.
    ///
    /// # Errors
    /// Not found for an unknown id.
    pub fn export_conversation(
        &self,
        id: ConversationId,
        format: ExportFormat,
    ) -> CoreResult<String> {
        let store = self.store()?;
        Ok(match format {
            ExportFormat::Markdown => store.export_markdown(id)?,
            ExportFormat::Json => store.export_json(id)?,
        })
    }

    /// Adds a conversation exported as JSON; returns it.
    ///
    /// # Errors
    /// A user error naming what is wrong with a text that is not such an export.
    pub fn import_conversation(&self, json: &str) -> CoreResult<Conversation> {
        let store = self.store()?;
        let id = store.import_json(json)?;
        Ok(store.conversation(id)?)
    }
}
