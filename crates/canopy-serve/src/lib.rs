//! An OpenAI-compatible HTTP server on 127.0.0.1 over one inference [`Backend`].
//!
//! Endpoints: `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions` (both also
//! streamed as server-sent events) and `GET /health`. Requests are translated into the protocol's
//! [`GenerateRequest`], run one at a time, first come first served, by a single backend on its own
//! thread; waiting requests sit in a bounded queue (full → 429). A client that goes away cancels
//! its generation.
//!
//! Security: the server refuses to listen beyond loopback without an API key, checks the `Host`
//! header against the names it is bound to (DNS rebinding), answers CORS only for an exact origin
//! allow-list, caps request bodies and token counts, and compares API keys in constant time.
//!
//! Architecture invariant: this crate knows nothing of llama.cpp or of the command line; it depends
//! on the application core and the shared types only. Every front end starts its server with
//! [`Server::start`], which has the core prepare the model once and run each request
//! ([`CoreBackend`]); the router talks to inference only through [`Backend`], so its tests run
//! with a fake one.

mod api;
mod error;
mod queue;
mod routes;
mod security;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use canopy_core::{
    CancelFlag, Core, CoreError, CoreResult, GenerateRequest, GenerateResult, ModelChoice, Served,
};

pub use error::ApiError;

/// Runs generations for the server, one at a time, on a thread of its own.
pub trait Backend: Send + 'static {
    /// Generates text for `request`, calling `on_text` with each streamed piece; stops early (with
    /// [`canopy_types::StopReason::Cancelled`]) once `cancel` is set.
    ///
    /// # Errors
    /// A [`CoreError`] of kind user when the request cannot be served as asked (a prompt longer
    /// than the context, say), [`CoreError::Worker`] when the inference process died or failed.
    fn generate(
        &mut self,
        request: GenerateRequest,
        cancel: &CancelFlag,
        on_text: &mut dyn FnMut(&str),
    ) -> CoreResult<GenerateResult>;
}

/// The real backend: the application core, running each request with the model half it prepared
/// ([`Core::run_served`]). A crashed worker is reported once and replaced on the next request.
pub struct CoreBackend {
    core: Arc<Core>,
    served: Served,
}

impl CoreBackend {
    pub fn new(core: Arc<Core>, served: Served) -> CoreBackend {
        CoreBackend { core, served }
    }
}

impl Backend for CoreBackend {
    fn generate(
        &mut self,
        request: GenerateRequest,
        cancel: &CancelFlag,
        on_text: &mut dyn FnMut(&str),
    ) -> CoreResult<GenerateResult> {
        self.core.run_served(&self.served, request, cancel, on_text)
    }
}

/// Default cap on request bodies: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// Default number of requests that may wait for the backend.
pub const DEFAULT_QUEUE: usize = 16;

/// The network half of a server's settings: everything but the model, which the core prepares.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The address to listen on; loopback unless `api_key` is set.
    pub host: IpAddr,
    /// The port; 0 picks a free one ([`Server::local_addr`] tells which).
    pub port: u16,
    /// When set, every `/v1` request needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Origins allowed to call the server from a browser (exact matches); empty = none.
    pub allow_origins: Vec<String>,
    /// Largest accepted request body in bytes.
    pub max_body: usize,
    /// Requests that may wait while one runs; one more is refused with 429.
    pub queue: usize,
}

impl ServeOptions {
    /// 127.0.0.1 on `port`, no key, no browser origins, the default limits.
    pub fn loopback(port: u16) -> ServeOptions {
        ServeOptions {
            host: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port,
            api_key: None,
            allow_origins: Vec::new(),
            max_body: DEFAULT_MAX_BODY,
            queue: DEFAULT_QUEUE,
        }
    }

