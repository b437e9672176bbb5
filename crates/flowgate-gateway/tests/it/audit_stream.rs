//! `[audit.stream]` against a real, private `nats-server` with JetStream (its own port and
//! store folder; the shared server on 4222 is never touched): every stored audit record
//! arrives in the stream exactly once after de-duplication, across a SIGKILL and restart of
//! the server, and a restarted gateway resumes from its persisted cursor instead of
//! republishing.

use crate::{chat, chat_body};
use flowgate_store::{AuditStore, SinkCursor};
use flowgate_test_support::gateway::config_for_upstream;
use flowgate_test_support::{MockUpstream, TestClient, TestGateway};
use http::{Method, StatusCode};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NATS_SERVER: &str = "/usr/sbin/nats-server";
const STREAM: &str = "FLOWGATE_AUDIT";
const SINK: &str = "nats/FLOWGATE_AUDIT";

/// A private JetStream server; killed when dropped.
struct NatsServer {
    child: tokio::process::Child,
    port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("free port: {err}"))
}

impl NatsServer {
    async fn start(port: u16, dir: &Path) -> Self {
        let child = tokio::process::Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("start {NATS_SERVER}: {err}"));
        let server = Self {
            child,
            port,
            dir: dir.to_owned(),
        };
        // Ready once the server takes a connection.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let last_error = match tokio::time::timeout(
                Duration::from_secs(2),
                async_nats::connect(server.url()),
            )
            .await
            {
                // A single server's JetStream is up once it listens; the account query of
                // this client version does not parse the 2.9 server's answer.
                Ok(Ok(client)) => match client.flush().await {
                    Ok(()) => return server,
                    Err(err) => err.to_string(),
                },
                Ok(Err(err)) => err.to_string(),
                Err(_) => "connect timed out".to_owned(),
            };
            assert!(
                Instant::now() < deadline,
                "nats-server on port {port} did not become ready: {last_error}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait until the process is gone.
    async fn kill(mut self) -> (u16, PathBuf) {
        if let Err(err) = self.child.kill().await {
            panic!("kill nats-server: {err}");
        }
        (self.port, self.dir.clone())
    }
}

/// A private JetStream server (its storage in the returned directory) and a mock upstream.
async fn nats_and_upstream() -> (tempfile::TempDir, NatsServer, MockUpstream) {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let nats = NatsServer::start(free_port(), dir.path()).await;
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    (dir, nats, upstream)
}

fn stream_config(url: &str, origin: &str) -> String {
    format!(
        "[audit]\norigin = \"{origin}\"\ncheckpoint_every_records = 16\ncheckpoint_every_seconds = 1\n\n[audit.stream]\nnats_url = \"{url}\"\nbatch_size = 40\npoll_interval_ms = 20\ndrain_timeout_ms = 10000\n"
    )
}

async fn gateway(
    upstream: &MockUpstream,
    url: &str,
    origin: &str,
    env: &[(&str, &str)],
) -> TestGateway {
    let config = format!(
        "{}\n{}",
        stream_config(url, origin),
        config_for_upstream(&upstream.base_url())
    );
    TestGateway::spawn(&config, env)
        .await
        .unwrap_or_else(|err| panic!("gateway: {err:#}"))
}

async fn ready(gateway: &TestGateway) -> (StatusCode, serde_json::Value) {
    let answer = TestClient::new()
        .call(Method::GET, &gateway.url("/health/ready"), &[], "")
        .await;
    (answer.status, answer.json())
}

