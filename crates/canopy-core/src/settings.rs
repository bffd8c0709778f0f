//! The chat's settings: how replies are sampled, how long they may be, how to speculate and where
//! the target runs. One type for the app's settings panel, `canopy chat`'s flags and the store.

use canopy_types::{Placement, Plan, Sampling};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, CoreResult};
use crate::Core;

/// Longest reply a chat turn generates.
pub const MAX_REPLY_TOKENS: u32 = 32_768;

const SETTINGS_KEY: &str = "chat.settings";
const SERVER_KEY: &str = "server.settings";
const PAIR_KEY: &str = "chat.models";

/// How a chat generates its replies.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ChatSettings {
    #[serde(flatten)]
    #[cfg_attr(feature = "ts", ts(flatten))]
    pub sampling: Sampling,
    /// Most tokens per reply (1..=32768).
    pub max_tokens: u32,
    /// Used when the conversation has a draft; plain decoding otherwise.
    pub plan: Plan,
    pub placement: Placement,
    /// Context in tokens; `None` = the model's training context, at most 4096.
    #[serde(default)]
    pub context: Option<u32>,
    /// RPC helpers (`host:port`) holding part of the target's layers; empty = this machine only.
    #[serde(default)]
    pub rpc: Vec<String>,
}

impl Default for ChatSettings {
    /// [`Sampling::chat_default`], 512 tokens per reply, `auto` plan and placement, the model's
    /// context, no RPC helpers.
    fn default() -> Self {
        ChatSettings {
            sampling: Sampling::chat_default(),
            max_tokens: 512,
            plan: Plan::Auto,
            placement: Placement::Auto,
            context: None,
            rpc: Vec::new(),
        }
    }
}

impl ChatSettings {
    /// Checks what the types cannot: the reply length and the RPC helpers.
    ///
    /// # Errors
    /// A user error when `max_tokens` is outside `1..=MAX_REPLY_TOKENS` or a helper is not
    /// `host:port`.
    pub fn validate(&self) -> CoreResult<()> {
        if !(1..=MAX_REPLY_TOKENS).contains(&self.max_tokens) {
            return Err(CoreError::user(format!(
                "max tokens must be between 1 and {MAX_REPLY_TOKENS}"
            )));
        }
        canopy_worker::validate_rpc_endpoints(&self.rpc).map_err(|e| CoreError::user(e.to_string()))
    }
}

/// The app's local OpenAI-compatible server: whether it runs, on which loopback port, and the
/// key clients must send. It serves the default model pair with the chat's plan and placement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ServerSettings {
    pub enabled: bool,
    /// 1024..=65535.
    pub port: u16,
    /// When set, clients must send `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            enabled: false,
            port: 8080,
            api_key: None,
        }
    }
}

impl ServerSettings {
    /// Checks the port and the key.
    ///
    /// # Errors
    /// A user error for a privileged port, or a key that is empty or has spaces or control
    /// characters.
    pub fn validate(&self) -> CoreResult<()> {
        if self.port < 1024 {
            return Err(CoreError::user(format!(
                "port {} is reserved for the system: use 1024 to 65535",
                self.port
            )));
        }
        if let Some(key) = &self.api_key {
            if key.is_empty()
                || key.len() > 256
                || key.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(CoreError::user(
                    "the API key must be 1 to 256 characters without spaces",
                ));
            }
        }
        Ok(())
    }
}

/// The target and draft models a new conversation starts with: library ids or file paths.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ModelPair {
    pub target: Option<String>,
    pub draft: Option<String>,
}

impl Core {
    /// The saved chat settings, or the defaults when none (or an unreadable older form) are saved.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn chat_settings(&self) -> CoreResult<ChatSettings> {
        let stored = self.store()?.get_setting(SETTINGS_KEY)?;
        Ok(stored
            .and_then(|json| serde_json::from_str::<ChatSettings>(&json).ok())
            .filter(|s| s.validate().is_ok())
            .unwrap_or_default())
    }

    /// Saves the chat settings.
    ///
    /// # Errors
    /// A user error for an invalid reply length; a store error when it cannot be written.
    pub fn save_chat_settings(&self, settings: &ChatSettings) -> CoreResult<()> {
        settings.validate()?;
        let json = serde_json::to_string(settings).map_err(CoreError::internal)?;
        Ok(self.store()?.set_setting(SETTINGS_KEY, &json)?)
    }

    /// The saved server settings, or the defaults (off, port 8080, no key).
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn server_settings(&self) -> CoreResult<ServerSettings> {
        let stored = self.store()?.get_setting(SERVER_KEY)?;
        Ok(stored
            .and_then(|json| serde_json::from_str::<ServerSettings>(&json).ok())
            .filter(|s| s.validate().is_ok())
            .unwrap_or_default())
    }

    /// Saves the server settings.
    ///
    /// # Errors
    /// A user error for invalid settings; a store error when they cannot be written.
    pub fn save_server_settings(&self, settings: &ServerSettings) -> CoreResult<()> {
        settings.validate()?;
        let json = serde_json::to_string(settings).map_err(CoreError::internal)?;
        Ok(self.store()?.set_setting(SERVER_KEY, &json)?)
    }

    /// The models new conversations start with.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn default_pair(&self) -> CoreResult<ModelPair> {
        let stored = self.store()?.get_setting(PAIR_KEY)?;
        Ok(stored
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    /// Checks and saves the models new conversations start with.
    ///
    /// # Errors
    /// When a model is unknown or its file is gone, or the draft cannot draft for the target.
    pub fn set_default_pair(&self, pair: &ModelPair) -> CoreResult<()> {
        self.check_model_pair(pair)?;
        let json = serde_json::to_string(pair).map_err(CoreError::internal)?;
        Ok(self.store()?.set_setting(PAIR_KEY, &json)?)
    }
}
