//! `GET /health` (liveness: the process answers) and `GET /health/ready` (readiness: every
//! dependency the configuration makes mandatory answers; 503 naming the failing ones).
//!
//! Readiness reports each dependency on its own line of `checks`:
//! - `store`: the database (SQLite or PostgreSQL) answers a ping within 2 s: `ok` or
//!   `unavailable` (failing: admin changes and audit writes need it).
//! - `redis` (only when `FLOWGATE_REDIS_URL` is set): as the limiter last saw it: `ok`, or
//!   while it is marked down `fallback` (limits are counted per process, `on_redis_down =
//!   "local"`: reported, not failing) or `unavailable` (`"refuse"`: failing, requests are
//!   refused).
//! - `audit_writer`: the writer's queue (`audit_backlog` gives `queued` and `capacity`) and
//!   disk spool (`audit_spool` gives `bytes` and `capacity`): `ok`, `spooling` while the store
//!   does not take records and the spool does (reported, not failing), or once the queue or
//!   the spool is full `unavailable` (`on_full = "refuse"`: failing, requests are refused) or
//!   `dropping` (`"serve"`: reported, not failing).
//! - `audit_stream` (only with `[audit.stream]`): the sink as the publisher last saw it:
//!   `ok`, `connecting` or `unavailable` (reported, never failing: the store keeps every record
//!   and the stream resumes from its cursor); `audit_stream_lag` gives the sink, the records
//!   stored but not yet acknowledged, and the failed rounds since start.
//!
//! `failing` lists the failing checks in that order.

use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flowgate_config::{AuditOnFull, OnRedisDown};
use flowgate_ratelimit::Limiter;
use http::StatusCode;
use serde_json::{Map, Value, json};
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
    let mut checks = Map::new();
    let mut failing = Vec::new();
    let mut check = |name: &'static str, status: &'static str, fails: bool| {
        checks.insert(name.to_owned(), Value::from(status));
        if fails {
            failing.push(name);
        }
    };

    let store_ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), state.store().ping()).await,
        Ok(Ok(()))
    );
    check(
        "store",
        if store_ok { "ok" } else { "unavailable" },
        !store_ok,
    );

    if let Limiter::Redis(redis) = state.limiter() {
        let refuse = state.config().limits.on_redis_down == OnRedisDown::Refuse;
        match (redis.health().fallback_active, refuse) {
            (false, _) => check("redis", "ok", false),
            (true, false) => check("redis", "fallback", false),
            (true, true) => check("redis", "unavailable", true),
        }
    }

    let audit = state.audit();
    let (queued, capacity) = audit.backlog();
    let spool = audit.spool();
    let spooling = spool.is_some_and(|(bytes, _)| bytes > 0);
    match (audit.is_full(), audit.on_full()) {
        (false, _) if spooling => check("audit_writer", "spooling", false),
        (false, _) => check("audit_writer", "ok", false),
        (true, AuditOnFull::Serve) => check("audit_writer", "dropping", false),
        (true, AuditOnFull::Refuse) => check("audit_writer", "unavailable", true),
    }
    // Never failing: the store is the record of truth and the stream catches up from its
    // cursor once the sink is back.
    let stream = state
        .audit_stream()
        .map(|stream| (stream.sink_name(), stream.totals()));
    if let Some((_, totals)) = &stream {
        check("audit_stream", totals.status.as_str(), false);
    }
    checks.insert(
        "audit_backlog".to_owned(),
        json!({"queued": queued, "capacity": capacity}),
    );
    if let Some((bytes, capacity)) = spool {
        checks.insert(
            "audit_spool".to_owned(),
            json!({"bytes": bytes, "capacity": capacity}),
        );
    }
    if let Some((sink, totals)) = stream {
        checks.insert(
            "audit_stream_lag".to_owned(),
            json!({"sink": sink, "records": totals.lag, "failures": totals.failures}),
        );
    }

    if failing.is_empty() {
        Json(json!({"status": "OK", "checks": checks})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "UNAVAILABLE", "failing": failing, "checks": checks})),
        )
            .into_response()
    }
}
