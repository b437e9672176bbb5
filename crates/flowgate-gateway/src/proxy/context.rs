//! The per-request context: request id, timings and what the access log needs. It also puts
//! the two headers every answer carries, `x-request-id` and `x-flowgate-overhead-ms` (the
//! gateway's own time: wall time minus the time spent waiting for the upstream), and records
//! the request in the metrics when it logs it (the overhead recorded is the value of the header).
//! The access-log line carries `request_id` and `trace_id` (W3C, `crate::trace`); ending the
//! request also hands its spans to the trace exporter when it was traced.

use crate::audit::AuditLog;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::{Metrics, RequestOutcome};
use crate::proxy::record::KeptContent;
use crate::proxy::screen::Screening;
use crate::state::AppState;
use crate::trace::RequestTrace;
use crate::webhooks::Event;
use axum::response::Response;
use flowgate_policy::{Action, Decision};
use flowgate_ratelimit::{LimitSnapshot, RateLimitHeaders};
use flowgate_types::{ApiFormat, KeyId, RequestId, TenantId, Usage};
use http::header::HeaderValue;
use http::{HeaderMap, HeaderName};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_OVERHEAD_MS: HeaderName = HeaderName::from_static("x-flowgate-overhead-ms");
pub static X_AUDIT_INDEX: HeaderName = HeaderName::from_static("x-flowgate-audit-index");

#[derive(Debug)]
pub struct RequestContext {
    pub request_id: RequestId,
    request_id_header: HeaderValue,
    pub format: ApiFormat,
    pub started: Instant,
    /// Time spent waiting on upstreams so far (excluded from the overhead).
    pub upstream_time: Duration,
    pub tenant_id: Option<TenantId>,
    pub model: Option<String>,
    /// The upstream of the current (last) attempt, shared, not copied per attempt.
    pub upstream: Option<Arc<flowgate_providers::Upstream>>,
    pub stream: bool,
    pub usage: Option<Usage>,
    /// Rate-limit state to show in `x-ratelimit-*` headers.
    pub rate_limits: Option<RateLimitHeaders>,
    /// Upstream attempts made, retries among them, and routes fallen back to.
    pub attempts: u32,
    pub retries: u32,
    pub fallbacks: u32,
    /// Time from the request's start to the first streamed upstream chunk.
    pub first_token: Option<Duration>,
    /// What the policy decided and found, request and response together.
    pub screening: Screening,
    pub key_id: Option<KeyId>,
    /// Keyed hash (and, when kept, sealed text) of the answer, when the answer was decoded.
    pub response_content: Option<KeptContent>,
    /// Set once the request-side audit record was submitted: the completion record goes to
    /// this log when the request ends.
    pub audit: Option<AuditLog>,
    /// The request-side record's index, for `x-flowgate-audit-index`.
    pub audit_index: Option<u64>,
    metrics: Arc<Metrics>,
    /// Where policy and rate-limit events go (never blocks).
    webhooks: crate::webhooks::Webhooks,
    /// The trace id for the log, and the spans of each stage when the request is traced
    /// (`crate::trace`; nothing is recorded without `otlp_endpoint`).
    pub trace: RequestTrace,
    /// The overhead sent in `x-flowgate-overhead-ms`, fixed when the head is stamped so the
    /// metrics record the same value even when a stream ends later.
    stamped_overhead: OnceLock<Duration>,
}

impl RequestContext {
    /// Starts the clock; honours a well-formed incoming `x-request-id`.
    pub fn start(state: &AppState, headers: &HeaderMap, format: ApiFormat) -> Self {
        let started = Instant::now();
        state.busy_poll().touch(started.into_std());
        let incoming = headers
            .get(&X_REQUEST_ID)
            .filter(|value| {
                let bytes = value.as_bytes();
                !bytes.is_empty()
                    && bytes.len() <= 128
                    && bytes.iter().all(|byte| byte.is_ascii_graphic())
            })
            .and_then(|value| value.to_str().ok().map(|text| (text, value.clone())));
        let (request_id, request_id_header) = match incoming {
            Some((text, value)) => (RequestId::new(text), value),
            None => {
                let id = state.next_request_id();
                let header = HeaderValue::from_str(id.as_str())
                    .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
                (id, header)
            }
        };
        Self {
            request_id,
            request_id_header,
            format,
            started,
            upstream_time: Duration::ZERO,
            tenant_id: None,
            model: None,
            upstream: None,
            stream: false,
            usage: None,
            rate_limits: None,
            attempts: 0,
            retries: 0,
            fallbacks: 0,
            first_token: None,
            screening: Screening::default(),
            key_id: None,
            response_content: None,
            audit: None,
            audit_index: None,
            metrics: Arc::clone(state.metrics()),
            webhooks: state.webhooks().clone(),
            trace: state.tracer().request(headers),
            stamped_overhead: OnceLock::new(),
        }
    }

