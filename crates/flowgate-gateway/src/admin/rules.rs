//! `/v1/rules`: a tenant's own policy rules (list, create, show, replace, delete), the presets
//! (`/v1/rules/presets`) and a dry run (`/v1/rules/test`) that screens a sample text and
//! changes nothing.
//!
//! A tenant key manages its own tenant's rules; the admin key names the tenant with
//! `?tenant_id=` or a `tenant_id` body field. Every change is compiled first with the tenant's
//! preset, the configured rules and the tenant's other rules, so a rule that would not compile
//! (bad regex, repeated id, unknown detector) is refused with 400 and snapshots never see it;
//! then it is stored as JSON and this node's snapshot is reloaded before answering, so the next
//! request is screened with it. Matching and compilation live in `flowgate-policy`.

use super::{json_response, parse_json, read_admin_body};
use crate::error::ApiError;
use crate::proxy::auth::{AdminCaller, authenticate_admin};
use crate::state::AppState;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use flowgate_policy::{EvalContext, Phase, Preset, Rule};
use flowgate_store::{StoredRule, Tenant};
use flowgate_types::{TenantId, now_millis};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/rules", get(list_rules).post(create_rule))
        .route("/v1/rules/presets", get(list_presets))
        .route("/v1/rules/test", post(test_rules))
        .route(
            "/v1/rules/{id}",
            get(show_rule).put(replace_rule).delete(delete_rule),
        )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantQuery {
    tenant_id: Option<String>,
}

/// Whose rules a request manages: the caller's own tenant for a tenant key; for the admin
/// key, the tenant it names (query or body). A tenant key naming another tenant is refused.
async fn resolve_tenant(
    state: &AppState,
    headers: &HeaderMap,
    named: Option<&str>,
) -> Result<Tenant, ApiError> {
    let tenant_id = match authenticate_admin(state, headers)? {
        AdminCaller::Tenant(principal) => {
            let own = principal.tenant.tenant.id.as_str();
            if named.is_some_and(|named| named != own) {
                return Err(ApiError::AdminOnly);
            }
            own.to_owned()
        }
        AdminCaller::Admin => named
            .map(str::to_owned)
            .ok_or_else(|| ApiError::InvalidRequest {
                message: "tenant_id: the admin key must name the tenant (`?tenant_id=` or a `tenant_id` body field)".to_owned(),
                param: Some("tenant_id"),
            })?,
    };
    state
        .store()
        .get_tenant(&TenantId::new(tenant_id))
        .await?
        .ok_or(ApiError::NotFound { what: "tenant" })
}

fn query_tenant(
    query: Result<Query<TenantQuery>, QueryRejection>,
) -> Result<Option<String>, ApiError> {
    query
        .map(|Query(query)| query.tenant_id)
        .map_err(|err| ApiError::invalid(err.body_text()))
}

/// Splits a JSON body into the optional `tenant_id` field and the rest (the rule).
fn split_tenant_field(body: &[u8]) -> Result<(Option<String>, Map<String, Value>), ApiError> {
    let mut object: Map<String, Value> = parse_json(body)?;
    let tenant_id = match object.remove("tenant_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(_) => {
            return Err(ApiError::InvalidRequest {
                message: "tenant_id: must be a string".to_owned(),
                param: Some("tenant_id"),
            });
        }
    };
    Ok((tenant_id, object))
}

/// The rule in a request body (its id and match are checked when it is compiled).
fn parse_rule(object: Map<String, Value>) -> Result<Rule, ApiError> {
    serde_json::from_value(Value::Object(object))
        .map_err(|err| ApiError::invalid(format!("invalid rule: {err}")))
}

/// The tenant named by the query or the body; both may name it, but not differently.
fn one_tenant_id(query: Option<String>, body: Option<String>) -> Result<Option<String>, ApiError> {
    match (query, body) {
        (Some(query), Some(body)) if query != body => Err(ApiError::InvalidRequest {
            message: "tenant_id: the query and the body name different tenants".to_owned(),
            param: Some("tenant_id"),
        }),
        (query, body) => Ok(query.or(body)),
    }
}

