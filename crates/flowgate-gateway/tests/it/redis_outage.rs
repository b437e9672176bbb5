//! Redis killed during load (issue 6): a gateway whose cluster-wide limits live in a
//! throwaway `redis-server` keeps answering while that server is down (local limits, and the
//! limiter's health, which feeds `flowgate_redis_fallback_active`, says so), reconnects by
//! itself when it is back, and then counts limits cluster-wide again: two gateways sharing
//! it admit exactly the tenant's burst in total. The shared server on 6379 is never touched.

use crate::{chat_body, wait_until};
use flowgate_ratelimit::{Limiter, RedisHealth};
use flowgate_test_support::gateway::config_for_upstream;
use flowgate_test_support::{MockUpstream, TestClient, TestGateway};
use http::StatusCode;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

/// A `redis-server` owned by this test, on its own port, killed on drop.
struct ThrowawayRedis {
    child: Child,
}

impl ThrowawayRedis {
    fn start(port: u16, dir: &std::path::Path) -> Self {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("redis-server: {err}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child }
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn health(gateway: &TestGateway) -> RedisHealth {
    let state = &gateway
        .gateway()
        .unwrap_or_else(|| panic!("gateway stopped"))
        .state;
    match state.limiter() {
        Limiter::Redis(redis) => redis.health(),
        Limiter::InProcess(_) => panic!("the gateway should limit through Redis"),
    }
}

/// `flowgate_redis_fallback_active` as the internal listener's `/metrics` shows it.
async fn fallback_gauge(gateway: &TestGateway) -> String {
    let text = TestClient::new()
        .call(
            http::Method::GET,
            &format!("{}/metrics", gateway.internal_url),
            &[],
            "",
        )
        .await
        .text();
    text.lines()
        .find_map(|line| line.strip_prefix("flowgate_redis_fallback_active "))
        .unwrap_or_else(|| panic!("no flowgate_redis_fallback_active in {text}"))
        .trim()
        .to_owned()
}

async fn spawn(upstream: &MockUpstream, env: &[(&str, &str)]) -> TestGateway {
    TestGateway::spawn(&config_for_upstream(&upstream.base_url()), env)
        .await
        .unwrap_or_else(|err| panic!("gateway: {err:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_during_load_falls_back_then_limits_are_cluster_wide_again() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("free port: {err}"));
    let server = ThrowawayRedis::start(port, dir.path());
    let redis_url = format!("redis://127.0.0.1:{port}");
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    let env = [
        ("FLOWGATE_REDIS_URL", redis_url.as_str()),
        ("RATE_LIMIT_BURST_FACTOR", "1.0"),
        // The load's own tenant must not hit its limit; the later check uses its own tenant.
        ("RATE_LIMIT_DEFAULT_RPM", "100000"),
    ];
    let first = Arc::new(spawn(&upstream, &env).await);
    assert!(!health(&first).fallback_active);

    // Load: one client after another through the first gateway, every status recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let gateway = Arc::clone(&first);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let client = TestClient::new();
            let url = gateway.url("/v1/chat/completions");
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let answer = client
                    .post_json(&url, &gateway.tenant_key, &chat_body(false))
                    .await;
                statuses.push(answer.status);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    drop(server);
    wait_until("the limiter to fall back", WAIT, || {
        health(&first).fallback_active
    })
    .await;
    let local_before = health(&first).fallback_admissions_total;
    wait_until("requests admitted by local limits", WAIT, || {
        health(&first).fallback_admissions_total > local_before + 5
    })
    .await;
    assert_eq!(fallback_gauge(&first).await, "1", "the metric says so");

    let _restarted = ThrowawayRedis::start(port, dir.path());
    wait_until("recovery", WAIT, || !health(&first).fallback_active).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Release);
    let statuses = load.await.unwrap_or_else(|err| panic!("load task: {err}"));
    assert!(statuses.len() > 20, "{} requests", statuses.len());
    assert!(
        statuses.iter().all(|status| *status == StatusCode::OK),
        "traffic continues through the outage: {statuses:?}"
    );
    let after = health(&first);
    assert_eq!((after.outages_total, after.recoveries_total), (1, 1));
    assert_eq!(fallback_gauge(&first).await, "0");

    // Cluster-wide again: a second replica on the same database and Redis, a fresh tenant
    // allowed 20 per minute, 80 simultaneous requests over both: 20 in total.
    let database = first.database_url();
    let master = first.master_key.to_base64();
    let mut second_env = env.to_vec();
    second_env.push(("FLOWGATE_DATABASE_URL", &database));
    second_env.push(("FLOWGATE_MASTER_KEY", &master));
    second_env.push(("FLOWGATE_ADMIN_API_KEY", &first.admin_key));
    let second = spawn(&upstream, &second_env).await;
    let created = TestClient::new()
        .post_json(
            &first.url("/v1/tenants"),
            &first.admin_key,
            &json!({"name": "after-outage", "max_requests_per_minute": 20}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let key = created.json()["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // The second replica sees the new tenant within its refresh interval.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = TestClient::new().get(&second.url("/v1/models"), &key).await;
        if listed.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "second replica never saw the tenant"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = TestClient::new();
    let mut tasks = Vec::new();
    for index in 0..80 {
        let gateway_url = if index % 2 == 0 {
            first.url("/v1/chat/completions")
        } else {
            second.url("/v1/chat/completions")
        };
        let client = client.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post_json(&gateway_url, &key, &chat_body(false))
                .await
                .status
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
    assert_eq!(
        admitted, 20,
        "20 in total across both replicas after recovery"
    );
    assert!(!health(&first).fallback_active && !health(&second).fallback_active);
}