    /// Checks the host, key and origins.
    ///
    /// # Errors
    /// [`ServeError::OpenWithoutKey`] for a non-loopback host without an API key, and the other
    /// variants for an empty key or a malformed origin.
    pub fn validate(&self) -> Result<(), ServeError> {
        match &self.api_key {
            Some(key) if key.is_empty() => return Err(ServeError::EmptyKey),
            None if !self.host.is_loopback() => return Err(ServeError::OpenWithoutKey(self.host)),
            _ => {}
        }
        for origin in &self.allow_origins {
            security::check_origin(origin).map_err(|()| ServeError::BadOrigin(origin.clone()))?;
        }
        Ok(())
    }
}

/// Validated settings of one server: the network's and the model's.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub options: ServeOptions,
    /// The model id clients name (`model`), e.g. the target file's stem.
    pub model_id: String,
    /// The context in tokens that every request runs with; `max_tokens` beyond it is refused.
    pub context: u32,
    /// The model half of every request (target, draft, plan, placement, planning data). Its
    /// `prompt`, `sampling`, `max_tokens`, `stop` and `context` are replaced per request.
    pub template: GenerateRequest,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0} without --api-key: anyone on the network could use the model; set an API key or bind 127.0.0.1")]
    OpenWithoutKey(IpAddr),
    #[error("the API key must not be empty")]
    EmptyKey,
    #[error("invalid allowed origin {0:?}: use scheme://host[:port], e.g. http://localhost:3000")]
    BadOrigin(String),
    #[error("the context must be at least 16 tokens, got {0}")]
    Context(u32),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The model could not be prepared (the core's error says what to change).
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

impl ServeConfig {
    /// `options` serving `served`.
    pub fn for_served(options: ServeOptions, served: &Served) -> ServeConfig {
        ServeConfig {
            options,
            model_id: served.model_id().to_owned(),
            context: served.context(),
            template: served.template().clone(),
        }
    }

    /// Checks the settings that do not need the network.
    ///
    /// # Errors
    /// As [`ServeOptions::validate`], and [`ServeError::Context`] for a context below 16 tokens.
    pub fn validate(&self) -> Result<(), ServeError> {
        self.options.validate()?;
        if self.context < 16 {
            return Err(ServeError::Context(self.context));
        }
        Ok(())
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: axum::Router,
    addr: SocketAddr,
    worker: queue::WorkerThread,
}

impl Server {
    /// Validates `config`, binds its address and starts the backend's thread.
    ///
    /// # Errors
    /// The [`ServeConfig::validate`] errors, and [`ServeError::Bind`] when the address is taken or
    /// not ours.
    pub async fn bind(config: ServeConfig, backend: impl Backend) -> Result<Server, ServeError> {
        config.validate()?;
        let wanted = SocketAddr::new(config.options.host, config.options.port);
        let listener = tokio::net::TcpListener::bind(wanted)
            .await
            .map_err(|source| ServeError::Bind {
                addr: wanted,
                source,
            })?;
        let addr = listener.local_addr()?;
        let (queue, worker) = queue::start(Box::new(backend), config.options.queue);
        let app = routes::router(config, addr, queue);
        Ok(Server {
            listener,
            app,
            addr,
            worker,
        })
    }

    /// The server of every front end: `choice` prepared once by the core, then served through
    /// it. The network settings are checked before the model files are read.
    ///
    /// # Errors
    /// As [`Server::bind`], and [`ServeError::Core`] when the model choice cannot be prepared.
    pub async fn start(
        core: Arc<Core>,
        choice: &ModelChoice,
        options: ServeOptions,
    ) -> Result<(Server, Served), ServeError> {
        options.validate()?;
        let served = core.prepare_served(choice)?;
        let config = ServeConfig::for_served(options, &served);
        let backend = CoreBackend::new(core, served.clone());
        Ok((Server::bind(config, backend).await?, served))
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops the backend (a running generation is
    /// cancelled).
    ///
    /// # Errors
    /// When accepting connections fails.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            listener,
            app,
            worker,
            ..
        } = self;
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        worker.stop().await;
        served.map_err(ServeError::Io)
    }
}
