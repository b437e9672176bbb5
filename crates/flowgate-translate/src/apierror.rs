//! Error bodies in each ingress dialect's shape, and reading error bodies that upstreams send.
//!
//! Owns `ErrorKind` (the neutral error classification), `error_body` (status + message to an
//! OpenAI or Anthropic error body) and `parse_upstream_error` (an upstream error body and
//! status to a neutral `UpstreamError`). It does not choose the status the client sees for an
//! upstream failure (the gateway's policy: 502/504 for upstream faults); `ErrorKind::status`
//! gives the conventional one.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::ir::{Ingress, UpstreamKind};

/// Neutral classification of an API error, named after Anthropic's error types (the richer
/// taxonomy); OpenAI's `type` strings are derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RequestTooLarge,
    RateLimit,
    /// An unexpected error on the server side.
    Api,
    /// The server is temporarily overloaded (Anthropic 529, HTTP 503).
    Overloaded,
    /// The upstream did not answer in time.
    Timeout,
}

impl ErrorKind {
    /// Classifies an HTTP status.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 => Self::Authentication,
            403 => Self::Permission,
            404 => Self::NotFound,
            413 => Self::RequestTooLarge,
            429 => Self::RateLimit,
            408 | 504 => Self::Timeout,
            503 | 529 => Self::Overloaded,
            400..=499 => Self::InvalidRequest,
            _ => Self::Api,
        }
    }

    /// Anthropic `error.type` string.
    pub fn anthropic_type(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::Permission => "permission_error",
            Self::NotFound => "not_found_error",
            Self::RequestTooLarge => "request_too_large",
            Self::RateLimit => "rate_limit_error",
            Self::Api => "api_error",
            Self::Overloaded => "overloaded_error",
            Self::Timeout => "timeout_error",
        }
    }

    /// OpenAI `error.type` string.
    pub fn openai_type(self) -> &'static str {
        match self {
            Self::InvalidRequest | Self::NotFound | Self::RequestTooLarge => {
                "invalid_request_error"
            }
            Self::Authentication => "authentication_error",
            Self::Permission => "permission_error",
            Self::RateLimit => "rate_limit_error",
            Self::Api | Self::Overloaded | Self::Timeout => "server_error",
        }
    }

    /// The conventional HTTP status of the kind.
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Authentication => 401,
            Self::Permission => 403,
            Self::NotFound => 404,
            Self::RequestTooLarge => 413,
            Self::RateLimit => 429,
            Self::Api => 500,
            Self::Overloaded => 503,
            Self::Timeout => 504,
        }
    }

    fn from_type_string(value: &str) -> Option<Self> {
        Some(match value {
            "invalid_request_error"
            | "invalid_argument"
            | "INVALID_ARGUMENT"
            | "FAILED_PRECONDITION" => Self::InvalidRequest,
            "authentication_error" | "UNAUTHENTICATED" => Self::Authentication,
            "permission_error" | "PERMISSION_DENIED" => Self::Permission,
            "not_found_error" | "NOT_FOUND" => Self::NotFound,
            "request_too_large" => Self::RequestTooLarge,
            "rate_limit_error" | "rate_limit_exceeded" | "RESOURCE_EXHAUSTED" => Self::RateLimit,
            "api_error" | "server_error" | "INTERNAL" => Self::Api,
            "overloaded_error" | "UNAVAILABLE" => Self::Overloaded,
            "timeout_error" | "DEADLINE_EXCEEDED" => Self::Timeout,
            _ => return None,
        })
    }
}

#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    error: OpenAiErrorObject<'a>,
}

#[derive(Serialize)]
pub(crate) struct OpenAiErrorObject<'a> {
    pub(crate) message: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    pub(crate) param: Option<&'a str>,
    pub(crate) code: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct AnthropicErrorBody<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) error: AnthropicErrorObject<'a>,
}

#[derive(Serialize)]
pub(crate) struct AnthropicErrorObject<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    pub(crate) message: &'a str,
}

/// The error body a client of `ingress` expects for an HTTP `status`.
///
/// OpenAI: `{"error":{"message","type","param":null,"code"}}`; Anthropic:
/// `{"type":"error","error":{"type","message"}}` (Anthropic bodies carry no code).
pub fn error_body(ingress: Ingress, status: u16, message: &str, code: Option<&str>) -> Bytes {
    error_body_for_kind(ingress, ErrorKind::from_status(status), message, code)
}

/// Like `error_body`, for a known kind (for example a timeout reported with status 504).
pub fn error_body_for_kind(
    ingress: Ingress,
    kind: ErrorKind,
    message: &str,
    code: Option<&str>,
) -> Bytes {
    let written = match ingress {
        Ingress::OpenAi => serde_json::to_vec(&OpenAiErrorBody {
            error: OpenAiErrorObject {
                message,
                kind: kind.openai_type(),
                param: None,
                code,
            },
        }),
        Ingress::Anthropic => serde_json::to_vec(&AnthropicErrorBody {
            kind: "error",
            error: AnthropicErrorObject {
                kind: kind.anthropic_type(),
                message,
            },
        }),
    };
    // Serialising a struct of strings into a Vec cannot fail; fall back to an empty object
    // rather than panicking if it ever did.
    Bytes::from(written.unwrap_or_else(|_| b"{}".to_vec()))
}

/// An upstream error, read from its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    pub kind: ErrorKind,
    /// The upstream's status.
    pub status: u16,
    /// The upstream's message, or a generic one when the body had none.
    pub message: String,
    /// The upstream's machine-readable code, when it sent one.
    pub code: Option<String>,
}

/// Reads an upstream error body (`{"error":{...}}` for OpenAI, Anthropic's
/// `{"type":"error","error":{...}}`, Gemini's `{"error":{"code","message","status"}}`, Ollama's
/// `{"error":"..."}`). Never fails: a body that is not JSON becomes the message (truncated).
pub fn parse_upstream_error(kind: UpstreamKind, status: u16, body: &[u8]) -> UpstreamError {
    let mut error = UpstreamError {
        kind: ErrorKind::from_status(status),
        status,
        message: String::new(),
        code: None,
    };
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let object = value
        .as_ref()
        .map(|value| value.get("error").unwrap_or(value));
    if let Some(object) = object {
        match object {
            Value::String(message) => error.message.clone_from(message),
            Value::Object(map) => {
                if let Some(Value::String(message)) = map.get("message") {
                    error.message.clone_from(message);
                }
                // OpenAI: `type` + `code`; Anthropic: `type`; Gemini: `status` + numeric `code`.
                let type_field = match kind {
                    UpstreamKind::Gemini => map.get("status"),
                    _ => map.get("type"),
                };
                if let Some(Value::String(type_name)) = type_field
                    && let Some(classified) = ErrorKind::from_type_string(type_name)
                    && status < 500
                {
                    error.kind = classified;
                }
                match map.get("code") {
                    Some(Value::String(code)) => error.code = Some(code.clone()),
                    Some(Value::Number(_)) | None => {
                        if let Some(Value::String(type_name)) = type_field {
                            error.code = Some(type_name.clone());
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if error.message.is_empty() {
        let text = String::from_utf8_lossy(body);
        let trimmed = text.trim();
        error.message = if trimmed.is_empty() {
            format!("upstream answered HTTP {status}")
        } else {
            trimmed.chars().take(512).collect()
        };
    }
    error
}
