//! Black-box tests of `flowgate audit …` on a real SQLite audit log written by the gateway's
//! `AuditLog`: verification, tamper detection with the documented exit codes (3 tampered,
//! 5 unknown key), anti-rollback with a saved state, export verified with only the public
//! key, offline proofs, stats and retention.

use flowgate_audit::note::{NoteSigner, NoteVerifier};
use flowgate_audit::proof::InclusionBundle;
use flowgate_audit::record::{AuditRecord, Decision, RecordKind};
use flowgate_config::AuditOnFull;
use flowgate_gateway::audit::{AuditLog, AuditSettings};
use flowgate_store::Store as _;
use std::num::NonZeroU64;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

const ADMIN: &str = "fga_5c1f0e2d9b8a7c6e5f4d3c2b1a09f8e7d6c5b4a3";
const ORIGIN: &str = "cli.example/log";

fn db_url(dir: &Path) -> String {
    format!("sqlite://{}/db/flowgate.db", dir.display())
}

fn flowgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env(
            "FLOWGATE_MASTER_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .env("FLOWGATE_ADMIN_API_KEY", ADMIN)
        .env("FLOWGATE_DATABASE_URL", db_url(dir))
        .output()
        .unwrap_or_else(|err| panic!("running flowgate: {err}"))
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|err| panic!("runtime: {err}"))
}

/// Writes `old` records dated 1970 then `new` current ones, checkpoint every 10 records,
/// through the gateway's writer into the CLI's database.
fn write_log(dir: &Path, old: u64, new: u64) {
    runtime().block_on(async {
        let store = flowgate_store::conformance::migrated_sqlite(&db_url(dir)).await;
        let log = AuditLog::start(
            Arc::new(store.clone()),
            AuditSettings {
                origin: ORIGIN.into(),
                policy: flowgate_audit::checkpoint::CheckpointPolicy {
                    every_records: NonZeroU64::new(10).unwrap_or(NonZeroU64::MIN),
                    every_ms: NonZeroU64::new(3_600_000).unwrap_or(NonZeroU64::MIN),
                },
                on_full: AuditOnFull::Refuse,
                queue_capacity: 1024,
                max_batch: 64,
                spool: None,
            },
        )
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
        let now = flowgate_types::now_millis().unsigned_abs();
        for i in 0..old + new {
            let time = if i < old { 1_000_000 + i } else { now };
            let mut record = AuditRecord::gap(time, 0, "");
            record.kind = RecordKind::Completion;
            record.gap = None;
            record.request_id = format!("req-{i:04}");
            record.tenant_id = "tenant-a".into();
            record.model = "gpt-4o-mini".into();
            record.decision = if i.is_multiple_of(3) {
                Decision::Block
            } else {
                Decision::Allow
            };
            log.submit(record)
                .unwrap_or_else(|err| panic!("submit: {err}"))
                .durable()
                .await
                .unwrap_or_else(|err| panic!("durable: {err}"));
        }
        log.shutdown().await;
        store.close().await;
    });
}

fn execute(dir: &Path, sql: &'static str) {
    runtime().block_on(async {
        let pool = sqlx::sqlite::SqlitePool::connect(&db_url(dir))
            .await
            .unwrap_or_else(|err| panic!("open sqlite: {err}"));
        let result = sqlx::query(sql)
            .execute(&pool)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
        assert!(result.rows_affected() > 0, "{sql} changed nothing");
        pool.close().await;
    });
}

