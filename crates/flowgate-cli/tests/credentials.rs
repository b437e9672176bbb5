//! Provider credentials in the store and master-key rotation, end to end: a credential set with
//! `flowgate providers set-credential` is what the upstream receives, the database never holds
//! it in clear, `flowgate keys rotate-master` re-encrypts it (and webhook secrets) so a gateway
//! with the new master key still authenticates upstream while the old key no longer opens
//! anything. Also: start and `config check` refuse metadata and link-local upstreams.

use flowgate_gateway::webhooks::secret::SecretSealer;
use flowgate_store::Webhook;
use flowgate_test_support::{MockUpstream, TestClient, TestGateway};
use flowgate_types::MasterKey;
use http::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const ADMIN: &str = "fga_0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d";
const UPSTREAM_SECRET: &str = "sk-upstream-Zq7Xw2Lp9Vt4";

fn flowgate(dir: &Path, env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("running flowgate: {err}"));
    if let Some(text) = stdin {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap_or_else(|| panic!("stdin"))
            .write_all(text.as_bytes())
            .unwrap_or_else(|err| panic!("write stdin: {err}"));
    }
    drop(child.stdin.take());
    child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("waiting for flowgate: {err}"))
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "flowgate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of_failure(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "flowgate should have failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    text
}

fn config_file(upstream: &str) -> String {
    format!(
        "[[providers]]\nname = \"vault\"\nkind = \"openai\"\nbase_url = \"{upstream}\"\ncredential = \"store\"\nmax_retries = 0\n\n[[models]]\nname = \"gpt-4o-mini\"\nroutes = [ {{ provider = \"vault\" }} ]\n"
    )
}

/// Every byte of the SQLite database (main file, WAL, shared memory) contains `needle`?
fn database_contains(dir: &Path, needle: &str) -> bool {
    std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("flowgate.db")
        })
        .any(|entry| {
            // Read by another process: closing a descriptor of the database file here would
            // release every POSIX lock this process's SQLite connections hold on it (SQLite's
            // documented way to corrupt a database), and the CLI runs alongside them.
            let bytes = Command::new("cat")
                .arg(entry.path())
                .output()
                .map(|output| output.stdout)
                .unwrap_or_default();
            bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
        })
}

async fn chat(gateway: &TestGateway) -> StatusCode {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello"}],
    });
    TestClient::new()
        .post_json(
            &gateway.url("/v1/chat/completions"),
            &gateway.tenant_key,
            &body,
        )
        .await
        .status
}

