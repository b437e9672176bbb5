//! The data plane: OpenAI routes (`/v1/chat/completions`, `/v1/embeddings`, `/v1/models`)
//! and Anthropic routes (`/v1/messages`, `/v1/messages/count_tokens`). Every inference call
//! runs the same stages top to bottom:
//!
//! 1. start the request context (request id, clock, the caller's dialect);
//! 2. authenticate the key against the in-memory snapshot;
//! 3. read the body under the size limit and parse the envelope (`model`, `stream`);
//! 4. resolve the model among the tenant's routes;
//! 5. admit: request rate, token reservation and concurrency limits (429 / 503);
//! 6. route: the model's routes in order, with retries, fallbacks and circuit breakers
//!    (`route`), each upstream request built in the upstream's dialect (`call`);
//! 7. answer in the caller's dialect (`answer`): a JSON body with its usage read, or a stream
//!    passed through or transcoded chunk by chunk; the token reservation is settled from the
//!    reported usage when the answer ends;
//! 8. stamp `x-request-id`, `x-flowgate-overhead-ms`, `x-ratelimit-*`, and log one line.

mod answer;
pub mod auth;
pub mod breaker;
mod call;
pub mod context;
mod envelope;
mod record;
mod route;
mod screen;
mod stream;
mod usage;

pub(crate) use envelope::read_body;

use crate::audit::{AuditError, AuditReceipt};
use crate::error::ApiError;
use crate::state::{AppState, ModelRoutes, Principal};
use crate::trace::{Detail, Stage};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use call::Call;
use context::RequestContext;
use envelope::Envelope;
use flowgate_config::AuditOnFull;
use flowgate_policy::{Decision, Phase};
use flowgate_providers::Operation;
use flowgate_ratelimit::{Admission, AdmissionError, AdmissionRequest, RateLimitHeaders, Subject};
use flowgate_translate::Ingress;
use flowgate_types::ApiFormat;
use http::header::{CONTENT_TYPE, HeaderValue};
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
}

/// Which API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat(Ingress),
    Embeddings,
}

impl Endpoint {
    fn format(self) -> ApiFormat {
        match self {
            Self::Chat(Ingress::Anthropic) => ApiFormat::Anthropic,
            Self::Chat(Ingress::OpenAi) | Self::Embeddings => ApiFormat::OpenAi,
        }
    }

    /// The root span's name: method and route.
    fn span_name(self) -> &'static str {
        match self {
            Self::Chat(Ingress::OpenAi) => "POST /v1/chat/completions",
            Self::Chat(Ingress::Anthropic) => "POST /v1/messages",
            Self::Embeddings => "POST /v1/embeddings",
        }
    }

    fn ingress(self) -> Ingress {
        match self {
            Self::Chat(ingress) => ingress,
            Self::Embeddings => Ingress::OpenAi,
        }
    }
}

async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    infer(state, request, Endpoint::Chat(Ingress::OpenAi)).await
}

async fn messages(State(state): State<AppState>, request: Request) -> Response {
    infer(state, request, Endpoint::Chat(Ingress::Anthropic)).await
}

async fn embeddings(State(state): State<AppState>, request: Request) -> Response {
    infer(state, request, Endpoint::Embeddings).await
}

/// What stages 1 to 4 established about a request.
struct Accepted {
    context: RequestContext,
    principal: Principal,
    headers: http::HeaderMap,
    body: Bytes,
    model: Arc<ModelRoutes>,
    client_model: String,
    stream: bool,
    max_output_tokens: Option<u64>,
}

