//! The OpenAI request bodies this server accepts, validated into a [`GenerateRequest`], and the
//! response documents it sends.
//!
//! Every parameter is either honoured, accepted at its neutral value (`n: 1`, `logprobs: false`,
//! ...), or refused with a 400 that names it: nothing is silently ignored.
//!
//! Sampling: an omitted parameter that the OpenAI API defines takes the API's default
//! (`temperature` 1, `top_p` 1, `presence_penalty` and `frequency_penalty` 0); an omitted
//! extension (`top_k`, `min_p`, `repeat_penalty`, `repeat_last_n`), which the API leaves to the
//! server, takes Canopy's one default, [`Sampling::chat_default`]'s (top-k 40, min-p 0.05, no
//! repetition penalty, a window of 64 tokens).

use canopy_core::{ChatMessage, GenerateRequest, GenerateResult, Prompt};
use canopy_types::{
    ChatRole, Penalties, Placement, Sampling, SamplingError, StopReason, MAX_REPEAT_LAST_N,
    MAX_TOP_K,
};
use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// Which endpoint a body was sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

/// A validated generation request and how to answer it.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub request: GenerateRequest,
    pub stream: bool,
    pub include_usage: bool,
}

/// Most stop strings per request (OpenAI's limit).
const MAX_STOPS: usize = 4;
/// `max_tokens` when a chat request names none: this, or half the context when that is smaller.
const DEFAULT_CHAT_MAX_TOKENS: u32 = 512;
/// `max_tokens` when a completions request names none (OpenAI's default).
const DEFAULT_COMPLETION_MAX_TOKENS: u32 = 16;

/// What the request must match and fill in.
pub struct RequestBounds<'a> {
    pub model_id: &'a str,
    pub context: u32,
    pub template: &'a GenerateRequest,
}

/// Parses and validates a JSON body for `endpoint`.
///
/// # Errors
/// 400 naming the first bad or unsupported parameter, 404 for another model.
pub fn parse(
    endpoint: Endpoint,
    body: Value,
    limits: &RequestBounds<'_>,
) -> Result<Parsed, ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    };
    // A null is the same as an absent parameter.
    body.retain(|_, v| !v.is_null());
    check_known(endpoint, &body)?;
    check_neutral(endpoint, &body)?;

    let model =
        string(&body, "model")?.ok_or_else(|| ApiError::param("model", "model is required"))?;
    if model != limits.model_id {
        return Err(ApiError::model_not_found(&model, limits.model_id));
    }
    let prompt = match endpoint {
        Endpoint::Chat => Prompt::Chat(messages(&body)?),
        Endpoint::Completions => Prompt::Raw(prompt(&body)?),
    };

    let max_tokens = max_tokens(endpoint, &body, limits.context)?;
    let sampling = sampling(&body)?;
    let stop = stops(&body)?;
    let stream = boolean(&body, "stream")?.unwrap_or(false);
    let include_usage = match body.get("stream_options") {
        None => false,
        Some(_) if !stream => {
            return Err(ApiError::param(
                "stream_options",
                "stream_options is only allowed with stream: true",
            ))
        }
        Some(Value::Object(options)) => {
            if let Some(key) = options.keys().find(|k| *k != "include_usage") {
                return Err(ApiError::unsupported(
                    &format!("stream_options.{key}"),
                    "this option",
                ));
            }
            match options.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(ApiError::param(
                        "stream_options.include_usage",
                        "stream_options.include_usage must be a boolean",
                    ))
                }
            }
        }
        Some(_) => {
            return Err(ApiError::param(
                "stream_options",
                "stream_options must be an object",
            ))
        }
    };

    let request = GenerateRequest {
        prompt,
        sampling,
        max_tokens,
        stop,
        context: Some(limits.context),
        ..limits.template.clone()
    };
    Ok(Parsed {
        request,
        stream,
        include_usage,
    })
}

