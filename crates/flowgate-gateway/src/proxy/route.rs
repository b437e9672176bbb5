//! Stage 6, routing: try a model's routes in order (the first drawn by weight when weights are
//! set), each guarded by its circuit breaker; retry a route with exponential backoff and jitter
//! on connect errors, first-byte timeouts, 429 (honouring `Retry-After`) and 5xx; then fall
//! back to the next route. All of it happens before the client was sent a byte: the answer
//! stage starts only with the attempt this returns.
//!
//! Outcomes of one attempt:
//! - 2xx: done (the breaker closes).
//! - 429, 5xx, 529, connect error, connect or first-byte timeout: retry, then fall back; 5xx and
//!   transport failures count against the breaker, 429 does not (the deployment is alive).
//! - 401, 403, 404 from the upstream: this route's credential or model is wrong; fall back
//!   without retrying.
//! - any other 4xx: the request itself is at fault; answered at once, no retry.
//!
//! When nothing is left to try, the last upstream answer is returned as final (the answer
//! stage renders its error in the client's dialect) or the last transport error.

use crate::error::ApiError;
use crate::metrics::AttemptOutcome;
use crate::proxy::breaker::Permit;
use crate::proxy::call::{Call, Prepared, Wire};
use crate::proxy::context::RequestContext;
use crate::state::{ModelRoutes, Route};
use crate::trace::{Detail, Stage, TRACEPARENT, TRACESTATE};
use flowgate_config::ProviderKind;
use flowgate_providers::{
    Operation, TimeoutPhase, UpstreamBody, UpstreamError, UpstreamResponse, mock,
};
use http::StatusCode;
use http::header::RETRY_AFTER;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Longest `Retry-After` honoured by waiting; a longer one moves on to the next route.
const MAX_HONOURED_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The attempt whose answer goes to the client.
#[derive(Debug)]
pub struct Dispatched<'a> {
    pub route: &'a Route,
    pub response: UpstreamResponse,
    pub wire: Wire,
}

enum Verdict {
    Done,
    /// Retry this route (after the delay), or fall back when out of retries.
    Retry,
    /// Skip to the next route.
    FallBack,
}

fn classify(status: StatusCode) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Done,
        429 | 500..=599 => Verdict::Retry,
        401 | 403 | 404 => Verdict::FallBack,
        _ => Verdict::Done,
    }
}

