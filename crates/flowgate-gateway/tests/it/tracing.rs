//! OpenTelemetry traces: a real OTLP/HTTP receiver (axum, in the test) collects what the
//! gateway exports. One request with a W3C `traceparent` arrives as a root span in the caller's
//! trace with a child span per stage; the upstream is sent a `traceparent` naming the attempt
//! span; a retried request has two attempt spans; an unsampled caller is followed (nothing
//! exported, its header forwarded as is); a malformed header starts a new trace. The access
//! log line carries `request_id` and `trace_id`, and no log line at any level holds the prompt,
//! the answer or the key.

use crate::chat_body;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use flowgate_test_support::gateway::config_for_upstream;
use flowgate_test_support::{Behaviour, MockUpstream, TestClient, TestGateway, TestResponse};
use http::{Method, StatusCode};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// A caller's W3C `tracestate` (two vendors' entries).
const STATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const PROMPT: &str = "Say hello in five words";

/// An OTLP/HTTP collector: every JSON body posted to `/v1/traces`.
#[derive(Clone, Default)]
struct Collector {
    exports: Arc<Mutex<Vec<Value>>>,
    /// The raw bodies, to check no prompt text was exported.
    raw: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(collector): State<Collector>, body: Bytes) -> StatusCode {
    let text = String::from_utf8_lossy(&body).into_owned();
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    collector
        .raw
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(text);
    collector
        .exports
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(value);
    StatusCode::OK
}

impl Collector {
    async fn start() -> (Self, String) {
        let collector = Self::default();
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(collector.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| panic!("bind collector: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("collector address: {err}"));
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                panic!("collector stopped: {err}");
            }
        });
        (collector, format!("http://{addr}"))
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Value> {
        let exports = self
            .exports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut spans = Vec::new();
        for export in exports.iter() {
            for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                assert_eq!(
                    attribute(&resource["resource"], "service.name"),
                    Some(Value::from("flowgate")),
                    "resource names the service"
                );
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    spans.extend(scope["spans"].as_array().into_iter().flatten().cloned());
                }
            }
        }
        spans
    }

    /// The spans of the trace whose root span carries this request id, once it arrived.
    async fn trace_of(&self, request_id: &str) -> Vec<Value> {
        for _ in 0..100 {
            let spans = self.spans();
            if let Some(root) = spans.iter().find(|span| {
                attribute(span, "flowgate.request_id") == Some(Value::from(request_id))
            }) {
                let trace_id = root["traceId"].clone();
                return spans
                    .into_iter()
                    .filter(|span| span["traceId"] == trace_id)
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no trace for request {request_id} reached the collector; got {:?}",
            self.spans()
        );
    }

    fn raw_text(&self) -> String {
        self.raw
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    }
}

/// An attribute's value with its type wrapper removed (`intValue` stays a string).
fn attribute(owner: &Value, key: &str) -> Option<Value> {
    owner["attributes"]
        .as_array()?
        .iter()
        .find(|attribute| attribute["key"] == key)
        .and_then(|attribute| attribute["value"].as_object())
        .and_then(|value| value.values().next().cloned())
}

fn nanos(span: &Value, field: &str) -> u128 {
    span[field]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("{field} is not a decimal string in {span}"))
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|span| span["name"] == name).collect()
}

fn one<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one `{name}` span expected in {spans:#?}");
    found[0]
}