    /// The gateway's own time so far.
    pub fn overhead(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.upstream_time)
    }

    /// Stamps the common headers on a response and, unless the body is still streaming,
    /// writes the access-log line.
    pub fn finish(&self, mut response: Response, body_pending: bool) -> Response {
        let overhead = *self.stamped_overhead.get_or_init(|| self.overhead());
        let headers = response.headers_mut();
        headers.insert(X_REQUEST_ID.clone(), self.request_id_header.clone());
        headers.insert(X_OVERHEAD_MS.clone(), overhead_header(overhead));
        if let Some(index) = self.audit_index {
            headers.insert(X_AUDIT_INDEX.clone(), HeaderValue::from(index));
        }
        if let Some(limits) = &self.rate_limits {
            insert_limit_headers(headers, limits.requests.as_ref(), &RATE_HEADERS_REQUESTS);
            insert_limit_headers(headers, limits.tokens.as_ref(), &RATE_HEADERS_TOKENS);
        }
        if !body_pending {
            let error_code = response.extensions().get::<ErrorCode>().map(|code| code.0);
            self.log(response.status().as_u16(), error_code);
        }
        response
    }

    /// The name of the provider the request went to, once routed.
    pub fn provider(&self) -> Option<&str> {
        self.upstream
            .as_deref()
            .map(|upstream| upstream.name.as_str())
    }

    /// This node's metrics, for the stages that record more than the request line.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn fail(&self, error: ApiError) -> Response {
        if let ApiError::RateLimited { limit, .. } = &error {
            let tenant = self
                .tenant_id
                .as_ref()
                .map_or(crate::metrics::NONE, TenantId::as_str);
            self.metrics.ratelimit_rejection(tenant, limit);
            if let Some(tenant) = &self.tenant_id {
                self.webhooks.emit(Event::ratelimit_exceeded(
                    tenant.clone(),
                    self.request_id.clone(),
                    limit,
                ));
            }
        }
        self.finish(error.into_response_for(self.format), false)
    }

    /// Rule findings to the metrics, and a `request.blocked` / `request.flagged` event.
    fn report_policy(&self) {
        // An `allow` hit is an exception that let text through, not a violation.
        for hit in self
            .screening
            .hits
            .iter()
            .filter(|hit| hit.action != Action::Allow)
        {
            self.metrics
                .rule_violation(&hit.rule_id, hit.action.as_str());
        }
        let Some(tenant) = &self.tenant_id else {
            return;
        };
        let rules = |action: Action| -> Vec<String> {
            self.screening
                .hits
                .iter()
                .filter(|hit| hit.action == action)
                .map(|hit| hit.rule_id.to_string())
                .collect()
        };
        match self.screening.decision {
            Decision::Block => self.webhooks.emit(Event::request_blocked(
                tenant.clone(),
                self.request_id.clone(),
                rules(Action::Block),
            )),
            Decision::Flag => self.webhooks.emit(Event::request_flagged(
                tenant.clone(),
                self.request_id.clone(),
                rules(Action::Flag),
            )),
            Decision::Allow | Decision::Redact => {}
        }
    }

    /// One access-log line per request (and its completion audit record, and the request's
    /// metrics); never keys or content.
    pub fn log(&self, status: u16, error_code: Option<&str>) {
        let latency = self.started.elapsed();
        let overhead = self
            .stamped_overhead
            .get()
            .copied()
            .unwrap_or_else(|| self.overhead());
        self.metrics.request(&RequestOutcome {
            tenant: self.tenant_id.as_ref().map(TenantId::as_str),
            model: self.model.as_deref(),
            provider: self.provider(),
            status,
            error_code,
            usage: self.usage,
            latency,
            overhead,
        });
        self.report_policy();
        if let Some(audit) = &self.audit {
            // The request-side record is already durable; the completion record is journaled
            // once the answer is written.
            let record = crate::proxy::record::completion_record(self, status);
            audit.submit_after_answer(record, &self.request_id);
        }
        self.trace.finish(status < 500, || {
            crate::trace::RootAttributes::of(self, status, error_code)
        });
        let usage = self.usage.unwrap_or_default();
        tracing::info!(
            target: "flowgate::access",
            request_id = %self.request_id,
            trace_id = %self.trace.trace_id,
            tenant = self.tenant_id.as_ref().map_or("", TenantId::as_str),
            model = self.model.as_deref().unwrap_or(""),
            provider = self.provider().unwrap_or(""),
            stream = self.stream,
            status,
            error_code = error_code.unwrap_or(""),
            latency_ms = latency.as_secs_f64() * 1000.0,
            overhead_ms = overhead.as_secs_f64() * 1000.0,
            input_tokens = usage.input_tokens,
            output_tokens = usage.output_tokens,
            "request"
        );
    }
}

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, OpenAI's names.
static RATE_HEADERS_REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
static RATE_HEADERS_TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

fn insert_limit_headers(
    headers: &mut HeaderMap,
    snapshot: Option<&LimitSnapshot>,
    names: &[HeaderName; 3],
) {
    let Some(snapshot) = snapshot else { return };
    headers.insert(names[0].clone(), HeaderValue::from(snapshot.limit));
    headers.insert(names[1].clone(), HeaderValue::from(snapshot.remaining));
    if let Ok(value) = HeaderValue::from_str(&snapshot.reset_display().to_string()) {
        headers.insert(names[2].clone(), value);
    }
}

/// Milliseconds with microsecond precision, formatted without allocation.
fn overhead_header(overhead: Duration) -> HeaderValue {
    let micros = overhead.as_micros().min(999_999_999_999);
    let mut buffer = [0u8; 24];
    let mut cursor = buffer.len();
    let mut push = |byte: u8| {
        cursor -= 1;
        buffer[cursor] = byte;
    };
    let mut fraction = micros % 1000;
    for _ in 0..3 {
        push(b'0' + (fraction % 10) as u8);
        fraction /= 10;
    }
    push(b'.');
    let mut whole = micros / 1000;
    loop {
        push(b'0' + (whole % 10) as u8);
        whole /= 10;
        if whole == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&buffer[cursor..]).unwrap_or_else(|_| HeaderValue::from_static("0.000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_milliseconds_with_three_decimals() {
        assert_eq!(overhead_header(Duration::from_micros(0)), "0.000");
        assert_eq!(overhead_header(Duration::from_micros(42)), "0.042");
        assert_eq!(
            overhead_header(Duration::from_micros(1_234_567)),
            "1234.567"
        );
    }
}
