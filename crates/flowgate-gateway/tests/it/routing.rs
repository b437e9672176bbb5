//! Routing: retries with backoff on 5xx and 429 (honouring `Retry-After`), fallback to the next
//! route on a stalled or failing deployment, no retry of request errors, and a route's circuit
//! breaker opening after consecutive failures and closing after a successful probe. Two real
//! mock upstreams play the two deployments.

use crate::{chat, chat_body, error_code, scrape_metrics};
use flowgate_test_support::{Behaviour, MockUpstream, TestGateway};
use http::StatusCode;
use std::time::{Duration, Instant};

async fn upstream() -> MockUpstream {
    MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"))
}

/// Model `gpt-4o-mini` routed to `primary`, then `backup`; `settings` go on both providers.
async fn two_routes(settings: &str) -> (MockUpstream, MockUpstream, TestGateway) {
    let primary = upstream().await;
    let backup = upstream().await;
    let config = format!(
        r#"
[[providers]]
name = "primary"
kind = "openai"
base_url = "{}"
{settings}

[[providers]]
name = "backup"
kind = "openai"
base_url = "{}"
{settings}

[[models]]
name = "gpt-4o-mini"
routes = [ {{ provider = "primary" }}, {{ provider = "backup" }} ]
"#,
        primary.base_url(),
        backup.base_url()
    );
    let gateway = TestGateway::spawn(&config, &[])
        .await
        .unwrap_or_else(|err| panic!("gateway: {err:#}"));
    (primary, backup, gateway)
}

fn status(body: &str, code: u16) -> Behaviour {
    Behaviour::Status {
        status: code,
        body: body.to_owned(),
        retry_after: None,
    }
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|candidate| candidate == line)
}

const SERVER_ERROR: &str = r#"{"error":{"message":"boom","type":"server_error","code":null}}"#;