/// Polls readiness until `done` accepts the body; panics with the last body after `limit`.
async fn wait_ready(
    gateway: &TestGateway,
    limit: Duration,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = ready(gateway).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "readiness never fails because of the stream: {body}"
        );
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: last readiness {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn audit_store(gateway: &TestGateway) -> Arc<dyn AuditStore> {
    gateway
        .store
        .audit_store()
        .unwrap_or_else(|| panic!("the store keeps an audit log"))
}

async fn send_requests(gateway: &TestGateway, count: usize) {
    for _ in 0..count {
        let answer = chat(gateway, &chat_body(false)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
}

/// What the stream holds for one origin.
#[derive(Debug, Default)]
struct Streamed {
    /// Record index → payload, and how often each index occurred.
    records: BTreeMap<u64, Vec<u8>>,
    record_copies: BTreeMap<u64, u64>,
    /// Checkpoint size → signed note.
    checkpoints: BTreeMap<u64, String>,
    checkpoint_copies: u64,
    /// Messages in the stream (all subjects).
    total: u64,
}

async fn read_stream(url: &str, origin: &str) -> Streamed {
    let client = async_nats::connect(url)
        .await
        .unwrap_or_else(|err| panic!("connect to read back: {err}"));
    let context = async_nats::jetstream::new(client);
    let mut stream = context
        .get_stream(STREAM)
        .await
        .unwrap_or_else(|err| panic!("stream {STREAM}: {err}"));
    let state = stream
        .info()
        .await
        .unwrap_or_else(|err| panic!("stream info: {err}"))
        .state
        .clone();
    let token: String = origin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut streamed = Streamed {
        total: state.messages,
        ..Streamed::default()
    };
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream
            .get_raw_message(sequence)
            .await
            .unwrap_or_else(|err| panic!("message {sequence}: {err}"));
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|value| value.as_str().to_owned())
                .unwrap_or_else(|| panic!("message {sequence} lacks {name}"))
        };
        assert_eq!(header("Flowgate-Origin"), origin);
        let id = header("Nats-Msg-Id");
        if message.subject.as_str() == format!("flowgate.audit.{token}.record") {
            let index: u64 = header("Flowgate-Index")
                .parse()
                .unwrap_or_else(|err| panic!("Flowgate-Index: {err}"));
            assert_eq!(id, format!("{origin}/{index}"));
            streamed.records.insert(index, message.payload.to_vec());
            *streamed.record_copies.entry(index).or_default() += 1;
        } else if message.subject.as_str() == format!("flowgate.audit.{token}.checkpoint") {
            let size: u64 = header("Flowgate-Size")
                .parse()
                .unwrap_or_else(|err| panic!("Flowgate-Size: {err}"));
            assert_eq!(id, format!("{origin}/checkpoint/{size}"));
            let note = String::from_utf8(message.payload.to_vec())
                .unwrap_or_else(|err| panic!("note utf-8: {err}"));
            if streamed.checkpoints.insert(size, note).is_some() {
                streamed.checkpoint_copies += 1;
            }
        } else {
            panic!("unexpected subject {}", message.subject);
        }
    }
    streamed
}