#[tokio::test]
async fn stored_credential_reaches_the_upstream_and_survives_master_rotation() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    let work = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let db_dir = work.path().join("db");
    std::fs::create_dir_all(&db_dir).unwrap_or_else(|err| panic!("{err}"));
    let database_url = format!("sqlite://{}/flowgate.db", db_dir.display());
    let config_path = work.path().join("flowgate.toml");
    std::fs::write(&config_path, config_file(&upstream.base_url()))
        .unwrap_or_else(|err| panic!("{err}"));
    let config_arg = config_path.display().to_string();
    let old_master = MasterKey::generate().to_base64();
    let new_master = MasterKey::generate().to_base64();
    let cli_env = |master: &str| -> Vec<(&'static str, String)> {
        vec![
            ("FLOWGATE_MASTER_KEY", master.to_owned()),
            ("FLOWGATE_ADMIN_API_KEY", ADMIN.to_owned()),
            ("FLOWGATE_DATABASE_URL", database_url.clone()),
            ("UPSTREAM_KEY", UPSTREAM_SECRET.to_owned()),
        ]
    };
    let run = |master: &str, args: &[&str], stdin: Option<&str>| {
        let env = cli_env(master);
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut full = args.to_vec();
        full.extend(["--config", config_arg.as_str()]);
        flowgate(work.path(), &pairs, &full, stdin)
    };

    // No credential yet: listing says so; a gateway refuses to start, naming the provider.
    let listed = stdout_of(&run(&old_master, &["providers", "list"], None));
    assert!(
        listed.contains("vault") && listed.contains("stored credential: no"),
        "{listed}"
    );
    let missing = TestGateway::spawn(
        &config_file(&upstream.base_url()),
        &[
            ("FLOWGATE_MASTER_KEY", &old_master),
            ("FLOWGATE_DATABASE_URL", &database_url),
        ],
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("start without a stored credential must fail"))
    .to_string();
    assert!(
        missing.contains("providers[0] `vault`") && missing.contains("holds none"),
        "{missing}"
    );
    assert!(!missing.contains('\n'), "{missing}");

    // Unknown providers and empty input are refused.
    let unknown = stderr_of_failure(&run(
        &old_master,
        &[
            "providers",
            "set-credential",
            "ghost",
            "--from-env",
            "UPSTREAM_KEY",
        ],
        None,
    ));
    assert!(unknown.contains("`ghost` is not configured"), "{unknown}");
    let empty = stderr_of_failure(&run(
        &old_master,
        &["providers", "set-credential", "vault", "--stdin"],
        Some("\n"),
    ));
    assert!(empty.contains("empty"), "{empty}");

    // Set it from stdin first, then replace it from the environment (the value used).
    stdout_of(&run(
        &old_master,
        &["providers", "set-credential", "vault", "--stdin"],
        Some("sk-first-value\n"),
    ));
    let set = stdout_of(&run(
        &old_master,
        &[
            "providers",
            "set-credential",
            "vault",
            "--from-env",
            "UPSTREAM_KEY",
        ],
        None,
    ));
    assert!(
        set.contains("vault") && !set.contains(UPSTREAM_SECRET),
        "{set}"
    );
    let listed = stdout_of(&run(&old_master, &["providers", "list", "--json"], None));
    let listed: Value = serde_json::from_str(&listed).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(listed["providers"][0]["name"], "vault");
    assert_eq!(listed["providers"][0]["credential"], "store");
    assert_eq!(listed["providers"][0]["stored_credential"], true);
    assert!(!listed.to_string().contains(UPSTREAM_SECRET));
    assert!(
        !database_contains(&db_dir, UPSTREAM_SECRET),
        "credential in clear in the database"
    );
    assert!(!database_contains(&db_dir, "sk-first-value"));

    // A gateway started with the master key calls the upstream with the stored credential.
    // Audit content is kept, so the tenant gets a data key sealed under the master key.
    let mut gateway = TestGateway::spawn(
        &config_file(&upstream.base_url()),
        &[
            ("FLOWGATE_MASTER_KEY", &old_master),
            ("FLOWGATE_DATABASE_URL", &database_url),
            ("AUDIT_HASH_PROMPTS", "false"),
        ],
    )
    .await
    .unwrap_or_else(|err| panic!("gateway: {err:#}"));
    assert_eq!(chat(&gateway).await, StatusCode::OK);
    let expected = format!("Bearer {UPSTREAM_SECRET}");
    assert_eq!(
        upstream
            .last_request()
            .and_then(|request| request.header("authorization").map(str::to_owned))
            .as_deref(),
        Some(expected.as_str())
    );
    // A webhook whose secret is sealed under the master key, to be rotated too.
    let webhooks = gateway
        .store
        .webhook_store()
        .unwrap_or_else(|| panic!("webhook store"));
    let old_key = MasterKey::from_base64(&old_master).unwrap_or_else(|err| panic!("{err}"));
    webhooks
        .create_webhook(&Webhook {
            id: "wh_rotation".to_owned(),
            url: "https://receiver.example/hook".to_owned(),
            events: vec!["key.rotated".to_owned()],
            secret_sealed: SecretSealer::new(&old_key).seal("whsec_rotation_test"),
            created_at: 1,
            disabled: false,
        })
        .await
        .unwrap_or_else(|err| panic!("create webhook: {err}"));
    assert!(gateway.shutdown().await);
    drop(gateway);

    // A store handle of our own (the gateway is gone).
    let store = flowgate_gateway::bootstrap::open_store(
        &flowgate_config::from_sources(
            None,
            &[
                ("FLOWGATE_MASTER_KEY".to_owned(), new_master.clone()),
                ("FLOWGATE_ADMIN_API_KEY".to_owned(), ADMIN.to_owned()),
                ("FLOWGATE_DATABASE_URL".to_owned(), database_url.clone()),
            ]
            .into_iter()
            .collect(),
            false,
        )
        .unwrap_or_else(|err| panic!("{err}")),
    )
    .await
    .unwrap_or_else(|err| panic!("{err}"));

    // All or nothing: one secret that does not open under the current master key (a webhook
    // sealed under some other key) stops the rotation before anything is written.
    let sealed_before = store
        .list_provider_credentials()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let webhook_store = store
        .webhook_store()
        .unwrap_or_else(|| panic!("webhook store"));
    webhook_store
        .create_webhook(&Webhook {
            id: "wh_foreign".to_owned(),
            url: "https://receiver.example/other".to_owned(),
            events: vec!["key.rotated".to_owned()],
            secret_sealed: SecretSealer::new(&MasterKey::generate()).seal("whsec_foreign"),
            created_at: 2,
            disabled: false,
        })
        .await
        .unwrap_or_else(|err| panic!("create webhook: {err}"));
    let foreign = stderr_of_failure(&run(
        &old_master,
        &[
            "keys",
            "rotate-master",
            "--new-key",
            &new_master,
            "--invalidate-tenant-keys",
        ],
        None,
    ));
    assert!(foreign.contains("webhook `wh_foreign`"), "{foreign}");
    assert_eq!(
        store
            .list_provider_credentials()
            .await
            .unwrap_or_else(|err| panic!("{err}")),
        sealed_before,
        "a refused rotation writes nothing"
    );
    assert!(
        webhook_store
            .delete_webhook("wh_foreign")
            .await
            .unwrap_or(false)
    );

    // Live tenant keys make the rotation refuse unless the operator accepts reissuing them.
    let refused = stderr_of_failure(&run(
        &old_master,
        &["keys", "rotate-master", "--new-key", &new_master],
        None,
    ));
    assert!(
        refused.contains("--invalidate-tenant-keys") && refused.contains("HMAC digests"),
        "{refused}"
    );
    let same = stderr_of_failure(&run(
        &old_master,
        &[
            "keys",
            "rotate-master",
            "--new-key",
            &old_master,
            "--invalidate-tenant-keys",
        ],
        None,
    ));
    assert!(same.contains("current master key"), "{same}");
    let rotated = stdout_of(&run(
        &old_master,
        &[
            "keys",
            "rotate-master",
            "--new-key",
            &new_master,
            "--invalidate-tenant-keys",
        ],
        None,
    ));
    assert!(
        rotated.contains(
            "1 provider credential(s) [vault], 1 webhook secret(s) and 1 tenant audit data key(s)"
        ),
        "{rotated}"
    );
    assert!(rotated.contains("FLOWGATE_MASTER_KEY"), "{rotated}");
    assert!(
        rotated.contains("flowgate keys rotate --revoke-after 0"),
        "{rotated}"
    );
    assert!(
        !rotated.contains(&new_master),
        "the key is not echoed: {rotated}"
    );
    assert!(
        database_contains(&db_dir, "https://receiver.example/hook"),
        "the reader sees what the database holds in clear"
    );
    assert!(!database_contains(&db_dir, UPSTREAM_SECRET));

    // The webhook secret now opens under the new key only.
    let sealed = store
        .webhook_store()
        .unwrap_or_else(|| panic!("webhook store"))
        .get_webhook("wh_rotation")
        .await
        .unwrap_or_else(|err| panic!("{err}"))
        .unwrap_or_else(|| panic!("webhook kept"))
        .secret_sealed;
    let new_key = MasterKey::from_base64(&new_master).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        SecretSealer::new(&new_key).open(&sealed).ok().as_deref(),
        Some("whsec_rotation_test")
    );
    assert!(SecretSealer::new(&old_key).open(&sealed).is_err());
    store.close().await;

    // The old master key no longer opens the credential: start fails in one line.
    let stale = TestGateway::spawn(
        &config_file(&upstream.base_url()),
        &[
            ("FLOWGATE_MASTER_KEY", &old_master),
            ("FLOWGATE_DATABASE_URL", &database_url),
        ],
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("the old master key must not open the rotated credential"))
    .to_string();
    assert!(
        stale.contains("providers[0] `vault`") && stale.contains("cannot be decrypted"),
        "{stale}"
    );

    // The new master key does, and the upstream still gets the right credential (the harness
    // issues the tenant a key hashed under the new master key).
    let calls_before = upstream.request_count();
    let mut gateway = TestGateway::spawn(
        &config_file(&upstream.base_url()),
        &[
            ("FLOWGATE_MASTER_KEY", &new_master),
            ("FLOWGATE_DATABASE_URL", &database_url),
            ("AUDIT_HASH_PROMPTS", "false"),
        ],
    )
    .await
    .unwrap_or_else(|err| panic!("gateway with the new master key: {err:#}"));
    assert_eq!(chat(&gateway).await, StatusCode::OK);
    assert_eq!(upstream.request_count(), calls_before + 1);
    assert_eq!(
        upstream
            .last_request()
            .and_then(|request| request.header("authorization").map(str::to_owned))
            .as_deref(),
        Some(expected.as_str())
    );
    assert!(gateway.shutdown().await);
}

