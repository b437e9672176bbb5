//! `ApiError`: every way a request can fail, mapped to HTTP in this one place. A variant knows
//! its status, its stable `code`, whose fault it is and whether a retry may help; rendering
//! picks the caller's own dialect (OpenAI or Anthropic error shape). Messages never contain
//! keys, prompt text or matched secrets.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flowgate_providers::{TimeoutPhase, UpstreamError};
use flowgate_types::ApiFormat;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde_json::json;

/// Who caused a failure: drives log level and metrics, never the client's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing API key: send `Authorization: Bearer <key>` or `x-api-key`")]
    MissingKey,
    #[error("invalid API key")]
    InvalidKey,
    #[error("the admin key cannot make inference calls; use a tenant key")]
    AdminKeyForInference,
    #[error("this route needs the admin key")]
    AdminOnly,
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
    },
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the model `{model}` does not exist or you do not have access to it")]
    UnknownModel { model: String },
    #[error("{subject} {limit} limit exceeded")]
    RateLimited {
        subject: &'static str,
        limit: &'static str,
        /// `None` when waiting cannot help (the request alone exceeds the token window).
        retry_after: Option<std::time::Duration>,
    },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{message}")]
    Conflict { message: String },
    #[error("{phase} blocked by policy rule(s): {}", rules.join(", "))]
    PolicyViolation {
        /// `request` or `response`.
        phase: &'static str,
        rules: Vec<String>,
    },
    #[error("{}", upstream_status_message(provider, *status, message.as_deref()))]
    UpstreamStatus {
        provider: String,
        status: StatusCode,
        /// The upstream's own error message, when its body had one.
        message: Option<String>,
        retry_after: Option<HeaderValue>,
    },
    #[error("upstream `{provider}` sent an answer that cannot be read: {detail}")]
    UpstreamInvalid { provider: String, detail: String },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("{subsystem} is unavailable")]
    Unavailable { subsystem: &'static str },
    #[error("internal error")]
    Internal { detail: String },
}

