//! The HTTP surface: routes, layers, and the translation of backend updates into OpenAI responses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use canopy_core::GenerateResult;
use canopy_types::Placement;
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

use crate::api::{self, Endpoint, Parsed, RequestBounds};
use crate::error::ApiError;
use crate::queue::{Queue, Ticket, Update};
use crate::security::{self, AllowedHosts};
use crate::ServeConfig;

struct AppState {
    config: ServeConfig,
    queue: Queue,
    next_id: AtomicU64,
}

type Shared = Arc<AppState>;

/// The whole application: routes inside the API-key check, body limit and CORS, all inside the
/// `Host` check.
pub fn router(config: ServeConfig, addr: SocketAddr, queue: Queue) -> Router {
    let max_body = config.options.max_body;
    let key = config.options.api_key.clone();
    let origins = config.options.allow_origins.clone();
    let state = Arc::new(AppState {
        config,
        queue,
        next_id: AtomicU64::new(1),
    });
    let mut api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions));
    if let Some(key) = key {
        api = api.layer(middleware::from_fn_with_state(
            Arc::new(key),
            security::check_key,
        ));
    }
    let mut app = Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state)
        // tower-http enforces the limit (before reading when Content-Length says it is too
        // large); axum's own default limit would otherwise apply first.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(middleware::map_response(move |r: Response| async move {
            shape_too_large(r, max_body)
        }));
    if !origins.is_empty() {
        let origins: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    app.layer(middleware::from_fn_with_state(
        Arc::new(AllowedHosts::for_addr(addr)),
        security::check_host,
    ))
}

/// tower-http's 413 is plain text; clients expect an OpenAI error.
fn shape_too_large(response: Response, limit: usize) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        ApiError::too_large(limit).into_response()
    } else {
        response
    }
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn models(State(state): State<Shared>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.config.model_id,
            "object": "model",
            "created": 0,
            "owned_by": "canopy",
        }],
    }))
}

async fn chat(State(state): State<Shared>, body: Result<Json<Value>, JsonRejection>) -> Response {
    generate(state, Endpoint::Chat, body).await
}

async fn completions(
    State(state): State<Shared>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    generate(state, Endpoint::Completions, body).await
}

async fn generate(
    state: Shared,
    endpoint: Endpoint,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    match start(&state, endpoint, body) {
        Ok((parsed, ticket)) => {
            let reply = Reply::new(&state, endpoint);
            if parsed.stream {
                stream(reply, parsed, ticket).into_response()
            } else {
                complete(reply, ticket).await
            }
        }
        Err(err) => err.into_response(),
    }
}

fn start(
    state: &AppState,
    endpoint: Endpoint,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(Parsed, Ticket), ApiError> {
    let Json(body) = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(state.config.options.max_body),
        _ => ApiError::invalid(format!("invalid JSON body: {}", rejection.body_text())),
    })?;
    let limits = RequestBounds {
        model_id: &state.config.model_id,
        context: state.config.context,
        template: &state.config.template,
    };
    let parsed = api::parse(endpoint, body, &limits)?;
    let ticket = state.queue.submit(parsed.request.clone())?;
    Ok((parsed, ticket))
}

/// What every document of one reply shares.
struct Reply {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
    placement: Placement,
}

impl Reply {
    fn new(state: &AppState, endpoint: Endpoint) -> Self {
        let n = state.next_id.fetch_add(1, Ordering::Relaxed);
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completions => "cmpl",
        };
        Reply {
            endpoint,
            id: format!("{prefix}-canopy-{n}"),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            model: state.config.model_id.clone(),
            placement: state.config.template.placement,
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }

    fn document(&self, chunk: bool, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(chunk),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        })
    }

    /// The non-streamed answer.
    fn full(&self, result: &GenerateResult) -> Value {
        let finish = api::finish_reason(result.stop_reason);
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "logprobs": null,
                "finish_reason": finish,
            }),
            Endpoint::Completions => json!({
                "index": 0,
                "text": result.text,
                "logprobs": null,
                "finish_reason": finish,
            }),
        };
        let mut doc = self.document(false, json!([choice]));
        doc["usage"] = api::usage(result);
        doc["canopy"] = api::statistics(result, self.placement);
        doc
    }

    /// A streamed piece of text (`first` also carries the chat role).
    fn piece(&self, text: &str, first: bool, finish: Option<&str>) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let delta = match (first, finish) {
                    (true, _) => json!({"role": "assistant", "content": text}),
                    (false, Some(_)) => json!({}),
                    (false, None) => json!({"content": text}),
                };
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
            Endpoint::Completions => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
            }
        };
        self.document(true, json!([choice]))
    }
}

/// Waits for the whole generation. Dropping this future (the client left) drops the ticket,
/// which cancels the job.
async fn complete(reply: Reply, mut ticket: Ticket) -> Response {
    while let Some(update) = ticket.updates.recv().await {
        match update {
            Update::Text(_) => {}
            Update::Done(outcome) => {
                return match *outcome {
                    Ok(result) => Json(reply.full(&result)).into_response(),
                    Err(err) => ApiError::from(err).into_response(),
                }
            }
        }
    }
    ApiError::shutting_down().into_response()
}

enum Phase {
    Running,
    Finished,
}

/// Server-sent events: a role chunk, text chunks, a final chunk with `finish_reason` (and the
/// `canopy` statistics), a usage chunk when asked, then `[DONE]`. A failure becomes one
/// `{"error": ...}` event and ends the stream. Dropping the stream cancels the job.
fn stream(
    reply: Reply,
    parsed: Parsed,
    ticket: Ticket,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let first = match reply.endpoint {
        Endpoint::Chat => Some(data(&reply.piece("", true, None))),
        Endpoint::Completions => None,
    };
    let include_usage = parsed.include_usage;
    let body = stream::unfold(
        (ticket, reply, Phase::Running),
        move |(mut ticket, reply, phase)| async move {
            if let Phase::Finished = phase {
                return None;
            }
            let events = match ticket.updates.recv().await {
                Some(Update::Text(text)) => {
                    let events = vec![data(&reply.piece(&text, false, None))];
                    return Some((events, (ticket, reply, Phase::Running)));
                }
                Some(Update::Done(outcome)) => match *outcome {
                    Ok(result) => finish(&reply, &result, include_usage),
                    Err(err) => vec![data(&ApiError::from(err).body())],
                },
                None => vec![data(&ApiError::shutting_down().body())],
            };
            Some((events, (ticket, reply, Phase::Finished)))
        },
    )
    .flat_map(|events| stream::iter(events.into_iter().map(Ok)));
    Sse::new(stream::iter(first.map(Ok)).chain(body))
}

/// The last events of a stream that succeeded.
fn finish(reply: &Reply, result: &GenerateResult, include_usage: bool) -> Vec<Event> {
    let mut last = reply.piece("", false, Some(api::finish_reason(result.stop_reason)));
    last["canopy"] = api::statistics(result, reply.placement);
    let mut events = vec![data(&last)];
    if include_usage {
        let mut usage = reply.document(true, json!([]));
        usage["usage"] = api::usage(result);
        events.push(data(&usage));
    }
    events.push(Event::default().data("[DONE]"));
    events
}

fn data(value: &Value) -> Event {
    Event::default().data(value.to_string())
}
