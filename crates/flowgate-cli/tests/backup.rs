//! `flowgate backup` and `flowgate restore`, round trips on SQLite and PostgreSQL (issue 8).
//!
//! A real `flowgate serve` answers requests (each one audited) while `flowgate backup` runs
//! (online: a SQLite `VACUUM INTO` snapshot, `pg_dump` for PostgreSQL). Then, with the gateway
//! stopped: restoring over the store that still holds the data is refused without `--force`;
//! restoring into an emptied store works, `flowgate audit verify` passes on it, every request
//! answered before the backup is in the restored log, and a gateway on the restored store
//! accepts the tenant's key; `restore --force` over a non-empty store works too. And a backup
//! holds the records a gateway acknowledged that only its journal holds.

use flowgate_store::{SqlStore, Store as _, StoreOptions};
use flowgate_test_support::{MockUpstream, TestClient};
use http::StatusCode;
use serde_json::json;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "fga_a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const MASTER: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ORIGIN: &str = "backup.example/log";
const BEFORE: usize = 20;

fn postgres_url() -> String {
    std::env::var("FLOWGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("free port: {err}"))
}

/// `flowgate` in `dir` (which holds `flowgate.toml`) on `database_url`.
fn command(dir: &Path, database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowgate"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FLOWGATE_MASTER_KEY", MASTER)
        .env("FLOWGATE_ADMIN_API_KEY", ADMIN)
        .env("FLOWGATE_DATABASE_URL", database_url)
        .env("FLOWGATE_LOG_LEVEL", "error");
    command
}

fn flowgate(dir: &Path, database_url: &str, args: &[&str]) -> Output {
    command(dir, database_url)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("flowgate {args:?}: {err}"))
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

struct Serving {
    child: Child,
    base: String,
}

impl Serving {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn stop(mut self) {
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
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(dir: &Path, database_url: &str, upstream: &MockUpstream) -> Serving {
    let (port, internal) = (free_port(), free_port());
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ninternal_listen = \"127.0.0.1:{internal}\"\n\n\
         [audit]\norigin = \"{ORIGIN}\"\ndurable_timeout_ms = 5000\n\n\
         [[providers]]\nname = \"mock\"\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
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
    let serving = Serving {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = TestClient::new();
    for _ in 0..300 {
        if let Ok(Ok(response)) = tokio::time::timeout(
            Duration::from_millis(500),
            client.try_call(http::Method::GET, &serving.url("/health"), &[], ""),
        )
        .await
            && response.status == StatusCode::OK
        {
            return serving;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway never became healthy");
}

fn chat() -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "keep me"}]})
}

