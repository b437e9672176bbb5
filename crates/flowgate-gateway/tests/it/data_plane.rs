//! Non-streaming data plane: success paths, pass-through fidelity, and every error status.

use crate::{chat_body, error_code, setup, setup_with};
use flowgate_test_support::{Behaviour, TestClient, TestGateway};
use http::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn chat_completion_passes_through_with_headers() {
    let (upstream, gateway) = setup().await;
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    let authorization = format!("Bearer {}", gateway.tenant_key);
    let response = client
        .call(
            Method::POST,
            &url,
            &[
                ("authorization", &authorization),
                ("x-request-id", "my-trace-123"),
            ],
            chat_body(false).to_string(),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0);
    assert_eq!(response.header("x-request-id"), Some("my-trace-123"));
    let overhead: f64 = response
        .header("x-flowgate-overhead-ms")
        .and_then(|value| value.parse().ok())
        .unwrap_or(-1.0);
    assert!(
        (0.0..1000.0).contains(&overhead),
        "overhead header {overhead}"
    );
    // The upstream got our body, not the tenant's key.
    let recorded = upstream.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    assert!(recorded[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn generated_request_ids_are_unique() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    let first = client
        .post_json(&url, &gateway.tenant_key, &chat_body(false))
        .await;
    let second = client
        .post_json(&url, &gateway.tenant_key, &chat_body(false))
        .await;
    let (Some(a), Some(b)) = (first.header("x-request-id"), second.header("x-request-id")) else {
        panic!("x-request-id missing")
    };
    assert!(a.starts_with("req_") && a != b);
}

#[tokio::test]
async fn every_field_reaches_the_upstream_untouched_and_model_is_renamed() {
    let (upstream, gateway) = setup().await;
    let client = TestClient::new();
    let body = r#"{"model":"renamed","messages":[{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],"tool_choice":"auto","n":2,"response_format":{"type":"json_object"},"temperature":0.3,"seed":7,"user":"u-1","logit_bias":{"50256":-100}}"#;
    let authorization = format!("Bearer {}", gateway.tenant_key);
    let response = client
        .call(
            Method::POST,
            &gateway.url("/v1/chat/completions"),
            &[("authorization", &authorization)],
            body,
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let recorded = upstream.requests();
    let expected = body.replace(r#""model":"renamed""#, r#""model":"upstream-model""#);
    assert_eq!(
        std::str::from_utf8(&recorded[0].body).unwrap_or(""),
        expected
    );
}

#[tokio::test]
async fn embeddings_and_models() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let response = client
        .post_json(
            &gateway.url("/v1/embeddings"),
            &gateway.tenant_key,
            &json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.json()["data"].as_array().map(Vec::len), Some(2));

    let models = client
        .get(&gateway.url("/v1/models"), &gateway.tenant_key)
        .await;
    assert_eq!(models.status, StatusCode::OK);
    let ids: Vec<String> = models.json()["data"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids, ["gpt-4o-mini", "renamed", "text-embedding-3-small"]);
}

#[tokio::test]
async fn keys_are_read_from_every_sdk_header() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let url = gateway.url("/v1/models");
    for header in ["x-api-key", "X-API-Key", "x-goog-api-key"] {
        let response = client
            .call(Method::GET, &url, &[(header, &gateway.tenant_key)], "")
            .await;
        assert_eq!(response.status, StatusCode::OK, "{header}");
    }
}

#[tokio::test]
async fn authentication_failures() {
    let (upstream, gateway) = setup().await;
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    let missing = client
        .call(Method::POST, &url, &[], chat_body(false).to_string())
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&missing.json()), "missing_api_key");
    assert!(missing.header("x-request-id").is_some());

    let well_formed_unknown = flowgate_types::ApiKeySecret::generate();
    for key in [
        well_formed_unknown.expose(),
        "sk-garbage",
        &gateway.tenant_key[..20],
    ] {
        let response = client.post_json(&url, key, &chat_body(false)).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{key}");
        assert_eq!(error_code(&response.json()), "invalid_api_key");
        assert_eq!(response.json()["error"]["type"], "authentication_error");
    }

    let admin = client
        .post_json(&url, &gateway.admin_key, &chat_body(false))
        .await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&admin.json()), "admin_key_not_allowed");
    assert_eq!(
        upstream.request_count(),
        0,
        "nothing unauthenticated reaches the upstream"
    );
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let (upstream, gateway) = setup().await;
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    let authorization = format!("Bearer {}", gateway.tenant_key);
    for body in [
        "{",
        "[1,2]",
        "{\"messages\":[]}",
        "{\"model\":42}",
        "\u{0}\u{1}",
    ] {
        let response = client
            .call(
                Method::POST,
                &url,
                &[("authorization", &authorization)],
                body,
            )
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(response.json()["error"]["type"], "invalid_request_error");
    }
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn unknown_and_forbidden_models_are_404() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    let mut body = chat_body(false);
    body["model"] = json!("gpt-9");
    let response = client.post_json(&url, &gateway.tenant_key, &body).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&response.json()), "model_not_found");

    // A tenant restricted to one model gets 404 for the others, and sees only its model.
    let created = client
        .post_json(
            &gateway.url("/v1/tenants"),
            &gateway.admin_key,
            &json!({"name": "narrow", "allowed_models": ["renamed"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let key = created.json()["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let denied = client.post_json(&url, &key, &chat_body(false)).await;
    assert_eq!(denied.status, StatusCode::NOT_FOUND);
    let models = client.get(&gateway.url("/v1/models"), &key).await;
    assert_eq!(models.json()["data"][0]["id"], "renamed");
    assert_eq!(models.json()["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let (upstream, gateway) = setup_with("[server]\nmax_body_bytes = 1024").await;
    let client = TestClient::new();
    let mut body = chat_body(false);
    body["messages"][0]["content"] = json!("x".repeat(2000));
    let response = client
        .post_json(
            &gateway.url("/v1/chat/completions"),
            &gateway.tenant_key,
            &body,
        )
        .await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&response.json()), "request_too_large");
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn upstream_statuses_map_to_gateway_statuses() {
    let (upstream, gateway) = setup().await;
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    let provider_error = r#"{"error":{"message":"bad param","type":"invalid_request_error","param":"temperature","code":null}}"#;
    let cases: [(u16, Option<&str>, StatusCode, Option<&str>); 5] = [
        (400, None, StatusCode::BAD_REQUEST, None),
        (401, None, StatusCode::BAD_GATEWAY, Some("upstream_error")),
        (
            429,
            Some("7"),
            StatusCode::TOO_MANY_REQUESTS,
            Some("upstream_rate_limited"),
        ),
        (500, None, StatusCode::BAD_GATEWAY, Some("upstream_error")),
        (
            503,
            None,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("upstream_error"),
        ),
    ];
    for (status, retry_after, expected, code) in cases {
        upstream.push(Behaviour::Status {
            status,
            body: provider_error.to_owned(),
            retry_after: retry_after.map(str::to_owned),
        });
        let response = client
            .post_json(&url, &gateway.tenant_key, &chat_body(false))
            .await;
        assert_eq!(
            response.status,
            expected,
            "upstream {status}: {}",
            response.text()
        );
        match code {
            Some(code) => assert_eq!(error_code(&response.json()), code),
            None => assert_eq!(
                response.json()["error"]["param"],
                "temperature",
                "provider 400 passes through"
            ),
        }
        if let Some(value) = retry_after {
            assert_eq!(response.header("retry-after"), Some(value));
        }
    }
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // Port 1 on loopback refuses connections.
    let gateway = TestGateway::spawn(
        &flowgate_test_support::gateway::config_for_upstream("http://127.0.0.1:1/v1"),
        &[],
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
    let response = TestClient::new()
        .post_json(
            &gateway.url("/v1/chat/completions"),
            &gateway.tenant_key,
            &chat_body(false),
        )
        .await;
    assert_eq!(response.status, StatusCode::BAD_GATEWAY);
    assert_eq!(error_code(&response.json()), "upstream_unreachable");
}

#[tokio::test]
async fn upstream_stall_before_first_byte_is_504() {
    let (upstream, gateway) = setup().await;
    upstream.push(Behaviour::StallBeforeHead(Duration::from_secs(5)));
    let started = std::time::Instant::now();
    let response = TestClient::new()
        .post_json(
            &gateway.url("/v1/chat/completions"),
            &gateway.tenant_key,
            &chat_body(false),
        )
        .await;
    assert_eq!(response.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error_code(&response.json()), "upstream_timeout");
    // The configured first-byte limit is 2 s.
    assert!(started.elapsed() < Duration::from_millis(4000));
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let response = client
        .get(&gateway.url("/v1/nothing"), &gateway.tenant_key)
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    error_code(&response.json());
    let response = client
        .get(&gateway.url("/v1/chat/completions"), &gateway.tenant_key)
        .await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
}
