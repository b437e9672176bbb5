//! The OTLP/HTTP exporter task: drains the queue of finished requests, encodes them as an
//! `ExportTraceServiceRequest` in the OTLP JSON mapping (hex ids, decimal-string nanosecond
//! times, integer enums, lowerCamelCase fields) and POSTs it to `{otlp_endpoint}/v1/traces`
//! every second or every `MAX_BATCH` requests, whichever comes first. A failed export is
//! dropped (no retry queue: traces are diagnostics, never worth memory or latency) and
//! reported at `warn` at most every `WARN_EVERY`, with the number of failures and drops.

use super::{Detail, Export, FinishedTrace, SpanId, Stage, StageSpan};
use bytes::Bytes;
use flowgate_config::OtlpConfig;
use flowgate_providers::HttpClient;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderName, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Requests per POST at most.
const MAX_BATCH: usize = 256;
/// Longest time a finished request waits in the exporter.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Whole-export deadline (connect, send, answer).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest part of a collector's answer read (the connection is reused after it).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Failures are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// OTLP span kinds and status codes (`opentelemetry.proto.trace.v1`).
const KIND_INTERNAL: u8 = 1;
const KIND_SERVER: u8 = 2;
const KIND_CLIENT: u8 = 3;
const STATUS_UNSET: u8 = 0;
const STATUS_ERROR: u8 = 2;

pub(super) struct Exporter {
    client: HttpClient,
    url: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    resource: Value,
    /// Failed exports and dropped requests since the last warning.
    failures: u64,
    dropped: u64,
    last_warning: Option<Instant>,
}

impl Exporter {
    pub(super) fn new(config: &OtlpConfig) -> Result<Self, flowgate_providers::UpstreamError> {
        Ok(Self {
            client: flowgate_providers::build_client(EXPORT_TIMEOUT)?,
            url: config.traces_url.clone(),
            headers: config.headers.clone(),
            resource: json!({
                "attributes": [
                    string_attribute("service.name", &config.service_name),
                    string_attribute("service.version", env!("CARGO_PKG_VERSION")),
                ]
            }),
            failures: 0,
            dropped: 0,
            last_warning: None,
        })
    }

    pub(super) async fn run(
        mut self,
        mut receiver: mpsc::Receiver<FinishedTrace>,
        stop: CancellationToken,
        export: Arc<Export>,
    ) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut ticker = tokio::time::interval(FLUSH_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Never zero: a full batch is sent before waiting again.
            let room = MAX_BATCH - batch.len();
            tokio::select! {
                () = stop.cancelled() => break,
                received = receiver.recv_many(&mut batch, room) => {
                    if received == 0 {
                        break;
                    }
                    if batch.len() >= MAX_BATCH {
                        self.send(&mut batch, &export).await;
                    }
                }
                _ = ticker.tick() => self.send(&mut batch, &export).await,
            }
        }
        // Shutdown: what is queued is sent once more.
        receiver.close();
        while let Ok(finished) = receiver.try_recv() {
            batch.push(finished);
        }
        self.send(&mut batch, &export).await;
    }

    async fn send(&mut self, batch: &mut Vec<FinishedTrace>, export: &Export) {
        let dropped = export.dropped.swap(0, Ordering::Relaxed);
        if batch.is_empty() && dropped == 0 {
            return;
        }
        let outcome = if batch.is_empty() {
            Ok(())
        } else {
            let body = encode(&self.resource, batch);
            batch.clear();
            self.post(body).await
        };
        if outcome.is_err() {
            self.failures += 1;
        }
        self.dropped += dropped;
        if outcome.is_err() || dropped > 0 {
            let now = Instant::now();
            let due = self
                .last_warning
                .is_none_or(|last| now.duration_since(last) >= WARN_EVERY);
            if due {
                self.last_warning = Some(now);
                let error = outcome.err().unwrap_or_default();
                tracing::warn!(
                    failed_exports = self.failures,
                    dropped_requests = self.dropped,
                    error = %error,
                    "trace export failing or queue full; spans dropped"
                );
                self.failures = 0;
                self.dropped = 0;
            }
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &self.headers {
            builder = builder.header(name, value.clone());
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| err.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| err.to_string())?;
            let status = response.status();
            // Read the (small) answer so the connection can be reused.
            let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("collector answered {status}"))
            }
        };
        match tokio::time::timeout(EXPORT_TIMEOUT, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {EXPORT_TIMEOUT:?}")),
        }
    }
}

