//! The access log (issue 7): one JSON line per request with `request_id` and `trace_id` (the
//! caller's W3C trace id, or a generated one), and never prompts, answers or keys, at the most
//! verbose level. A test binary of its own: it installs the process-wide subscriber, so no
//! other test's threads or cached callsite interest stand between the gateway and the capture.

use flowgate_test_support::gateway::config_for_upstream;
use flowgate_test_support::{MockUpstream, TestClient, TestGateway, TestResponse};
use http::{Method, StatusCode};
use serde_json::Value;
use std::sync::{Arc, Mutex};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const PROMPT: &str = "Say hello in five words";

async fn upstream() -> MockUpstream {
    MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"))
}

async fn chat_with(gateway: &TestGateway, traceparent: Option<&str>) -> TestResponse {
    let authorization = format!("Bearer {}", gateway.tenant_key);
    let mut headers = vec![
        ("authorization", authorization.as_str()),
        ("content-type", "application/json"),
    ];
    if let Some(traceparent) = traceparent {
        headers.push(("traceparent", traceparent));
    }
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": PROMPT}],
    });
    let response = TestClient::new()
        .call(
            Method::POST,
            &gateway.url("/v1/chat/completions"),
            &headers,
            body.to_string(),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    response
}

/// Every log line of the process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_access_log_carries_request_and_trace_ids_and_never_content() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The production filter (`serve`), at the most verbose level.
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,hyper=warn,h2=warn,sqlx=warn,rustls=warn",
        ))
        .with_writer(move || writer.clone())
        .finish();
    ::tracing::subscriber::set_global_default(subscriber)
        .unwrap_or_else(|err| panic!("the only subscriber of this test binary: {err}"));

    // Without OTLP: the trace id is still logged.
    let upstream = upstream().await;
    let gateway = TestGateway::spawn(&config_for_upstream(&upstream.base_url()), &[])
        .await
        .unwrap_or_else(|err| panic!("gateway: {err:#}"));
    let incoming = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let joined = chat_with(&gateway, Some(&incoming)).await;
    let fresh = chat_with(&gateway, None).await;
    let answer = fresh.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!answer.is_empty());

    let text = String::from_utf8_lossy(
        &captured
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    let access: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "flowgate::access")
        .collect();
    let line_of = |response: &TestResponse| {
        let id = response.request_id();
        access
            .iter()
            .find(|line| line["request_id"] == id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no access line for {id} in\n{text}"))
    };
    assert_eq!(line_of(&joined)["trace_id"], TRACE_ID);
    let generated = line_of(&fresh)["trace_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        generated.len() == 32 && generated.bytes().all(|byte| byte.is_ascii_hexdigit()),
        "a generated trace id: {generated:?}"
    );
    assert_ne!(generated, TRACE_ID);
    for secret in [PROMPT, answer.as_str(), gateway.tenant_key.as_str()] {
        assert!(!text.contains(secret), "the logs hold `{secret}`:\n{text}");
    }
}
