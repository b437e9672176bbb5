//! Stage 7, the answer: turns the chosen upstream response into the client's answer in the
//! client's dialect. A complete answer is forwarded (same dialect, usage read from it) or
//! decoded and re-encoded (another dialect, usage estimated when the upstream reported none);
//! a stream goes out chunk by chunk through `stream::ClientStream`; an upstream error status
//! becomes an error in the client's dialect (a same-dialect request error is passed through
//! verbatim). Never a 200 that hides a failure.

use crate::error::ApiError;
use crate::proxy::call::{Call, Wire};
use crate::proxy::context::RequestContext;
use crate::proxy::route::Dispatched;
use crate::proxy::stream::{ClientStream, Converter, ScreenedStream};
use crate::proxy::usage::to_usage;
use crate::proxy::{record, screen};
use crate::state::TenantEntry;
use crate::trace::{Detail, Stage};
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use flowgate_providers::Operation;
use flowgate_ratelimit::Admission;
use flowgate_translate::passthrough::{self, UsageSniffer};
use flowgate_translate::stream::{EncoderOptions, StreamTranscoder};
use flowgate_translate::{UpstreamKind, estimate};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use std::sync::Arc;
use tokio::time::Instant;

/// Largest upstream answer read into memory (non-streaming answers).
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
/// Largest upstream error body read.
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// A streamed answer: the head now, the body as the upstream sends it.
pub fn stream(
    mut context: RequestContext,
    call: &mut Call,
    dispatched: Dispatched<'_>,
    admission: Admission,
    tenant: &Arc<TenantEntry>,
) -> Response {
    // An audited answer is decoded to hash its text even when no rule screens it (the
    // screening stream then passes deltas through at once).
    let decoded = screen::screens_answers(&tenant.policy) || context.audit.is_some();
    let converter = match dispatched.wire {
        Wire::Native { strip_usage } if !decoded => {
            Converter::Native(UsageSniffer::new(call.ingress, strip_usage))
        }
        wire => {
            let kind = match wire {
                Wire::Translated(kind) => kind,
                Wire::Native { .. } => UpstreamKind::native_for(call.ingress),
            };
            let include_usage = match call.ir() {
                Ok(ir) => ir.include_usage,
                Err(error) => return context.fail(error),
            };
            let mut options = EncoderOptions::new(call.client_model.clone(), include_usage);
            options.estimated_input_tokens = needs_estimate(kind)
                .then(|| call.parsed().map(estimate::estimate_request_tokens))
                .flatten();
            if decoded {
                Converter::Screened(Box::new(ScreenedStream::new(
                    kind,
                    call.ingress,
                    options,
                    Arc::clone(tenant),
                )))
            } else {
                Converter::Translated(Box::new(StreamTranscoder::new(call.ingress, kind, options)))
            }
        }
    };
    let status = dispatched.response.status;
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    context.stream = true;
    // The upstream span runs until the stream ends (closed when the request is logged).
    context.trace.begin_open(Stage::Upstream);
    let answer = context.finish(answer, true);
    let (parts, _) = answer.into_parts();
    let body = Body::from_stream(ClientStream::new(
        dispatched.response.body,
        converter,
        context,
        status.as_u16(),
        admission,
    ));
    Response::from_parts(parts, body)
}

/// Ollama streams may end without counts; the others always report usage.
fn needs_estimate(kind: UpstreamKind) -> bool {
    kind == UpstreamKind::Ollama
}

/// A complete answer, read whole and sent as one JSON body.
pub async fn complete(
    context: &mut RequestContext,
    call: &mut Call,
    dispatched: Dispatched<'_>,
    admission: Admission,
    tenant: &TenantEntry,
) -> Response {
    let policy = &tenant.policy;
    let provider = &dispatched.route.upstream.name;
    let span = context.trace.begin();
    let started = Instant::now();
    let collected = dispatched
        .response
        .body
        .collect(MAX_UPSTREAM_BODY, provider)
        .await;
    context.upstream_time += started.elapsed();
    context
        .trace
        .end(Stage::Upstream, span, collected.is_ok(), Detail::none);
    let bytes = match collected {
        Ok(bytes) => bytes,
        Err(error) => return context.fail(error.into()),
    };
    let texts = call.operation != Operation::Embeddings;
    let screened = texts && screen::screens_answers(policy);
    // An audited answer is decoded to hash its text even when no rule screens it.
    let read_by = (screened || (texts && context.audit.is_some())).then_some(tenant);
    let answer = match dispatched.wire {
        Wire::Native { .. } if read_by.is_none() => {
            let usage = passthrough::usage_from_json(call.ingress, &bytes);
            Ok((bytes, usage))
        }
        Wire::Native { .. } => {
            let kind = UpstreamKind::native_for(call.ingress);
            translate_answer(context, call, kind, &bytes, provider, read_by, screened)
        }
        Wire::Translated(kind) => {
            translate_answer(context, call, kind, &bytes, provider, read_by, screened)
        }
    };
    let (body, usage) = match answer {
        Ok(answer) => answer,
        Err(error) => {
            // The upstream spent the tokens even when the answer is refused.
            let reserved = admission.reserved_tokens();
            admission.settle(reserved);
            return context.fail(error);
        }
    };
    context.usage = usage.map(to_usage);
    let actual = context
        .usage
        .map_or(admission.reserved_tokens(), |usage| usage.total());
    admission.settle(actual);
    let mut answer = Response::new(Body::from(body));
    *answer.status_mut() = dispatched.response.status;
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    context.finish(answer, false)
}