async fn audit_size(database_url: &str) -> u64 {
    let store = SqlStore::connect(&StoreOptions {
        url: database_url.to_owned(),
        max_connections: 1,
        schema: None,
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    let size = store
        .audit_store()
        .unwrap_or_else(|| panic!("audit store"))
        .audit_size(ORIGIN)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    store.close().await;
    size
}

/// A new tenant's API key.
async fn tenant_key(client: &TestClient, serving: &Serving) -> String {
    let created = client
        .post_json(
            &serving.url("/v1/tenants"),
            ADMIN,
            &json!({"name": "backed-up", "max_requests_per_minute": 1_000_000}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    created.json()["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `count` chat requests, each answered.
async fn chat_requests(client: &TestClient, serving: &Serving, key: &str, count: usize) {
    for _ in 0..count {
        let answer = client
            .post_json(&serving.url("/v1/chat/completions"), key, &chat())
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
}

/// Runs one SQL statement on the store.
async fn execute(database_url: &str, statement: &'static str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    sqlx::query(statement)
        .execute(&pool)
        .await
        .unwrap_or_else(|err| panic!("{statement}: {err}"));
    pool.close().await;
}

/// The whole round trip; `empty` removes the store's data (the file, or the schema).
async fn round_trip(dir: &Path, database_url: &str, backup: &Path, empty: impl AsyncFn()) {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    let client = TestClient::new();
    let serving = serve(dir, database_url, &upstream).await;
    let key = tenant_key(&client, &serving).await;
    chat_requests(&client, &serving, &key, BEFORE).await;

    // Online: requests keep coming while the backup runs.
    let load = {
        let (client, url, key) = (
            client.clone(),
            serving.url("/v1/chat/completions"),
            key.clone(),
        );
        tokio::spawn(async move {
            for _ in 0..40 {
                let status = client.post_json(&url, &key, &chat()).await.status;
                assert_eq!(status, StatusCode::OK);
            }
        })
    };
    let backup_arg = backup.display().to_string();
    let (task_dir, task_url) = (dir.to_owned(), database_url.to_owned());
    let backed_up = tokio::task::spawn_blocking(move || {
        flowgate(&task_dir, &task_url, &["backup", "--out", &backup_arg])
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(backed_up.status.code(), Some(0), "{}", describe(&backed_up));
    assert!(backup.is_file());
    load.await.unwrap_or_else(|err| panic!("load: {err}"));
    let again = flowgate(
        dir,
        database_url,
        &["backup", "--out", &backup.display().to_string()],
    );
    assert_ne!(
        again.status.code(),
        Some(0),
        "backup never overwrites a file"
    );
    serving.stop();

    let backup_arg = backup.display().to_string();
    let refused = flowgate(dir, database_url, &["restore", &backup_arg]);
    assert_ne!(refused.status.code(), Some(0), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--force"),
        "{}",
        describe(&refused)
    );

    empty().await;
    let restored = flowgate(dir, database_url, &["restore", &backup_arg]);
    assert_eq!(restored.status.code(), Some(0), "{}", describe(&restored));
    let size = audit_size(database_url).await;
    assert!(size >= BEFORE as u64, "restored log holds {size} records");
    let verify = flowgate(dir, database_url, &["audit", "verify", "--origin", ORIGIN]);
    assert_eq!(verify.status.code(), Some(0), "{}", describe(&verify));

    let forced = flowgate(dir, database_url, &["restore", "--force", &backup_arg]);
    assert_eq!(forced.status.code(), Some(0), "{}", describe(&forced));
    assert_eq!(audit_size(database_url).await, size);
    let verify = flowgate(dir, database_url, &["audit", "verify", "--origin", ORIGIN]);
    assert_eq!(verify.status.code(), Some(0), "{}", describe(&verify));

    // The restored store serves: the tenant's key works, and the log goes on from where the
    // backup left it.
    let serving = serve(dir, database_url, &upstream).await;
    let models = client.get(&serving.url("/v1/models"), &key).await;
    assert_eq!(models.status, StatusCode::OK, "{}", models.text());
    let answer = client
        .post_json(&serving.url("/v1/chat/completions"), &key, &chat())
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    serving.stop();
    let verify = flowgate(dir, database_url, &["audit", "verify", "--origin", ORIGIN]);
    assert_eq!(verify.status.code(), Some(0), "{}", describe(&verify));
}

/// A folder for a SQLite gateway: the folder, its database file, the database URL and the
/// backup file.
fn sqlite_layout() -> (tempfile::TempDir, PathBuf, String, PathBuf) {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let database = dir.path().join("data").join("flowgate.db");
    let url = format!("sqlite://{}", database.display());
    let backup = dir.path().join("flowgate-backup.db");
    (dir, database, url, backup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_round_trip() {
    let (dir, database, url, backup) = sqlite_layout();
    let empty = || async {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = database.as_os_str().to_owned();
            path.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(path));
        }
    };
    round_trip(dir.path(), &url, &backup, empty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_holds_the_records_only_the_journal_holds() {
    // A gateway answers while its store takes no audit records (they wait in its journal),
    // then dies (SIGKILL) with them there: the backup holds them all the same.
    let (dir, _, url, backup) = sqlite_layout();
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    let client = TestClient::new();
    let serving = serve(dir.path(), &url, &upstream).await;
    let key = tenant_key(&client, &serving).await;
    execute(
        &url,
        "CREATE TRIGGER hold_audit BEFORE INSERT ON audit_entries \
         BEGIN SELECT RAISE(ABORT, 'held'); END",
    )
    .await;
    let stored = audit_size(&url).await;
    chat_requests(&client, &serving, &key, BEFORE).await;
    assert_eq!(audit_size(&url).await, stored, "the store took records");
    drop(serving);
    execute(&url, "DROP TRIGGER hold_audit").await;

    let backup_arg = backup.display().to_string();
    let backed_up = flowgate(dir.path(), &url, &["backup", "--out", &backup_arg]);
    assert_eq!(backed_up.status.code(), Some(0), "{}", describe(&backed_up));
    assert_eq!(audit_size(&url).await, stored, "backup wrote to the store");
    let restored = flowgate(dir.path(), &url, &["restore", "--force", &backup_arg]);
    assert_eq!(restored.status.code(), Some(0), "{}", describe(&restored));
    let size = audit_size(&url).await;
    // Each answered request's record was journaled before its answer.
    assert!(
        size >= stored + BEFORE as u64,
        "restored log holds {size} records, {stored} stored before"
    );
    let verify = flowgate(dir.path(), &url, &["audit", "verify", "--origin", ORIGIN]);
    assert_eq!(verify.status.code(), Some(0), "{}", describe(&verify));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round_trip() {
    let schema = format!(
        "backup_{}",
        flowgate_types::to_hex(&flowgate_types::random_bytes::<6>())
    );
    // The schema must exist before a gateway creates its tables there.
    let store = SqlStore::connect(&StoreOptions {
        url: postgres_url(),
        max_connections: 1,
        schema: Some(schema.clone()),
    })
    .await
    .unwrap_or_else(|err| panic!("connect to PostgreSQL at {}: {err}", postgres_url()));
    store.close().await;
    let base = postgres_url();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let backup = dir.path().join("flowgate.dump");
    let drop_schema = || async {
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
    };
    round_trip(dir.path(), &url, &backup, &drop_schema).await;
    drop_schema().await;
}
