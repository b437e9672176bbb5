//! The Anthropic Messages ingress (`/v1/messages`, `/v1/messages/count_tokens`) served from an
//! OpenAI-format upstream: answers and streams in Anthropic's shapes, usage equal to what the
//! upstream reported, and errors in Anthropic's error shape.

use crate::{setup, sse_events};
use flowgate_providers::mock;
use flowgate_test_support::client::next_chunk;
use flowgate_test_support::{Behaviour, TestClient, TestResponse};
use http::{Method, StatusCode};
use serde_json::{Value, json};

fn messages_body(stream: bool) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "max_tokens": 100,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Say hello in five words"},
            {"role": "assistant", "content": "Hello there, how are you?"},
            {"role": "user", "content": [{"type": "text", "text": "Again please, in four words"}]}
        ],
        "stream": stream,
    })
}

async fn post_messages(url: &str, key: &str, body: &Value) -> TestResponse {
    TestClient::new()
        .call(
            Method::POST,
            url,
            &[("x-api-key", key), ("anthropic-version", "2023-06-01")],
            body.to_string(),
        )
        .await
}

/// What the OpenAI mock answered to the body the gateway sent it.
fn upstream_answer(body: &[u8]) -> Value {
    match mock::chat(body, "gpt-4o-mini", "req_x") {
        Ok(mock::MockAnswer::Json(json)) => {
            serde_json::from_slice(&json).unwrap_or_else(|err| panic!("{err}"))
        }
        other => panic!("unexpected mock answer {other:?}"),
    }
}

#[tokio::test]
async fn messages_are_answered_in_anthropic_shape_with_exact_usage() {
    let (upstream, gateway) = setup().await;
    let response = post_messages(
        &gateway.url("/v1/messages"),
        &gateway.tenant_key,
        &messages_body(false),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["content"][0]["type"], "text");
    // The upstream got an OpenAI body: system hoisted into a system message, all turns kept.
    let recorded = upstream.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    let sent: Value = serde_json::from_slice(&recorded[0].body).unwrap_or_default();
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][0]["content"], "You are terse.");
    assert_eq!(sent["messages"].as_array().map(Vec::len), Some(4));
    // Text and usage are exactly what the upstream answered.
    let answer = upstream_answer(&recorded[0].body);
    assert_eq!(
        body["content"][0]["text"],
        answer["choices"][0]["message"]["content"]
    );
    assert_eq!(
        body["usage"]["input_tokens"],
        answer["usage"]["prompt_tokens"]
    );
    assert_eq!(
        body["usage"]["output_tokens"],
        answer["usage"]["completion_tokens"]
    );
}

async fn stream_text(url: &str, key: &str, body: &Value) -> (StatusCode, String) {
    let response = TestClient::new()
        .send(
            Method::POST,
            url,
            &[("x-api-key", key), ("anthropic-version", "2023-06-01")],
            body.to_string(),
        )
        .await;
    let status = response.status();
    let mut incoming = response.into_body();
    let mut text = String::new();
    while let Some(chunk) = next_chunk(&mut incoming).await {
        match chunk {
            Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Err(err) => panic!("stream broke: {err}"),
        }
    }
    (status, text)
}

#[tokio::test]
async fn streams_follow_anthropic_event_order_with_exact_usage() {
    let (upstream, gateway) = setup().await;
    let (status, text) = stream_text(
        &gateway.url("/v1/messages"),
        &gateway.tenant_key,
        &messages_body(true),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let events = sse_events(&text);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    assert!(names.contains(&"content_block_start"));
    assert!(names.contains(&"content_block_stop"));
    assert!(names.contains(&"message_delta"));
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str(), "event name matches its type");
    }
    let text_out: String = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .filter_map(|(_, data)| data["delta"]["text"].as_str())
        .collect();
    // The gateway asked the upstream for usage (the client did not have to).
    let recorded = upstream.requests();
    let sent: Value = serde_json::from_slice(&recorded[0].body).unwrap_or_default();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let mut unstreamed = sent;
    unstreamed["stream"] = json!(false);
    let answer = upstream_answer(unstreamed.to_string().as_bytes());
    assert_eq!(text_out, answer["choices"][0]["message"]["content"]);
    let delta = events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .map(|(_, data)| data.clone())
        .unwrap_or_default();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        delta["usage"]["output_tokens"],
        answer["usage"]["completion_tokens"]
    );
    // Input tokens are not lost in translation: reported by the end of the stream.
    let start = &events[0].1;
    let input_tokens =
        delta["usage"]["input_tokens"]
            .as_u64()
            .or(start["message"]["usage"]["input_tokens"]
                .as_u64()
                .filter(|n| *n > 0));
    assert_eq!(
        input_tokens,
        answer["usage"]["prompt_tokens"].as_u64(),
        "{text}"
    );
}

#[tokio::test]
async fn errors_use_anthropic_error_shape() {
    let (upstream, gateway) = setup().await;
    let url = gateway.url("/v1/messages");
    let no_key = TestClient::new()
        .call(Method::POST, &url, &[], messages_body(false).to_string())
        .await;
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
    assert_eq!(no_key.json()["type"], "error");
    assert_eq!(no_key.json()["error"]["type"], "authentication_error");

    let mut unknown = messages_body(false);
    unknown["model"] = json!("no-such-model");
    let response = post_messages(&url, &gateway.tenant_key, &unknown).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(response.json()["error"]["type"], "not_found_error");

    let mut untranslatable = messages_body(false);
    untranslatable["messages"][0]["content"] = json!([{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]);
    let response = post_messages(&url, &gateway.tenant_key, &untranslatable).await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.text()
    );
    assert_eq!(response.json()["error"]["type"], "invalid_request_error");

    upstream.push(Behaviour::Status {
        status: 400,
        body: r#"{"error":{"message":"bad temperature","type":"invalid_request_error","param":"temperature","code":null}}"#.to_owned(),
        retry_after: None,
    });
    let response = post_messages(&url, &gateway.tenant_key, &messages_body(false)).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    let body = response.json();
    assert_eq!(
        body["type"], "error",
        "translated, not OpenAI's shape: {body}"
    );
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["message"], "bad temperature");
}

#[tokio::test]
async fn count_tokens_estimates_without_calling_the_upstream() {
    let (upstream, gateway) = setup().await;
    let mut body = messages_body(false);
    if let Some(object) = body.as_object_mut() {
        object.remove("max_tokens");
        object.remove("stream");
    }
    let response = post_messages(
        &gateway.url("/v1/messages/count_tokens"),
        &gateway.tenant_key,
        &body,
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let counted = response.json()["input_tokens"].as_u64().unwrap_or(0);
    assert!((10..200).contains(&counted), "{counted}");
    assert_eq!(upstream.request_count(), 0);
}