const COMMON: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "n",
    "logprobs",
    "presence_penalty",
    "frequency_penalty",
    // llama.cpp's extensions, sent by clients as extra fields.
    "top_k",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "logit_bias",
    "user",
];
const CHAT_ONLY: &[&str] = &[
    "messages",
    "max_completion_tokens",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "response_format",
];
const COMPLETION_ONLY: &[&str] = &["prompt", "echo", "suffix", "best_of"];

fn check_known(endpoint: Endpoint, body: &Map<String, Value>) -> Result<(), ApiError> {
    let own = match endpoint {
        Endpoint::Chat => CHAT_ONLY,
        Endpoint::Completions => COMPLETION_ONLY,
    };
    match body
        .keys()
        .find(|k| !COMMON.contains(&k.as_str()) && !own.contains(&k.as_str()))
    {
        Some(key) => Err(ApiError::unsupported(key, "this parameter")),
        None => Ok(()),
    }
}

/// A parameter, whether its value is neutral, and what a non-neutral value would ask for.
type Check<'a> = (&'a str, &'a dyn Fn(&Value) -> bool, &'a str);

/// Parameters accepted only at the value that changes nothing.
fn check_neutral(endpoint: Endpoint, body: &Map<String, Value>) -> Result<(), ApiError> {
    let is_zero = |v: &Value| v.as_f64() == Some(0.0);
    let is_one = |v: &Value| v.as_f64() == Some(1.0);
    let is_false = |v: &Value| v == &Value::Bool(false);
    let is_empty = |v: &Value| match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    let chat_logprobs = |v: &Value| is_false(v);
    let checks: &[Check<'_>] = &[
        ("n", &is_one, "more than one choice (n > 1)"),
        ("best_of", &is_one, "best_of > 1"),
        ("logit_bias", &is_empty, "logit_bias"),
        ("tools", &is_empty, "tool calling"),
        ("functions", &is_empty, "function calling"),
        ("tool_choice", &|v| v == "none", "tool calling"),
        ("function_call", &|v| v == "none", "function calling"),
        ("parallel_tool_calls", &|_| true, ""),
        ("echo", &is_false, "echoing the prompt"),
        ("suffix", &|v| v == "", "a suffix"),
        ("top_logprobs", &is_zero, "logprobs"),
        (
            "response_format",
            &|v| {
                v.get("type") == Some(&Value::from("text"))
                    && v.as_object().map(Map::len) == Some(1)
            },
            "a response_format other than {\"type\": \"text\"}",
        ),
    ];
    for (name, ok, what) in checks {
        if let Some(v) = body.get(*name) {
            if !ok(v) {
                return Err(ApiError::unsupported(name, what));
            }
        }
    }
    if let Some(v) = body.get("logprobs") {
        // Chat: a boolean; completions: a count.
        let ok = match endpoint {
            Endpoint::Chat => chat_logprobs(v),
            Endpoint::Completions => is_zero(v),
        };
        if !ok {
            return Err(ApiError::unsupported("logprobs", "logprobs"));
        }
    }
    if let Some(v) = body.get("user") {
        if !v.is_string() {
            return Err(ApiError::param("user", "user must be a string"));
        }
    }
    Ok(())
}

fn string(body: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::param(name, format!("{name} must be a string"))),
    }
}

fn boolean(body: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::param(name, format!("{name} must be a boolean"))),
    }
}

fn number(body: &Map<String, Value>, name: &str) -> Result<Option<f64>, ApiError> {
    match body.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| ApiError::param(name, format!("{name} must be a number"))),
    }
}

fn integer(body: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match body.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::param(name, format!("{name} must be an integer"))),
    }
}

