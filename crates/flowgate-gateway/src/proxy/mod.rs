//! The data plane: OpenAI-format routes (`/v1/chat/completions`, `/v1/embeddings`,
//! `/v1/models`). Each handler runs the pipeline's stages top to bottom:
//!
//! 1. start the request context (request id, clock);
//! 2. authenticate the key against the in-memory snapshot;
//! 3. read the body under the size limit and parse the envelope (`model`, `stream`);
//! 4. resolve the model among the tenant's routes;
//! 5. admit: request rate, token reservation and concurrency limits (429 / 503);
//! 6. call the upstream (the first route; retries and fallbacks come with routing);
//! 7. answer: a JSON body with its usage read, or a stream passed through chunk by chunk;
//!    the token reservation is settled from the reported usage when the answer ends;
//! 8. stamp `x-request-id`, `x-flowgate-overhead-ms`, `x-ratelimit-*`, and log one line.

pub mod auth;
pub mod context;
mod envelope;
mod stream;
mod usage;

pub(crate) use envelope::read_body;

use crate::error::ApiError;
use crate::state::{AppState, ModelRoutes, Principal, Route};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use context::RequestContext;
use envelope::Envelope;
use flowgate_config::ProviderKind;
use flowgate_providers::{UpstreamBody, UpstreamResponse, mock};
use flowgate_ratelimit::{Admission, AdmissionError, AdmissionRequest, RateLimitHeaders, Subject};
use flowgate_types::ApiFormat;
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use std::sync::Arc;
use tokio::time::Instant;

/// Largest upstream answer read into memory (non-streaming answers).
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
}

/// Which OpenAI endpoint a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    ChatCompletions,
    Embeddings,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Embeddings => "/embeddings",
        }
    }
}

async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    proxy_openai(state, request, Endpoint::ChatCompletions).await
}

async fn embeddings(State(state): State<AppState>, request: Request) -> Response {
    proxy_openai(state, request, Endpoint::Embeddings).await
}

