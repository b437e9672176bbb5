//! Admission through the gateway: request rate with burst, token reservations, concurrency,
//! the `x-ratelimit-*` headers, and limits shared by two gateways through the real Redis.

use crate::{chat_body, error_code};
use flowgate_test_support::gateway::config_for_upstream;
use flowgate_test_support::{Behaviour, MockUpstream, TestClient, TestGateway};
use http::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

async fn gateway_with(env: &[(&str, &str)]) -> (MockUpstream, TestGateway) {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let gateway = TestGateway::spawn(&config_for_upstream(&upstream.base_url()), env)
        .await
        .unwrap_or_else(|err| panic!("{err:#}"));
    (upstream, gateway)
}

async fn tenant_with(gateway: &TestGateway, limits: serde_json::Value) -> String {
    let mut body = json!({"name": format!("limited-{}", flowgate_types::to_hex(&flowgate_types::random_bytes::<4>()))});
    if let (Some(target), Some(extra)) = (body.as_object_mut(), limits.as_object()) {
        target.extend(extra.clone());
    }
    let created = TestClient::new()
        .post_json(&gateway.url("/v1/tenants"), &gateway.admin_key, &body)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    created.json()["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn request_rate_with_burst_then_429_with_headers() {
    let (upstream, gateway) = gateway_with(&[]).await;
    // 4 per minute with the default burst factor 1.5: 6 at once.
    let key = tenant_with(&gateway, json!({"max_requests_per_minute": 4})).await;
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    let mut remaining = Vec::new();
    for _ in 0..6 {
        let response = client.post_json(&url, &key, &chat_body(false)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert_eq!(response.header("x-ratelimit-limit-requests"), Some("6"));
        remaining.push(
            response
                .header("x-ratelimit-remaining-requests")
                .unwrap_or("")
                .to_owned(),
        );
        assert!(response.header("x-ratelimit-reset-requests").is_some());
    }
    assert_eq!(remaining, ["5", "4", "3", "2", "1", "0"]);
    let refused = client.post_json(&url, &key, &chat_body(false)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&refused.json()), "rate_limit_exceeded");
    assert_eq!(refused.json()["error"]["type"], "rate_limit_error");
    let retry_after: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=15).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(refused.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(
        upstream.request_count(),
        6,
        "a refused request never reaches the upstream"
    );
}

#[tokio::test]
async fn token_reservation_larger_than_the_window_is_refused() {
    let (upstream, gateway) = gateway_with(&[]).await;
    let key = tenant_with(&gateway, json!({"max_tokens_per_minute": 1000})).await;
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    let mut body = chat_body(false);
    body["max_tokens"] = json!(5000);
    let refused = client.post_json(&url, &key, &body).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused.header("retry-after").is_none(),
        "waiting cannot help"
    );
    body["max_tokens"] = json!(100);
    let admitted = client.post_json(&url, &key, &body).await;
    assert_eq!(admitted.status, StatusCode::OK, "{}", admitted.text());
    assert_eq!(admitted.header("x-ratelimit-limit-tokens"), Some("1000"));
    // The reservation was settled from the reported usage, so most of it came back.
    let remaining: u64 = admitted
        .header("x-ratelimit-remaining-tokens")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(remaining < 1000);
    let after = client.post_json(&url, &key, &body).await;
    let remaining_after: u64 = after
        .header("x-ratelimit-remaining-tokens")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        remaining_after + 200 > remaining,
        "usage settled: {remaining} then {remaining_after}"
    );
    assert_eq!(upstream.request_count(), 2);
}

#[tokio::test]
async fn concurrency_limit_frees_the_slot_when_the_stream_ends() {
    let (upstream, gateway) = gateway_with(&[]).await;
    let key = tenant_with(&gateway, json!({"max_concurrent_requests": 1})).await;
    upstream.push(Behaviour::Normal {
        chunk_delay: Duration::from_millis(50),
    });
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    let authorization = format!("Bearer {key}");
    let streaming = client
        .send(
            Method::POST,
            &url,
            &[("authorization", &authorization)],
            chat_body(true).to_string(),
        )
        .await;
    let busy = client.post_json(&url, &key, &chat_body(false)).await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS);
    let mut body = streaming.into_body();
    while let Some(Ok(_)) = flowgate_test_support::client::next_chunk(&mut body).await {}
    // The slot is freed when the stream ends.
    let mut admitted = false;
    for _ in 0..20 {
        if client.post_json(&url, &key, &chat_body(false)).await.status == StatusCode::OK {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted);
}