/// The `policy` span of one phase (`request`, or `response` when answers are screened).
fn policy<'a>(spans: &'a [Value], phase: &str) -> &'a Value {
    let found: Vec<&Value> = named(spans, "policy")
        .into_iter()
        .filter(|span| attribute(span, "flowgate.policy.phase") == Some(Value::from(phase)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {phase} `policy` span expected in {spans:#?}"
    );
    found[0]
}

/// A request-phase rule that never matches, so the policy stage runs.
const SCREENING_RULE: &str = r#"
[[rules]]
id = "never-matches"
phase = "request"
action = "flag"
match = { keywords = ["zz-never-present-zz"] }
"#;

async fn traced_gateway(endpoint: &str, providers: &str, extra: &str) -> TestGateway {
    let config = format!(
        "[telemetry]\notlp_endpoint = \"{endpoint}\"\n{extra}\n{providers}\n{SCREENING_RULE}"
    );
    TestGateway::spawn(&config, &[])
        .await
        .unwrap_or_else(|err| panic!("gateway: {err:#}"))
}

async fn upstream() -> MockUpstream {
    MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"))
}

/// A chat call with the trace context headers `trace` (`traceparent`, `tracestate`).
async fn chat_with(gateway: &TestGateway, trace: &[(&str, &str)], stream: bool) -> TestResponse {
    let authorization = format!("Bearer {}", gateway.tenant_key);
    let mut headers = vec![
        ("authorization", authorization.as_str()),
        ("content-type", "application/json"),
    ];
    headers.extend_from_slice(trace);
    let response = TestClient::new()
        .call(
            Method::POST,
            &gateway.url("/v1/chat/completions"),
            &headers,
            chat_body(stream).to_string(),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    response
}

#[tokio::test]
async fn a_traced_request_reaches_the_collector_with_its_stage_spans() {
    let (collector, endpoint) = Collector::start().await;
    let upstream = upstream().await;
    let gateway = traced_gateway(&endpoint, &config_for_upstream(&upstream.base_url()), "").await;
    let incoming = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let response = chat_with(
        &gateway,
        &[("traceparent", &incoming), ("tracestate", STATE)],
        false,
    )
    .await;
    let spans = collector.trace_of(&response.request_id()).await;

    let root = one(&spans, "POST /v1/chat/completions");
    assert_eq!(root["traceId"], TRACE_ID, "the caller's trace is continued");
    assert_eq!(root["parentSpanId"], CALLER_SPAN, "under the caller's span");
    assert_eq!(root["kind"], 2, "server span");
    assert_eq!(
        attribute(root, "http.response.status_code"),
        Some(Value::from("200"))
    );
    assert_eq!(
        attribute(root, "flowgate.tenant_id"),
        Some(Value::from(gateway.tenant_id.as_str()))
    );
    assert_eq!(
        attribute(root, "flowgate.model"),
        Some(Value::from("gpt-4o-mini"))
    );
    let root_id = root["spanId"].as_str().unwrap_or_default();
    assert_eq!(root_id.len(), 16);
    let (root_start, root_end) = (
        nanos(root, "startTimeUnixNano"),
        nanos(root, "endTimeUnixNano"),
    );
    assert!(root_start <= root_end);

    // Stage spans, in pipeline order, children of the root, inside it, non-overlapping.
    let mut previous_end = root_start;
    for name in ["auth", "limits", "policy", "route attempt", "upstream"] {
        let span = if name == "policy" {
            policy(&spans, "request")
        } else {
            one(&spans, name)
        };
        assert_eq!(
            span["parentSpanId"], root_id,
            "{name} is a child of the root"
        );
        assert_eq!(span["traceId"], TRACE_ID);
        let (start, end) = (
            nanos(span, "startTimeUnixNano"),
            nanos(span, "endTimeUnixNano"),
        );
        assert!(
            previous_end <= start && start <= end && end <= root_end,
            "{name}: {start}..{end} after {previous_end}, inside ..{root_end}"
        );
        previous_end = end;
    }
    let audit = one(&spans, "audit");
    assert_eq!(audit["parentSpanId"], root_id);
    assert!(
        nanos(audit, "startTimeUnixNano") >= nanos(policy(&spans, "request"), "endTimeUnixNano")
            && nanos(audit, "endTimeUnixNano") <= root_end,
        "the audit wait runs after screening, within the request"
    );
    assert_eq!(
        attribute(policy(&spans, "request"), "flowgate.policy.decision"),
        Some(Value::from("ALLOW"))
    );
    // The tenant's preset also screens answers: that span follows the upstream's.
    let answer_screening = policy(&spans, "response");
    assert!(
        nanos(answer_screening, "startTimeUnixNano")
            >= nanos(one(&spans, "upstream"), "endTimeUnixNano")
    );

    let attempt = one(&spans, "route attempt");
    assert_eq!(attempt["kind"], 3, "client span");
    assert_eq!(
        attribute(attempt, "flowgate.upstream"),
        Some(Value::from("mock"))
    );
    assert_eq!(
        attribute(attempt, "flowgate.upstream.kind"),
        Some(Value::from("openai"))
    );
    assert_eq!(attribute(attempt, "flowgate.retry"), Some(Value::from("0")));
    assert_eq!(
        attribute(attempt, "http.response.status_code"),
        Some(Value::from("200"))
    );
    let attempt_id = attempt["spanId"].as_str().unwrap_or_default();
    let sent = upstream
        .last_request()
        .unwrap_or_else(|| panic!("the upstream saw no request"));
    assert_eq!(
        sent.header("traceparent"),
        Some(format!("00-{TRACE_ID}-{attempt_id}-01").as_str()),
        "the upstream joins the trace under the attempt span"
    );
    assert_eq!(
        sent.header("tracestate"),
        Some(STATE),
        "the caller's vendor state goes along"
    );
    assert!(
        !collector.raw_text().contains(PROMPT),
        "no prompt text is exported"
    );
}

#[tokio::test]
async fn a_retried_request_has_one_attempt_span_per_upstream_call() {
    let (collector, endpoint) = Collector::start().await;
    let upstream = upstream().await;
    let providers = config_for_upstream(&upstream.base_url())
        .replace("max_retries = 0", "max_retries = 1\nretry_backoff_ms = 10");
    let gateway = traced_gateway(&endpoint, &providers, "").await;
    upstream.push(Behaviour::Status {
        status: 500,
        body: r#"{"error":{"message":"boom","type":"server_error","code":null}}"#.to_owned(),
        retry_after: None,
    });
    let response = chat_with(&gateway, &[], false).await;
    let spans = collector.trace_of(&response.request_id()).await;

    let root = one(&spans, "POST /v1/chat/completions");
    assert!(
        root.get("parentSpanId").is_none(),
        "a new trace has no parent"
    );
    let trace_id = root["traceId"].as_str().unwrap_or_default().to_owned();
    assert_eq!(trace_id.len(), 32);
    let mut attempts = named(&spans, "route attempt");
    attempts.sort_by_key(|span| nanos(span, "startTimeUnixNano"));
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    assert_eq!(
        attribute(attempts[0], "http.response.status_code"),
        Some(Value::from("500"))
    );
    assert_eq!(
        attempts[0]["status"]["code"], 2,
        "the failed attempt is an error"
    );
    assert_eq!(
        attribute(attempts[0], "flowgate.outcome"),
        Some(Value::from("server_error"))
    );
    assert_eq!(
        attribute(attempts[1], "flowgate.retry"),
        Some(Value::from("1"))
    );
    assert_eq!(
        attribute(attempts[1], "flowgate.attempt"),
        Some(Value::from("2"))
    );
    assert!(nanos(attempts[0], "endTimeUnixNano") <= nanos(attempts[1], "startTimeUnixNano"));

    let sent: Vec<String> = upstream
        .requests()
        .iter()
        .map(|request| request.header("traceparent").unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = attempts
        .iter()
        .map(|span| {
            format!(
                "00-{trace_id}-{}-01",
                span["spanId"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(sent, expected, "each attempt names its own span upstream");
}

#[tokio::test]
async fn an_unsampled_caller_is_followed_and_a_malformed_header_starts_a_new_trace() {
    let (collector, endpoint) = Collector::start().await;
    let upstream = upstream().await;
    let gateway = traced_gateway(&endpoint, &config_for_upstream(&upstream.base_url()), "").await;

    let unsampled = format!("00-{TRACE_ID}-{CALLER_SPAN}-00");
    let first = chat_with(
        &gateway,
        &[("traceparent", &unsampled), ("tracestate", STATE)],
        false,
    )
    .await;
    let sent = upstream
        .last_request()
        .unwrap_or_else(|| panic!("the upstream saw no request"));
    assert_eq!(
        sent.header("traceparent"),
        Some(unsampled.as_str()),
        "an unsampled caller's header goes upstream unchanged"
    );
    assert_eq!(sent.header("tracestate"), Some(STATE));

    let malformed = format!("00-{TRACE_ID}-{CALLER_SPAN}-0");
    let second = chat_with(
        &gateway,
        &[("traceparent", &malformed), ("tracestate", STATE)],
        false,
    )
    .await;
    // The queue is first in, first out: once the second request's trace arrived, the first
    // one's would have too.
    let spans = collector.trace_of(&second.request_id()).await;
    let root = one(&spans, "POST /v1/chat/completions");
    assert_ne!(root["traceId"], TRACE_ID, "a malformed header is ignored");
    assert!(root.get("parentSpanId").is_none());
    let sent = upstream
        .last_request()
        .and_then(|request| request.header("traceparent").map(str::to_owned))
        .unwrap_or_default();
    assert!(
        sent.starts_with(&format!(
            "00-{}-",
            root["traceId"].as_str().unwrap_or_default()
        )),
        "the new trace is propagated: {sent}"
    );
    assert_eq!(
        upstream
            .last_request()
            .and_then(|request| request.header("tracestate").map(str::to_owned)),
        None,
        "no vendor state without the caller's trace"
    );
    let first_id = first.request_id();
    assert!(
        collector
            .spans()
            .iter()
            .all(|span| span["traceId"] != TRACE_ID
                && attribute(span, "flowgate.request_id") != Some(Value::from(first_id.as_str()))),
        "nothing is exported for an unsampled caller"
    );
}

#[tokio::test]
async fn a_stream_is_traced_until_it_ends() {
    let (collector, endpoint) = Collector::start().await;
    let upstream = upstream().await;
    let gateway = traced_gateway(&endpoint, &config_for_upstream(&upstream.base_url()), "").await;
    upstream.push(Behaviour::Normal {
        chunk_delay: Duration::from_millis(20),
    });
    let response = chat_with(&gateway, &[], true).await;
    let spans = collector.trace_of(&response.request_id()).await;
    let root = one(&spans, "POST /v1/chat/completions");
    assert_eq!(attribute(root, "flowgate.stream"), Some(Value::from(true)));
    let body = one(&spans, "upstream");
    assert!(
        nanos(body, "endTimeUnixNano") - nanos(body, "startTimeUnixNano") >= 20_000_000,
        "the upstream span covers the streamed chunks"
    );
    assert!(nanos(body, "endTimeUnixNano") <= nanos(root, "endTimeUnixNano"));
}