fn messages(body: &Map<String, Value>) -> Result<Vec<ChatMessage>, ApiError> {
    let Some(Value::Array(items)) = body.get("messages") else {
        return Err(ApiError::param(
            "messages",
            "messages is required: a list of {\"role\", \"content\"} objects",
        ));
    };
    if items.is_empty() {
        return Err(ApiError::param("messages", "messages must not be empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| message(i, item))
        .collect()
}

fn message(i: usize, item: &Value) -> Result<ChatMessage, ApiError> {
    let at = |field: &str| format!("messages[{i}].{field}");
    let Value::Object(fields) = item else {
        return Err(ApiError::param(
            &format!("messages[{i}]"),
            format!("messages[{i}] must be an object"),
        ));
    };
    if let Some(key) = fields
        .iter()
        .find(|(k, v)| !["role", "content", "name"].contains(&k.as_str()) && !v.is_null())
        .map(|(k, _)| k)
    {
        return Err(ApiError::unsupported(&at(key), "this message field"));
    }
    let role = match fields.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => ChatRole::System,
        Some("user") => ChatRole::User,
        Some("assistant") => ChatRole::Assistant,
        Some(other) => {
            return Err(ApiError::unsupported(
                &at("role"),
                &format!("the role {other:?}"),
            ))
        }
        None => {
            return Err(ApiError::param(
                &at("role"),
                format!("{} is required: system, user or assistant", at("role")),
            ))
        }
    };
    let content = match fields.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    _ => {
                        return Err(ApiError::unsupported(
                            &format!("messages[{i}].content[{j}]"),
                            "a content part other than {\"type\": \"text\", \"text\": ...}",
                        ))
                    }
                }
            }
            text
        }
        _ => {
            return Err(ApiError::param(
                &at("content"),
                format!("{} must be a string or a list of text parts", at("content")),
            ))
        }
    };
    Ok(ChatMessage { role, content })
}

fn prompt(body: &Map<String, Value>) -> Result<String, ApiError> {
    match body.get("prompt") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(items)) => match &items[..] {
            [Value::String(s)] => Ok(s.clone()),
            _ => Err(ApiError::unsupported(
                "prompt",
                "a prompt other than one string (batches or token ids)",
            )),
        },
        Some(_) => Err(ApiError::param("prompt", "prompt must be a string")),
        None => Err(ApiError::param("prompt", "prompt is required")),
    }
}

fn max_tokens(
    endpoint: Endpoint,
    body: &Map<String, Value>,
    context: u32,
) -> Result<u32, ApiError> {
    let old = integer(body, "max_tokens")?;
    let new = integer(body, "max_completion_tokens")?;
    let (name, value) = match (old, new) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::param(
                "max_completion_tokens",
                "max_tokens and max_completion_tokens differ: send one of them",
            ))
        }
        (_, Some(b)) => ("max_completion_tokens", b),
        (Some(a), None) => ("max_tokens", a),
        (None, None) => {
            return Ok(match endpoint {
                Endpoint::Chat => DEFAULT_CHAT_MAX_TOKENS.min(context / 2),
                Endpoint::Completions => DEFAULT_COMPLETION_MAX_TOKENS.min(context / 2),
            })
        }
    };
    if value < 1 {
        return Err(ApiError::param(
            name,
            format!("{name} must be at least 1, got {value}"),
        ));
    }
    if value > i64::from(context) {
        return Err(ApiError::param(
            name,
            format!("{name} ({value}) exceeds the context of {context} tokens"),
        ));
    }
    Ok(value as u32)
}

fn sampling(body: &Map<String, Value>) -> Result<Sampling, ApiError> {
    let default = Sampling::chat_default();
    let float = |name: &str, absent: f32| -> Result<f32, ApiError> {
        Ok(number(body, name)?.map_or(absent, |v| v as f32))
    };
    // The API's own defaults: temperature 1, no nucleus cut, no penalties.
    let temperature = float("temperature", 1.0)?;
    let top_p = float("top_p", 1.0)?;
    let penalties = Penalties {
        frequency: float("frequency_penalty", 0.0)?,
        presence: float("presence_penalty", 0.0)?,
        // Extensions the API leaves to the server: Canopy's default.
        repeat: float("repeat_penalty", default.penalties().repeat)?,
        last_n: count(body, "repeat_last_n", MAX_REPEAT_LAST_N)?
            .unwrap_or(default.penalties().last_n),
    };
    let top_k = count(body, "top_k", MAX_TOP_K)?.unwrap_or(default.top_k());
    let min_p = float("min_p", default.min_p())?;
    // Without a seed every request samples differently, as OpenAI's does.
    let seed = match integer(body, "seed")? {
        Some(seed) => seed as u64,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    };
    Sampling::new(temperature, top_k, top_p, seed)
        .and_then(|s| s.with_min_p(min_p))
        .and_then(|s| s.with_penalties(penalties))
        .map_err(|e| {
            let param = sampling_param(&e);
            ApiError::param(param, e.to_string().replacen(e.setting(), param, 1))
        })
}