async fn burst_admits(gateways: &[&TestGateway], key_of: &[String], requests: usize) -> usize {
    let client = TestClient::new();
    let mut tasks = Vec::new();
    for index in 0..requests {
        let gateway = gateways[index % gateways.len()];
        let url = gateway.url("/v1/chat/completions");
        let key = key_of[index % gateways.len()].clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client.post_json(&url, &key, &chat_body(false)).await.status
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        let status = task.await.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            matches!(status, StatusCode::OK | StatusCode::TOO_MANY_REQUESTS),
            "{status}"
        );
        admitted += usize::from(status == StatusCode::OK);
    }
    admitted
}

#[tokio::test]
async fn two_hundred_simultaneous_requests_admit_exactly_the_burst() {
    for (factor, expected) in [("1.0", 50), ("1.5", 75)] {
        let (_upstream, gateway) = gateway_with(&[("RATE_LIMIT_BURST_FACTOR", factor)]).await;
        let key = tenant_with(&gateway, json!({"max_requests_per_minute": 50})).await;
        let admitted = burst_admits(&[&gateway], &[key], 200).await;
        assert_eq!(admitted, expected, "burst factor {factor}");
    }
}

#[tokio::test]
async fn two_gateways_share_limits_through_redis() {
    let redis = [
        ("FLOWGATE_REDIS_URL", "redis://127.0.0.1:6379"),
        ("RATE_LIMIT_BURST_FACTOR", "1.0"),
    ];
    let (_upstream_a, first) = gateway_with(&redis).await;
    let key = tenant_with(&first, json!({"max_requests_per_minute": 50})).await;
    // The second replica shares the first one's database and Redis.
    let database = first.database_url();
    let master = first.master_key.to_base64();
    let mut env = redis.to_vec();
    env.push(("FLOWGATE_DATABASE_URL", &database));
    env.push(("FLOWGATE_MASTER_KEY", &master));
    let (_upstream_b, second) = gateway_with(&env).await;
    // Both see the tenant (same store); limits are counted once, in Redis.
    let admitted = burst_admits(&[&first, &second], &[key.clone(), key], 200).await;
    assert_eq!(admitted, 50, "50 in total across both replicas, not 100");
}

/// Creates a tenant (with `limits`) and returns its id, its first key and that key's id.
async fn tenant_and_key(
    gateway: &TestGateway,
    limits: serde_json::Value,
) -> (String, String, String) {
    let mut body = json!({"name": format!("keyed-{}", flowgate_types::to_hex(&flowgate_types::random_bytes::<4>()))});
    if let (Some(target), Some(extra)) = (body.as_object_mut(), limits.as_object()) {
        target.extend(extra.clone());
    }
    let created = TestClient::new()
        .post_json(&gateway.url("/v1/tenants"), &gateway.admin_key, &body)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let json = created.json();
    let field = |name: &str| json[name].as_str().unwrap_or_default().to_owned();
    (field("id"), field("api_key"), field("key_id"))
}

