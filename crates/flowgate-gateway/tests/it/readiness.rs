//! `/health/ready` reports each dependency on its own: the store, Redis when configured, and
//! the audit writer's backlog (issue 8).

use crate::{chat_body, setup_with};
use flowgate_test_support::gateway::config_for_upstream;
use flowgate_test_support::{MockUpstream, TestClient, TestGateway};
use http::{Method, StatusCode};
use std::time::{Duration, Instant};

async fn ready(gateway: &TestGateway) -> (StatusCode, serde_json::Value) {
    let answer = TestClient::new()
        .call(Method::GET, &gateway.url("/health/ready"), &[], "")
        .await;
    (answer.status, answer.json())
}

async fn with_redis(extra: &str, redis_url: &str) -> (MockUpstream, TestGateway) {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    let config = format!("{extra}\n{}", config_for_upstream(&upstream.base_url()));
    let gateway = TestGateway::spawn(&config, &[("FLOWGATE_REDIS_URL", redis_url)])
        .await
        .unwrap_or_else(|err| panic!("gateway: {err:#}"));
    (upstream, gateway)
}

fn dead_redis_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("{err}"));
    // The listener is dropped: nothing answers on this port.
    format!("redis://127.0.0.1:{port}")
}

#[tokio::test]
async fn every_dependency_has_its_own_line() {
    let (_upstream, gateway) = setup_with("").await;
    let (status, body) = ready(&gateway).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["store"], "ok");
    assert_eq!(body["checks"]["audit_writer"], "ok");
    assert_eq!(body["checks"]["audit_backlog"]["queued"], 0);
    assert!(body["checks"]["audit_backlog"]["capacity"].as_u64() > Some(0));
    assert!(body["checks"].get("redis").is_none(), "no Redis configured");

    let (_upstream, gateway) = with_redis("", "redis://127.0.0.1:6379").await;
    let (status, body) = ready(&gateway).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["redis"], "ok");
}

#[tokio::test]
async fn redis_down_is_reported_and_fails_only_in_refuse_mode() {
    let (_upstream, gateway) = with_redis("", &dead_redis_url()).await;
    let (status, body) = ready(&gateway).await;
    assert_eq!(status, StatusCode::OK, "local limits keep serving: {body}");
    assert_eq!(body["checks"]["redis"], "fallback");
    assert_eq!(body["checks"]["store"], "ok");

    let (_upstream, gateway) =
        with_redis("[limits]\non_redis_down = \"refuse\"\n", &dead_redis_url()).await;
    let (status, body) = ready(&gateway).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["failing"], serde_json::json!(["redis"]));
    assert_eq!(body["checks"]["redis"], "unavailable");
    assert_eq!(body["checks"]["store"], "ok");
}

#[tokio::test]
async fn a_full_audit_queue_fails_after_the_store() {
    let (_upstream, gateway) = setup_with(
        "[audit]\nacknowledge = \"store\"\nqueue_capacity = 1\ndurable_timeout_ms = 300\n",
    )
    .await;
    gateway.store.close().await;
    // Requests keep submitting records the writer cannot store: the queue fills.
    let client = TestClient::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut requests = Vec::new();
        for _ in 0..4 {
            let (client, url, key) = (
                client.clone(),
                gateway.url("/v1/chat/completions"),
                gateway.tenant_key.clone(),
            );
            requests.push(tokio::spawn(async move {
                client.post_json(&url, &key, &chat_body(false)).await.status
            }));
        }
        let (status, body) = ready(&gateway).await;
        for request in requests {
            let _ = request.await;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["failing"][0], "store");
        if body["checks"]["audit_writer"] == "unavailable" {
            assert_eq!(
                body["failing"],
                serde_json::json!(["store", "audit_writer"])
            );
            assert_eq!(body["checks"]["audit_backlog"]["queued"], 1);
            break;
        }
        assert!(Instant::now() < deadline, "the queue never filled: {body}");
    }
}