#[test]
fn verify_pubkey_proof_stats_and_export() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    write_log(dir.path(), 0, 35);

    let verified = flowgate(dir.path(), &["audit", "verify", "--json"]);
    assert_eq!(
        code(&verified),
        0,
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&verified.stdout).unwrap_or_else(|err| panic!("json: {err}"));
    assert_eq!(report["ok"], true);
    assert_eq!(report["size"], 35);
    assert_eq!(report["last_checkpoint_size"], 35);

    let pubkey = stdout(&flowgate(dir.path(), &["audit", "pubkey"]))
        .trim()
        .to_owned();
    let verifier = NoteVerifier::parse(&pubkey).unwrap_or_else(|err| panic!("pubkey: {err}"));
    assert_eq!(verifier.name(), ORIGIN);

    let proof = flowgate(dir.path(), &["audit", "proof", "--index", "12"]);
    assert_eq!(
        code(&proof),
        0,
        "{}",
        String::from_utf8_lossy(&proof.stderr)
    );
    let proof: serde_json::Value =
        serde_json::from_slice(&proof.stdout).unwrap_or_else(|err| panic!("json: {err}"));
    let bundle: InclusionBundle = serde_json::from_value(proof["bundle"].clone())
        .unwrap_or_else(|err| panic!("bundle: {err}"));
    let record = bundle
        .verify(std::slice::from_ref(&verifier))
        .unwrap_or_else(|err| panic!("offline proof: {err}"));
    assert_eq!(record.request_id, "req-0012");

    let stats: serde_json::Value =
        serde_json::from_slice(&flowgate(dir.path(), &["audit", "stats"]).stdout)
            .unwrap_or_else(|err| panic!("stats json: {err}"));
    assert_eq!(stats["records"], 35);
    assert_eq!(stats["size"], 35);

    // Export, then verify with nothing but the file and the public key.
    let export = dir.path().join("export.jsonl");
    let export_arg = export.display().to_string();
    let exported = flowgate(dir.path(), &["audit", "export", "--out", &export_arg]);
    assert_eq!(
        code(&exported),
        0,
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let offline = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args([
            "audit",
            "verify",
            "--export",
            &export_arg,
            "--pubkey",
            &pubkey,
        ])
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        code(&offline),
        0,
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );

    // One byte changed in the export file: tampered.
    let text = std::fs::read_to_string(&export).unwrap_or_default();
    std::fs::write(&export, text.replacen("req-0020", "req-0021", 1))
        .unwrap_or_else(|err| panic!("{err}"));
    let tampered = flowgate(
        dir.path(),
        &[
            "audit",
            "verify",
            "--export",
            &export_arg,
            "--pubkey",
            &pubkey,
        ],
    );
    assert_eq!(
        code(&tampered),
        3,
        "{}",
        String::from_utf8_lossy(&tampered.stderr)
    );

    // A key that did not sign the log: unknown key.
    let stranger = NoteSigner::generate(ORIGIN)
        .unwrap_or_else(|err| panic!("{err}"))
        .verifier()
        .to_string();
    let unknown = flowgate(
        dir.path(),
        &["audit", "verify", "--pubkey", &stranger, "--json"],
    );
    assert_eq!(
        code(&unknown),
        5,
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    let failure: serde_json::Value =
        serde_json::from_slice(&unknown.stdout).unwrap_or_else(|err| panic!("json: {err}"));
    assert_eq!(failure["category"], "unknown_key");
}

#[test]
fn one_changed_byte_in_the_store_is_tampering() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    write_log(dir.path(), 0, 25);
    execute(
        dir.path(),
        "UPDATE audit_entries SET record = replace(record, 'req-0007', 'req-0008') WHERE idx = 7",
    );
    let verified = flowgate(dir.path(), &["audit", "verify", "--json"]);
    assert_eq!(code(&verified), 3, "{}", stdout(&verified));
    let failure: serde_json::Value =
        serde_json::from_slice(&verified.stdout).unwrap_or_else(|err| panic!("json: {err}"));
    assert_eq!(failure["category"], "tampered");
    assert_eq!(failure["first_bad_index"], 7);
}

#[test]
fn a_deleted_record_is_tampering() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    write_log(dir.path(), 0, 25);
    execute(dir.path(), "DELETE FROM audit_entries WHERE idx = 5");
    let verified = flowgate(dir.path(), &["audit", "verify"]);
    assert_eq!(
        code(&verified),
        3,
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

#[test]
fn a_truncated_tail_fails_against_the_saved_state() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    write_log(dir.path(), 0, 30);
    let state = dir.path().join("state.json");
    let state_arg = state.display().to_string();
    let first = flowgate(dir.path(), &["audit", "verify", "--state", &state_arg]);
    assert_eq!(
        code(&first),
        0,
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(state.exists());
    // Roll back to the checkpoint at 20: a consistent, signed, but shorter log.
    execute(dir.path(), "DELETE FROM audit_entries WHERE idx >= 20");
    execute(dir.path(), "DELETE FROM audit_checkpoints WHERE size > 20");
    let plain = flowgate(dir.path(), &["audit", "verify"]);
    assert_eq!(code(&plain), 0, "the shorter log is self-consistent");
    let rolled_back = flowgate(dir.path(), &["audit", "verify", "--state", &state_arg]);
    assert_eq!(
        code(&rolled_back),
        3,
        "{}",
        String::from_utf8_lossy(&rolled_back.stderr)
    );
}

#[test]
fn prune_keeps_the_rest_verifiable() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    write_log(dir.path(), 25, 10);
    let pruned = flowgate(
        dir.path(),
        &["audit", "prune", "--before", "2000-01-01", "--json"],
    );
    assert_eq!(
        code(&pruned),
        0,
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    let pruned: serde_json::Value =
        serde_json::from_slice(&pruned.stdout).unwrap_or_else(|err| panic!("json: {err}"));
    assert_eq!(
        pruned["anchor"], 20,
        "whole periods only: checkpoint 20 closes the last one"
    );
    assert_eq!(pruned["deleted"], 20);
    let verified = flowgate(dir.path(), &["audit", "verify", "--json"]);
    assert_eq!(
        code(&verified),
        0,
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&verified.stdout).unwrap_or_else(|err| panic!("json: {err}"));
    assert_eq!(report["start_index"], 20);
    assert_eq!(report["size"], 35);
    let proof = flowgate(dir.path(), &["audit", "proof", "--index", "30"]);
    assert_eq!(
        code(&proof),
        0,
        "{}",
        String::from_utf8_lossy(&proof.stderr)
    );
}
