//! The audit log of a real `flowgate serve` process.
//!
//! Nothing acknowledged is lost on a crash: the process runs under load
//! (500 requests/s, open loop, against a real mock upstream), is killed with SIGKILL at a
//! random moment, and restarted on the same database, five times over. Every request whose
//! answer the load client received must have its audit record in the log, with the index the
//! answer named in `x-flowgate-audit-index`, and `flowgate audit verify` must pass.
//!
//! Content is provable without being stored: `flowgate audit prove-content` shows that a
//! prompt is the one a record's keyed hash commits to, and that another text is not.

use flowgate_store::{AuditFilter, AuditStore as _, SqlStore, Store as _, StoreOptions};
use flowgate_test_support::{MockUpstream, TestClient};
use http::StatusCode;
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADMIN: &str = "fga_5c1f0e2d9b8a7c6e5f4d3c2b1a09f8e7d6c5b4a3";
const MASTER: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ORIGIN: &str = "crash.example/log";
const RATE: u64 = 500;
const ROUNDS: usize = 5;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("free port: {err}"))
}

fn db_url(dir: &Path) -> String {
    format!("sqlite://{}/flowgate.db", dir.display())
}

fn command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowgate"));
    command
        .current_dir(dir)
        .env_clear()
        .env("FLOWGATE_MASTER_KEY", MASTER)
        .env("FLOWGATE_ADMIN_API_KEY", ADMIN)
        .env("FLOWGATE_DATABASE_URL", db_url(dir))
        .env("FLOWGATE_LOG_LEVEL", "error");
    command
}

fn start(dir: &Path) -> Child {
    command(dir)
        .args(["serve", "--config", "flowgate.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn flowgate: {err}"))
}

async fn wait_ready(client: &TestClient, base: &str) {
    for _ in 0..200 {
        if let Ok(Ok(response)) = tokio::time::timeout(
            Duration::from_millis(500),
            client.try_call(http::Method::GET, &format!("{base}/health"), &[], ""),
        )
        .await
            && response.status == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway never became healthy");
}

/// Drives `RATE` requests/s until `stop`, recording (request id -> audit index) of every 200.
async fn load(
    client: TestClient,
    url: String,
    key: String,
    answered: Arc<Mutex<HashMap<String, u64>>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "count me"}],
    });
    let mut sequence = 0u64;
    while !*stop.borrow() {
        ticker.tick().await;
        sequence += 1;
        let (client, url, key, answered, body) = (
            client.clone(),
            url.clone(),
            key.clone(),
            Arc::clone(&answered),
            body.clone(),
        );
        tokio::spawn(async move {
            let request_id = format!("crash-{sequence}-{}", flowgate_types::now_millis());
            let authorization = format!("Bearer {key}");
            let headers = [
                ("authorization", authorization.as_str()),
                ("x-request-id", request_id.as_str()),
            ];
            let call = client.try_call(http::Method::POST, &url, &headers, body.to_string());
            // A request cut by the kill never answers (or fails): only answered ones count.
            if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(5), call).await
                && response.status == StatusCode::OK
            {
                let index = response
                    .header("x-flowgate-audit-index")
                    .and_then(|value| value.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("200 without x-flowgate-audit-index"));
                answered
                    .lock()
                    .unwrap_or_else(|err| panic!("{err}"))
                    .insert(request_id, index);
            }
        });
    }
}

/// Writes the config, starts `flowgate serve`, creates a tenant: (process, base URL, key).
async fn serve_with_tenant(
    dir: &Path,
    upstream: &MockUpstream,
    client: &TestClient,
    audit_extra: &str,
) -> (Child, String, String) {
    let (port, internal) = (free_port(), free_port());
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ninternal_listen = \"127.0.0.1:{internal}\"\n\n\
         [audit]\norigin = \"{ORIGIN}\"\ndurable_timeout_ms = 5000\n{audit_extra}\n\n\
         [[providers]]\nname = \"mock\"\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
         [[models]]\nname = \"gpt-4o-mini\"\nroutes = [ {{ provider = \"mock\" }} ]\n",
        upstream.base_url()
    );
    std::fs::write(dir.join("flowgate.toml"), config).unwrap_or_else(|err| panic!("{err}"));
    let base = format!("http://127.0.0.1:{port}");
    let child = start(dir);
    wait_ready(client, &base).await;
    let tenant = client
        .post_json(
            &format!("{base}/v1/tenants"),
            ADMIN,
            &serde_json::json!({"name": "audited", "max_requests_per_minute": 1_000_000}),
        )
        .await;
    assert_eq!(tenant.status, StatusCode::CREATED, "{}", tenant.text());
    let key = tenant.json()["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (child, base, key)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|err| panic!("runtime: {err}"))
}