/// The `ExportTraceServiceRequest` JSON of a batch: one resource, one scope, every span.
fn encode(resource: &Value, batch: &[FinishedTrace]) -> Vec<u8> {
    let mut spans = Vec::with_capacity(batch.iter().map(|trace| trace.spans.len() + 1).sum());
    for trace in batch {
        spans.push(root_span(trace));
        for span in &trace.spans {
            spans.push(stage_span(trace, span));
        }
    }
    let request = json!({
        "resourceSpans": [{
            "resource": resource,
            "scopeSpans": [{
                "scope": {"name": "flowgate", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }],
    });
    serde_json::to_vec(&request).unwrap_or_default()
}

fn unix_nanos(trace: &FinishedTrace, at: Instant) -> String {
    let offset = at.saturating_duration_since(trace.started).as_nanos();
    let offset = u64::try_from(offset).unwrap_or(u64::MAX);
    trace.started_unix_nanos.saturating_add(offset).to_string()
}

fn root_span(trace: &FinishedTrace) -> Value {
    let attributes = &trace.attributes;
    let (method, route) = trace.name.split_once(' ').unwrap_or(("", trace.name));
    let mut list = vec![
        string_attribute("http.request.method", method),
        string_attribute("http.route", route),
        int_attribute("http.response.status_code", u64::from(attributes.status)),
        string_attribute("flowgate.request_id", &attributes.request_id),
        bool_attribute("flowgate.stream", attributes.stream),
    ];
    if let Some(tenant) = &attributes.tenant_id {
        list.push(string_attribute("flowgate.tenant_id", tenant));
    }
    if let Some(model) = &attributes.model {
        list.push(string_attribute("flowgate.model", model));
    }
    if let Some(provider) = &attributes.provider {
        list.push(string_attribute("flowgate.provider", &provider.name));
    }
    if let Some(code) = &attributes.error_code {
        list.push(string_attribute("flowgate.error_code", code));
    }
    let status = if attributes.status >= 500 {
        STATUS_ERROR
    } else {
        STATUS_UNSET
    };
    span_json(
        trace,
        trace.root,
        trace.parent,
        trace.name,
        KIND_SERVER,
        (trace.started, trace.ended),
        list,
        status,
    )
}

fn stage_span(trace: &FinishedTrace, span: &StageSpan) -> Value {
    let mut list = Vec::new();
    match &span.detail {
        Detail::None => {}
        Detail::Attempt {
            upstream,
            number,
            retry,
            outcome,
            status,
        } => {
            list.push(string_attribute("flowgate.upstream", &upstream.name));
            list.push(string_attribute(
                "flowgate.upstream.kind",
                upstream.kind.as_str(),
            ));
            list.push(int_attribute("flowgate.attempt", u64::from(*number)));
            list.push(int_attribute("flowgate.retry", u64::from(*retry)));
            list.push(string_attribute("flowgate.outcome", outcome));
            if let Some(status) = status {
                list.push(int_attribute(
                    "http.response.status_code",
                    u64::from(*status),
                ));
            }
        }
        Detail::Policy { phase, decision } => {
            list.push(string_attribute("flowgate.policy.phase", phase));
            list.push(string_attribute("flowgate.policy.decision", decision));
        }
    }
    let kind = if span.stage == Stage::RouteAttempt {
        KIND_CLIENT
    } else {
        KIND_INTERNAL
    };
    let status = if span.ok { STATUS_UNSET } else { STATUS_ERROR };
    span_json(
        trace,
        span.id,
        Some(trace.root),
        span.stage.name(),
        kind,
        (span.start, span.end),
        list,
        status,
    )
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call per span kind; a struct would only rename the fields"
)]
fn span_json(
    trace: &FinishedTrace,
    id: SpanId,
    parent: Option<SpanId>,
    name: &str,
    kind: u8,
    (start, end): (Instant, Instant),
    attributes: Vec<Value>,
    status: u8,
) -> Value {
    let mut span = json!({
        "traceId": trace.trace_id.to_string(),
        "spanId": id.to_string(),
        "name": name,
        "kind": kind,
        "startTimeUnixNano": unix_nanos(trace, start),
        "endTimeUnixNano": unix_nanos(trace, end.max(start)),
        "attributes": Value::Array(attributes),
        "status": {"code": status},
    });
    if let (Some(parent), Some(object)) = (parent, span.as_object_mut()) {
        object.insert("parentSpanId".to_owned(), Value::from(parent.to_string()));
    }
    span
}

fn string_attribute(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// 64-bit integers are decimal strings in the OTLP JSON mapping.
fn int_attribute(key: &str, value: u64) -> Value {
    json!({"key": key, "value": {"intValue": value.to_string()}})
}

fn bool_attribute(key: &str, value: bool) -> Value {
    json!({"key": key, "value": {"boolValue": value}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{RootAttributes, TraceId};

    #[test]
    fn encodes_the_otlp_json_mapping() {
        let started = Instant::now();
        let trace = FinishedTrace {
            trace_id: TraceId([0xab; 16]),
            root: SpanId([1; 8]),
            parent: None,
            name: "POST /v1/chat/completions",
            started,
            started_unix_nanos: 1_700_000_000_000_000_000,
            ended: started + Duration::from_millis(3),
            attributes: RootAttributes {
                request_id: "req-1".to_owned(),
                tenant_id: Some("t1".to_owned()),
                model: Some("gpt-4o-mini".to_owned()),
                provider: None,
                stream: false,
                status: 502,
                error_code: Some("upstream_error".to_owned()),
            },
            spans: vec![StageSpan {
                stage: Stage::Auth,
                id: SpanId([2; 8]),
                start: started,
                end: started + Duration::from_micros(5),
                ok: true,
                detail: Detail::None,
            }],
        };
        let resource = json!({"attributes": [string_attribute("service.name", "gw")]});
        let body: Value = serde_json::from_slice(&encode(&resource, &[trace])).expect("valid JSON");
        let spans = &body["resourceSpans"][0]["scopeSpans"][0]["spans"];
        let root = &spans[0];
        assert_eq!(root["traceId"], "abababababababababababababababab");
        assert_eq!(root["spanId"], "0101010101010101");
        assert!(root.get("parentSpanId").is_none());
        assert_eq!(root["kind"], 2);
        assert_eq!(root["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(root["endTimeUnixNano"], "1700000000003000000");
        assert_eq!(root["status"]["code"], 2, "5xx is an error");
        assert!(
            root["attributes"].as_array().expect("list").contains(
                &json!({"key": "http.response.status_code", "value": {"intValue": "502"}})
            )
        );
        let auth = &spans[1];
        assert_eq!(auth["name"], "auth");
        assert_eq!(auth["parentSpanId"], "0101010101010101");
        assert_eq!(auth["kind"], 1);
        assert_eq!(auth["endTimeUnixNano"], "1700000000000005000");
        assert_eq!(
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "gw"
        );
    }
}