#[tokio::test]
async fn metadata_and_link_local_upstreams_are_refused_at_start_and_by_config_check() {
    let work = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let master = MasterKey::generate().to_base64();
    let env = [
        ("FLOWGATE_MASTER_KEY", master.as_str()),
        ("FLOWGATE_ADMIN_API_KEY", ADMIN),
    ];
    let provider = |url: &str| {
        format!(
            "[[providers]]\nname = \"local\"\nkind = \"openai\"\nbase_url = \"{url}\"\n\n[[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"{url}\"\n"
        )
    };
    for (url, words) in [
        ("http://169.254.169.254/v1", "cloud metadata address"),
        (
            "http://metadata.google.internal/",
            "cloud metadata host name",
        ),
    ] {
        // providers[0] is fine, providers[1] is refused.
        let text = provider(url).replacen(url, "http://127.0.0.1:9000/v1", 1);
        let path = work.path().join("refused.toml");
        std::fs::write(&path, &text).unwrap_or_else(|err| panic!("{err}"));
        let checked = stderr_of_failure(&flowgate(
            work.path(),
            &env,
            &["config", "check", "--config", &path.display().to_string()],
            None,
        ));
        assert!(
            checked.contains("providers[1].base_url") && checked.contains(words),
            "{url}: {checked}"
        );
        let started = TestGateway::spawn(&text, &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} must refuse start"))
            .to_string();
        assert!(
            started.contains("providers[1].base_url") && started.contains(words),
            "{url}: {started}"
        );
        assert!(!started.contains('\n'), "{started}");
    }

    // Loopback is accepted, and an explicitly allowed network lets a link-local upstream in.
    let path = work.path().join("accepted.toml");
    std::fs::write(&path, provider("http://127.0.0.1:9000/v1"))
        .unwrap_or_else(|err| panic!("{err}"));
    let checked = stdout_of(&flowgate(
        work.path(),
        &env,
        &["config", "check", "--config", &path.display().to_string()],
        None,
    ));
    assert!(checked.contains("configuration OK"), "{checked}");
    let mut gateway = TestGateway::spawn(&provider("http://127.0.0.1:9000/v1"), &[])
        .await
        .unwrap_or_else(|err| panic!("loopback upstream: {err:#}"));
    assert!(gateway.shutdown().await);
    let allowed = format!(
        "{}\n[outbound]\nallowed_networks = [\"169.254.0.0/16\"]\n",
        provider("http://169.254.169.254/v1")
    );
    let mut gateway = TestGateway::spawn(&allowed, &[])
        .await
        .unwrap_or_else(|err| panic!("allowed network: {err:#}"));
    assert!(gateway.shutdown().await);
}