/// Serves from `dir` (with `audit_extra` in `[audit]`), sends one chat ("Be brief." then
/// `prompt`), waits for its completion record, stops the gateway: (the request record's
/// index, the answer's text).
fn one_chat(dir: &Path, audit_extra: &str, prompt: &str) -> (u64, String) {
    runtime().block_on(async {
        let upstream = MockUpstream::start()
            .await
            .unwrap_or_else(|err| panic!("mock upstream: {err}"));
        let client = TestClient::new();
        let (mut child, base, key) = serve_with_tenant(dir, &upstream, &client, audit_extra).await;
        let answer = client
            .post_json(
                &format!("{base}/v1/chat/completions"),
                &key,
                &serde_json::json!({"model": "gpt-4o-mini", "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": prompt}]}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let index: u64 = answer
            .header("x-flowgate-audit-index")
            .unwrap_or_default()
            .parse()
            .unwrap_or_else(|err| panic!("audit index: {err}"));
        let answer_text = answer.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // The completion record is written when the answer ends; give it a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        child.kill().unwrap_or_else(|err| panic!("{err}"));
        let _ = child.wait();
        (index, answer_text)
    })
}

#[test]
fn prove_content_matches_the_prompt_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let (index, _) = one_chat(dir.path(), "", "What is the capital of France?");
    let index = index.to_string();
    let prove = |text: &str| {
        command(dir.path())
            .args(["audit", "prove-content", "--index", &index, "--text", text])
            .output()
            .unwrap_or_else(|err| panic!("{err}"))
    };
    let proved = prove("Be brief.\n\nWhat is the capital of France?");
    assert_eq!(
        proved.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&proved.stdout),
        String::from_utf8_lossy(&proved.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&proved.stdout).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(report["matches"], "request");
    let refused = prove("Be brief.\n\nWhat is the capital of Spain?");
    assert_eq!(refused.status.code(), Some(1));
    // By default no content is kept: there is nothing to show.
    let shown = show_content(dir.path(), &index);
    assert_eq!(shown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&shown.stderr).contains("keeps no content"));
}

fn show_content(dir: &Path, index: &str) -> std::process::Output {
    command(dir)
        .args(["audit", "show-content", "--index", index])
        .output()
        .unwrap_or_else(|err| panic!("{err}"))
}

/// Every file under `dir` (the SQLite database, its WAL, the spool), searched for `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn kept_content_is_sealed_in_the_log_and_opens_with_the_master_key() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let (index, answer_text) = one_chat(
        dir.path(),
        "hash_prompts = false",
        "The launch word is swordfish.",
    );
    // Nothing on disk holds the prompt in clear.
    assert_eq!(
        files_containing(dir.path(), b"swordfish"),
        Vec::<std::path::PathBuf>::new()
    );
    let shown = show_content(dir.path(), &index.to_string());
    assert_eq!(
        shown.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&shown.stdout).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(report["kind"], "request");
    assert_eq!(
        report["content"],
        "Be brief.\n\nThe launch word is swordfish."
    );
    let tenant = report["tenant_id"].as_str().unwrap_or_default().to_owned();
    // The completion record (the next one: nothing else ran) keeps the answer.
    let shown = show_content(dir.path(), &(index + 1).to_string());
    assert_eq!(shown.status.code(), Some(0));
    let report: serde_json::Value =
        serde_json::from_slice(&shown.stdout).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(report["kind"], "completion");
    assert_eq!(report["content"], answer_text.trim());
    assert!(!answer_text.is_empty());
    // Another master key cannot open it.
    let wrong = command(dir.path())
        .env(
            "FLOWGATE_MASTER_KEY",
            "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=",
        )
        .args(["audit", "show-content", "--index", &index.to_string()])
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(wrong.status.code(), Some(1));
    // Erasing the tenant's data key erases its kept content; the log still verifies.
    let erased = command(dir.path())
        .args(["tenants", "erase-content", &tenant])
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        erased.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&erased.stderr)
    );
    let gone = show_content(dir.path(), &index.to_string());
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("erased"));
    let verified = command(dir.path())
        .args(["audit", "verify"])
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}

