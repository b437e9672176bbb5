//! `GET /health` (liveness: the process answers) and `GET /health/ready` (readiness: every
//! dependency the configuration makes mandatory answers; 503 naming the failing ones).

use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::json;
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(live))
        .route("/health/ready", get(ready))
}

async fn live() -> Response {
    Json(json!({"status": "OK", "version": env!("CARGO_PKG_VERSION")})).into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    let store_ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), state.store().ping()).await,
        Ok(Ok(()))
    );
    let checks = json!({"store": if store_ok { "ok" } else { "unavailable" }});
    if store_ok {
        Json(json!({"status": "OK", "checks": checks})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "UNAVAILABLE", "failing": ["store"], "checks": checks})),
        )
            .into_response()
    }
}