/// Stages 1 to 4, shared by every model route: context, authentication, body and envelope,
/// model resolution. `Err` is the finished error answer.
async fn accept(
    state: &AppState,
    request: Request,
    format: ApiFormat,
    span_name: &'static str,
) -> Result<Accepted, Response> {
    let (parts, body) = request.into_parts();
    let mut context = RequestContext::start(state, &parts.headers, format);
    context.trace.set_name(span_name);
    let span = context.trace.begin();
    let principal = auth::authenticate(state, &parts.headers);
    context
        .trace
        .end(Stage::Auth, span, principal.is_ok(), Detail::none);
    let principal = principal.map_err(|error| context.fail(error))?;
    context.tenant_id = Some(principal.tenant.tenant.id.clone());
    context.key_id = Some(principal.key_id.clone());
    let limit = state.config().server.max_body_bytes;
    let body = match envelope::read_body(&parts.headers, body, limit).await {
        Ok(body) => body,
        Err(error) => return Err(context.fail(error)),
    };
    let envelope = Envelope::parse(&body).map_err(|error| context.fail(error))?;
    let (stream, max_output_tokens) = (envelope.stream, envelope.max_output_tokens);
    let client_model = envelope.model.into_owned();
    context.model = Some(client_model.clone());
    let model =
        resolve_model(state, &principal, &client_model).map_err(|error| context.fail(error))?;
    Ok(Accepted {
        context,
        principal,
        headers: parts.headers,
        body,
        model,
        client_model,
        stream,
        max_output_tokens,
    })
}

/// The inference pipeline, stages 1 to 8.
async fn infer(state: AppState, request: Request, endpoint: Endpoint) -> Response {
    let Accepted {
        mut context,
        principal,
        headers,
        body,
        model,
        client_model,
        stream,
        max_output_tokens,
    } = match accept(&state, request, endpoint.format(), endpoint.span_name()).await {
        Ok(accepted) => accepted,
        Err(answer) => return answer,
    };
    let stream = stream && endpoint != Endpoint::Embeddings;
    context.stream = stream;
    let span = context.trace.begin();
    let admitted = admit(&state, &principal, max_output_tokens, body.len()).await;
    context
        .trace
        .end(Stage::Limits, span, admitted.is_ok(), Detail::none);
    let admission = match admitted {
        Ok(admission) => admission,
        Err((error, headers)) => {
            context.rate_limits = headers;
            return context.fail(error);
        }
    };
    context.rate_limits = Some(*admission.headers());
    let operation = match endpoint {
        Endpoint::Embeddings => Operation::Embeddings,
        Endpoint::Chat(_) => Operation::Chat { stream },
    };
    let body_len = body.len();
    let mut call = Call::new(endpoint.ingress(), operation, body, client_model, &headers);
    let tenant = &principal.tenant;
    let audited = state.config().audit.enabled;
    // The prompt's keyed hash (and, when kept, its sealed text) for the audit record, over
    // the text the client sent.
    let prompt = match endpoint {
        Endpoint::Chat(_) if audited => call.ir().map(record::prompt_text).map(Some),
        Endpoint::Embeddings if audited => record::embedding_text(&call.body).map(Some),
        _ => Ok(None),
    };
    let request_content = match prompt {
        Ok(prompt) => prompt.map(|prompt| {
            record::keep_content(
                tenant,
                &context.request_id,
                flowgate_audit::record::RecordKind::Request,
                &prompt,
            )
        }),
        Err(error) => return context.fail(error),
    };
    // Stage 5b: screening of the prompt (block, redact, flag).
    if tenant.policy.screens(Phase::Request) {
        let span = context.trace.begin();
        let screened = match endpoint {
            Endpoint::Chat(_) => screen::screen_request(&tenant.policy, &mut call, body_len),
            Endpoint::Embeddings => screen::screen_embeddings(&tenant.policy, &mut call, body_len),
        };
        let decision = screened
            .as_ref()
            .map_or(Decision::Allow, |screening| screening.decision);
        context.trace.end(
            Stage::Policy,
            span,
            screened.is_ok() && decision != Decision::Block,
            || Detail::Policy {
                phase: "request",
                decision: decision.as_str(),
            },
        );
        match screened {
            Ok(screening) => context.screening = screening,
            Err(error) => return context.fail(error),
        }
    }
    // Stage 5c: the request-side audit record, durable while the upstream call runs.
    if context.screening.decision == Decision::Block {
        if audited {
            let receipt =
                state
                    .audit()
                    .submit(record::request_record(&context, request_content, Some(403)));
            if let Err(error) = await_durable(&state, &mut context, receipt).await {
                return context.fail(error);
            }
        }
        let violation = context.screening.violation(Phase::Request);
        return context.fail(violation);
    }
    let request_record = audited.then(|| {
        context.audit = Some(state.audit().clone());
        record::request_record(&context, request_content, None)
    });
    // Stage 6: routing, concurrently with the audit write.
    let audit = &state.config().audit;
    let audit_span = request_record.as_ref().and_then(|_| context.trace.begin());
    let (dispatched, (durable, audit_span)) =
        tokio::join!(route::dispatch(&model, &mut call, &mut context), async {
            let durable = match request_record {
                Some(request_record) => {
                    // `join!` polls the dispatch first, which hands the upstream request to
                    // its connection's task; yielding lets that task write it, so the journal
                    // write below overlaps the upstream's work instead of delaying it.
                    tokio::task::yield_now().await;
                    let receipt = state.audit().submit(request_record);
                    durable_index(receipt, audit.durable_timeout, audit.on_full).await
                }
                None => Ok(None),
            };
            // The audit span ends when the record is durable, not when routing ends.
            (
                durable,
                audit_span.map(|span| (span, std::time::Instant::now())),
            )
        });
    if let Some((span, durable_at)) = audit_span {
        context
            .trace
            .end_at(Stage::Audit, span, durable_at, durable.is_ok());
    }
    match durable {
        Ok(index) => context.audit_index = index,
        Err(error) => return context.fail(error),
    }
    let dispatched = match dispatched {
        Ok(dispatched) => dispatched,
        Err(error) => return context.fail(error),
    };
    // Stage 7: the answer, screened when the policy screens answers.
    if !dispatched.response.status.is_success() {
        return answer::upstream_error(&mut context, &call, dispatched).await;
    }
    if stream {
        return answer::stream(context, &mut call, dispatched, admission, tenant);
    }
    answer::complete(&mut context, &mut call, dispatched, admission, tenant).await
}

