//! Two replicas (issue 8, DESIGN §7): two real `flowgate serve` processes on one PostgreSQL
//! database (a fresh schema for this run, selected through the URL's `options=-c search_path=…`)
//! and one Redis (127.0.0.1:6379; the limiter's keys are hash-tagged by the tenant's random id,
//! so runs never share a counter).
//!
//! - A tenant created on replica A is usable on B within 2 s (B polls the store's change
//!   counter every `store.refresh_interval_ms`, 1000 ms by default).
//! - A key revoked on B is refused by A within 2 s.
//! - A tenant allowed N requests per minute (`burst_factor = 1.0`) gets N in total, whichever
//!   replica answers.
//! - Each replica writes its own audit log under its own `[audit] origin`; `GET /v1/audit?origin=*`
//!   on either replica lists both replicas' records, and `flowgate audit verify --origin O`
//!   passes for each after both have stopped.

use flowgate_store::{SqlStore, Store as _, StoreOptions};
use flowgate_test_support::{MockUpstream, TestClient};
use http::StatusCode;
use serde_json::json;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "fga_0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c";
const MASTER: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ORIGINS: [&str; 2] = ["replica-a.example/log", "replica-b.example/log"];
const LIMIT: usize = 12;
const PROPAGATION: Duration = Duration::from_secs(2);

