//! The whole router over a fake backend: shapes of answers and errors, guards, queue and cancel.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use canopy_core::{CancelFlag, CoreResult, GenerateRequest, GenerateResult, Prompt, WorkerError};
use canopy_types::{Placement, Plan, Sampling, StopReason};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{queue, routes, Backend, ServeConfig, ServeOptions};

/// Streams the prompt's words back; special prompts fail, block or run until cancelled.
struct Fake {
    /// Released once per blocking job.
    gate: Arc<Mutex<mpsc::Receiver<()>>>,
    /// How each job ended.
    ended: mpsc::Sender<StopReason>,
    /// The sampling each job was asked for.
    sampled: mpsc::Sender<Sampling>,
}

impl Backend for Fake {
    fn generate(
        &mut self,
        request: GenerateRequest,
        cancel: &CancelFlag,
        on_text: &mut dyn FnMut(&str),
    ) -> CoreResult<GenerateResult> {
        let _ = self.sampled.send(request.sampling);
        let prompt = match &request.prompt {
            Prompt::Chat(m) => m.last().map(|m| m.content.clone()).unwrap_or_default(),
            Prompt::Raw(s) => s.clone(),
        };
        let mut text = String::new();
        let mut stop = StopReason::Eos;
        match prompt.as_str() {
            "refuse" => return Err(WorkerError::User("the prompt is too long".into()).into()),
            "crash" => {
                on_text("partial");
                return Err(WorkerError::Crashed {
                    status: "killed by signal 9 (SIGKILL)".into(),
                    detail: String::new(),
                }
                .into());
            }
            "block" => {
                let _ = self.gate.lock().unwrap().recv();
            }
            "forever" => {
                while !cancel.is_cancelled() {
                    on_text("more ");
                    std::thread::sleep(Duration::from_millis(5));
                }
                stop = StopReason::Cancelled;
            }
            _ => {}
        }
        if stop != StopReason::Cancelled {
            for word in prompt
                .split_inclusive(' ')
                .take(request.max_tokens as usize)
            {
                on_text(word);
                text.push_str(word);
            }
        }
        let _ = self.ended.send(stop);
        Ok(GenerateResult {
            text,
            tokens: 3,
            prefill_tokens: 5,
            prefill_ms: 1.0,
            decode_ms: 2.0,
            tokens_per_second: 1500.0,
            stop_reason: stop,
            plan: "none".into(),
            steps: 3,
            mean_accepted_per_step: 0.0,
            accepted_histogram: vec![3],
            budget: 1,
            depth: 0,
            draft_ms: 0.0,
            verify_ms: 2.0,
            provenance: Vec::new(),
            token_ids: Vec::new(),
            margins: Vec::new(),
            target_weights: None,
            prefix_reused_tokens: 0,
            lookup_tokens: 0,
            lookup_accepted: 0,
            cost_disagreement: None,
            gpu_free_bytes: None,
        })
    }
}

struct Harness {
    app: Router,
    release: mpsc::Sender<()>,
    ended: mpsc::Receiver<StopReason>,
    sampled: mpsc::Receiver<Sampling>,
}

/// The request every test server fills in: a raw prompt for one token of a small model.
pub(crate) fn request_template() -> GenerateRequest {
    GenerateRequest {
        target: PathBuf::from("/models/smol.gguf"),
        draft: None,
        prompt: Prompt::Raw(String::new()),
        sampling: Sampling::chat_default(),
        max_tokens: 1,
        stop: Vec::new(),
        plan: Plan::None,
        context: None,
        placement: Placement::Cpu,
        acceptance: None,
        costs: None,
        inexact_cache: false,
        rpc: Vec::new(),
        rpc_layers: None,
        kv_cache_bytes: 0,
        no_lookup: false,
        gpu_floor_bytes: 0,
    }
}

fn config() -> ServeConfig {
    ServeConfig {
        options: ServeOptions {
            max_body: 1000,
            queue: 1,
            ..ServeOptions::loopback(8080)
        },
        model_id: "smol".into(),
        context: 256,
        template: request_template(),
    }
}

/// [`config`] with its network settings changed by `change`.
fn with_options(change: impl FnOnce(&mut ServeOptions)) -> ServeConfig {
    let mut config = config();
    change(&mut config.options);
    config
}

fn harness(config: ServeConfig) -> Harness {
    let (release, gate) = mpsc::channel();
    let (ended_tx, ended) = mpsc::channel();
    let (sampled_tx, sampled) = mpsc::channel();
    let fake = Fake {
        gate: Arc::new(Mutex::new(gate)),
        ended: ended_tx,
        sampled: sampled_tx,
    };
    let (queue, _worker) = queue::start(Box::new(fake), config.options.queue);
    let app = routes::router(config, "127.0.0.1:8080".parse().unwrap(), queue);
    Harness {
        app,
        release,
        ended,
        sampled,
    }
}