/// Waits for a submitted record to be durable: its index, `None` when it was dropped under
/// `on_full = "serve"`, or the 503 to answer when the log refuses.
/// A record still not durable after `timeout` (the store is down and the queue holds it) is
/// treated like a full queue: `refuse` answers 503, `serve` goes on (the record stays queued
/// and is written when the store returns).
async fn durable_index(
    receipt: Result<AuditReceipt, AuditError>,
    timeout: std::time::Duration,
    on_full: AuditOnFull,
) -> Result<Option<u64>, ApiError> {
    let outcome = match receipt {
        Ok(receipt) => match tokio::time::timeout(timeout, receipt.durable()).await {
            Ok(outcome) => outcome,
            Err(_) if on_full == AuditOnFull::Serve => Err(AuditError::Dropped),
            Err(_) => Err(AuditError::Unavailable),
        },
        Err(error) => Err(error),
    };
    match outcome {
        Ok(index) => Ok(Some(index)),
        Err(error) if error.refuses() => {
            tracing::error!(error = %error, "audit record not durable: request refused");
            Err(ApiError::Unavailable {
                subsystem: "audit log",
            })
        }
        Err(_) => Ok(None),
    }
}

async fn await_durable(
    state: &AppState,
    context: &mut RequestContext,
    receipt: Result<AuditReceipt, AuditError>,
) -> Result<(), ApiError> {
    let audit = &state.config().audit;
    let span = context.trace.begin();
    let durable = durable_index(receipt, audit.durable_timeout, audit.on_full).await;
    context
        .trace
        .end(Stage::Audit, span, durable.is_ok(), Detail::none);
    context.audit_index = durable?;
    Ok(())
}

