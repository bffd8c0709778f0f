//! One model set prepared once and run for many requests (the HTTP server's). Each request brings
//! only its own half (prompt, sampling, length, stop strings); the model half (files, plan,
//! placement, planning data, context, cache budget) is always the one the core prepared, so a
//! front end cannot run anything the core did not check.

use canopy_types::Sampling;
use canopy_worker::{CancelFlag, Event, GenerateRequest, GenerateResult, Prompt};

use crate::error::{CoreError, CoreResult};
use crate::request::{ModelChoice, Prepared};
use crate::Core;

/// A model set ready to serve requests.
#[derive(Clone, Debug)]
pub struct Served {
    prepared: Prepared,
    model_id: String,
    context: u32,
}

impl Served {
    /// The request every served request starts from: its prompt is empty, its sampling the one
    /// default; the rest is what the core prepared.
    pub fn template(&self) -> &GenerateRequest {
        &self.prepared.request
    }

    /// The name clients use for the model: the target file's stem.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The context in tokens every request runs with.
    pub fn context(&self) -> u32 {
        self.context
    }

    /// Where the target's weights live, in one line.
    pub fn placement_summary(&self) -> &str {
        &self.prepared.decision.summary
    }

    /// The profile `auto` plans with, if any.
    pub fn profile(&self) -> Option<&str> {
        self.prepared.profile.as_deref()
    }
}

impl Core {
    /// Prepares `choice` once for many requests, as [`Core::prepare`] prepares one.
    ///
    /// # Errors
    /// As [`Core::prepare`].
    pub fn prepare_served(&self, choice: &ModelChoice) -> CoreResult<Served> {
        let prepared = self.prepare(
            choice,
            Prompt::Raw(String::new()),
            Sampling::chat_default(),
            1,
            Vec::new(),
        )?;
        let context = prepared
            .request
            .context
            .ok_or_else(|| CoreError::internal("a prepared request names its context"))?;
        let model_id = choice
            .target
            .file_stem()
            .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned());
        Ok(Served {
            prepared,
            model_id,
            context,
        })
    }

    /// Runs one request against `served`: the prompt, sampling, length and stop strings of
    /// `request` with the served model half (whatever `request` says of models, plan, placement,
    /// context or cache is replaced). `on_text` receives each streamed piece of text.
    ///
    /// # Errors
    /// A user error for a length of 0 or beyond the context, and as [`Core::generate`].
    pub fn run_served(
        &self,
        served: &Served,
        request: GenerateRequest,
        cancel: &CancelFlag,
        on_text: &mut dyn FnMut(&str),
    ) -> CoreResult<GenerateResult> {
        if request.max_tokens == 0 || request.max_tokens > served.context {
            return Err(CoreError::user(format!(
                "max_tokens must be between 1 and the context, {} tokens; got {}",
                served.context, request.max_tokens
            )));
        }
        let mut prepared = Prepared {
            request: GenerateRequest {
                prompt: request.prompt,
                sampling: request.sampling,
                max_tokens: request.max_tokens,
                stop: request.stop,
                ..served.prepared.request.clone()
            },
            ..served.prepared.clone()
        };
        self.generate(&mut prepared, cancel, &mut |event| {
            if let Event::Token { text, .. } = event {
                on_text(text);
            }
        })
    }
}