fn post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn chat_body(content: &str, extra: Value) -> Value {
    let mut body = json!({"model": "smol", "messages": [{"role": "user", "content": content}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn send_json(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let (status, _, body) = send(app, request).await;
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, value)
}

/// Asserts an OpenAI-shaped error and returns its code.
fn error_code(body: &Value) -> String {
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    error["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {body}"))
        .to_owned()
}

/// The `data:` payloads of a server-sent event stream.
fn events(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn lists_the_one_model() {
    let h = harness(config());
    let request = Request::get("/v1/models")
        .header(header::HOST, "localhost:8080")
        .body(Body::empty())
        .unwrap();
    let (status, body) = send_json(&h.app, request).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["id"], "smol");
    assert_eq!(body["data"][0]["owned_by"], "canopy");
}

#[tokio::test]
async fn a_chat_answer_has_usage_and_statistics() {
    let h = harness(config());
    let (status, body) = send_json(
        &h.app,
        post(
            "/v1/chat/completions",
            &chat_body("one two three", json!({})),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "one two three");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["total_tokens"], 8);
    assert_eq!(body["canopy"]["plan"], "none");
    assert_eq!(body["canopy"]["placement"], "cpu");
    assert!(body["canopy"]["steps"].is_u64());
}

#[tokio::test]
async fn a_streamed_chat_ends_with_usage_and_done() {
    let h = harness(config());
    let body = chat_body(
        "one two three",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    let (status, headers, text) = send(&h.app, post("/v1/chat/completions", &body)).await;
    assert_eq!(status, 200);
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    let events = events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, "one two three");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["canopy"]["plan"], "none");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn completions_take_a_raw_prompt() {
    let h = harness(config());
    let body = json!({"model": "smol", "prompt": "a b c d", "max_tokens": 2});
    let (status, body) = send_json(&h.app, post("/v1/completions", &body)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "a b ");
    let body = json!({"model": "smol", "prompt": "a b", "stream": true});
    let (_, _, text) = send(&h.app, post("/v1/completions", &body)).await;
    let events = events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["choices"][0]["text"], "a ");
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let h = harness(config());
    let raw = |body: &str| {
        Request::post("/v1/chat/completions")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let (status, body) = send_json(&h.app, raw("{not json")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let big = format!("{{\"model\": \"{}\"}}", "x".repeat(2000));
    let (status, body) = send_json(&h.app, raw(&big)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large")
    );
    let (status, body) = send_json(
        &h.app,
        post(
            "/v1/chat/completions",
            &chat_body("x", json!({"model": "gpt-4"})),
        ),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "model_not_found")
    );
    let (status, body) = send_json(
        &h.app,
        post("/v1/chat/completions", &chat_body("x", json!({"n": 2}))),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "unsupported_parameter")
    );
    assert_eq!(body["error"]["param"], "n");
    let (status, body) = send_json(
        &h.app,
        post(
            "/v1/chat/completions",
            &chat_body("x", json!({"max_tokens": 1000})),
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("context"),
        "{body}"
    );
    // The backend's user errors are the client's fault too.
    let (status, body) = send_json(
        &h.app,
        post("/v1/chat/completions", &chat_body("refuse", json!({}))),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too long"),
        "{body}"
    );
    let (status, body) = send_json(&h.app, post("/v1/nothing", &json!({}))).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let request = Request::get("/v1/chat/completions")
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::empty())
        .unwrap();
    let (status, body) = send_json(&h.app, request).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    // Still serving.
    let (status, _) = send_json(
        &h.app,
        post("/v1/chat/completions", &chat_body("fine", json!({}))),
    )
    .await;
    assert_eq!(status, 200);
}

/// The standard penalties and llama.cpp's extensions reach the backend; an out-of-range one is a
/// 400 naming it, and reaches nothing.
#[tokio::test]
async fn sampling_parameters_reach_the_backend_or_are_refused_by_name() {
    let h = harness(config());
    let extra = json!({
        "temperature": 0.5, "top_p": 0.9, "top_k": 20, "min_p": 0.1, "repeat_penalty": 1.2,
        "repeat_last_n": 32, "frequency_penalty": 0.3, "presence_penalty": -0.4, "seed": 9,
    });
    let (status, body) = send_json(
        &h.app,
        post("/v1/chat/completions", &chat_body("hi", extra)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let s = h.sampled.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (s.temperature(), s.top_p(), s.top_k(), s.min_p(), s.seed()),
        (0.5, 0.9, 20, 0.1, 9)
    );
    let p = s.penalties();
    assert_eq!(
        (p.repeat, p.last_n, p.frequency, p.presence),
        (1.2, 32, 0.3, -0.4)
    );

    // Omitted: the API's defaults, and Canopy's for the extensions.
    let (status, _) = send_json(
        &h.app,
        post("/v1/completions", &json!({"model": "smol", "prompt": "hi"})),
    )
    .await;
    assert_eq!(status, 200);
    let s = h.sampled.recv_timeout(Duration::from_secs(10)).unwrap();
    let default = Sampling::chat_default();
    assert_eq!((s.temperature(), s.top_p()), (1.0, 1.0));
    assert_eq!((s.top_k(), s.min_p()), (default.top_k(), default.min_p()));
    assert_eq!(s.penalties(), default.penalties());

    for (param, value) in [
        ("min_p", json!(2)),
        ("top_k", json!(5000)),
        ("repeat_penalty", json!(-1)),
        ("repeat_last_n", json!(100_000)),
        ("frequency_penalty", json!(9)),
        ("presence_penalty", json!(-9)),
    ] {
        let body = chat_body("hi", json!({ param: value }));
        let (status, body) = send_json(&h.app, post("/v1/chat/completions", &body)).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{param}"
        );
        assert_eq!(body["error"]["param"], param, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(param),
            "{body}"
        );
    }
    assert!(
        h.sampled.try_recv().is_err(),
        "a refused request reached the backend"
    );
}

#[tokio::test]
async fn a_foreign_host_header_is_refused() {
    let h = harness(config());
    for host in [Some("evil.example:8080"), Some("127.0.0.1:9999"), None] {
        let mut request = Request::get("/v1/models");
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        let (status, body) = send_json(&h.app, request.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host:?}");
        assert_eq!(error_code(&body), "host_not_allowed");
    }
}

#[tokio::test]
async fn an_api_key_guards_the_api() {
    let h = harness(with_options(|o| o.api_key = Some("sesame".into())));
    let models = |auth: Option<&str>| {
        let mut request = Request::get("/v1/models").header(header::HOST, "127.0.0.1:8080");
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        request.body(Body::empty()).unwrap()
    };
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("sesame"),
        Some("Bearer sesame2"),
    ] {
        let (status, body) = send_json(&h.app, models(auth)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(error_code(&body), "invalid_api_key");
    }
    let (status, _) = send_json(&h.app, models(Some("Bearer sesame"))).await;
    assert_eq!(status, 200);
    let health = Request::get("/health")
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send_json(&h.app, health).await.0, 200);
}

