//! Integration tests of the gateway, in process, against the real HTTP mock upstream:
//! the data plane (statuses, streaming, cancellation), the admin API, health and shutdown.

mod admin;
mod anthropic;
mod audit;
mod audit_spool;
mod audit_stream;
mod conformance;
mod data_plane;
mod hot_path;
mod lifecycle;
mod limits;
mod metrics;
mod policy;
mod readiness;
mod redis_outage;
mod routing;
mod rules;
mod streaming;
mod tracing;
mod webhooks;

use flowgate_test_support::gateway::config_for_upstream;
use flowgate_test_support::{MockUpstream, TestClient, TestGateway, TestResponse};

/// Waits (polling every 20 ms) until `done` holds; fails the test naming `what` after
/// `timeout`.
pub async fn wait_until(what: &str, timeout: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A mock upstream and a gateway routed to it.
pub async fn setup() -> (MockUpstream, TestGateway) {
    setup_with("").await
}

/// Same, with extra config text appended to the provider section (e.g. `[server]` keys).
pub async fn setup_with(extra: &str) -> (MockUpstream, TestGateway) {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    let config = format!("{extra}\n{}", config_for_upstream(&upstream.base_url()));
    let gateway = TestGateway::spawn(&config, &[])
        .await
        .unwrap_or_else(|err| panic!("gateway: {err:#}"));
    (upstream, gateway)
}

pub fn chat_body(stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello in five words"}],
        "stream": stream,
    })
}

/// Asserts the OpenAI error shape and returns `error.code`.
pub fn error_code(body: &serde_json::Value) -> String {
    let error = &body["error"];
    assert!(
        error["message"].is_string(),
        "error.message missing in {body}"
    );
    assert!(error["type"].is_string(), "error.type missing in {body}");
    assert!(
        error.get("param").is_some(),
        "error.param missing in {body}"
    );
    error["code"].as_str().unwrap_or_default().to_owned()
}

/// `POST /v1/chat/completions` with the test tenant's key.
pub async fn chat(gateway: &TestGateway, body: &serde_json::Value) -> TestResponse {
    TestClient::new()
        .post_json(
            &gateway.url("/v1/chat/completions"),
            &gateway.tenant_key,
            body,
        )
        .await
}

/// The internal listener's Prometheus text.
pub async fn scrape_metrics(gateway: &TestGateway) -> String {
    TestClient::new()
        .call(
            http::Method::GET,
            &format!("{}/metrics", gateway.internal_url),
            &[],
            "",
        )
        .await
        .text()
}

/// Splits an SSE text into (event name, data as JSON; `Null` when it is not JSON) pairs.
pub fn sse_events(text: &str) -> Vec<(String, serde_json::Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = serde_json::Value::Null;
            for line in block.lines() {
                if let Some(rest) = line.strip_prefix("event:") {
                    name = rest.trim().to_owned();
                } else if let Some(rest) = line.strip_prefix("data:") {
                    data = serde_json::from_str(rest.trim()).unwrap_or(serde_json::Value::Null);
                }
            }
            (name, data)
        })
        .collect()
}
