//! Health, readiness, graceful shutdown, and what the database holds.

use crate::{chat_body, setup, setup_with, wait_until};
use flowgate_test_support::client::next_chunk;
use flowgate_test_support::{Behaviour, TestClient, TestResponse};
use http::{Method, StatusCode};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn health_and_readiness() {
    // Store mode: a request waits for its record's store commit.
    let (_upstream, gateway) =
        setup_with("[audit]\nacknowledge = \"store\"\ndurable_timeout_ms = 300\n").await;
    let client = TestClient::new();
    for base in [&gateway.base_url, &gateway.internal_url] {
        let live = client
            .call(Method::GET, &format!("{base}/health"), &[], "")
            .await;
        assert_eq!(live.status, StatusCode::OK);
        assert_eq!(live.json()["status"], "OK");
        assert!(live.json()["version"].is_string());
    }
    let ready = client
        .call(Method::GET, &gateway.url("/health/ready"), &[], "")
        .await;
    assert_eq!(ready.status, StatusCode::OK);
    assert!(ready.header("x-request-id").is_some());
    gateway.store.close().await;
    let ready = client
        .call(Method::GET, &gateway.url("/health/ready"), &[], "")
        .await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["failing"][0], "store");
    // Keys and routes are served from memory, and the audit writer keeps a connection of its
    // own to the database file: answers still get their durable record.
    let answered = client
        .post_json(
            &gateway.url("/v1/chat/completions"),
            &gateway.tenant_key,
            &chat_body(false),
        )
        .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.text());
    assert!(answered.header("x-flowgate-audit-index").is_some());
    // When the database does not take the audit write either (another process holds its
    // write lock), no answer goes out without a durable record: in the default `refuse`
    // mode the request is refused once the wait runs out.
    let _lock = hold_write_lock(&gateway);
    let refused = client
        .post_json(
            &gateway.url("/v1/chat/completions"),
            &gateway.tenant_key,
            &chat_body(false),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );
    assert!(refused.text().contains("audit log"), "{}", refused.text());
}

