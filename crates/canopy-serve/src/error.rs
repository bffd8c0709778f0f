//! Errors as OpenAI clients expect them: `{"error": {"message", "type", "param", "code"}}` with a
//! matching status code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use canopy_core::{CoreError, ErrorKind};
use serde_json::json;

/// One refused or failed request.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's error `type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// A machine-readable code, e.g. `model_not_found`.
    pub code: &'static str,
    /// The request parameter at fault, if one is.
    pub param: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            message,
            kind,
            code,
            param: None,
        }
    }

    /// 400: the request is malformed or asks for something this server does not do.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message.into(),
        )
    }

    /// 400 naming the parameter at fault.
    pub fn param(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.to_owned()),
            ..Self::invalid(message)
        }
    }

    /// 400 for a parameter this server does not support (or not with that value).
    pub fn unsupported(param: &str, what: &str) -> Self {
        ApiError {
            code: "unsupported_parameter",
            ..Self::param(
                param,
                format!("{param}: {what} is not supported by this server"),
            )
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "missing or wrong API key: send `Authorization: Bearer <key>`".to_owned(),
        )
    }

    pub fn bad_host(host: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "host_not_allowed",
            format!(
                "Host header {host:?} does not name this server; use the address it listens on"
            ),
        )
    }

    pub fn model_not_found(model: &str, served: &str) -> Self {
        ApiError {
            param: Some("model".to_owned()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("the model {model:?} does not exist here; this server serves {served:?}"),
            )
        }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            "no such endpoint: this server has /v1/models, /v1/chat/completions, /v1/completions and /health".to_owned(),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "method not allowed on this endpoint".to_owned(),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("the request body is larger than the server's limit of {limit} bytes"),
        )
    }

    pub fn queue_full(queue: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "queue_full",
            format!("the server is busy: {queue} requests are already waiting; retry shortly"),
        )
    }

    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "shutting_down",
            "the server is shutting down".to_owned(),
        )
    }

    /// The error document, also sent as a server-sent event when a stream fails.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

/// The core decides who an error is for; a crashed worker is the one failure a retry fixes.
impl From<CoreError> for ApiError {
    fn from(err: CoreError) -> Self {
        let message = err.to_string();
        match err.kind() {
            ErrorKind::Crashed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "worker_crashed",
                message,
            ),
            ErrorKind::User => ApiError::invalid(message),
            ErrorKind::NotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found",
                message,
            ),
            ErrorKind::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "unavailable",
                message,
            ),
            ErrorKind::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "busy",
                message,
            ),
            ErrorKind::Internal => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "inference_failed",
                message,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