#[test]
fn every_answered_request_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    runtime().block_on(async {
        let upstream = MockUpstream::start()
            .await
            .unwrap_or_else(|err| panic!("mock upstream: {err}"));
        let client = TestClient::new();
        let (mut child, base, key) = serve_with_tenant(dir.path(), &upstream, &client, "").await;
        let answered: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        for round in 0..ROUNDS {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let driver = tokio::spawn(load(
                client.clone(),
                format!("{base}/v1/chat/completions"),
                key.clone(),
                Arc::clone(&answered),
                stop_rx,
            ));
            // Kill somewhere between 2 and 10 seconds into the round.
            let [byte] = flowgate_types::random_bytes::<1>();
            let kill_after = Duration::from_millis(2000 + u64::from(byte) * 8000 / 255);
            let before = answered.lock().map(|map| map.len()).unwrap_or(0);
            tokio::time::sleep(kill_after).await;
            child.kill().unwrap_or_else(|err| panic!("SIGKILL: {err}"));
            let _ = child.wait();
            stop_tx.send_replace(true);
            let _ = driver.await;
            // Let answers already on the wire land before counting.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let after = answered.lock().map(|map| map.len()).unwrap_or(0);
            assert!(
                after - before > RATE as usize,
                "round {round}: only {} answers in {kill_after:?}",
                after - before
            );
            #[expect(
                clippy::print_stderr,
                reason = "the figures of each round, for the log"
            )]
            {
                eprintln!(
                    "round {round}: killed after {kill_after:?}, {} requests answered",
                    after - before
                );
            }
            child = start(dir.path());
            wait_ready(&client, &base).await;
        }
        child.kill().unwrap_or_else(|err| panic!("{err}"));
        let _ = child.wait();

        // Every answered request is in the log, at the index its answer named.
        let store = SqlStore::connect(&StoreOptions {
            url: db_url(dir.path()),
            max_connections: 2,
            schema: None,
        })
        .await
        .unwrap_or_else(|err| panic!("{err}"));
        let mut logged: HashMap<String, u64> = HashMap::new();
        let mut cursor = None;
        loop {
            let rows = store
                .list_audit(
                    ORIGIN,
                    &AuditFilter {
                        before_index: cursor,
                        limit: 1000,
                        ..AuditFilter::default()
                    },
                )
                .await
                .unwrap_or_else(|err| panic!("{err}"));
            let Some(last) = rows.last().map(|row| row.index) else {
                break;
            };
            for row in rows {
                let record = flowgate_audit::record::AuditRecord::parse(row.record.as_bytes())
                    .unwrap_or_else(|err| panic!("{err}"));
                if record.kind == flowgate_audit::record::RecordKind::Request {
                    logged.insert(record.request_id, row.index);
                }
            }
            cursor = Some(last);
        }
        let answered = answered.lock().map(|map| map.clone()).unwrap_or_default();
        assert!(answered.len() > ROUNDS * RATE as usize);
        let missing: Vec<_> = answered
            .iter()
            .filter(|(id, index)| logged.get(*id) != Some(*index))
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {} answered requests missing or at another index, e.g. {missing:?}",
            answered
                .iter()
                .filter(|(id, index)| logged.get(*id) != Some(*index))
                .count(),
            answered.len()
        );
        store.close().await;

        let verify = command(dir.path())
            .args(["audit", "verify", "--origin", ORIGIN])
            .output()
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            verify.status.code(),
            Some(0),
            "audit verify: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    });
}