#[tokio::test]
async fn the_journal_answers_while_the_database_is_locked_then_refuses_when_full() {
    // Journal mode (the default): a record is durable once journaled, so requests are
    // answered while the store does not take writes, until the journal holds its bound.
    let (_upstream, gateway) = setup_with("[audit]\nspool_max_bytes = 65536\n").await;
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    // The store thread keeps up in the idle scheduling class (the suite runs as root, which
    // may move it back)...
    let audit = audit_in_background(&gateway).await;
    let lock = hold_write_lock(&gateway);
    let answered = client
        .post_json(&url, &gateway.tenant_key, &chat_body(false))
        .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.text());
    let request_id = answered
        .header("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id"))
        .to_owned();
    assert!(answered.header("x-flowgate-audit-index").is_some());
    let mut statuses = vec![answered.status];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while statuses.last() != Some(&StatusCode::SERVICE_UNAVAILABLE) {
        assert!(
            std::time::Instant::now() < deadline,
            "the journal never filled: {statuses:?}"
        );
        statuses.push(
            client
                .post_json(&url, &gateway.tenant_key, &chat_body(false))
                .await
                .status,
        );
    }
    assert!(
        statuses.len() > 10,
        "64 KiB of journal took {} requests",
        statuses.len()
    );
    let ready = client
        .call(Method::GET, &gateway.url("/health/ready"), &[], "")
        .await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["failing"], serde_json::json!(["audit_writer"]));
    // ... and left it once the journal held a quarter of its bound.
    assert!(!audit.stores_in_background());

    // Once the database takes writes again, the journal reaches it and requests are served.
    drop(lock);
    let listed = client
        .get(
            &gateway.url(&format!("/v1/audit?request_id={request_id}")),
            &gateway.admin_key,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    assert!(
        !listed.json()["data"].as_array().is_none_or(Vec::is_empty),
        "the journaled record is not in the store: {}",
        listed.text()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client
        .post_json(&url, &gateway.tenant_key, &chat_body(false))
        .await
        .status
        != StatusCode::OK
    {
        assert!(
            std::time::Instant::now() < deadline,
            "still refused after the store came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Caught up: back in the background.
    wait_until("the store thread back in the background", WAIT, || {
        audit.stores_in_background()
    })
    .await;
}

#[tokio::test]
async fn a_reader_waiting_for_the_store_takes_the_store_thread_out_of_the_background() {
    // In the idle scheduling class a busy machine can starve the store thread; a read of the
    // log (`stored`, which `GET /v1/audit` awaits) must not wait on that.
    let (_upstream, gateway) = setup_with("").await;
    let audit = audit_in_background(&gateway).await;
    // One record the store cannot take while the lock is held: the store thread stays in
    // its store attempt (SQLite's busy wait) instead of catching up and going back.
    let lock = hold_write_lock(&gateway);
    let answered = post_chat(&gateway).await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.text());
    assert!(audit.stores_in_background(), "one record is not behind");
    let _ = tokio::time::timeout(Duration::from_millis(100), audit.stored()).await;
    assert!(!audit.stores_in_background());
    drop(lock);
}

/// One non-streaming chat request with the gateway's tenant key.
async fn post_chat(gateway: &flowgate_test_support::TestGateway) -> TestResponse {
    TestClient::new()
        .post_json(
            &gateway.url("/v1/chat/completions"),
            &gateway.tenant_key,
            &chat_body(false),
        )
        .await
}

/// The gateway's audit log, once its store thread runs in the idle scheduling class.
async fn audit_in_background(
    gateway: &flowgate_test_support::TestGateway,
) -> flowgate_gateway::audit::AuditLog {
    let audit = gateway
        .gateway()
        .unwrap_or_else(|| panic!("gateway running"))
        .state
        .audit()
        .clone();
    wait_until("the store thread in the background", WAIT, || {
        audit.stores_in_background()
    })
    .await;
    audit
}

/// Takes the SQLite database's write lock from another connection (as another process
/// could) and keeps it until dropped: the audit writer's transactions wait, then fail.
fn hold_write_lock(gateway: &flowgate_test_support::TestGateway) -> rusqlite::Connection {
    let lock = rusqlite::Connection::open(gateway.data_dir().join("flowgate.db"))
        .unwrap_or_else(|err| panic!("open the database: {err}"));
    lock.execute_batch("BEGIN EXCLUSIVE")
        .unwrap_or_else(|err| panic!("lock the database: {err}"));
    lock
}

#[tokio::test]
async fn serve_mode_keeps_answering_while_the_store_is_down() {
    // Store mode: the record waits for the store; past `durable_timeout_ms` the answer goes
    // out without an index.
    let (_upstream, gateway) = setup_with(
        "[audit]\nacknowledge = \"store\"\ndurable_timeout_ms = 300\non_full = \"serve\"\n",
    )
    .await;
    gateway.store.close().await;
    let _lock = hold_write_lock(&gateway);
    let served = post_chat(&gateway).await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text());
    assert!(served.header("x-flowgate-audit-index").is_none());
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_streams_and_refuses_new_connections() {
    let (upstream, mut gateway) = setup().await;
    upstream.push(Behaviour::Normal {
        chunk_delay: Duration::from_millis(100),
    });
    let authorization = format!("Bearer {}", gateway.tenant_key);
    let client = TestClient::new();
    let response = client
        .send(
            Method::POST,
            &gateway.url("/v1/chat/completions"),
            &[("authorization", &authorization)],
            chat_body(true).to_string(),
        )
        .await;
    let mut body = response.into_body();
    assert!(next_chunk(&mut body).await.is_some());
    let reader = tokio::spawn(async move {
        let mut text = String::new();
        while let Some(Ok(chunk)) = next_chunk(&mut body).await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    });
    let base = gateway.base_url.clone();
    let drained = gateway.shutdown().await;
    assert!(
        drained,
        "in-flight stream should finish within the grace period"
    );
    let text = reader.await.unwrap_or_default();
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "stream cut during shutdown: {text}"
    );
    let refused = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await;
    assert!(refused.is_err(), "listener still accepting after shutdown");
}

#[tokio::test]
async fn the_database_never_holds_a_key() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let created = client
        .post_json(
            &gateway.url("/v1/tenants"),
            &gateway.admin_key,
            &serde_json::json!({"name": "secretive"}),
        )
        .await;
    let key = created.json()["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(key.len() > 40);
    let mut haystack = Vec::new();
    for entry in std::fs::read_dir(gateway.data_dir()).unwrap_or_else(|err| panic!("{err}")) {
        let path = entry.unwrap_or_else(|err| panic!("{err}")).path();
        haystack.extend(std::fs::read(&path).unwrap_or_default());
    }
    assert!(!haystack.is_empty());
    for secret in [&key, &gateway.tenant_key, &gateway.admin_key] {
        let needle = secret.as_bytes();
        assert!(
            !haystack
                .windows(needle.len())
                .any(|window| window == needle),
            "a key was found in the database files"
        );
        // Not even its random part.
        let body = &needle[8..40];
        assert!(!haystack.windows(body.len()).any(|window| window == body));
    }
}

#[tokio::test]
async fn with_the_audit_log_disabled_nothing_is_recorded() {
    let (_upstream, gateway) = setup_with("[audit]\nenabled = false\n").await;
    let response = post_chat(&gateway).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert!(response.header("x-flowgate-audit-index").is_none());
    let listed = TestClient::new()
        .get(&gateway.url("/v1/audit"), &gateway.admin_key)
        .await;
    assert_eq!(listed.json()["data"].as_array().map(Vec::len), Some(0));
}