fn postgres_url() -> String {
    std::env::var("FLOWGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

fn redis_url() -> String {
    std::env::var("FLOWGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The database URL every process of this run uses: the test database, in `schema`.
fn schema_url(schema: &str) -> String {
    let base = postgres_url();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("free port: {err}"))
}

fn command(dir: &Path, database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowgate"));
    command
        .current_dir(dir)
        .env_clear()
        .env("FLOWGATE_MASTER_KEY", MASTER)
        .env("FLOWGATE_ADMIN_API_KEY", ADMIN)
        .env("FLOWGATE_DATABASE_URL", database_url)
        .env("FLOWGATE_REDIS_URL", redis_url())
        .env("FLOWGATE_LOG_LEVEL", "error");
    command
}

/// A replica: its process (killed on drop) and base URL.
struct Replica {
    child: Child,
    base: String,
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM (graceful: the audit writer drains), then wait.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_replica(
    dir: &Path,
    database_url: &str,
    origin: &str,
    upstream: &MockUpstream,
    client: &TestClient,
) -> Replica {
    std::fs::create_dir_all(dir).unwrap_or_else(|err| panic!("{err}"));
    let (port, internal) = (free_port(), free_port());
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ninternal_listen = \"127.0.0.1:{internal}\"\n\n\
         [store]\nrefresh_interval_ms = 1000\n\n\
         [limits]\nburst_factor = 1.0\n\n\
         [audit]\norigin = \"{origin}\"\ndurable_timeout_ms = 5000\n\n\
         [[providers]]\nname = \"mock\"\nkind = \"openai\"\nbase_url = \"{}\"\nmax_retries = 0\n\n\
         [[models]]\nname = \"gpt-4o-mini\"\nroutes = [ {{ provider = \"mock\" }} ]\n",
        upstream.base_url()
    );
    std::fs::write(dir.join("flowgate.toml"), config).unwrap_or_else(|err| panic!("{err}"));
    let child = command(dir, database_url)
        .args(["serve", "--config", "flowgate.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn flowgate: {err}"));
    let replica = Replica {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..300 {
        if let Ok(Ok(response)) = tokio::time::timeout(
            Duration::from_millis(500),
            client.try_call(http::Method::GET, &replica.url("/health/ready"), &[], ""),
        )
        .await
            && response.status == StatusCode::OK
        {
            return replica;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica {origin} never became ready");
}

fn chat() -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]})
}

async fn create_tenant(
    client: &TestClient,
    replica: &Replica,
    name: &str,
    rpm: usize,
) -> (String, String, String) {
    let created = client
        .post_json(
            &replica.url("/v1/tenants"),
            ADMIN,
            &json!({"name": name, "max_requests_per_minute": rpm}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let body = created.json();
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    (field("id"), field("api_key"), field("key_id"))
}

/// Polls `GET /v1/models` with `key` until it answers `want`; the time that took.
async fn until_models_answer(
    client: &TestClient,
    replica: &Replica,
    key: &str,
    want: StatusCode,
) -> Duration {
    let started = Instant::now();
    loop {
        let status = client.get(&replica.url("/v1/models"), key).await.status;
        if status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still {status} after 10 s (want {want})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn drop_schema(schema: &str) {
    use sqlx::Executor as _;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&postgres_url())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    pool.execute(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .await
    .unwrap_or_else(|err| panic!("drop schema: {err}"));
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_tenants_keys_limits_and_audit() {
    let schema = format!(
        "replicas_{}",
        flowgate_types::to_hex(&flowgate_types::random_bytes::<6>())
    );
    // Create and migrate the schema first, so the two replicas never race to migrate it.
    let store = SqlStore::connect(&StoreOptions {
        url: postgres_url(),
        max_connections: 1,
        schema: Some(schema.clone()),
    })
    .await
    .unwrap_or_else(|err| panic!("connect to PostgreSQL at {}: {err}", postgres_url()));
    store.migrate().await.unwrap_or_else(|err| panic!("{err}"));
    store.close().await;
    let database_url = schema_url(&schema);

    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    let client = TestClient::new();
    let mut a = start_replica(
        &dir.path().join("a"),
        &database_url,
        ORIGINS[0],
        &upstream,
        &client,
    )
    .await;
    let mut b = start_replica(
        &dir.path().join("b"),
        &database_url,
        ORIGINS[1],
        &upstream,
        &client,
    )
    .await;

    // A tenant created on A is usable on B within 2 s.
    let (tenant, key, key_id) = create_tenant(&client, &a, "shared", 1_000_000).await;
    let took = until_models_answer(&client, &b, &key, StatusCode::OK).await;
    assert!(took < PROPAGATION, "B saw the new tenant after {took:?}");
    for replica in [&a, &b] {
        let answer = client
            .post_json(&replica.url("/v1/chat/completions"), &key, &chat())
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }

    // A key revoked on B is refused by A within 2 s.
    let revoked = client
        .call(
            http::Method::DELETE,
            &b.url(&format!("/v1/tenants/{tenant}/keys/{key_id}")),
            &[("authorization", &format!("Bearer {ADMIN}"))],
            "",
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    let took = until_models_answer(&client, &a, &key, StatusCode::UNAUTHORIZED).await;
    assert!(
        took < PROPAGATION,
        "A refused the revoked key after {took:?}"
    );
    let refused = client
        .post_json(&a.url("/v1/chat/completions"), &key, &chat())
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    // LIMIT per minute, burst factor 1: LIMIT admitted in total over both replicas.
    let (_, limited, _) = create_tenant(&client, &a, "limited", LIMIT).await;
    until_models_answer(&client, &b, &limited, StatusCode::OK).await;
    let mut tasks = Vec::new();
    for index in 0..LIMIT * 4 {
        let url = if index % 2 == 0 {
            a.url("/v1/chat/completions")
        } else {
            b.url("/v1/chat/completions")
        };
        let (client, limited) = (client.clone(), limited.clone());
        tasks.push(tokio::spawn(async move {
            client.post_json(&url, &limited, &chat()).await.status
        }));
    }
    let mut admitted = [0usize; 2];
    for (index, task) in tasks.into_iter().enumerate() {
        let status = task.await.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            matches!(status, StatusCode::OK | StatusCode::TOO_MANY_REQUESTS),
            "{status}"
        );
        admitted[index % 2] += usize::from(status == StatusCode::OK);
    }
    assert_eq!(
        admitted[0] + admitted[1],
        LIMIT,
        "admitted per replica: {admitted:?}"
    );

    // Either replica lists both replicas' audit records.
    for replica in [&a, &b] {
        let started = Instant::now();
        loop {
            let listed = client
                .get(&replica.url("/v1/audit?origin=*&limit=1000"), ADMIN)
                .await;
            assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
            let listed = listed.json();
            let count = |origin: &str| {
                listed["data"].as_array().map_or(0, |data| {
                    data.iter().filter(|r| r["origin"] == origin).count()
                })
            };
            // Each replica answered one chat request with the first key, plus its share of
            // the limited tenant's: more records than that share.
            if count(ORIGINS[0]) > admitted[0] && count(ORIGINS[1]) > admitted[1] {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "audit listing on {} misses records: {listed}",
                replica.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Without `origin`, a replica lists its own log, as on a single node.
        let own = client.get(&replica.url("/v1/audit"), ADMIN).await.json();
        assert!(own["origin"] == ORIGINS[0] || own["origin"] == ORIGINS[1]);
    }

    a.stop();
    b.stop();
    for origin in ORIGINS {
        let verify = command(dir.path(), &database_url)
            .args(["audit", "verify", "--origin", origin])
            .output()
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            verify.status.code(),
            Some(0),
            "audit verify {origin}: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    drop_schema(&schema).await;
}
