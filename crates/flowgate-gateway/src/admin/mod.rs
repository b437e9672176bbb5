//! The admin API (tenants and keys, tenant rules, audit, webhooks) and
//! the health routes. Admin routes take the admin key, or a tenant key for that tenant's own
//! data. Errors use the OpenAI error shape with codes from `ApiError`.

mod audit;
mod health;
mod rules;
mod tenants;
mod webhooks;

use crate::error::ApiError;
use crate::proxy::auth::{AdminCaller, authenticate_admin};
use crate::proxy::context::X_REQUEST_ID;
use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use health::router as health_router;

pub fn router() -> Router<AppState> {
    tenants::router()
        .merge(rules::router())
        .merge(audit::router())
        .merge(webhooks::router())
}

/// Adds `x-request-id` to admin and health answers (the data plane stamps its own).
pub async fn stamp_request_id(request: Request, next: Next) -> Response {
    let incoming = request.headers().get(&X_REQUEST_ID).cloned();
    let mut response = next.run(request).await;
    if !response.headers().contains_key(&X_REQUEST_ID) {
        let value = incoming.unwrap_or_else(|| {
            let bytes: [u8; 12] = flowgate_types::random_bytes();
            HeaderValue::from_str(&format!("req_{}", flowgate_types::to_hex(&bytes)))
                .unwrap_or_else(|_| HeaderValue::from_static("req_unknown"))
        });
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

/// Admin bodies are small; anything larger is refused with 413.
const ADMIN_BODY_LIMIT: usize = 1024 * 1024;

async fn read_admin_body(request: Request) -> Result<bytes::Bytes, ApiError> {
    let (parts, body) = request.into_parts();
    crate::proxy::read_body(&parts.headers, body, ADMIN_BODY_LIMIT).await
}

/// Requires the admin key.
fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match authenticate_admin(state, headers)? {
        AdminCaller::Admin => Ok(()),
        AdminCaller::Tenant(_) => Err(ApiError::AdminOnly),
    }
}

/// Requires the admin key or a key of the tenant `tenant_id`.
fn require_admin_or_tenant(
    state: &AppState,
    headers: &HeaderMap,
    tenant_id: &str,
) -> Result<(), ApiError> {
    match authenticate_admin(state, headers)? {
        AdminCaller::Admin => Ok(()),
        AdminCaller::Tenant(principal) if principal.tenant.tenant.id.as_str() == tenant_id => {
            Ok(())
        }
        AdminCaller::Tenant(_) => Err(ApiError::AdminOnly),
    }
}

/// Parses a JSON body into a typed request; an empty body is `{}`.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::invalid(format!("invalid JSON body: {err}")))
}

fn json_response(status: http::StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = (status, Body::from(bytes)).into_response();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(err) => ApiError::Internal {
            detail: format!("serialising a response: {err}"),
        }
        .into_response(),
    }
}

impl From<crate::tenants::TenantError> for ApiError {
    fn from(err: crate::tenants::TenantError) -> Self {
        match err {
            crate::tenants::TenantError::Invalid { field, message } => ApiError::InvalidRequest {
                message: format!("{field}: {message}"),
                param: Some(field),
            },
            crate::tenants::TenantError::NotFound => ApiError::NotFound { what: "tenant" },
            crate::tenants::TenantError::Store(err) => err.into(),
        }
    }
}