#[tokio::test]
async fn a_server_error_is_retried_on_the_same_route() {
    let (primary, backup, gateway) = two_routes("max_retries = 2\nretry_backoff_ms = 20").await;
    primary.push(status(SERVER_ERROR, 500));
    let response = chat(&gateway, &chat_body(false)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(primary.request_count(), 2, "one failure, one retry");
    assert_eq!(backup.request_count(), 0);
    let text = scrape_metrics(&gateway).await;
    for line in [
        "flowgate_retries_total{provider=\"primary\"} 1",
        "flowgate_upstream_attempts_total{provider=\"primary\",outcome=\"server_error\"} 1",
        "flowgate_upstream_attempts_total{provider=\"primary\",outcome=\"success\"} 1",
        "flowgate_fallbacks_total{model=\"gpt-4o-mini\"} 0",
    ] {
        assert!(has_line(&text, line), "missing `{line}` in\n{text}");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (primary, _backup, gateway) = two_routes("max_retries = 1\nretry_backoff_ms = 10").await;
    primary.push(Behaviour::Status {
        status: 429,
        body: r#"{"error":{"message":"slow down","type":"rate_limit_error","code":null}}"#
            .to_owned(),
        retry_after: Some("1".to_owned()),
    });
    let started = Instant::now();
    let response = chat(&gateway, &chat_body(false)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "retried after {:?}, before Retry-After",
        started.elapsed()
    );
    assert_eq!(primary.request_count(), 2);
}

#[tokio::test]
async fn a_stalled_route_times_out_and_falls_back() {
    let (primary, backup, gateway) =
        two_routes("max_retries = 0\nfirst_byte_timeout_ms = 300").await;
    primary.push(Behaviour::StallBeforeHead(Duration::from_secs(5)));
    let started = Instant::now();
    let response = chat(&gateway, &chat_body(false)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(backup.request_count(), 1, "the backup answered");
    let text = scrape_metrics(&gateway).await;
    for line in [
        "flowgate_upstream_attempts_total{provider=\"primary\",outcome=\"timeout\"} 1",
        "flowgate_fallbacks_total{model=\"gpt-4o-mini\"} 1",
    ] {
        assert!(has_line(&text, line), "missing `{line}` in\n{text}");
    }
    // The wait on the stalled upstream is not the gateway's overhead.
    let overhead: f64 = response
        .header("x-flowgate-overhead-ms")
        .and_then(|value| value.parse().ok())
        .unwrap_or(f64::MAX);
    assert!(overhead < 250.0, "overhead {overhead} ms");
}

#[tokio::test]
async fn request_errors_are_not_retried_and_keep_their_body() {
    let (primary, backup, gateway) = two_routes("max_retries = 2\nretry_backoff_ms = 10").await;
    let refusal = r#"{"error":{"message":"messages must not be empty","type":"invalid_request_error","param":"messages","code":null}}"#;
    primary.push(status(refusal, 400));
    let response = chat(&gateway, &chat_body(false)).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        response.text(),
        refusal,
        "same-dialect request errors pass verbatim"
    );
    assert_eq!(primary.request_count(), 1);
    assert_eq!(backup.request_count(), 0);
}

#[tokio::test]
async fn when_every_route_fails_the_client_gets_a_502_not_a_200() {
    let (primary, backup, gateway) = two_routes("max_retries = 1\nretry_backoff_ms = 10").await;
    for _ in 0..2 {
        primary.push(status(SERVER_ERROR, 500));
        backup.push(status(SERVER_ERROR, 503));
    }
    let response = chat(&gateway, &chat_body(false)).await;
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        response.text()
    );
    assert_eq!(error_code(&response.json()), "upstream_error");
    assert!(
        response.json()["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("boom") || message.contains("backup"))
    );
    assert_eq!(primary.request_count(), 2);
    assert_eq!(backup.request_count(), 2);
}

#[tokio::test]
async fn the_circuit_opens_after_consecutive_failures_and_a_probe_closes_it() {
    let (primary, backup, gateway) =
        two_routes("max_retries = 0\ncircuit_failures = 2\ncircuit_cooldown_ms = 400").await;
    for _ in 0..2 {
        primary.push(status(SERVER_ERROR, 500));
    }
    for _ in 0..3 {
        let response = chat(&gateway, &chat_body(false)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    }
    // Two failures opened the circuit: the third request went straight to the backup.
    assert_eq!(primary.request_count(), 2);
    assert_eq!(backup.request_count(), 3);
    assert!(has_line(
        &scrape_metrics(&gateway).await,
        "flowgate_upstream_attempts_total{provider=\"primary\",outcome=\"circuit_open\"} 1"
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // After the cooldown one probe goes to the primary (healthy now) and closes the circuit.
    for _ in 0..2 {
        let response = chat(&gateway, &chat_body(false)).await;
        assert_eq!(response.status, StatusCode::OK);
    }
    assert_eq!(
        primary.request_count(),
        4,
        "probe succeeded, circuit closed"
    );
    assert_eq!(backup.request_count(), 3);
}

#[tokio::test]
async fn weighted_routes_share_the_traffic() {
    let primary = upstream().await;
    let backup = upstream().await;
    let config = format!(
        r#"
[[providers]]
name = "a"
kind = "openai"
base_url = "{}"

[[providers]]
name = "b"
kind = "openai"
base_url = "{}"

[[models]]
name = "gpt-4o-mini"
routes = [ {{ provider = "a", weight = 3 }}, {{ provider = "b", weight = 1 }} ]
"#,
        primary.base_url(),
        backup.base_url()
    );
    let gateway = TestGateway::spawn(&config, &[])
        .await
        .unwrap_or_else(|err| panic!("gateway: {err:#}"));
    for _ in 0..200 {
        let response = chat(&gateway, &chat_body(false)).await;
        assert_eq!(response.status, StatusCode::OK);
    }
    let (a, b) = (primary.request_count(), backup.request_count());
    assert_eq!(a + b, 200);
    // 3:1 split: expect 150 vs 50; a binomial deviation beyond 35 has negligible probability.
    assert!((115..=185).contains(&a), "split {a}:{b}");
}
