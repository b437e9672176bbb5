//! Streaming: chunks are forwarded as they arrive, usage passes through, upstream failures
//! after the head end the stream with an error event, and a client that leaves cancels the
//! upstream call.

use crate::{chat_body, setup};
use flowgate_test_support::client::next_chunk;
use flowgate_test_support::{Behaviour, TestClient};
use http::{Method, StatusCode};
use std::time::{Duration, Instant};

async fn read_all(body: &mut hyper::body::Incoming) -> String {
    let mut text = String::new();
    while let Some(chunk) = next_chunk(body).await {
        match chunk {
            Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Err(err) => panic!("stream broke: {err}"),
        }
    }
    text
}

fn open_stream_request(key: &str) -> (String, String) {
    (format!("Bearer {key}"), chat_body(true).to_string())
}

#[tokio::test]
async fn chunks_arrive_before_the_upstream_finishes() {
    let (upstream, gateway) = setup().await;
    upstream.push(Behaviour::Normal {
        chunk_delay: Duration::from_millis(150),
    });
    let (authorization, body) = open_stream_request(&gateway.tenant_key);
    let started = Instant::now();
    let response = TestClient::new()
        .send(
            Method::POST,
            &gateway.url("/v1/chat/completions"),
            &[("authorization", &authorization)],
            body,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    assert!(response.headers().get("x-flowgate-overhead-ms").is_some());
    let mut incoming = response.into_body();
    let first = next_chunk(&mut incoming)
        .await
        .and_then(Result::ok)
        .unwrap_or_default();
    let first_at = started.elapsed();
    assert!(
        String::from_utf8_lossy(&first).starts_with("data: "),
        "first chunk {first:?}"
    );
    let rest = read_all(&mut incoming).await;
    let total = started.elapsed();
    assert!(rest.ends_with("data: [DONE]\n\n"), "stream end: {rest}");
    // The mock spreads 13 chunks 150 ms apart: the first must arrive long before the last.
    assert!(
        first_at < Duration::from_millis(700),
        "first chunk after {first_at:?}"
    );
    assert!(
        total > Duration::from_millis(1500),
        "whole stream took {total:?}"
    );
    assert_eq!(upstream.completed_streams(), 1);
}

#[tokio::test]
async fn include_usage_passes_through() {
    let (_upstream, gateway) = setup().await;
    let mut body = chat_body(true);
    body["stream_options"] = serde_json::json!({"include_usage": true});
    let authorization = format!("Bearer {}", gateway.tenant_key);
    let response = TestClient::new()
        .send(
            Method::POST,
            &gateway.url("/v1/chat/completions"),
            &[("authorization", &authorization)],
            body.to_string(),
        )
        .await;
    let text = read_all(&mut response.into_body()).await;
    let usage_line = text
        .lines()
        .find(|line| line.contains("\"usage\""))
        .unwrap_or_else(|| panic!("no usage chunk in {text}"));
    let value: serde_json::Value =
        serde_json::from_str(usage_line.trim_start_matches("data: ")).unwrap_or_default();
    assert!(value["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0);
}

async fn stream_after_failure(behaviour: Behaviour, expected_code: &str) {
    let (upstream, gateway) = setup().await;
    upstream.push(behaviour);
    let (authorization, body) = open_stream_request(&gateway.tenant_key);
    let started = Instant::now();
    let response = TestClient::new()
        .send(
            Method::POST,
            &gateway.url("/v1/chat/completions"),
            &[("authorization", &authorization)],
            body,
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the head was already sent"
    );
    let text = tokio::time::timeout(Duration::from_secs(5), read_all(&mut response.into_body()))
        .await
        .unwrap_or_else(|_| panic!("the stream hung"));
    let last = text.trim_end().lines().last().unwrap_or_default();
    let event: serde_json::Value =
        serde_json::from_str(last.trim_start_matches("data: ")).unwrap_or_default();
    assert_eq!(event["error"]["code"], expected_code, "last event: {last}");
    assert!(
        !text.contains("[DONE]"),
        "a broken stream must not look complete"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn stall_mid_stream_ends_with_an_error_event() {
    // The configured idle limit is 1 s.
    stream_after_failure(Behaviour::StallMidStream { after: 3 }, "upstream_timeout").await;
}

#[tokio::test]
async fn reset_mid_stream_ends_with_an_error_event() {
    stream_after_failure(Behaviour::ResetMidStream { after: 3 }, "upstream_error").await;
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let (upstream, gateway) = setup().await;
    upstream.push(Behaviour::Normal {
        chunk_delay: Duration::from_millis(200),
    });
    let (authorization, body) = open_stream_request(&gateway.tenant_key);
    let client = TestClient::new();
    let response = client
        .send(
            Method::POST,
            &gateway.url("/v1/chat/completions"),
            &[("authorization", &authorization)],
            body,
        )
        .await;
    let mut incoming = response.into_body();
    assert!(
        next_chunk(&mut incoming)
            .await
            .is_some_and(|chunk| chunk.is_ok())
    );
    drop(incoming);
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(3);
    while upstream.abandoned_streams() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        upstream.abandoned_streams(),
        1,
        "the upstream stream was not cancelled"
    );
    assert_eq!(upstream.completed_streams(), 0);
}
