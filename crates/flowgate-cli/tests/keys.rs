//! `flowgate keys rotate` against a running gateway's database: the new key works at once,
//! the old key keeps working until the deadline and then answers 401, every tenant is rotated
//! when no id is given, and `--dry-run` changes nothing.

use flowgate_test_support::{TestClient, TestGateway};
use http::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const ADMIN: &str = "fga_0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d";

fn flowgate(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|err| panic!("running flowgate: {err}"))
}

fn json_output(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "flowgate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "not JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A gateway polling its store every 100 ms, plus the environment the CLI needs to work on
/// the same database with the same master key.
async fn gateway_and_cli_env() -> (TestGateway, Vec<(&'static str, String)>) {
    let master_key = flowgate_types::MasterKey::generate().to_base64();
    let gateway = TestGateway::spawn(
        "[store]\nrefresh_interval_ms = 100\n",
        &[
            ("FLOWGATE_MASTER_KEY", &master_key),
            ("FLOWGATE_ADMIN_API_KEY", ADMIN),
        ],
    )
    .await
    .unwrap_or_else(|err| panic!("gateway: {err:#}"));
    let env = vec![
        ("FLOWGATE_MASTER_KEY", master_key),
        ("FLOWGATE_ADMIN_API_KEY", ADMIN.to_owned()),
        ("FLOWGATE_DATABASE_URL", gateway.database_url()),
    ];
    (gateway, env)
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The status a tenant key gets on its own tenant (200 while it authenticates, 401 after).
async fn key_status(gateway: &TestGateway, key: &str) -> StatusCode {
    TestClient::new()
        .get(
            &gateway.url(&format!("/v1/tenants/{}", gateway.tenant_id)),
            key,
        )
        .await
        .status
}

async fn keys_of(gateway: &TestGateway) -> Value {
    let shown = TestClient::new()
        .get(
            &gateway.url(&format!("/v1/tenants/{}/keys", gateway.tenant_id)),
            &gateway.admin_key,
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    shown.json()["data"].clone()
}

#[tokio::test]
async fn old_key_works_until_the_deadline_then_401() {
    let (gateway, env) = gateway_and_cli_env().await;
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let old_key = gateway.tenant_key.clone();
    assert_eq!(key_status(&gateway, &old_key).await, StatusCode::OK);

    let output = flowgate(
        dir.path(),
        &as_refs(&env),
        &[
            "keys",
            "rotate",
            "--tenant-id",
            &gateway.tenant_id,
            "--revoke-after",
            "3",
            "--json",
        ],
    );
    let rotated_at = Instant::now();
    let report = json_output(&output);
    assert_eq!(report["dry_run"], false);
    let rotations = report["rotations"].as_array().cloned().unwrap_or_default();
    assert_eq!(rotations.len(), 1, "{report}");
    assert_eq!(rotations[0]["tenant_id"], gateway.tenant_id.as_str());
    assert_eq!(rotations[0]["old_keys"], 1);
    let new_key = rotations[0]["new_key"]["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(new_key.starts_with("fgk_"), "{report}");

    // The gateway picks the new key up from the store (no restart).
    let deadline = Instant::now() + Duration::from_secs(5);
    while key_status(&gateway, &new_key).await != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the new key never started working"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Before the deadline the old key still works (its expiry is now in the snapshot).
    assert!(rotated_at.elapsed() < Duration::from_secs(2));
    assert_eq!(key_status(&gateway, &old_key).await, StatusCode::OK);
    let keys = keys_of(&gateway).await;
    let old = keys
        .as_array()
        .and_then(|keys| keys.iter().find(|key| key["expires_at"].is_i64()))
        .cloned()
        .unwrap_or_else(|| panic!("no key with a deadline: {keys}"));
    assert_eq!(old["expires_at"], rotations[0]["old_keys_expire_at"]);

    // After the deadline: 401 for the old key, the new one keeps working.
    tokio::time::sleep(
        Duration::from_secs(3).saturating_sub(rotated_at.elapsed()) + Duration::from_millis(300),
    )
    .await;
    assert_eq!(
        key_status(&gateway, &old_key).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(key_status(&gateway, &new_key).await, StatusCode::OK);
}

#[tokio::test]
async fn dry_run_changes_nothing_and_no_id_means_every_tenant() {
    let (gateway, env) = gateway_and_cli_env().await;
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let env = as_refs(&env);
    let created = TestClient::new()
        .post_json(
            &gateway.url("/v1/tenants"),
            &gateway.admin_key,
            &serde_json::json!({"name": "second"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let keys_before = keys_of(&gateway).await;
    let version_before = gateway
        .store
        .change_version()
        .await
        .unwrap_or_else(|err| panic!("{err}"));

    let output = flowgate(dir.path(), &env, &["keys", "rotate", "--dry-run"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains(&gateway.tenant_id) && text.contains("second"),
        "{text}"
    );
    assert!(
        text.contains("would rotate") && !text.contains("fgk_"),
        "{text}"
    );
    let report = json_output(&flowgate(
        dir.path(),
        &env,
        &[
            "keys",
            "rotate",
            "--dry-run",
            "--revoke-after",
            "60",
            "--json",
        ],
    ));
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["rotations"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["rotations"][0]["old_keys"], 1);

    // Nothing changed: same keys, same change counter, the old key still has no deadline.
    assert_eq!(keys_of(&gateway).await, keys_before);
    assert_eq!(
        gateway.store.change_version().await.unwrap_or_default(),
        version_before
    );
    assert_eq!(
        key_status(&gateway, &gateway.tenant_key).await,
        StatusCode::OK
    );

    // Without --tenant-id every tenant is rotated; the text output shows each new key once.
    let output = flowgate(dir.path(), &env, &["keys", "rotate"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text.matches("fgk_").count(), 2, "{text}");
    assert_eq!(keys_of(&gateway).await.as_array().map(Vec::len), Some(2));

    // An unknown tenant is one clear error line.
    let output = flowgate(
        dir.path(),
        &env,
        &["keys", "rotate", "--tenant-id", "ten_nope"],
    );
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("ten_nope") && error.trim_end().lines().count() == 1,
        "{error}"
    );
}