/// The request parameter a sampling setting is read from.
fn sampling_param(e: &SamplingError) -> &'static str {
    match e {
        SamplingError::Temperature(_) => "temperature",
        SamplingError::TopK(_) => "top_k",
        SamplingError::TopP(_) => "top_p",
        SamplingError::MinP(_) => "min_p",
        SamplingError::RepeatPenalty(_) => "repeat_penalty",
        SamplingError::FrequencyPenalty(_) => "frequency_penalty",
        SamplingError::PresencePenalty(_) => "presence_penalty",
        SamplingError::RepeatLastN(_) => "repeat_last_n",
    }
}

/// A whole number of at least 0, or absent; `max` is the largest the setting takes, for the
/// message (the setting's own check refuses more).
fn count(body: &Map<String, Value>, name: &str, max: u32) -> Result<Option<u32>, ApiError> {
    let Some(value) = body.get(name) else {
        return Ok(None);
    };
    value
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::param(
                name,
                format!("{name} must be a whole number from 0 (off) to {max}, got {value}"),
            )
        })
}

fn stops(body: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let stops = match body.get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::param("stop", "stop must be a string or a list of strings"))?,
        Some(_) => {
            return Err(ApiError::param(
                "stop",
                "stop must be a string or a list of strings",
            ))
        }
    };
    if stops.len() > MAX_STOPS {
        return Err(ApiError::param(
            "stop",
            format!("at most {MAX_STOPS} stop strings"),
        ));
    }
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::param("stop", "stop strings must not be empty"));
    }
    Ok(stops)
}

/// OpenAI's `finish_reason` for a stop reason.
pub fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::Eos | StopReason::Stop | StopReason::Cancelled => "stop",
        StopReason::MaxTokens | StopReason::ContextFull => "length",
    }
}

/// The OpenAI `usage` object. The prompt's tokens include those whose KV cache an earlier request
/// left (`prompt_tokens_details.cached_tokens`, as OpenAI reports its own prompt caching).
pub fn usage(result: &GenerateResult) -> Value {
    let prompt = result.prefill_tokens + result.prefix_reused_tokens;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": result.tokens,
        "total_tokens": prompt + result.tokens,
        "prompt_tokens_details": {"cached_tokens": result.prefix_reused_tokens},
    })
}

