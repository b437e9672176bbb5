//! `/v1/webhooks`: create (the signing secret is shown once), list, delete, and a webhook's
//! deliveries (newest first, with status, attempts and the last error). Admin key only.
//! Target checks and delivery live in `crate::webhooks`.

use super::{json_response, parse_json, read_admin_body, require_admin};
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::WebhookError;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use axum::routing::{delete, get};
use flowgate_store::{Delivery, DeliveryStatus, Webhook};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", get(list_webhooks).post(create_webhook))
        .route("/v1/webhooks/{id}", delete(delete_webhook))
        .route("/v1/webhooks/{id}/deliveries", get(list_deliveries))
}

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateWebhook {
    url: String,
    events: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    limit: Option<u32>,
}

fn view(webhook: &Webhook) -> serde_json::Value {
    json!({
        "object": "webhook",
        "id": webhook.id,
        "url": webhook.url,
        "events": webhook.events,
        "created_at": webhook.created_at,
        "disabled": webhook.disabled,
    })
}

fn delivery_view(delivery: &Delivery) -> serde_json::Value {
    // The stored payload is the exact JSON that was (or will be) sent.
    let payload = serde_json::from_str::<serde_json::Value>(&delivery.payload)
        .unwrap_or(serde_json::Value::Null);
    json!({
        "object": "webhook_delivery",
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event": delivery.event,
        "status": delivery.status.as_str(),
        "attempts": delivery.attempts,
        "next_attempt_at": (delivery.status == DeliveryStatus::Pending).then_some(delivery.next_attempt_at),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "updated_at": delivery.updated_at,
        "payload": payload,
    })
}

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::Url(refusal) => ApiError::InvalidRequest {
                message: format!("url: {refusal}"),
                param: Some("url"),
            },
            WebhookError::Events(message) => ApiError::InvalidRequest {
                message: format!("events: {message}"),
                param: Some("events"),
            },
            WebhookError::Store(err) => err.into(),
        }
    }
}

async fn create_webhook(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin(&state, request.headers())?;
    let body = read_admin_body(request).await?;
    let create: CreateWebhook = parse_json(&body)?;
    let created = state.webhooks().create(&create.url, &create.events).await?;
    let mut value = view(&created.webhook);
    value["secret"] = json!(created.secret);
    Ok(json_response(StatusCode::CREATED, &value))
}

async fn list_webhooks(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin(&state, request.headers())?;
    let webhooks = state.webhooks().store().list_webhooks().await?;
    let data: Vec<serde_json::Value> = webhooks.iter().map(view).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data}),
    ))
}

async fn delete_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin(&state, request.headers())?;
    if !state.webhooks().store().delete_webhook(&id).await? {
        return Err(ApiError::NotFound { what: "webhook" });
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "object": "webhook", "deleted": true}),
    ))
}

async fn list_deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    require_admin(&state, request.headers())?;
    let Query(query) =
        query.map_err(|err| ApiError::invalid(format!("invalid query: {}", err.body_text())))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let store = state.webhooks().store();
    if store.get_webhook(&id).await?.is_none() {
        return Err(ApiError::NotFound { what: "webhook" });
    }
    let deliveries = store.list_deliveries(&id, limit).await?;
    let data: Vec<serde_json::Value> = deliveries.iter().map(delivery_view).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data}),
    ))
}
