//! `/v1/tenants` and `/v1/tenants/{id}/keys`: create (the key is shown once), list, show,
//! patch, delete, add key (with optional limits of its own), rotate keys (emitting
//! `key.rotated`; the new key keeps the old one's limits), revoke a key. Every change reloads
//! this node's snapshot before answering, so the next request already sees it.

use super::{json_response, parse_json, read_admin_body, require_admin, require_admin_or_tenant};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenants::{self, CreateKey, CreateTenant, KeyView};
use crate::webhooks::Event;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use flowgate_store::{Tenant, TenantPatch};
use flowgate_types::{KeyId, TenantId, now_millis};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route(
            "/v1/tenants/{id}",
            get(show_tenant).patch(update_tenant).delete(delete_tenant),
        )
        .route("/v1/tenants/{id}/keys", post(add_key).get(list_keys))
        .route("/v1/tenants/{id}/keys/rotate", post(rotate_keys))
        .route("/v1/tenants/{id}/keys/{key_id}", delete(revoke_key))
}

#[derive(Serialize)]
struct TenantView<'a> {
    #[serde(flatten)]
    tenant: &'a Tenant,
    object: &'static str,
}

fn view(tenant: &Tenant) -> TenantView<'_> {
    TenantView {
        tenant,
        object: "tenant",
    }
}

async fn create_tenant(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin(&state, request.headers())?;
    let body = read_admin_body(request).await?;
    let create: CreateTenant = parse_json(&body)?;
    let (tenant, key) = tenants::create(state.store().as_ref(), state.key_hasher(), create).await?;
    state.refresh_after_change().await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "object": "tenant",
            "id": tenant.id,
            "name": tenant.name,
            "rules_preset": tenant.rules_preset,
            "max_requests_per_minute": tenant.max_requests_per_minute,
            "max_tokens_per_minute": tenant.max_tokens_per_minute,
            "max_concurrent_requests": tenant.max_concurrent_requests,
            "allowed_models": tenant.allowed_models,
            "created_at": tenant.created_at,
            "updated_at": tenant.updated_at,
            "api_key": key.api_key,
            "key_id": key.id,
        }),
    ))
}

async fn list_tenants(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin(&state, request.headers())?;
    let tenants = state.store().list_tenants().await?;
    let data: Vec<TenantView<'_>> = tenants.iter().map(view).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data}),
    ))
}

async fn load_tenant(state: &AppState, id: &str) -> Result<Tenant, ApiError> {
    state
        .store()
        .get_tenant(&TenantId::new(id))
        .await?
        .ok_or(ApiError::NotFound { what: "tenant" })
}

async fn show_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin_or_tenant(&state, request.headers(), &id)?;
    let tenant = load_tenant(&state, &id).await?;
    let keys: Vec<KeyView> = state
        .store()
        .list_keys(&tenant.id)
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    let mut value = serde_json::to_value(view(&tenant)).map_err(|err| ApiError::Internal {
        detail: err.to_string(),
    })?;
    value["keys"] = serde_json::to_value(keys).map_err(|err| ApiError::Internal {
        detail: err.to_string(),
    })?;
    Ok(json_response(StatusCode::OK, &value))
}

async fn update_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin(&state, request.headers())?;
    let body = read_admin_body(request).await?;
    let patch: TenantPatch = parse_json(&body)?;
    if let Some(name) = &patch.name {
        tenants::validate_name(name)?;
    }
    if let Some(preset) = &patch.rules_preset {
        tenants::validate_preset(preset)?;
    }
    let tenant = state
        .store()
        .update_tenant(&TenantId::new(id), &patch, now_millis())
        .await?
        .ok_or(ApiError::NotFound { what: "tenant" })?;
    state.refresh_after_change().await?;
    Ok(json_response(StatusCode::OK, &view(&tenant)))
}

async fn delete_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin(&state, request.headers())?;
    if !state
        .store()
        .delete_tenant(&TenantId::new(id.as_str()))
        .await?
    {
        return Err(ApiError::NotFound { what: "tenant" });
    }
    state.refresh_after_change().await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "object": "tenant", "deleted": true}),
    ))
}

async fn add_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin(&state, request.headers())?;
    let body = read_admin_body(request).await?;
    let create: CreateKey = parse_json(&body)?;
    let key = tenants::add_key_with_limits(
        state.store().as_ref(),
        state.key_hasher(),
        &TenantId::new(id),
        create.limits()?,
    )
    .await?;
    state.refresh_after_change().await?;
    Ok(json_response(StatusCode::CREATED, &key))
}

async fn list_keys(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin_or_tenant(&state, request.headers(), &id)?;
    let tenant = load_tenant(&state, &id).await?;
    let keys: Vec<KeyView> = state
        .store()
        .list_keys(&tenant.id)
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": keys}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    #[serde(default = "default_revoke_after")]
    revoke_after_seconds: u64,
}

fn default_revoke_after() -> u64 {
    3600
}

async fn rotate_keys(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin_or_tenant(&state, request.headers(), &id)?;
    let body = read_admin_body(request).await?;
    let rotate: RotateRequest = parse_json(&body)?;
    let tenant_id = TenantId::new(id);
    let rotation = tenants::rotate(
        state.store().as_ref(),
        state.key_hasher(),
        &tenant_id,
        rotate.revoke_after_seconds,
    )
    .await?;
    state.refresh_after_change().await?;
    state.webhooks().emit(Event::key_rotated(
        tenant_id,
        rotation.new_key.id.clone(),
        rotation.old_keys,
        rotation.old_keys_expire_at,
    ));
    Ok(json_response(StatusCode::CREATED, &rotation))
}

async fn revoke_key(
    State(state): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin_or_tenant(&state, request.headers(), &id)?;
    let revoked = state
        .store()
        .revoke_key(
            &TenantId::new(id),
            &KeyId::new(key_id.as_str()),
            now_millis(),
        )
        .await?;
    if !revoked {
        return Err(ApiError::NotFound { what: "key" });
    }
    state.refresh_after_change().await?;
    Ok((
        StatusCode::OK,
        axum::Json(json!({"id": key_id, "object": "key", "revoked": true})),
    )
        .into_response())
}
