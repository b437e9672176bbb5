//! Black-box tests of the built `flowgate` binary: configuration errors, migrations, tenant
//! commands, and a development start that serves a request and stops cleanly on SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "fga_5c1f0e2d9b8a7c6e5f4d3c2b1a09f8e7d6c5b4a3";

fn flowgate(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|err| panic!("running flowgate: {err}"))
}

fn production_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "FLOWGATE_MASTER_KEY",
            flowgate_types::MasterKey::generate().to_base64(),
        ),
        ("FLOWGATE_ADMIN_API_KEY", ADMIN.to_owned()),
        (
            "FLOWGATE_DATABASE_URL",
            format!("sqlite://{}/db/flowgate.db", dir.display()),
        ),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn stderr_line(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "expected one error line, got: {text}"
    );
    text
}

#[test]
fn gen_master_key_prints_32_random_bytes() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let first = flowgate(dir.path(), &[], &["gen-master-key"]);
    let second = flowgate(dir.path(), &[], &["gen-master-key"]);
    assert!(first.status.success());
    let text = String::from_utf8_lossy(&first.stdout).trim().to_owned();
    assert!(
        flowgate_types::MasterKey::from_base64(&text).is_ok(),
        "{text}"
    );
    assert_ne!(first.stdout, second.stdout);
}

#[test]
fn config_errors_are_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(
        dir.path().join("bad.toml"),
        "[server]\nlisten = \"127.0.0.1:1\"\nmax_body_byte = 5\n",
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let env = production_env(dir.path());
    let output = flowgate(
        dir.path(),
        &as_refs(&env),
        &["config", "check", "--config", "bad.toml"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_line(&output).contains("server.max_body_byte"));

    // Production without a master key refuses to start.
    let output = flowgate(dir.path(), &[("FLOWGATE_ADMIN_API_KEY", ADMIN)], &["serve"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_line(&output).contains("FLOWGATE_MASTER_KEY"));

    // A misspelt variable is refused too.
    let mut env = as_refs(&env);
    env.push(("FLOWGATE_PROT", "9"));
    let output = flowgate(dir.path(), &env, &["config", "check"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_line(&output).contains("FLOWGATE_PROT"));

    // A missing explicit file is an error, not a silent default.
    let output = flowgate(
        dir.path(),
        &as_refs(&production_env(dir.path())),
        &["config", "check", "--config", "nope.toml"],
    );
    assert_eq!(output.status.code(), Some(1));
    stderr_line(&output);

    let good = flowgate(
        dir.path(),
        &as_refs(&production_env(dir.path())),
        &["config", "check"],
    );
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
}

#[test]
fn migrate_then_tenant_commands() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let env = production_env(dir.path());
    let env = as_refs(&env);
    let first = flowgate(dir.path(), &env, &["migrate", "--json"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap_or_default();
    // Every migration applies, in order, on a fresh database.
    let current = report["current"].as_i64().unwrap_or_default();
    assert!(current >= 5, "{report}");
    assert_eq!(
        report["applied"],
        serde_json::json!((1..=current).collect::<Vec<_>>())
    );
    let second = flowgate(dir.path(), &env, &["migrate", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap_or_default();
    assert_eq!(report["applied"], serde_json::json!([]));

    let created = flowgate(
        dir.path(),
        &env,
        &[
            "tenants",
            "create",
            "--name",
            "cli-team",
            "--allowed-models",
            "a,b",
            "--json",
        ],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let tenant: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap_or_default();
    let id = tenant["id"].as_str().unwrap_or_default().to_owned();
    assert!(
        tenant["api_key"]
            .as_str()
            .is_some_and(|key| key.starts_with("fgk_"))
    );
    assert_eq!(tenant["allowed_models"], serde_json::json!(["a", "b"]));

    let listed = flowgate(dir.path(), &env, &["tenants", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap_or_default();
    assert_eq!(list.as_array().map(Vec::len), Some(1));

    let updated = flowgate(
        dir.path(),
        &env,
        &[
            "tenants",
            "update",
            &id,
            "--rules-preset",
            "strict",
            "--json",
        ],
    );
    assert!(
        updated.status.success(),
        "{}",
        String::from_utf8_lossy(&updated.stderr)
    );
    let shown = flowgate(dir.path(), &env, &["tenants", "show", &id, "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap_or_default();
    assert_eq!(shown["rules_preset"], "strict");
    assert_eq!(shown["keys"].as_array().map(Vec::len), Some(1));
    assert!(
        !shown
            .to_string()
            .contains(tenant["api_key"].as_str().unwrap_or("-"))
    );

    let bad = flowgate(
        dir.path(),
        &env,
        &["tenants", "update", &id, "--rules-preset", "loose"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr_line(&bad).contains("rules_preset"));

    assert!(
        flowgate(dir.path(), &env, &["tenants", "delete", &id])
            .status
            .success()
    );
    let gone = flowgate(dir.path(), &env, &["tenants", "delete", &id]);
    assert_eq!(gone.status.code(), Some(1));
}

#[test]
fn dev_mode_starts_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["serve", "--dev"])
        .current_dir(dir.path())
        .env_clear()
        .env("FLOWGATE_PORT", "0")
        .env("FLOWGATE_INTERNAL_PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn: {err}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let (mut base, mut key) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while (base.is_none() || key.is_none()) && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.trim().strip_prefix("gateway:") {
            base = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.trim().strip_prefix("demo tenant key:") {
            key = rest.split_whitespace().next().map(str::to_owned);
        }
    }
    let (Some(base), Some(key)) = (base, key) else {
        let _ = child.kill();
        panic!("dev banner not printed");
    };
    // Secrets were generated as owner-only files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for file in ["master.key", "admin.key"] {
            let mode = std::fs::metadata(dir.path().join("data").join(file))
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|err| panic!("{err}"));
    let response = runtime.block_on(async {
        flowgate_test_support::TestClient::new()
            .post_json(
                &format!("{base}/v1/chat/completions"),
                &key,
                &serde_json::json!({"model": "mock-chat", "messages": [{"role": "user", "content": "hi there"}]}),
            )
            .await
    });
    assert_eq!(response.status, http::StatusCode::OK, "{}", response.text());
    assert_eq!(
        response.json()["choices"][0]["message"]["content"],
        "Hello from the flowgate mock provider. Your message had 2 words."
    );
    let health = flowgate(
        dir.path(),
        &[],
        &["healthcheck", "--url", &format!("{base}/health")],
    );
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(killed.is_ok_and(|status| status.success()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A second start reuses the keys and does not print a new demo key.
    let unhealthy = flowgate(
        dir.path(),
        &[],
        &["healthcheck", "--url", &format!("{base}/health")],
    );
    assert_eq!(unhealthy.status.code(), Some(1));
}