/// The extra top-level `canopy` field: how speculation went. OpenAI clients ignore it.
pub fn statistics(result: &GenerateResult, placement: Placement) -> Value {
    json!({
        "plan": result.plan,
        "mean_accepted_per_step": result.mean_accepted_per_step,
        "steps": result.steps,
        "placement": placement,
        "tokens_per_second": result.tokens_per_second,
        "prefill_ms": result.prefill_ms,
        "prefill_tokens": result.prefill_tokens,
        "prefix_reused_tokens": result.prefix_reused_tokens,
        "decode_ms": result.decode_ms,
        "stop_reason": result.stop_reason,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn run(endpoint: Endpoint, body: Value) -> Result<Parsed, ApiError> {
        let template = crate::tests::request_template();
        let limits = RequestBounds {
            model_id: "smol",
            context: 256,
            template: &template,
        };
        parse(endpoint, body, &limits)
    }

    fn chat(extra: Value) -> Result<Parsed, ApiError> {
        let mut body = json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        run(Endpoint::Chat, body)
    }

    fn refused(result: Result<Parsed, ApiError>, param: &str) -> ApiError {
        let err = result.expect_err("should be refused");
        assert_eq!(err.param.as_deref(), Some(param), "{err:?}");
        assert!(
            err.message.contains(param.split('[').next().unwrap()),
            "{err:?}"
        );
        err
    }

    #[test]
    fn a_chat_request_becomes_a_generate_request() {
        let parsed = chat(json!({
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": "Hi."},
                {"role": "user", "content": "Again"},
            ],
            "max_tokens": 32, "temperature": 0, "top_p": 0.9, "seed": 7, "stop": "\n",
            "stream": true, "stream_options": {"include_usage": true}, "n": 1, "user": "me",
        }))
        .unwrap();
        let r = &parsed.request;
        let Prompt::Chat(messages) = &r.prompt else {
            panic!("not chat: {r:?}")
        };
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0].role, ChatRole::System);
        assert_eq!(messages[1].content, "Hello there");
        assert_eq!(messages[2].role, ChatRole::Assistant);
        assert_eq!(r.max_tokens, 32);
        assert_eq!(r.sampling.temperature(), 0.0);
        assert_eq!(r.sampling.top_p(), 0.9);
        assert_eq!(r.sampling.seed(), 7);
        assert_eq!(r.stop, vec!["\n".to_owned()]);
        assert_eq!(r.context, Some(256));
        assert_eq!(r.target, PathBuf::from("/models/smol.gguf"));
        assert!(parsed.stream && parsed.include_usage);
    }

    #[test]
    fn defaults_follow_openai() {
        let parsed = chat(json!({})).unwrap();
        assert_eq!(parsed.request.max_tokens, 128, "half the context of 256");
        // The API's defaults where it has them, Canopy's one default for the extensions.
        let s = parsed.request.sampling;
        let default = Sampling::chat_default();
        assert_eq!((s.temperature(), s.top_p()), (1.0, 1.0));
        assert_eq!((s.top_k(), s.min_p()), (default.top_k(), default.min_p()));
        assert_eq!(s.penalties(), default.penalties());
        assert!(!parsed.stream);
        let parsed = run(
            Endpoint::Completions,
            json!({"model": "smol", "prompt": ["Once"], "max_completion_tokens": 5, "stop": ["a", "b"]}),
        );
        // max_completion_tokens is a chat parameter.
        refused(parsed, "max_completion_tokens");
        let parsed = run(
            Endpoint::Completions,
            json!({"model": "smol", "prompt": ["Once"]}),
        )
        .unwrap();
        assert_eq!(parsed.request.prompt, Prompt::Raw("Once".into()));
        assert_eq!(parsed.request.max_tokens, 16);
    }

    #[test]
    fn unsupported_parameters_are_refused_by_name() {
        for (body, param) in [
            (json!({"n": 2}), "n"),
            (json!({"tools": [{"type": "function"}]}), "tools"),
            (json!({"logprobs": true}), "logprobs"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (json!({"logit_bias": {"42": 5}}), "logit_bias"),
            (json!({"store": true}), "store"),
            (json!({"prompt": "x"}), "prompt"),
            (
                json!({"stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content[0]",
            ),
        ] {
            let err = refused(chat(body.clone()), param);
            assert_eq!(err.status, 400, "{body}");
        }
        // Neutral values are fine.
        chat(
            json!({"n": 1, "logprobs": false, "tools": [], "response_format": {"type": "text"},
                    "presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {}}),
        )
        .unwrap();
    }

    #[test]
    fn penalties_and_the_extensions_are_honoured() {
        let parsed = chat(json!({
            "presence_penalty": 0.5, "frequency_penalty": -0.25, "top_k": 7, "min_p": 0.1,
            "repeat_penalty": 1.1, "repeat_last_n": 128, "temperature": 0.6, "top_p": 0.9,
        }))
        .unwrap();
        let s = parsed.request.sampling;
        assert_eq!(
            (s.temperature(), s.top_k(), s.top_p(), s.min_p()),
            (0.6, 7, 0.9, 0.1)
        );
        assert_eq!(
            s.penalties(),
            Penalties {
                last_n: 128,
                repeat: 1.1,
                frequency: -0.25,
                presence: 0.5,
            }
        );
        // 0 turns top-k, min-p and the penalty window off; null is the same as absent.
        let parsed =
            chat(json!({"top_k": 0, "min_p": 0, "repeat_last_n": 0, "repeat_penalty": null}))
                .unwrap();
        let s = parsed.request.sampling;
        assert_eq!((s.top_k(), s.min_p()), (0, 0.0));
        assert!(s.penalties().is_off());
        // Completions take them too.
        let parsed = run(
            Endpoint::Completions,
            json!({"model": "smol", "prompt": "Once", "min_p": 0.2, "presence_penalty": 1}),
        )
        .unwrap();
        assert_eq!(parsed.request.sampling.min_p(), 0.2);
        assert_eq!(parsed.request.sampling.penalties().presence, 1.0);
    }

    #[test]
    fn out_of_range_sampling_is_refused_by_its_parameter_name() {
        for (body, param) in [
            (json!({"temperature": 2.5}), "temperature"),
            (json!({"top_p": 1.5}), "top_p"),
            (json!({"top_k": 1001}), "top_k"),
            (json!({"top_k": -1}), "top_k"),
            (json!({"top_k": 2.5}), "top_k"),
            (json!({"min_p": 1.5}), "min_p"),
            (json!({"min_p": -0.1}), "min_p"),
            (json!({"repeat_penalty": 0}), "repeat_penalty"),
            (json!({"repeat_penalty": 3}), "repeat_penalty"),
            (json!({"repeat_last_n": 5000}), "repeat_last_n"),
            (json!({"repeat_last_n": -1}), "repeat_last_n"),
            (json!({"frequency_penalty": 2.5}), "frequency_penalty"),
            (json!({"presence_penalty": -3}), "presence_penalty"),
            (json!({"presence_penalty": "high"}), "presence_penalty"),
        ] {
            let err = refused(chat(body.clone()), param);
            assert_eq!(err.code, "invalid_request", "{body}");
            // The message speaks the API's name, not the flag's.
            let flag = param.replace('_', "-");
            assert!(flag == param || !err.message.contains(&flag), "{err:?}");
        }
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        for (body, param) in [
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"max_tokens": 257}), "max_tokens"),
            (json!({"max_tokens": "many"}), "max_tokens"),
            (
                json!({"max_tokens": 5, "max_completion_tokens": 6}),
                "max_completion_tokens",
            ),
            (json!({"temperature": -1}), "temperature"),
            (json!({"temperature": 3}), "temperature"),
            (json!({"top_p": 0}), "top_p"),
            (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
            (json!({"stop": [""]}), "stop"),
            (json!({"stop": 3}), "stop"),
            (json!({"stream": "yes"}), "stream"),
            (json!({"messages": []}), "messages"),
            (json!({"messages": "hi"}), "messages"),
            (json!({"messages": [{"content": "hi"}]}), "messages[0].role"),
            (
                json!({"messages": [{"role": "user"}]}),
                "messages[0].content",
            ),
            (json!({"model": 3}), "model"),
        ] {
            refused(chat(body.clone()), param);
        }
        let err = run(Endpoint::Chat, json!([1, 2])).unwrap_err();
        assert_eq!(err.status, 400);
    }

    #[test]
    fn another_model_is_not_found() {
        let err = chat(json!({"model": "gpt-4"})).unwrap_err();
        assert_eq!(err.status, 404);
        assert_eq!(err.code, "model_not_found");
        let err = run(Endpoint::Chat, json!({"messages": []})).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("model"));
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason(StopReason::Eos), "stop");
        assert_eq!(finish_reason(StopReason::Stop), "stop");
        assert_eq!(finish_reason(StopReason::MaxTokens), "length");
        assert_eq!(finish_reason(StopReason::ContextFull), "length");
    }
}