/// The client's message for an upstream error status: the upstream's own words for request
/// errors it reports (so an SDK shows what the provider said), else which upstream failed.
fn upstream_status_message(provider: &str, status: StatusCode, message: Option<&str>) -> String {
    match message {
        Some(message) if matches!(status.as_u16(), 400 | 404 | 409 | 413 | 422) => {
            message.to_owned()
        }
        Some(message) => format!("upstream `{provider}` answered {status}: {message}"),
        None => format!("upstream `{provider}` answered {status}"),
    }
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey | Self::InvalidKey => StatusCode::UNAUTHORIZED,
            Self::AdminKeyForInference | Self::AdminOnly | Self::PolicyViolation { .. } => {
                StatusCode::FORBIDDEN
            }
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownModel { .. } | Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UpstreamStatus { status, .. } => match status.as_u16() {
                429 => StatusCode::TOO_MANY_REQUESTS,
                503 | 529 => StatusCode::SERVICE_UNAVAILABLE,
                400 | 404 | 409 | 413 | 422 => *status,
                _ => StatusCode::BAD_GATEWAY,
            },
            Self::UpstreamInvalid { .. } => StatusCode::BAD_GATEWAY,
            Self::Upstream(err) => match err {
                UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                UpstreamError::Request { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_GATEWAY,
            },
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code (OpenAI `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingKey => "missing_api_key",
            Self::InvalidKey => "invalid_api_key",
            Self::AdminKeyForInference => "admin_key_not_allowed",
            Self::AdminOnly => "admin_key_required",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::BodyTooLarge { .. } => "request_too_large",
            Self::UnknownModel { .. } => "model_not_found",
            Self::NotFound { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::PolicyViolation { .. } => "content_policy_violation",
            Self::RateLimited { .. } => "rate_limit_exceeded",
            Self::UpstreamStatus { status, .. } if status.as_u16() == 429 => {
                "upstream_rate_limited"
            }
            Self::UpstreamStatus { .. } => "upstream_error",
            Self::UpstreamInvalid { .. } => "upstream_invalid_response",
            Self::Upstream(UpstreamError::Timeout {
                phase: TimeoutPhase::Connect,
                ..
            }) => "upstream_connect_timeout",
            Self::Upstream(UpstreamError::Timeout { .. }) => "upstream_timeout",
            Self::Upstream(UpstreamError::Connect { .. }) => "upstream_unreachable",
            Self::Upstream(UpstreamError::TooLarge { .. }) => "upstream_response_too_large",
            Self::Upstream(_) => "upstream_error",
            Self::Unavailable { .. } => "service_unavailable",
            Self::Internal { .. } => "internal_error",
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            Self::UpstreamStatus { .. } | Self::UpstreamInvalid { .. } | Self::Upstream(_) => {
                Fault::Upstream
            }
            Self::Unavailable { .. } | Self::Internal { .. } => Fault::Internal,
            _ => Fault::Client,
        }
    }

    /// Whether the same request may succeed if retried later.
    pub fn retryable(&self) -> bool {
        matches!(self.status().as_u16(), 429 | 502 | 503 | 504)
    }

    /// OpenAI `error.type` / Anthropic `error.type`.
    fn error_type(&self, format: ApiFormat) -> &'static str {
        let status = self.status().as_u16();
        match format {
            ApiFormat::OpenAi => match status {
                400 | 404 | 409 | 413 | 422 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                429 => "rate_limit_error",
                _ => "api_error",
            },
            ApiFormat::Anthropic => match status {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                503 | 529 => "overloaded_error",
                400 | 409 | 422 => "invalid_request_error",
                _ => "api_error",
            },
        }
    }

    /// The client-facing message: the `Display` text, except that internal details stay in
    /// the logs.
    fn public_message(&self) -> String {
        match self {
            Self::Internal { .. } => "internal error".to_owned(),
            Self::Upstream(UpstreamError::Connect { provider, .. }) => {
                format!("cannot reach upstream `{provider}`")
            }
            Self::Upstream(UpstreamError::Broken { provider, .. }) => {
                format!("upstream `{provider}` closed the connection unexpectedly")
            }
            other => other.to_string(),
        }
    }

    /// The error body in the given dialect.
    pub fn body(&self, format: ApiFormat) -> Bytes {
        let message = self.public_message();
        let value = match format {
            ApiFormat::OpenAi => json!({
                "error": {
                    "message": message,
                    "type": self.error_type(format),
                    "param": match self { Self::InvalidRequest { param, .. } => *param, _ => None },
                    "code": self.code(),
                }
            }),
            ApiFormat::Anthropic => json!({
                "type": "error",
                "error": {"type": self.error_type(format), "message": message},
            }),
        };
        Bytes::from(value.to_string())
    }

    /// Renders the error as a response in the caller's dialect.
    pub fn into_response_for(self, format: ApiFormat) -> Response {
        let mut response = (self.status(), self.body(format)).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match &self {
            Self::UpstreamStatus {
                retry_after: Some(value),
                ..
            } => {
                headers.insert(RETRY_AFTER, value.clone());
            }
            Self::RateLimited {
                retry_after: Some(after),
                ..
            } => {
                // Whole seconds, rounded up, so a client that waits exactly this long succeeds.
                let seconds = after.as_millis().div_ceil(1000).max(1);
                headers.insert(
                    RETRY_AFTER,
                    HeaderValue::from(u64::try_from(seconds).unwrap_or(u64::MAX)),
                );
            }
            _ => {}
        }
        let fault = self.fault();
        if fault != Fault::Client {
            tracing::warn!(error = %self, code = self.code(), fault = ?fault, "request failed");
        }
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

/// Put into response extensions so the access log can name the error without re-deriving it.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_for(ApiFormat::OpenAi)
    }
}

impl From<flowgate_store::StoreError> for ApiError {
    fn from(err: flowgate_store::StoreError) -> Self {
        match err {
            flowgate_store::StoreError::Conflict { entity, value } => Self::Conflict {
                message: format!("{entity} `{value}` already exists"),
            },
            flowgate_store::StoreError::Connect { .. } => Self::Unavailable { subsystem: "store" },
            other => Self::Internal {
                detail: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_statuses() {
        let err = ApiError::UnknownModel { model: "x".into() };
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        let body: serde_json::Value =
            serde_json::from_slice(&err.body(ApiFormat::OpenAi)).unwrap_or_default();
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let body: serde_json::Value =
            serde_json::from_slice(&err.body(ApiFormat::Anthropic)).unwrap_or_default();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "not_found_error");
        let upstream = ApiError::UpstreamStatus {
            provider: "p".into(),
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: None,
            retry_after: None,
        };
        assert_eq!(upstream.status(), StatusCode::BAD_GATEWAY);
        assert!(upstream.retryable());
        let internal = ApiError::Internal {
            detail: "db password wrong".into(),
        };
        assert!(!String::from_utf8_lossy(&internal.body(ApiFormat::OpenAi)).contains("password"));
    }
}