/// Adds a key with `limits` to a tenant; returns the creation answer.
async fn add_key(
    gateway: &TestGateway,
    tenant: &str,
    limits: serde_json::Value,
) -> serde_json::Value {
    let created = TestClient::new()
        .post_json(
            &gateway.url(&format!("/v1/tenants/{tenant}/keys")),
            &gateway.admin_key,
            &limits,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    created.json()
}

fn refused_by(response: &flowgate_test_support::TestResponse) -> String {
    assert_eq!(
        response.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        response.text()
    );
    assert_eq!(error_code(&response.json()), "rate_limit_exceeded");
    response.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn key_request_limit_refuses_that_key_only() {
    key_request_limit_case(&[("RATE_LIMIT_BURST_FACTOR", "1.0")]).await;
}

#[tokio::test]
async fn key_request_limit_refuses_that_key_only_in_redis() {
    key_request_limit_case(&[
        ("RATE_LIMIT_BURST_FACTOR", "1.0"),
        ("FLOWGATE_REDIS_URL", "redis://127.0.0.1:6379"),
    ])
    .await;
}

async fn key_request_limit_case(env: &[(&str, &str)]) {
    let (upstream, gateway) = gateway_with(env).await;
    let (tenant, other_key, _) = tenant_and_key(&gateway, json!({})).await;
    let limited = add_key(&gateway, &tenant, json!({"max_requests_per_minute": 2})).await;
    assert_eq!(limited["max_requests_per_minute"], 2);
    assert!(limited["max_tokens_per_minute"].is_null());
    let limited_key = limited["api_key"].as_str().unwrap_or_default().to_owned();
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    for _ in 0..2 {
        let response = client
            .post_json(&url, &limited_key, &chat_body(false))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        // The key's limit is tighter than the tenant's default, so its headers show.
        assert_eq!(response.header("x-ratelimit-limit-requests"), Some("2"));
    }
    let refused = client
        .post_json(&url, &limited_key, &chat_body(false))
        .await;
    let message = refused_by(&refused);
    assert!(message.starts_with("key requests"), "{message}");
    assert!(refused.header("retry-after").is_some());
    assert_eq!(refused.header("x-ratelimit-remaining-requests"), Some("0"));
    // Another key of the same tenant is not affected.
    let other = client.post_json(&url, &other_key, &chat_body(false)).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text());
    assert_eq!(upstream.request_count(), 3);

    // The listing shows each key's limits.
    let listed = client
        .get(
            &gateway.url(&format!("/v1/tenants/{tenant}/keys")),
            &gateway.admin_key,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    let keys = listed.json()["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(keys.len(), 2);
    let of = |id: &serde_json::Value| {
        keys.iter()
            .find(|key| &key["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("key {id} listed"))
    };
    let shown = of(&limited["id"]);
    assert_eq!(shown["max_requests_per_minute"], 2);
    assert!(shown["max_concurrent_requests"].is_null());
    assert!(shown.get("api_key").is_none(), "never the secret");

    // Zero is refused: leave a field out for no limit.
    let zero = client
        .post_json(
            &gateway.url(&format!("/v1/tenants/{tenant}/keys")),
            &gateway.admin_key,
            &json!({"max_concurrent_requests": 0}),
        )
        .await;
    assert_eq!(zero.status, StatusCode::BAD_REQUEST, "{}", zero.text());
}

#[tokio::test]
async fn tenant_limit_still_applies_across_keys() {
    let (_upstream, gateway) = gateway_with(&[("RATE_LIMIT_BURST_FACTOR", "1.0")]).await;
    let (tenant, plain_key, _) =
        tenant_and_key(&gateway, json!({"max_requests_per_minute": 3})).await;
    let limited = add_key(&gateway, &tenant, json!({"max_requests_per_minute": 10})).await;
    let limited_key = limited["api_key"].as_str().unwrap_or_default().to_owned();
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    for key in [&limited_key, &plain_key, &limited_key] {
        let response = client.post_json(&url, key, &chat_body(false)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    }
    // The tenant's 3 are used up, whichever key asks (the limited key is under its own 10).
    for key in [&plain_key, &limited_key] {
        let refused = client.post_json(&url, key, &chat_body(false)).await;
        let message = refused_by(&refused);
        assert!(message.starts_with("tenant requests"), "{message}");
    }
}

#[tokio::test]
async fn key_concurrency_limit_frees_on_completion_and_rotation_keeps_limits() {
    let (upstream, gateway) = gateway_with(&[]).await;
    let (tenant, other_key, other_id) = tenant_and_key(&gateway, json!({})).await;
    let limited = add_key(&gateway, &tenant, json!({"max_concurrent_requests": 1})).await;
    let key = limited["api_key"].as_str().unwrap_or_default().to_owned();
    upstream.push(Behaviour::Normal {
        chunk_delay: Duration::from_millis(50),
    });
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    let authorization = format!("Bearer {key}");
    let streaming = client
        .send(
            Method::POST,
            &url,
            &[("authorization", &authorization)],
            chat_body(true).to_string(),
        )
        .await;
    let busy = client.post_json(&url, &key, &chat_body(false)).await;
    let message = refused_by(&busy);
    assert!(message.starts_with("key concurrency"), "{message}");
    // The tenant has room: its other key is served while the stream is open.
    let other = client.post_json(&url, &other_key, &chat_body(false)).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text());
    let mut body = streaming.into_body();
    while let Some(Ok(_)) = flowgate_test_support::client::next_chunk(&mut body).await {}
    // The key's slot is freed when the stream ends.
    let mut admitted = false;
    for _ in 0..20 {
        if client.post_json(&url, &key, &chat_body(false)).await.status == StatusCode::OK {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        admitted,
        "the key's concurrency slot is released on completion"
    );

    // Rotation: the new key keeps the limits of the key it replaces (the newest live one;
    // the first key is revoked so the limited key is the only candidate).
    let admin = format!("Bearer {}", gateway.admin_key);
    let revoked = client
        .call(
            Method::DELETE,
            &gateway.url(&format!("/v1/tenants/{tenant}/keys/{other_id}")),
            &[("authorization", &admin)],
            String::new(),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    let rotated = client
        .post_json(
            &gateway.url(&format!("/v1/tenants/{tenant}/keys/rotate")),
            &gateway.admin_key,
            &json!({"revoke_after_seconds": 60}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.text());
    let new_key = &rotated.json()["new_key"];
    assert_eq!(new_key["max_concurrent_requests"], 1, "{new_key}");
    assert!(new_key["max_requests_per_minute"].is_null());
}
