//! Audit API: `GET /v1/audit` (filtered listing by status, tenant, rule, model, request id and
//! time, newest first, cursor pagination),
//! `GET /v1/audit/stats`, `GET /v1/audit/checkpoints`, `GET /v1/audit/proof?index=`. The
//! admin key sees every tenant; a tenant key sees only its own tenant's records and
//! aggregates (checkpoints are public data: roots and signatures, no content). Times are epoch
//! milliseconds. Leaves out writing (see `crate::audit`).

use super::json_response;
use crate::audit::{ProofBuildError, inclusion_bundle};
use crate::error::ApiError;
use crate::proxy::auth::{AdminCaller, authenticate_admin};
use crate::state::AppState;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use flowgate_audit::record::AuditRecord;
use flowgate_audit::source::AuditSource as _;
use flowgate_store::AuditFilter;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audit", get(list))
        .route("/v1/audit/stats", get(stats))
        .route("/v1/audit/checkpoints", get(checkpoints))
        .route("/v1/audit/proof", get(proof))
}

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    tenant: Option<String>,
    rule: Option<String>,
    model: Option<String>,
    request_id: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
    limit: Option<u32>,
    cursor: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    tenant: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofQuery {
    index: u64,
}

fn query<T>(extracted: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    extracted
        .map(|Query(value)| value)
        .map_err(|err| ApiError::invalid(format!("invalid query: {}", err.body_text())))
}

/// The tenant the caller may see: any (or the requested one) for the admin key, its own for
/// a tenant key (asking for another tenant is refused).
fn scope(
    state: &AppState,
    headers: &HeaderMap,
    requested: Option<String>,
) -> Result<Option<String>, ApiError> {
    match authenticate_admin(state, headers)? {
        AdminCaller::Admin => Ok(requested.filter(|tenant| !tenant.is_empty())),
        AdminCaller::Tenant(principal) => {
            let own = principal.tenant.tenant.id.as_str();
            match requested.as_deref() {
                None | Some("") => Ok(Some(own.to_owned())),
                Some(tenant) if tenant == own => Ok(Some(own.to_owned())),
                Some(_) => Err(ApiError::AdminOnly),
            }
        }
    }
}

#[derive(Serialize)]
struct ListedRecord {
    index: u64,
    time_ms: u64,
    record: AuditRecord,
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    extracted: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(extracted)?;
    let tenant_id = scope(&state, &headers, params.tenant)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let filter = AuditFilter {
        decision: params.status.map(|status| status.to_ascii_uppercase()),
        tenant_id,
        rule_id: params.rule,
        model: params.model,
        request_id: params.request_id,
        from_ms: params.from,
        to_ms: params.to,
        before_index: params.cursor,
        limit,
    };
    let audit = state.audit();
    let rows = audit.store().list_audit(audit.origin(), &filter).await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|row| row.index))
        .flatten();
    let data = rows
        .into_iter()
        .map(|row| {
            AuditRecord::parse(row.record.as_bytes())
                .map(|record| ListedRecord {
                    index: row.index,
                    time_ms: row.time_ms,
                    record,
                })
                .map_err(|err| ApiError::Internal {
                    detail: format!("stored audit record {} does not parse: {err}", row.index),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "origin": audit.origin(),
            "data": data,
            "next_cursor": next_cursor,
        }),
    ))
}

async fn stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    extracted: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(extracted)?;
    let tenant_id = scope(&state, &headers, params.tenant)?;
    let audit = state.audit();
    let stats = audit
        .store()
        .audit_stats(audit.origin(), tenant_id.as_deref(), params.from, params.to)
        .await?;
    let blocked = stats
        .by_decision
        .iter()
        .find(|count| count.name == "BLOCK")
        .map_or(0, |count| count.count);
    #[allow(clippy::cast_precision_loss)] // a rate; counts far below 2^52
    let block_rate = if stats.requests == 0 {
        0.0
    } else {
        blocked as f64 / stats.requests as f64
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "origin": audit.origin(),
            "tenant": tenant_id,
            "from": params.from,
            "to": params.to,
            "records": stats.records,
            "requests": stats.requests,
            "blocked": blocked,
            "block_rate": block_rate,
            "by_decision": stats.by_decision,
            "by_model": stats.by_model,
            "by_tenant": stats.by_tenant,
            "top_triggered_rules": stats.top_triggered_rules,
            "gaps": stats.gaps,
            "lost_records": stats.lost_records,
        }),
    ))
}

async fn checkpoints(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate_admin(&state, &headers)?;
    let audit = state.audit();
    let stored = audit.store().audit_checkpoints(audit.origin()).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "origin": audit.origin(),
            "verifier_key": audit.verifier().to_string(),
            "data": stored,
        }),
    ))
}

async fn proof(
    State(state): State<AppState>,
    headers: HeaderMap,
    extracted: Result<Query<ProofQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(extracted)?;
    let caller = authenticate_admin(&state, &headers)?;
    let audit = state.audit();
    let source = audit.source();
    if let AdminCaller::Tenant(principal) = &caller {
        let mut entries = Vec::with_capacity(1);
        source
            .read_entries(params.index, 1, &mut entries)
            .await
            .map_err(ApiError::from)?;
        let owner = entries
            .first()
            .filter(|entry| entry.index == params.index)
            .and_then(|entry| AuditRecord::parse(&entry.record).ok())
            .map(|record| record.tenant_id);
        if owner.as_deref() != Some(principal.tenant.tenant.id.as_str()) {
            return Err(ApiError::NotFound {
                what: "audit record",
            });
        }
    }
    let bundle = inclusion_bundle(
        &source,
        std::slice::from_ref(audit.verifier()),
        params.index,
    )
    .await
    .map_err(|err| match err {
        ProofBuildError::NoRecord { .. } => ApiError::NotFound {
            what: "audit record",
        },
        ProofBuildError::NotCovered { .. } => ApiError::Conflict {
            message: err.to_string(),
        },
        ProofBuildError::Store(err) => ApiError::from(err),
        ProofBuildError::Proof { detail } => ApiError::Internal { detail },
    })?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "verifier_key": audit.verifier().to_string(),
            "bundle": bundle,
        }),
    ))
}
