//! Integration tests of the gateway, in process, against the real HTTP mock upstream:
//! the data plane (statuses, streaming, cancellation), the admin API, health and shutdown.

mod admin;
mod anthropic;
mod audit;
mod conformance;
mod data_plane;
mod lifecycle;
mod limits;
mod metrics;
mod policy;
mod redis_outage;
mod routing;
mod rules;
mod streaming;
mod webhooks;

use flowgate_test_support::gateway::config_for_upstream;
use flowgate_test_support::{MockUpstream, TestGateway};

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