/// Decodes an answer of `kind`; when `tenant` is given, keeps its content for the audit record
/// and, when `screen`, screens it with the tenant's policy (a block refuses it, a redaction
/// rewrites it); encodes it for the client. A same-dialect answer that screening left
/// unchanged goes out as the upstream's own bytes.
fn translate_answer(
    context: &mut RequestContext,
    call: &mut Call,
    kind: UpstreamKind,
    bytes: &Bytes,
    provider: &str,
    tenant: Option<&TenantEntry>,
    screen: bool,
) -> Result<(Bytes, Option<flowgate_translate::Usage>), ApiError> {
    let invalid = |detail: String| ApiError::UpstreamInvalid {
        provider: provider.to_owned(),
        detail,
    };
    let mut decoded =
        flowgate_translate::decode_response(kind, bytes).map_err(|err| invalid(err.to_string()))?;
    estimate::fill_missing_usage(call.ir()?, &mut decoded);
    let mut rewritten = !kind.is_native_for(call.ingress);
    if let Some(tenant) = tenant {
        // The hash commits to what the upstream answered, before any redaction.
        context.response_content = Some(record::keep_content(
            tenant,
            &context.request_id,
            flowgate_audit::record::RecordKind::Completion,
            &screen::answer_text(&decoded),
        ));
    }
    if let Some(tenant) = tenant.filter(|_| screen) {
        let span = context.trace.begin();
        let screening = screen::screen_answer(&tenant.policy, &mut decoded);
        let decision = screening.decision;
        context.trace.end(
            Stage::Policy,
            span,
            decision != flowgate_policy::Decision::Block,
            || Detail::Policy {
                phase: "response",
                decision: decision.as_str(),
            },
        );
        context.screening.merge(&screening);
        if screening.decision == flowgate_policy::Decision::Block {
            return Err(screening.violation(flowgate_policy::Phase::Response));
        }
        rewritten |= screening.decision >= flowgate_policy::Decision::Redact;
    }
    if !rewritten {
        return Ok((bytes.clone(), decoded.usage));
    }
    let body = flowgate_translate::encode_response(call.ingress, &decoded, &call.client_model)
        .map_err(|err| invalid(err.to_string()))?;
    Ok((body, decoded.usage))
}

/// An upstream error status, in the client's dialect. Request errors the upstream reports in
/// the client's own dialect are passed through verbatim (same status, same body).
pub async fn upstream_error(
    context: &mut RequestContext,
    call: &Call,
    dispatched: Dispatched<'_>,
) -> Response {
    let provider = &dispatched.route.upstream.name;
    let status = dispatched.response.status;
    let retry_after = dispatched.response.headers.get(RETRY_AFTER).cloned();
    let span = context.trace.begin();
    let started = Instant::now();
    let body = dispatched
        .response
        .body
        .collect(MAX_ERROR_BODY, provider)
        .await
        .unwrap_or_default();
    context.upstream_time += started.elapsed();
    context
        .trace
        .end(Stage::Upstream, span, false, Detail::none);
    let kind = crate::proxy::call::upstream_kind(dispatched.route.upstream.kind);
    let passes_through = matches!(status.as_u16(), 400 | 404 | 409 | 413 | 422);
    if passes_through
        && matches!(dispatched.wire, Wire::Native { .. })
        && is_error_body(call, &body)
    {
        let mut answer = Response::new(Body::from(body));
        *answer.status_mut() = status;
        answer
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return context.finish(answer, false);
    }
    let parsed = flowgate_translate::parse_upstream_error(kind, status.as_u16(), &body);
    context.fail(ApiError::UpstreamStatus {
        provider: provider.clone(),
        status,
        message: (!parsed.message.is_empty()).then_some(parsed.message),
        retry_after,
    })
}

/// Whether `body` is an error object in the client's dialect.
fn is_error_body(call: &Call, body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    match call.ingress {
        flowgate_translate::Ingress::OpenAi => value.get("error").is_some_and(|e| e.is_object()),
        flowgate_translate::Ingress::Anthropic => {
            value.get("type").and_then(|t| t.as_str()) == Some("error")
        }
    }
}