#[tokio::test]
async fn cors_answers_only_allowed_origins() {
    let h = harness(with_options(|o| {
        o.allow_origins = vec!["http://localhost:3000".into()]
    }));
    let preflight = |origin: &str| {
        Request::options("/v1/chat/completions")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap()
    };
    let (_, headers, _) = send(&h.app, preflight("http://localhost:3000")).await;
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://localhost:3000"
    );
    let (_, headers, _) = send(&h.app, preflight("http://evil.example")).await;
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    // Without an allow-list there are no CORS headers at all.
    let h = harness(config());
    let (_, headers, _) = send(&h.app, preflight("http://localhost:3000")).await;
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let h = harness(config()); // queue: 1
    let app = h.app.clone();
    let running = tokio::spawn(async move {
        send_json(
            &app,
            post("/v1/chat/completions", &chat_body("block", json!({}))),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let app = h.app.clone();
    let waiting = tokio::spawn(async move {
        send_json(
            &app,
            post("/v1/chat/completions", &chat_body("queued", json!({}))),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, headers, body) = send(
        &h.app,
        post("/v1/chat/completions", &chat_body("x", json!({}))),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert_eq!(
        error_code(&serde_json::from_str(&body).unwrap()),
        "queue_full"
    );
    h.release.send(()).unwrap();
    assert_eq!(running.await.unwrap().0, 200);
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "queued");
}

#[tokio::test]
async fn a_dropped_stream_cancels_its_generation() {
    let h = harness(config());
    let body = chat_body("forever", json!({"stream": true}));
    let response = h
        .app
        .clone()
        .oneshot(post("/v1/chat/completions", &body))
        .await
        .unwrap();
    let mut body = response.into_body();
    // Read a few events, then hang up.
    for _ in 0..3 {
        body.frame().await.unwrap().unwrap();
    }
    drop(body);
    let ended = tokio::task::spawn_blocking(move || h.ended.recv_timeout(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(ended, Ok(StopReason::Cancelled));
}

#[tokio::test]
async fn a_crash_is_503_or_an_error_event() {
    let h = harness(config());
    let (status, body) = send_json(
        &h.app,
        post("/v1/chat/completions", &chat_body("crash", json!({}))),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "worker_crashed")
    );
    let (status, _, text) = send(
        &h.app,
        post(
            "/v1/chat/completions",
            &chat_body("crash", json!({"stream": true})),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let events = events(&text);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(error_code(&last), "worker_crashed");
    assert!(!text.contains("[DONE]"), "{text}");
    let (status, _) = send_json(
        &h.app,
        post("/v1/chat/completions", &chat_body("after", json!({}))),
    )
    .await;
    assert_eq!(status, 200);
}

#[test]
fn open_hosts_need_a_key() {
    let open = with_options(|o| o.host = "0.0.0.0".parse().unwrap());
    assert!(matches!(
        open.validate(),
        Err(crate::ServeError::OpenWithoutKey(_))
    ));
    let mut keyed = open;
    keyed.options.api_key = Some("k".into());
    assert!(keyed.validate().is_ok());
    let bad_origin = with_options(|o| o.allow_origins = vec!["*".into()]);
    assert!(bad_origin.validate().is_err());
    assert!(config().validate().is_ok());
}
