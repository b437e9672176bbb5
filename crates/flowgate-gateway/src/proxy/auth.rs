//! Stage 1, authenticate: find the caller's key in the headers the official SDKs send
//! (`Authorization: Bearer`, `x-api-key`, `x-goog-api-key`), digest it, and look it up in the
//! in-memory snapshot. The admin key is recognised only to be refused here.

use crate::error::ApiError;
use crate::state::{AppState, Principal};
use flowgate_types::keys::check_format;
use flowgate_types::now_millis;
use http::HeaderMap;
use http::header::AUTHORIZATION;

/// The presented credential, if any, from the first header that carries one.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    {
        let value = value.trim();
        if let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            return Some(token.trim());
        }
    }
    // Header names are case-insensitive: `X-API-Key` and `x-api-key` are the same lookup.
    for name in ["x-api-key", "x-goog-api-key"] {
        if let Some(value) = headers.get(name).and_then(|value| value.to_str().ok()) {
            return Some(value.trim());
        }
    }
    None
}

/// Authenticates a data-plane request.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let key = presented_key(headers)
        .filter(|key| !key.is_empty())
        .ok_or(ApiError::MissingKey)?;
    let digest = state.key_hasher().digest(key);
    if check_format(key).is_ok() {
        if let Some(principal) = state.snapshot().authenticate(&digest, now_millis()) {
            return Ok(principal);
        }
        return Err(ApiError::InvalidKey);
    }
    if state.is_admin_key(&digest) {
        return Err(ApiError::AdminKeyForInference);
    }
    Err(ApiError::InvalidKey)
}

/// Who is calling an admin route.
#[derive(Debug, Clone)]
pub enum AdminCaller {
    Admin,
    Tenant(Principal),
}

/// Authenticates an admin-API request: the admin key, or a tenant key for its own data.
pub fn authenticate_admin(state: &AppState, headers: &HeaderMap) -> Result<AdminCaller, ApiError> {
    let key = presented_key(headers)
        .filter(|key| !key.is_empty())
        .ok_or(ApiError::MissingKey)?;
    let digest = state.key_hasher().digest(key);
    if state.is_admin_key(&digest) {
        return Ok(AdminCaller::Admin);
    }
    if check_format(key).is_ok()
        && let Some(principal) = state.snapshot().authenticate(&digest, now_millis())
    {
        return Ok(AdminCaller::Tenant(principal));
    }
    Err(ApiError::InvalidKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn every_sdk_header_is_read() {
        let cases = [
            ("authorization", "Bearer abc"),
            ("authorization", "bearer abc"),
            ("x-api-key", "abc"),
            ("X-API-Key", "abc"),
            ("x-goog-api-key", " abc "),
        ];
        for (name, value) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|_| unreachable!()),
                HeaderValue::from_static(value),
            );
            assert_eq!(presented_key(&headers), Some("abc"), "{name}");
        }
        assert_eq!(presented_key(&HeaderMap::new()), None);
        let mut basic = HeaderMap::new();
        basic.insert(AUTHORIZATION, HeaderValue::from_static("Basic Zm9v"));
        assert_eq!(presented_key(&basic), None);
    }
}