fn retryable_error(error: &UpstreamError) -> bool {
    match error {
        UpstreamError::Connect { .. } | UpstreamError::Broken { .. } => true,
        UpstreamError::Timeout { phase, .. } => {
            matches!(phase, TimeoutPhase::Connect | TimeoutPhase::FirstByte)
        }
        UpstreamError::TooLarge { .. } | UpstreamError::Request { .. } => false,
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(response: &UpstreamResponse) -> Option<Duration> {
    let value = response.headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate_seconds(value)?;
    let now = u64::try_from(flowgate_types::now_millis() / 1000).ok()?;
    Some(Duration::from_secs(date.saturating_sub(now)))
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate_seconds(text: &str) -> Option<u64> {
    let mut parts = text.split_ascii_whitespace().skip(1);
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts
        .next()?
        .split(':')
        .map(|part| part.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + i64::try_from(day).ok()? - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days)
        .ok()
        .map(|days| days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Backoff before retry number `retry` (0-based): `base * 2^retry`, capped at 8x, with equal
/// jitter (half fixed, half random) so synchronized clients spread out.
fn backoff(base: Duration, retry: u32) -> Duration {
    let full = base.saturating_mul(1 << retry.min(3));
    let half = full / 2;
    let high = u32::try_from(flowgate_types::fast_random() >> 32).unwrap_or(u32::MAX);
    let fraction = f64::from(high) / f64::from(u32::MAX);
    half + half.mul_f64(fraction)
}

/// Runs the attempts. `Err` only when no upstream answered at all.
pub async fn dispatch<'a>(
    model: &'a ModelRoutes,
    call: &mut Call,
    context: &mut RequestContext,
) -> Result<Dispatched<'a>, ApiError> {
    let draw = flowgate_types::fast_random();
    let mut last_error: Option<ApiError> = None;
    for (position, route) in model.order(draw).enumerate() {
        let more_routes = position + 1 < model.routes.len();
        if route.breaker.permit() == Permit::Open {
            context.metrics().upstream_attempt(
                &route.upstream.name,
                AttemptOutcome::CircuitOpen,
                Duration::ZERO,
            );
            tracing::debug!(request_id = %context.request_id, provider = %route.upstream.name, "circuit open; route skipped");
            last_error.get_or_insert(ApiError::Unavailable {
                subsystem: "every route of this model (circuit open)",
            });
            continue;
        }
        if position > 0 {
            context.fallbacks += 1;
            context.metrics().fallback(&model.name);
        }
        let prepared = call.prepare(route)?;
        let attempts = route.retry.max_retries + 1;
        for attempt in 0..attempts {
            let last_attempt_here = attempt + 1 == attempts;
            context.attempts += 1;
            context.upstream = Some(Arc::clone(&route.upstream));
            let span = context.trace.begin();
            let traceparent = context.trace.upstream_header(span.as_ref());
            let started = Instant::now();
            let result = send(route, &prepared, call, context, traceparent).await;
            let waited = started.elapsed();
            context.upstream_time += waited;
            let outcome = match &result {
                Ok(response) => AttemptOutcome::from_status(response.status),
                Err(UpstreamError::Connect { .. }) => AttemptOutcome::ConnectError,
                Err(UpstreamError::Timeout { .. }) => AttemptOutcome::Timeout,
                Err(_) => AttemptOutcome::Error,
            };
            context
                .metrics()
                .upstream_attempt(&route.upstream.name, outcome, waited);
            let number = context.attempts;
            let status = result
                .as_ref()
                .ok()
                .map(|response| response.status.as_u16());
            context.trace.end(
                Stage::RouteAttempt,
                span,
                outcome == AttemptOutcome::Success,
                || Detail::Attempt {
                    upstream: Arc::clone(&route.upstream),
                    number,
                    retry: attempt,
                    outcome: outcome.as_str(),
                    status,
                },
            );
            let retry_after = match result {
                Ok(response) => match classify(response.status) {
                    Verdict::Done => {
                        if response.status.is_success() {
                            route.breaker.record_success();
                        }
                        return Ok(Dispatched {
                            route,
                            response,
                            wire: prepared.wire,
                        });
                    }
                    Verdict::FallBack => {
                        if !more_routes {
                            return Ok(final_answer(route, response, &prepared));
                        }
                        tracing::warn!(request_id = %context.request_id, provider = %route.upstream.name, status = response.status.as_u16(), "upstream refused the route; falling back");
                        break;
                    }
                    Verdict::Retry => {
                        if response.status.as_u16() != 429 {
                            route.breaker.record_failure();
                        }
                        let wait = retry_after(&response);
                        let no_retry_here = last_attempt_here
                            || wait.is_some_and(|wait| wait > MAX_HONOURED_RETRY_AFTER);
                        if no_retry_here && !more_routes {
                            return Ok(final_answer(route, response, &prepared));
                        }
                        tracing::warn!(request_id = %context.request_id, provider = %route.upstream.name, status = response.status.as_u16(), attempt, "upstream failed; retrying");
                        if no_retry_here {
                            break;
                        }
                        wait
                    }
                },
                Err(error) => {
                    let retryable = retryable_error(&error);
                    if retryable {
                        route.breaker.record_failure();
                    }
                    tracing::warn!(request_id = %context.request_id, provider = %route.upstream.name, error = %error, attempt, "upstream attempt failed");
                    last_error = Some(ApiError::from(error));
                    if !retryable {
                        return Err(last_error.unwrap_or(ApiError::Internal {
                            detail: "upstream attempt failed".to_owned(),
                        }));
                    }
                    if last_attempt_here {
                        break;
                    }
                    None
                }
            };
            let delay = backoff(route.retry.backoff, attempt).max(retry_after.unwrap_or_default());
            context.retries += 1;
            context.metrics().retry(&route.upstream.name);
            tokio::time::sleep(delay).await;
        }
    }
    Err(last_error.unwrap_or(ApiError::Unavailable {
        subsystem: "every route of this model",
    }))
}

fn final_answer<'a>(
    route: &'a Route,
    response: UpstreamResponse,
    prepared: &Prepared,
) -> Dispatched<'a> {
    Dispatched {
        route,
        response,
        wire: prepared.wire,
    }
}

/// One upstream call; the mock provider answers in process (in OpenAI's dialect).
/// `traceparent` is added to the request when the request is traced or the caller sent one,
/// with the caller's `tracestate` if it sent one.
async fn send(
    route: &Route,
    prepared: &Prepared,
    call: &Call,
    context: &RequestContext,
    traceparent: Option<http::HeaderValue>,
) -> Result<UpstreamResponse, UpstreamError> {
    if route.upstream.kind == ProviderKind::Mock {
        return Ok(mock_answer(route, prepared, call, context));
    }
    let extra: &[(http::HeaderName, http::HeaderValue)] =
        if route.upstream.kind == ProviderKind::Anthropic {
            &call.anthropic_headers
        } else {
            &[]
        };
    let Some(traceparent) = traceparent else {
        return route
            .upstream
            .post_json(&prepared.path, prepared.body.clone(), extra)
            .await;
    };
    let mut headers = Vec::with_capacity(extra.len() + 2);
    headers.extend_from_slice(extra);
    headers.push((TRACEPARENT.clone(), traceparent));
    if let Some(state) = context.trace.upstream_state() {
        headers.push((TRACESTATE.clone(), state.clone()));
    }
    route
        .upstream
        .post_json(&prepared.path, prepared.body.clone(), &headers)
        .await
}

fn mock_answer(
    route: &Route,
    prepared: &Prepared,
    call: &Call,
    context: &RequestContext,
) -> UpstreamResponse {
    let answer = match call.operation {
        Operation::Chat { .. } => mock::chat(
            &prepared.body,
            &route.upstream_model,
            context.request_id.as_str(),
        )
        .map(|answer| match answer {
            mock::MockAnswer::Json(json) => UpstreamBody::from_chunks([json]),
            mock::MockAnswer::Stream(chunks) => UpstreamBody::from_chunks(chunks),
        }),
        Operation::Embeddings => mock::embeddings(&prepared.body, &route.upstream_model)
            .map(|json| UpstreamBody::from_chunks([json])),
    };
    match answer {
        Ok(body) => UpstreamResponse {
            status: StatusCode::OK,
            headers: http::HeaderMap::new(),
            body,
        },
        Err(message) => {
            let body = serde_json::json!({
                "error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}
            });
            UpstreamResponse {
                status: StatusCode::BAD_REQUEST,
                headers: http::HeaderMap::new(),
                body: UpstreamBody::from_chunks([bytes::Bytes::from(body.to_string())]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_and_seconds() {
        assert_eq!(
            httpdate_seconds("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(httpdate_seconds("yesterday"), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let base = Duration::from_millis(100);
        for retry in 0..6 {
            let full = base * (1 << retry.min(3));
            let delay = backoff(base, retry);
            assert!(delay >= full / 2 && delay <= full, "{retry}: {delay:?}");
        }
    }
}