fn parse_stored(stored: &StoredRule) -> Result<Rule, ApiError> {
    serde_json::from_str(&stored.rule).map_err(|err| ApiError::Internal {
        detail: format!("stored rule `{}` is not a rule: {err}", stored.rule_id),
    })
}

/// Compiles the tenant's rules as they would be after a change; 400 naming the problem.
fn check_compiles(state: &AppState, tenant: &Tenant, rules: &[Rule]) -> Result<(), ApiError> {
    state
        .policies()
        .compile_for_tenant(&tenant.rules_preset, rules)
        .map(|_| ())
        .map_err(|err| ApiError::InvalidRequest {
            message: err.to_string(),
            param: Some("match"),
        })
}

fn view(stored: &StoredRule) -> Result<Value, ApiError> {
    let rule = parse_stored(stored)?;
    let mut value = serde_json::to_value(&rule).map_err(|err| ApiError::Internal {
        detail: err.to_string(),
    })?;
    value["object"] = json!("rule");
    value["tenant_id"] = json!(stored.tenant_id);
    value["created_at"] = json!(stored.created_at);
    value["updated_at"] = json!(stored.updated_at);
    Ok(value)
}

fn rule_json(rule: &Rule) -> Result<String, ApiError> {
    serde_json::to_string(rule).map_err(|err| ApiError::Internal {
        detail: err.to_string(),
    })
}

async fn tenant_rules(state: &AppState, tenant: &Tenant) -> Result<Vec<StoredRule>, ApiError> {
    Ok(state.store().list_rules(&tenant.id).await?)
}

async fn list_rules(
    State(state): State<AppState>,
    query: Result<Query<TenantQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let named = query_tenant(query)?;
    let tenant = resolve_tenant(&state, request.headers(), named.as_deref()).await?;
    let data = tenant_rules(&state, &tenant)
        .await?
        .iter()
        .map(view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "tenant_id": tenant.id,
            "rules_preset": tenant.rules_preset,
            "data": data,
        }),
    ))
}

async fn create_rule(
    State(state): State<AppState>,
    query: Result<Query<TenantQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let named = query_tenant(query)?;
    let headers = request.headers().clone();
    let body = read_admin_body(request).await?;
    let (body_tenant, object) = split_tenant_field(&body)?;
    let named = one_tenant_id(named, body_tenant)?;
    let tenant = resolve_tenant(&state, &headers, named.as_deref()).await?;
    let rule = parse_rule(object)?;
    let existing = tenant_rules(&state, &tenant).await?;
    if existing.iter().any(|stored| stored.rule_id == rule.id) {
        return Err(ApiError::Conflict {
            message: format!("rule `{}` already exists", rule.id),
        });
    }
    let mut rules = existing
        .iter()
        .map(parse_stored)
        .collect::<Result<Vec<_>, _>>()?;
    rules.push(rule.clone());
    check_compiles(&state, &tenant, &rules)?;
    let now = now_millis();
    let stored = StoredRule {
        tenant_id: tenant.id.clone(),
        rule_id: rule.id.clone(),
        rule: rule_json(&rule)?,
        created_at: now,
        updated_at: now,
    };
    state.store().create_rule(&stored).await?;
    state.refresh_after_change().await?;
    Ok(json_response(StatusCode::CREATED, &view(&stored)?))
}

async fn show_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<TenantQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let named = query_tenant(query)?;
    let tenant = resolve_tenant(&state, request.headers(), named.as_deref()).await?;
    let stored = state
        .store()
        .get_rule(&tenant.id, &id)
        .await?
        .ok_or(ApiError::NotFound { what: "rule" })?;
    Ok(json_response(StatusCode::OK, &view(&stored)?))
}