/// Every stored record of `origin` is in the stream exactly once, byte for byte, and so is
/// every stored checkpoint.
async fn assert_stream_matches_store(url: &str, origin: &str, store: &dyn AuditStore) -> u64 {
    let size = store
        .audit_size(origin)
        .await
        .unwrap_or_else(|err| panic!("audit size: {err}"));
    let stored = store
        .audit_entries(origin, 0, usize::try_from(size).unwrap_or(usize::MAX))
        .await
        .unwrap_or_else(|err| panic!("audit entries: {err}"));
    let checkpoints = store
        .audit_checkpoints(origin)
        .await
        .unwrap_or_else(|err| panic!("checkpoints: {err}"));
    let streamed = read_stream(url, origin).await;
    let duplicated: Vec<_> = streamed
        .record_copies
        .iter()
        .filter(|(_, copies)| **copies > 1)
        .collect();
    assert!(
        duplicated.is_empty(),
        "records streamed twice: {duplicated:?}"
    );
    assert_eq!(
        streamed.records.keys().copied().collect::<Vec<_>>(),
        (0..size).collect::<Vec<_>>(),
        "every index 0..{size} exactly once"
    );
    for entry in &stored {
        assert_eq!(
            streamed.records.get(&entry.index),
            Some(&entry.record),
            "record {} differs from the store",
            entry.index
        );
    }
    assert_eq!(streamed.checkpoint_copies, 0, "checkpoints streamed twice");
    assert!(!checkpoints.is_empty(), "the log has checkpoints");
    assert_eq!(
        streamed.checkpoints.keys().copied().collect::<Vec<_>>(),
        checkpoints.iter().map(|c| c.size).collect::<Vec<_>>(),
        "every stored checkpoint, once"
    );
    for checkpoint in &checkpoints {
        assert_eq!(
            streamed.checkpoints.get(&checkpoint.size),
            Some(&checkpoint.note)
        );
    }
    assert_eq!(
        streamed.total,
        size + checkpoints.len() as u64,
        "nothing else in the stream"
    );
    size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_once_across_a_nats_restart() {
    let (_nats_dir, nats, upstream) = nats_and_upstream().await;
    let url = nats.url();
    let origin = "stream-test.example/node-1";
    let gateway = gateway(&upstream, &url, origin, &[]).await;
    let store = audit_store(&gateway);

    send_requests(&gateway, 10).await;
    wait_ready(
        &gateway,
        Duration::from_secs(20),
        "first records streamed",
        |body| {
            body["checks"]["audit_stream"] == "ok"
                && body["checks"]["audit_stream_lag"]["records"] == 0
        },
    )
    .await;

    // Load keeps running while the server is killed and restarted.
    let load_gateway = Arc::new(gateway);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let load = {
        let gateway = Arc::clone(&load_gateway);
        let stop = Arc::clone(&stop);
        let answered = Arc::clone(&answered);
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let answer = chat(&gateway, &chat_body(false)).await;
                assert_eq!(
                    answer.status,
                    StatusCode::OK,
                    "the request path does not depend on NATS: {}",
                    answer.text()
                );
                answered.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (port, dir) = nats.kill().await;
    let killed_at = answered.load(Ordering::SeqCst);
    // The publisher notices (a publish fails or times out); readiness stays OK meanwhile.
    wait_ready(
        &load_gateway,
        Duration::from_secs(20),
        "outage reported",
        |body| body["checks"]["audit_stream"] == "unavailable",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.load(Ordering::SeqCst) < killed_at + 20 {
        assert!(
            Instant::now() < deadline,
            "requests stalled while NATS was down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let nats = NatsServer::start(port, &dir).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap_or_else(|err| panic!("load task: {err}"));
    let mut gateway = Arc::try_unwrap(load_gateway)
        .unwrap_or_else(|_| panic!("the load task released the gateway"));

    let body = wait_ready(
        &gateway,
        Duration::from_secs(30),
        "caught up after the restart",
        |body| {
            body["checks"]["audit_stream"] == "ok"
                && body["checks"]["audit_stream_lag"]["records"] == 0
        },
    )
    .await;
    assert!(
        body["checks"]["audit_stream_lag"]["failures"].as_u64() > Some(0),
        "the outage was seen: {body}"
    );
    let metrics = crate::scrape_metrics(&gateway).await;
    assert!(
        metrics.contains("flowgate_audit_stream_lag_records{sink=\"nats/FLOWGATE_AUDIT\"} 0"),
        "{metrics}"
    );

    // Shutdown streams the final checkpoint; then the stream equals the store.
    assert!(gateway.shutdown().await);
    let size = assert_stream_matches_store(&url, origin, store.as_ref()).await;
    assert!(
        size >= 2 * (10 + 20),
        "requests during the outage are logged: {size}"
    );
    let cursor = store
        .audit_sink_cursor(origin, SINK)
        .await
        .unwrap_or_else(|err| panic!("cursor: {err}"));
    assert_eq!(cursor.map(|cursor| cursor.next_index), Some(size));
    drop(nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_resumes_from_its_cursor() {
    let (_nats_dir, nats, upstream) = nats_and_upstream().await;
    let url = nats.url();
    let origin = "stream-test-restart";
    let database_dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let database = format!("sqlite://{}/shared.db", database_dir.path().display());

    let mut first = gateway(
        &upstream,
        &url,
        origin,
        &[("FLOWGATE_DATABASE_URL", &database)],
    )
    .await;
    let store = audit_store(&first);
    send_requests(&first, 8).await;
    assert!(first.shutdown().await);
    let before = store
        .audit_size(origin)
        .await
        .unwrap_or_else(|err| panic!("size: {err}"));
    let cursor = store
        .audit_sink_cursor(origin, SINK)
        .await
        .unwrap_or_else(|err| panic!("cursor: {err}"))
        .unwrap_or_default();
    assert_eq!(cursor.next_index, before, "shutdown drained the stream");
    assert_eq!(cursor.checkpoint_size, before, "and its final checkpoint");

    let master = first.master_key.to_base64();
    let mut second = gateway(
        &upstream,
        &url,
        origin,
        &[
            ("FLOWGATE_DATABASE_URL", &database),
            ("FLOWGATE_MASTER_KEY", &master),
        ],
    )
    .await;
    let stream = second
        .gateway()
        .and_then(|running| running.state.audit_stream().cloned())
        .unwrap_or_else(|| panic!("the stream is configured"));
    send_requests(&second, 8).await;
    assert!(second.shutdown().await);
    let store = audit_store(&second);
    let after = store
        .audit_size(origin)
        .await
        .unwrap_or_else(|err| panic!("size: {err}"));
    let totals = stream.totals();
    assert_eq!(
        totals.records,
        after - before,
        "the second gateway published only what the first had not: {totals:?}"
    );
    assert_eq!(totals.duplicates, 0, "{totals:?}");
    assert_stream_matches_store(&url, origin, store.as_ref()).await;
    assert_eq!(
        store
            .audit_sink_cursor(origin, SINK)
            .await
            .unwrap_or_else(|err| panic!("cursor: {err}")),
        Some(SinkCursor {
            next_index: after,
            checkpoint_size: after
        })
    );
    drop(nats);
}

/// `kafka_brokers` needs a build with the gateway's `kafka` feature; without it the gateway
/// refuses to start rather than silently not streaming.
#[cfg(not(feature = "kafka"))]
#[tokio::test]
async fn kafka_without_the_feature_is_refused_at_start() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    let config = format!(
        "[audit.stream]\nkafka_brokers = \"127.0.0.1:9092\"\n\n{}",
        config_for_upstream(&upstream.base_url())
    );
    let err = match TestGateway::spawn(&config, &[]).await {
        Ok(_) => panic!("a gateway without the kafka feature started with kafka_brokers"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.contains("audit stream setup failed") && err.contains("`kafka` feature"),
        "{err}"
    );
}