async fn proxy_openai(state: AppState, request: Request, endpoint: Endpoint) -> Response {
    let (parts, body) = request.into_parts();
    let mut context = RequestContext::start(&state, &parts.headers, ApiFormat::OpenAi);
    let principal = match auth::authenticate(&state, &parts.headers) {
        Ok(principal) => principal,
        Err(error) => return context.fail(error),
    };
    context.tenant_id = Some(principal.tenant.tenant.id.clone());
    let body = match envelope::read_body(&parts.headers, body, state.config().server.max_body_bytes)
        .await
    {
        Ok(body) => body,
        Err(error) => return context.fail(error),
    };
    let envelope = match Envelope::parse(&body) {
        Ok(envelope) => envelope,
        Err(error) => return context.fail(error),
    };
    context.model = Some(envelope.model.to_string());
    context.stream = envelope.stream && endpoint == Endpoint::ChatCompletions;
    let model = match resolve_model(&state, &principal, &envelope.model) {
        Ok(model) => model,
        Err(error) => return context.fail(error),
    };
    let admission = match admit(&state, &principal, &envelope, body.len()).await {
        Ok(admission) => admission,
        Err((error, headers)) => {
            context.rate_limits = headers;
            return context.fail(error);
        }
    };
    context.rate_limits = Some(*admission.headers());
    let Some(route) = model.routes.first() else {
        return context.fail(ApiError::UnknownModel {
            model: envelope.model.to_string(),
        });
    };
    context.provider = Some(route.upstream.name.clone());
    let upstream_body = envelope.with_model(&body, &route.upstream_model);
    let upstream_started = Instant::now();
    let result = call_upstream(route, endpoint, upstream_body, &context).await;
    context.upstream_time += upstream_started.elapsed();
    let response = match result {
        Ok(response) => response,
        Err(error) => return context.fail(error),
    };
    if !response.status.is_success() {
        return upstream_failure(&mut context, route, response).await;
    }
    if context.stream {
        let status = response.status;
        let mut answer = Response::new(Body::empty());
        *answer.status_mut() = status;
        let headers = answer.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        let answer = context.finish(answer, true);
        let (parts, _) = answer.into_parts();
        let body = Body::from_stream(stream::PassThrough::new(
            response.body,
            context,
            status.as_u16(),
            admission,
        ));
        return Response::from_parts(parts, body);
    }
    let body_started = Instant::now();
    let collected = response
        .body
        .collect(MAX_UPSTREAM_BODY, &route.upstream.name)
        .await;
    context.upstream_time += body_started.elapsed();
    let bytes = match collected {
        Ok(bytes) => bytes,
        Err(error) => return context.fail(error.into()),
    };
    context.usage = usage::from_json(&bytes);
    settle(admission, context.usage.as_ref());
    let mut answer = Response::new(Body::from(bytes));
    *answer.status_mut() = response.status;
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    context.finish(answer, false)
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
    envelope: &Envelope<'_>,
    body_len: usize,
) -> Result<Admission, (ApiError, Option<RateLimitHeaders>)> {
    let reserve_tokens = (body_len as u64).div_ceil(4)
        + envelope
            .max_output_tokens
            .unwrap_or(DEFAULT_OUTPUT_RESERVATION);
    let request = AdmissionRequest {
        tenant: Subject {
            id: principal.tenant.tenant.id.as_str(),
            limits: &principal.tenant.limits,
        },
        key: None,
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

/// Settles a token reservation: the reported usage when known, else the reservation stands.
fn settle(admission: Admission, usage: Option<&flowgate_types::Usage>) {
    let actual = usage.map_or(admission.reserved_tokens(), flowgate_types::Usage::total);
    admission.settle(actual);
}

/// Stage 6: one upstream call; the mock provider answers in process.
async fn call_upstream(
    route: &Route,
    endpoint: Endpoint,
    body: Bytes,
    context: &RequestContext,
) -> Result<UpstreamResponse, ApiError> {
    if route.upstream.kind == ProviderKind::Mock {
        let answer = match endpoint {
            Endpoint::ChatCompletions => {
                mock::chat(&body, &route.upstream_model, context.request_id.as_str()).map(
                    |answer| match answer {
                        mock::MockAnswer::Json(json) => UpstreamBody::from_chunks([json]),
                        mock::MockAnswer::Stream(chunks) => UpstreamBody::from_chunks(chunks),
                    },
                )
            }
            Endpoint::Embeddings => mock::embeddings(&body, &route.upstream_model)
                .map(|json| UpstreamBody::from_chunks([json])),
        };
        return match answer {
            Ok(body) => Ok(UpstreamResponse {
                status: StatusCode::OK,
                headers: http::HeaderMap::new(),
                body,
            }),
            Err(message) => Err(ApiError::invalid(message)),
        };
    }
    Ok(route.upstream.post_json(endpoint.path(), body, &[]).await?)
}

/// A non-2xx upstream answer: client errors the provider reports are passed on with their
/// body (same dialect); everything else becomes a gateway error. Never a 200.
async fn upstream_failure(
    context: &mut RequestContext,
    route: &Route,
    response: UpstreamResponse,
) -> Response {
    let status = response.status;
    let retry_after = response.headers.get(RETRY_AFTER).cloned();
    let body_started = Instant::now();
    let body = response
        .body
        .collect(1024 * 1024, &route.upstream.name)
        .await;
    context.upstream_time += body_started.elapsed();
    let passes_through = matches!(status.as_u16(), 400 | 404 | 409 | 413 | 422);
    if let (true, Ok(bytes)) = (passes_through, &body)
        && serde_json::from_slice::<serde_json::Value>(bytes)
            .is_ok_and(|value| value.get("error").is_some())
    {
        let mut answer = Response::new(Body::from(bytes.clone()));
        *answer.status_mut() = status;
        answer
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return context.finish(answer, false);
    }
    context.fail(ApiError::UpstreamStatus {
        provider: route.upstream.name.clone(),
        status,
        retry_after,
    })
}

async fn list_models(State(state): State<AppState>, request: Request) -> Response {
    let context = RequestContext::start(&state, request.headers(), ApiFormat::OpenAi);
    let principal = match auth::authenticate(&state, request.headers()) {
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