async fn replace_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<TenantQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let named = query_tenant(query)?;
    let headers = request.headers().clone();
    let body = read_admin_body(request).await?;
    let (body_tenant, mut object) = split_tenant_field(&body)?;
    let named = one_tenant_id(named, body_tenant)?;
    let tenant = resolve_tenant(&state, &headers, named.as_deref()).await?;
    match object.get("id") {
        None => {
            object.insert("id".to_owned(), json!(id));
        }
        Some(Value::String(body_id)) if *body_id == id => {}
        Some(_) => {
            return Err(ApiError::InvalidRequest {
                message: format!("id: the body names another rule than `{id}`"),
                param: Some("id"),
            });
        }
    }
    let rule = parse_rule(object)?;
    let existing = tenant_rules(&state, &tenant).await?;
    if !existing.iter().any(|stored| stored.rule_id == id) {
        return Err(ApiError::NotFound { what: "rule" });
    }
    let rules = existing
        .iter()
        .map(|stored| {
            if stored.rule_id == id {
                Ok(rule.clone())
            } else {
                parse_stored(stored)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_compiles(&state, &tenant, &rules)?;
    let stored = state
        .store()
        .replace_rule(&tenant.id, &id, &rule_json(&rule)?, now_millis())
        .await?
        .ok_or(ApiError::NotFound { what: "rule" })?;
    state.refresh_after_change().await?;
    Ok(json_response(StatusCode::OK, &view(&stored)?))
}

async fn delete_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<TenantQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let named = query_tenant(query)?;
    let tenant = resolve_tenant(&state, request.headers(), named.as_deref()).await?;
    if !state.store().delete_rule(&tenant.id, &id).await? {
        return Err(ApiError::NotFound { what: "rule" });
    }
    state.refresh_after_change().await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "object": "rule", "tenant_id": tenant.id, "deleted": true}),
    ))
}

async fn list_presets(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    authenticate_admin(&state, request.headers())?;
    let data: Vec<Value> = Preset::ALL
        .into_iter()
        .map(|preset| {
            json!({
                "object": "rules_preset",
                "name": preset.as_str(),
                "description": preset.description(),
                "rules": preset.rules(),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    text: String,
    #[serde(default = "default_phase")]
    phase: Phase,
    /// Overrides the tenant's preset (or `default` when no tenant is named).
    preset: Option<String>,
    /// Extra rules to try on top of the stored ones; never stored.
    #[serde(default)]
    rules: Vec<Rule>,
    tenant_id: Option<String>,
}

fn default_phase() -> Phase {
    Phase::Request
}

/// Screens a sample text with the policy the tenant would get (its preset or the one named,
/// the configured rules, its stored rules, then any rules in the body) and answers what would
/// happen. The admin key without a tenant tries a preset and the body's rules alone.
async fn test_rules(
    State(state): State<AppState>,
    query: Result<Query<TenantQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let named = query_tenant(query)?;
    let headers = request.headers().clone();
    let body = read_admin_body(request).await?;
    let test: TestRequest = parse_json(&body)?;
    let named = one_tenant_id(named, test.tenant_id.clone())?;
    let caller = authenticate_admin(&state, &headers)?;
    let tenant = match (&caller, &named) {
        (AdminCaller::Admin, None) => None,
        _ => Some(resolve_tenant(&state, &headers, named.as_deref()).await?),
    };
    if let Some(preset) = &test.preset
        && Preset::from_name(preset).is_none()
    {
        return Err(ApiError::InvalidRequest {
            message: format!(
                "preset: `{preset}` is not one of {}",
                Preset::ALL.map(Preset::as_str).join(", ")
            ),
            param: Some("preset"),
        });
    }
    let mut rules = match &tenant {
        Some(tenant) => tenant_rules(&state, tenant)
            .await?
            .iter()
            .map(parse_stored)
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    rules.extend(test.rules);
    let preset = test
        .preset
        .or_else(|| tenant.as_ref().map(|tenant| tenant.rules_preset.clone()))
        .unwrap_or_else(|| Preset::Default.as_str().to_owned());
    let policy = state
        .policies()
        .compile_for_tenant(&preset, &rules)
        .map_err(|err| ApiError::InvalidRequest {
            message: err.to_string(),
            param: Some("rules"),
        })?;
    let context = match test.phase {
        Phase::Request => EvalContext::request(),
        Phase::Response => EvalContext::response(),
    };
    let evaluation = policy.evaluate(&test.text, &context);
    Ok(json_response(
        StatusCode::OK,
        &evaluation.to_test_answer(&test.text),
    ))
}