/// `POST /v1/messages/count_tokens`: Anthropic's token count of a request, estimated locally
/// (no upstream call, no admission).
async fn count_tokens(State(state): State<AppState>, request: Request) -> Response {
    let accepted = accept(
        &state,
        request,
        ApiFormat::Anthropic,
        "POST /v1/messages/count_tokens",
    )
    .await;
    let Accepted { context, body, .. } = match accepted {
        Ok(accepted) => accepted,
        Err(answer) => return answer,
    };
    // count_tokens bodies carry no `max_tokens`; the translator requires it for messages.
    let counted = with_default_max_tokens(&body)
        .and_then(|body| {
            flowgate_translate::parse_request(Ingress::Anthropic, &body)
                .map_err(|err| call::request_error(&err))
        })
        .map(|request| flowgate_translate::estimate::count_tokens_body(&request));
    match counted {
        Ok(answer_body) => {
            let mut answer = Response::new(Body::from(answer_body));
            answer
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            context.finish(answer, false)
        }
        Err(error) => context.fail(error),
    }
}

/// The body with `"max_tokens": 1` added when it has none.
fn with_default_max_tokens(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|err| ApiError::invalid(format!("request body is not a JSON object: {err}")))?;
    value
        .entry("max_tokens")
        .or_insert(serde_json::Value::from(1));
    serde_json::to_vec(&value).map_err(|err| ApiError::Internal {
        detail: err.to_string(),
    })
}

/// Stage 4: the model must exist and the tenant must be allowed to use it (404 otherwise,
/// the same answer either way so model names do not leak across tenants).
fn resolve_model(
    state: &AppState,
    principal: &Principal,
    model: &str,
) -> Result<Arc<ModelRoutes>, ApiError> {
    match state.routes().get(model) {
        Some(routes) if principal.tenant.may_use(model) => Ok(Arc::clone(routes)),
        _ => Err(ApiError::UnknownModel {
            model: model.to_owned(),
        }),
    }
}

/// Output tokens reserved when the request names no limit.
const DEFAULT_OUTPUT_RESERVATION: u64 = 256;

/// Stage 5: admission. Reserves the estimated prompt tokens (a quarter of the body's bytes) plus
/// the requested output limit; the reservation is settled when the answer ends.
async fn admit(
    state: &AppState,
    principal: &Principal,
    max_output_tokens: Option<u64>,
    body_len: usize,
) -> Result<Admission, (ApiError, Option<RateLimitHeaders>)> {
    let reserve_tokens =
        (body_len as u64).div_ceil(4) + max_output_tokens.unwrap_or(DEFAULT_OUTPUT_RESERVATION);
    let request = AdmissionRequest {
        tenant: Subject {
            id: principal.tenant.tenant.id.as_str(),
            limits: &principal.tenant.limits,
        },
        key: principal.key_limits.as_ref().map(|limits| Subject {
            id: principal.key_id.as_str(),
            limits,
        }),
        reserve_tokens,
    };
    match state.limiter().admit(&request).await {
        Ok(admission) => Ok(admission),
        Err(AdmissionError::Rejected(rejection)) => Err((
            ApiError::RateLimited {
                subject: rejection.subject.as_str(),
                limit: rejection.limit.as_str(),
                retry_after: rejection.retry_after,
            },
            Some(rejection.headers),
        )),
        Err(AdmissionError::Unavailable(_)) => Err((
            ApiError::Unavailable {
                subsystem: "rate limiter",
            },
            None,
        )),
    }
}

async fn list_models(State(state): State<AppState>, request: Request) -> Response {
    let mut context = RequestContext::start(&state, request.headers(), ApiFormat::OpenAi);
    context.trace.set_name("GET /v1/models");
    let span = context.trace.begin();
    let authenticated = auth::authenticate(&state, request.headers());
    context
        .trace
        .end(Stage::Auth, span, authenticated.is_ok(), Detail::none);
    let principal = match authenticated {
        Ok(principal) => principal,
        Err(error) => return context.fail(error),
    };
    let data: Vec<serde_json::Value> = state
        .routes()
        .names()
        .filter(|name| principal.tenant.may_use(name))
        .map(|name| serde_json::json!({"id": name, "object": "model", "created": 0, "owned_by": "flowgate"}))
        .collect();
    let body = serde_json::json!({"object": "list", "data": data});
    let mut answer = Response::new(Body::from(body.to_string()));
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    context.finish(answer, false)
}
