//! Audit API: `GET /v1/audit` (filtered listing by status, tenant, rule, model, request id and
//! time, newest first, cursor pagination; `origin=NAME` lists another node's log, `origin=*`
//! every node's log in the shared store, merged newest first, paged with `to=next_to`),
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
    /// The log to list: absent for this node's own, a node's origin, or `*` for every node's.
    origin: Option<String>,
}

/// `origin=*`: every node's log.
const ALL_ORIGINS: &str = "*";

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
    origin: String,
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
    audit.stored().await;
    let origin = params
        .origin
        .filter(|origin| !origin.is_empty())
        .unwrap_or_else(|| audit.origin().to_owned());
    if origin == ALL_ORIGINS {
        if filter.before_index.is_some() {
            return Err(ApiError::invalid(
                "cursor pages one origin's log; with origin=* page with to=next_to",
            ));
        }
        return list_all_origins(audit.store().as_ref(), filter).await;
    }
    let rows = audit.store().list_audit(&origin, &filter).await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|row| row.index))
        .flatten();
    let data = listed(&origin, rows)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "origin": origin,
            "data": data,
            "next_cursor": next_cursor,
        }),
    ))
}

fn listed(
    origin: &str,
    rows: Vec<flowgate_store::AuditRow>,
) -> Result<Vec<ListedRecord>, ApiError> {
    rows.into_iter()
        .map(|row| {
            AuditRecord::parse(row.record.as_bytes())
                .map(|record| ListedRecord {
                    origin: origin.to_owned(),
                    index: row.index,
                    time_ms: row.time_ms,
                    record,
                })
                .map_err(|err| ApiError::Internal {
                    detail: format!(
                        "stored audit record {origin}/{} does not parse: {err}",
                        row.index
                    ),
                })
        })
        .collect()
}

/// Every node's records (each replica writes its own log under its own origin), merged newest
/// first. A full page stops before the records of its last millisecond, whose time it returns
/// as `next_to`: `to` is exclusive, so the next page (`to=next_to`) starts with them and no
/// record is skipped or repeated (unless one page's worth of records share one millisecond;
/// then raise `limit`).
async fn list_all_origins(
    store: &dyn flowgate_store::AuditStore,
    filter: AuditFilter,
) -> Result<Response, ApiError> {
    let limit = filter.limit as usize;
    // One more than a page from each log tells whether anything is left after this page.
    let filter = AuditFilter {
        limit: filter.limit.saturating_add(1),
        ..filter
    };
    let mut merged = Vec::new();
    let origins = store.audit_origins().await?;
    for origin in &origins {
        let rows = store.list_audit(origin, &filter).await?;
        merged.extend(listed(origin, rows)?);
    }
    merged.sort_by(|a, b| (b.time_ms, &b.origin, b.index).cmp(&(a.time_ms, &a.origin, a.index)));
    let mut next_to = None;
    if merged.len() > limit {
        merged.truncate(limit);
        let last = merged.last().map_or(0, |record| record.time_ms);
        if merged.first().is_some_and(|record| record.time_ms != last) {
            merged.retain(|record| record.time_ms != last);
        }
        next_to = Some(last);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "origin": ALL_ORIGINS,
            "origins": origins,
            "data": merged,
            "next_to": next_to,
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
    audit.stored().await;
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
    audit.stored().await;
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
    audit.stored().await;
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
