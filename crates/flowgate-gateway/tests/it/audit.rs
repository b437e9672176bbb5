//! The audit writer (`AuditLog`): group-committed indices, restart continuity, back-pressure
//! modes, and the audit API (filters, tenant scoping, stats, checkpoints, offline-verifiable
//! proofs).

use crate::setup_with;
use flowgate_audit::note::NoteVerifier;
use flowgate_audit::proof::InclusionBundle;
use flowgate_audit::record::{AuditRecord, Decision, RecordKind, RuleFinding};
use flowgate_audit::source::verify_source;
use flowgate_audit::verify::VerifyOptions;
use flowgate_config::{AuditAcknowledge, AuditOnFull};
use flowgate_gateway::audit::{AuditError, AuditLog, AuditSettings, SpoolSettings};
use flowgate_store::{AuditFilter, AuditStore, SqlStore};
use flowgate_test_support::TestClient;
use http::StatusCode;
use std::num::NonZeroU64;
use std::sync::Arc;

fn record(i: u64, tenant: &str) -> AuditRecord {
    let mut record = AuditRecord::gap(flowgate_types::now_millis().unsigned_abs(), 0, "");
    record.kind = RecordKind::Completion;
    record.gap = None;
    record.request_id = format!("req-{i}");
    record.tenant_id = tenant.to_owned();
    record.key_id = "key".into();
    record.route = "/v1/chat/completions".into();
    record.provider = "mock".into();
    record.model = "gpt-4o-mini".into();
    record.http_status = Some(200);
    record.decision = if i.is_multiple_of(4) {
        Decision::Block
    } else {
        Decision::Allow
    };
    if i.is_multiple_of(4) {
        record.findings.push(RuleFinding {
            rule_id: "secrets".into(),
            action: "block".into(),
            count: 1,
        });
    }
    record
}

async fn sqlite_store(dir: &std::path::Path) -> Arc<SqlStore> {
    let url = format!("sqlite://{}/audit.db", dir.display());
    Arc::new(flowgate_store::conformance::migrated_sqlite(&url).await)
}

fn settings(capacity: usize, on_full: AuditOnFull) -> AuditSettings {
    AuditSettings {
        origin: "test.example/audit".into(),
        policy: flowgate_audit::checkpoint::CheckpointPolicy {
            every_records: NonZeroU64::new(16).unwrap_or(NonZeroU64::MIN),
            every_ms: NonZeroU64::new(60_000).unwrap_or(NonZeroU64::MIN),
        },
        on_full,
        queue_capacity: capacity,
        max_batch: 1024,
        spool: None,
    }
}

/// The size of `log` once verified with its own key.
async fn verified_size(log: &AuditLog) -> u64 {
    verify_source(
        &log.source(),
        VerifyOptions::new(log.origin(), vec![log.verifier().clone()]),
        100,
    )
    .await
    .unwrap_or_else(|err| panic!("verify: {err}"))
    .size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_numbers_records_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let store = sqlite_store(dir.path()).await;
    let audit_store: Arc<dyn AuditStore> = store.clone();
    let log = AuditLog::start(
        Arc::clone(&audit_store),
        settings(1024, AuditOnFull::Refuse),
    )
    .await
    .unwrap_or_else(|err| panic!("start: {err}"));
    let key = log.verifier().to_string();
    // Concurrent submitters: every index is handed out exactly once.
    let mut handles = Vec::new();
    for i in 0..200u64 {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            match log.submit(record(i, "t1")) {
                Ok(receipt) => receipt.durable().await,
                Err(err) => Err(err),
            }
        }));
    }
    let mut indices = Vec::new();
    for handle in handles {
        let index = handle
            .await
            .unwrap_or_else(|err| panic!("join: {err}"))
            .unwrap_or_else(|err| panic!("durable: {err}"));
        indices.push(index);
    }
    indices.sort_unstable();
    assert_eq!(indices, (0..200).collect::<Vec<_>>());
    log.shutdown().await;
    assert_eq!(log.submit(record(0, "t1")).err(), Some(AuditError::Closed));

    // A restart rebuilds the appender: same key, indices continue, the log verifies.
    let log = AuditLog::start(
        Arc::clone(&audit_store),
        settings(1024, AuditOnFull::Refuse),
    )
    .await
    .unwrap_or_else(|err| panic!("restart: {err}"));
    assert_eq!(log.verifier().to_string(), key);
    let next = log
        .submit(record(200, "t1"))
        .unwrap_or_else(|err| panic!("submit: {err}"))
        .durable()
        .await
        .unwrap_or_else(|err| panic!("durable: {err}"));
    assert_eq!(next, 200);
    log.shutdown().await;
    let verifier = NoteVerifier::parse(&key).unwrap_or_else(|err| panic!("key: {err}"));
    let report = verify_source(
        &log.source(),
        VerifyOptions::new(log.origin(), vec![verifier]),
        64,
    )
    .await
    .unwrap_or_else(|err| panic!("verify: {err}"));
    assert_eq!(report.size, 201);
    assert_eq!(
        report.last_checkpoint_size,
        Some(201),
        "shutdown checkpoint"
    );
    assert_eq!(report.uncovered_records, 0);
}

/// Submits `count` records as fast as the loop goes (the writer thread drains a queue of one
/// record concurrently, so some find it full) and waits for every accepted receipt.
async fn flood(log: &AuditLog, count: u64) -> (Vec<u64>, Vec<AuditError>) {
    let mut receipts = Vec::new();
    let mut refused = Vec::new();
    for i in 0..count {
        match log.submit(record(i, "t1")) {
            Ok(receipt) => receipts.push(receipt),
            Err(error) => refused.push(error),
        }
    }
    let mut indices = Vec::new();
    for receipt in receipts {
        indices.push(
            receipt
                .durable()
                .await
                .unwrap_or_else(|err| panic!("accepted record not durable: {err}")),
        );
    }
    (indices, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_refuses_or_serves_with_a_gap_marker() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let store = sqlite_store(dir.path()).await;
    let refuse = AuditLog::start(store.clone(), settings(1, AuditOnFull::Refuse))
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
    let (indices, refused) = flood(&refuse, 2000).await;
    assert!(!refused.is_empty(), "a queue of one never filled");
    assert!(refused.iter().all(|error| *error == AuditError::Full));
    assert!(AuditError::Full.refuses() && !AuditError::Dropped.refuses());
    // Accepted records are numbered without holes; refused ones left no trace.
    assert_eq!(indices, (0..indices.len() as u64).collect::<Vec<_>>());
    assert_eq!(refuse.dropped_total(), 0);
    refuse.shutdown().await;

    let mut serve_settings = settings(1, AuditOnFull::Serve);
    serve_settings.origin = "test.example/serve".into();
    let serve = AuditLog::start(store.clone(), serve_settings)
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
    let (kept, dropped) = flood(&serve, 2000).await;
    assert!(!dropped.is_empty(), "a queue of one never filled");
    assert!(dropped.iter().all(|error| *error == AuditError::Dropped));
    assert_eq!(serve.dropped_total(), dropped.len() as u64);
    serve.shutdown().await;
    // Every drop is counted by a gap marker logged after the records kept before it.
    let stats = store
        .audit_stats("test.example/serve", None, None, None)
        .await
        .unwrap_or_else(|err| panic!("stats: {err}"));
    assert_eq!(stats.lost_records, dropped.len() as u64);
    assert!(stats.gaps >= 1);
    assert_eq!(stats.records, kept.len() as u64);
    let size = store
        .audit_size("test.example/serve")
        .await
        .unwrap_or_else(|err| panic!("size: {err}"));
    assert_eq!(size, kept.len() as u64 + stats.gaps);
}

#[tokio::test]
async fn audit_api_filters_scopes_and_proves() {
    let (_upstream, gateway) = setup_with("[audit]\ncheckpoint_every_records = 10\n").await;
    let state = &gateway
        .gateway()
        .unwrap_or_else(|| panic!("gateway running"))
        .state;
    let audit = state.audit().clone();
    let mut receipts = Vec::new();
    for i in 0..40u64 {
        let tenant = if i.is_multiple_of(2) {
            gateway.tenant_id.clone()
        } else {
            "someone-else".to_owned()
        };
        receipts.push(
            audit
                .submit(record(i, &tenant))
                .unwrap_or_else(|err| panic!("submit: {err}")),
        );
    }
    for receipt in receipts {
        receipt
            .durable()
            .await
            .unwrap_or_else(|err| panic!("durable: {err}"));
    }
    let client = TestClient::new();

    let all = client
        .get(&gateway.url("/v1/audit?limit=15"), &gateway.admin_key)
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text());
    let all = all.json();
    assert_eq!(all["data"].as_array().map(Vec::len), Some(15));
    assert_eq!(all["data"][0]["index"], 39, "newest first");
    let cursor = all["next_cursor"].as_u64().unwrap_or_default();
    let page = client
        .get(
            &gateway.url(&format!("/v1/audit?limit=15&cursor={cursor}")),
            &gateway.admin_key,
        )
        .await
        .json();
    assert_eq!(page["data"][0]["index"], 24);

    let blocked = client
        .get(
            &gateway.url("/v1/audit?status=BLOCK&rule=secrets"),
            &gateway.admin_key,
        )
        .await
        .json();
    assert_eq!(blocked["data"].as_array().map(Vec::len), Some(10));

    // A tenant key sees its own tenant only, and may not ask for another.
    let own = client
        .get(&gateway.url("/v1/audit?limit=100"), &gateway.tenant_key)
        .await
        .json();
    let own = own["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(own.len(), 20);
    assert!(
        own.iter()
            .all(|row| row["record"]["tenant_id"] == gateway.tenant_id.as_str())
    );
    let other = client
        .get(
            &gateway.url("/v1/audit?tenant=someone-else"),
            &gateway.tenant_key,
        )
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    let unauthenticated = client.get(&gateway.url("/v1/audit"), "").await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    let bad = client
        .get(&gateway.url("/v1/audit?limit=many"), &gateway.admin_key)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let stats = client
        .get(&gateway.url("/v1/audit/stats"), &gateway.admin_key)
        .await
        .json();
    assert_eq!(stats["requests"], 40);
    assert_eq!(stats["blocked"], 10);
    assert_eq!(stats["block_rate"], 0.25);
    assert_eq!(stats["top_triggered_rules"][0]["rule_id"], "secrets");
    assert_eq!(stats["by_tenant"].as_array().map(Vec::len), Some(2));

    let checkpoints = client
        .get(&gateway.url("/v1/audit/checkpoints"), &gateway.admin_key)
        .await
        .json();
    let sizes: Vec<u64> = checkpoints["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|checkpoint| checkpoint["size"].as_u64())
        .collect();
    assert_eq!(sizes, vec![10, 20, 30, 40]);
    let key = checkpoints["verifier_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // A proof an auditor checks with nothing but the public key.
    let proof = client
        .get(&gateway.url("/v1/audit/proof?index=17"), &gateway.admin_key)
        .await;
    assert_eq!(proof.status, StatusCode::OK, "{}", proof.text());
    let bundle: InclusionBundle = serde_json::from_value(proof.json()["bundle"].clone())
        .unwrap_or_else(|err| panic!("bundle: {err}"));
    let verifier = NoteVerifier::parse(&key).unwrap_or_else(|err| panic!("key: {err}"));
    let proven = bundle
        .verify(&[verifier])
        .unwrap_or_else(|err| panic!("bundle verifies: {err}"));
    assert_eq!(proven.request_id, "req-17");
    // Record 17 belongs to the other tenant: hidden from this tenant's key.
    let hidden = client
        .get(
            &gateway.url("/v1/audit/proof?index=17"),
            &gateway.tenant_key,
        )
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let missing = client
        .get(
            &gateway.url("/v1/audit/proof?index=4000"),
            &gateway.admin_key,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// Delegates to a real store but fails every append while `down` is set, and makes each
/// append wait `slow_ms` first.
#[derive(Debug)]
struct FlakyStore {
    inner: Arc<SqlStore>,
    down: std::sync::atomic::AtomicBool,
    failures: std::sync::atomic::AtomicU64,
    slow_ms: std::sync::atomic::AtomicU64,
    appends: std::sync::atomic::AtomicU64,
}

impl FlakyStore {
    async fn over_sqlite(dir: &std::path::Path, down: bool, slow_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            inner: sqlite_store(dir).await,
            down: std::sync::atomic::AtomicBool::new(down),
            failures: std::sync::atomic::AtomicU64::new(0),
            slow_ms: std::sync::atomic::AtomicU64::new(slow_ms),
            appends: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

#[async_trait::async_trait]
impl AuditStore for FlakyStore {
    async fn audit_node(
        &self,
        origin: &str,
    ) -> Result<Option<flowgate_store::AuditNode>, flowgate_store::StoreError> {
        self.inner.audit_node(origin).await
    }
    async fn create_audit_node(
        &self,
        origin: &str,
        signing_key: &str,
    ) -> Result<flowgate_store::AuditNode, flowgate_store::StoreError> {
        self.inner.create_audit_node(origin, signing_key).await
    }
    async fn audit_origins(&self) -> Result<Vec<String>, flowgate_store::StoreError> {
        self.inner.audit_origins().await
    }
    async fn append_audit(
        &self,
        origin: &str,
        write: flowgate_store::AuditWrite<'_>,
    ) -> Result<(), flowgate_store::StoreError> {
        self.appends
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let slow = self.slow_ms.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(slow)).await;
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(flowgate_store::StoreError::Corrupt {
                field: "test",
                detail: "store is down".into(),
            });
        }
        self.inner.append_audit(origin, write).await
    }
    async fn audit_size(&self, origin: &str) -> Result<u64, flowgate_store::StoreError> {
        self.inner.audit_size(origin).await
    }
    async fn audit_entries(
        &self,
        origin: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<flowgate_audit::verify::StoredEntry>, flowgate_store::StoreError> {
        self.inner.audit_entries(origin, from, limit).await
    }
    async fn audit_leaf_hashes(
        &self,
        origin: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<flowgate_audit::merkle::Hash>, flowgate_store::StoreError> {
        self.inner.audit_leaf_hashes(origin, start, end).await
    }
    async fn audit_subtree(
        &self,
        origin: &str,
        level: u8,
        index: u64,
    ) -> Result<Option<flowgate_audit::merkle::Hash>, flowgate_store::StoreError> {
        self.inner.audit_subtree(origin, level, index).await
    }
    async fn audit_checkpoints(
        &self,
        origin: &str,
    ) -> Result<Vec<flowgate_store::StoredCheckpoint>, flowgate_store::StoreError> {
        self.inner.audit_checkpoints(origin).await
    }
    async fn list_audit(
        &self,
        origin: &str,
        filter: &AuditFilter,
    ) -> Result<Vec<flowgate_store::AuditRow>, flowgate_store::StoreError> {
        self.inner.list_audit(origin, filter).await
    }
    async fn audit_stats(
        &self,
        origin: &str,
        tenant_id: Option<&str>,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
    ) -> Result<flowgate_store::AuditStats, flowgate_store::StoreError> {
        self.inner
            .audit_stats(origin, tenant_id, from_ms, to_ms)
            .await
    }
    async fn prune_audit(
        &self,
        origin: &str,
        anchor: &flowgate_audit::source::LogAnchor,
    ) -> Result<u64, flowgate_store::StoreError> {
        self.inner.prune_audit(origin, anchor).await
    }
    async fn audit_sink_cursor(
        &self,
        origin: &str,
        sink: &str,
    ) -> Result<Option<flowgate_store::SinkCursor>, flowgate_store::StoreError> {
        self.inner.audit_sink_cursor(origin, sink).await
    }
    async fn save_audit_sink_cursor(
        &self,
        origin: &str,
        sink: &str,
        cursor: flowgate_store::SinkCursor,
    ) -> Result<(), flowgate_store::StoreError> {
        self.inner
            .save_audit_sink_cursor(origin, sink, cursor)
            .await
    }
    async fn audit_checkpoints_between(
        &self,
        origin: &str,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<flowgate_store::StoredCheckpoint>, flowgate_store::StoreError> {
        self.inner
            .audit_checkpoints_between(origin, after, up_to, limit)
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_holds_records_in_order_until_it_returns() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let flaky = FlakyStore::over_sqlite(dir.path(), true, 0).await;
    let log = AuditLog::start(flaky.clone(), settings(64, AuditOnFull::Refuse))
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
    let mut receipts = Vec::new();
    for i in 0..40u64 {
        receipts.push(
            log.submit(record(i, "t1"))
                .unwrap_or_else(|err| panic!("submit {i}: {err}")),
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        flaky.failures.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the writer retried"
    );
    // Nothing is acknowledged while the store is down; the queue keeps filling, then refuses.
    let mut extra = 40u64;
    let refused = loop {
        match log.submit(record(extra, "t1")) {
            Ok(receipt) => receipts.push(receipt),
            Err(err) => break err,
        }
        extra += 1;
        assert!(extra < 10_000, "the bounded queue must fill");
    };
    assert_eq!(refused, AuditError::Full);
    let pending = receipts.remove(0);
    flaky.down.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(pending.durable().await, Ok(0));
    for (position, receipt) in receipts.into_iter().enumerate() {
        assert_eq!(
            receipt.durable().await,
            Ok(position as u64 + 1),
            "order kept"
        );
    }
    log.shutdown().await;
    assert_eq!(verified_size(&log).await, extra);
    let first = flaky
        .list_audit(
            log.origin(),
            &AuditFilter {
                limit: 1,
                before_index: Some(1),
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap_or_default();
    assert!(
        first
            .first()
            .is_some_and(|row| row.record.contains("\"req-0\""))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_journal_mode_a_store_slower_than_an_attempt_gets_longer_attempts() {
    // Each append takes 3 s, longer than an attempt's first bound (1 s) and its second (2 s):
    // the journal's store thread (nothing waits on it) doubles the bound instead of failing
    // forever.
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let flaky = FlakyStore::over_sqlite(dir.path(), false, 3000).await;
    let mut settings = settings(64, AuditOnFull::Refuse);
    settings.spool = Some(flowgate_gateway::audit::SpoolSettings {
        path: dir.path().join("journal").join("audit.spool"),
        max_bytes: 64 << 20,
        acknowledge: flowgate_config::AuditAcknowledge::Journal,
    });
    let log = AuditLog::start(flaky.clone(), settings)
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
    for i in 0..10u64 {
        let receipt = log
            .submit(record(i, "t1"))
            .unwrap_or_else(|err| panic!("submit {i}: {err}"));
        assert_eq!(receipt.durable().await, Ok(i), "journaled at once");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while flaky.inner.audit_size(log.origin()).await.unwrap_or(0) < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow store never took the records ({} attempts)",
            flaky.appends.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        flaky.appends.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "the first two attempts ran out of time"
    );
    flaky.slow_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    log.shutdown().await;
    assert!(verified_size(&log).await >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_origin_resynchronise_instead_of_stalling() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let store = sqlite_store(dir.path()).await;
    let first = AuditLog::start(store.clone(), settings(256, AuditOnFull::Refuse))
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
    let second = AuditLog::start(store.clone(), settings(256, AuditOnFull::Refuse))
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
    let mut indices = Vec::new();
    for i in 0..20u64 {
        let log = if i.is_multiple_of(2) { &first } else { &second };
        let receipt = log
            .submit(record(i, "t1"))
            .unwrap_or_else(|err| panic!("submit: {err}"));
        let index = tokio::time::timeout(std::time::Duration::from_secs(10), receipt.durable())
            .await
            .unwrap_or_else(|_| panic!("record {i} stalled"))
            .unwrap_or_else(|err| panic!("durable: {err}"));
        indices.push(index);
    }
    assert_eq!(indices, (0..20).collect::<Vec<_>>());
    first.shutdown().await;
    second.shutdown().await;
    assert_eq!(verified_size(&first).await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_journal_mode_a_second_writer_on_one_origin_stops_storing_and_keeps_its_records() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let store = sqlite_store(dir.path()).await;
    let journal = |name: &str| AuditSettings {
        spool: Some(SpoolSettings {
            path: dir.path().join(name).join("log.spool"),
            max_bytes: 1 << 20,
            acknowledge: AuditAcknowledge::Journal,
        }),
        ..settings(256, AuditOnFull::Refuse)
    };
    let durable = |log: &AuditLog, i: u64| {
        let receipt = log
            .submit(record(i, "t1"))
            .unwrap_or_else(|err| panic!("submit: {err}"));
        async move {
            receipt
                .durable()
                .await
                .unwrap_or_else(|err| panic!("durable: {err}"))
        }
    };
    let first = AuditLog::start(store.clone(), journal("a"))
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
    let second = AuditLog::start(store.clone(), journal("b"))
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
    assert_eq!(durable(&first, 0).await, 0);
    first.stored().await;
    // The second writer numbered its record 0 too: the store refuses it, and it is neither
    // skipped as "already stored" nor lost.
    assert_eq!(durable(&second, 1).await, 0);
    second.stored().await;
    assert!(
        second.spool().is_some_and(|(bytes, _)| bytes > 0),
        "the second writer keeps its record in its journal"
    );
    assert_eq!(durable(&first, 2).await, 1);
    first.shutdown().await;
    second.shutdown().await;
    let rows = store
        .list_audit(
            "test.example/audit",
            &AuditFilter {
                limit: 100,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap_or_else(|err| panic!("list: {err}"));
    let mut ids: Vec<String> = rows
        .iter()
        .filter_map(|row| AuditRecord::parse(row.record.as_bytes()).ok())
        .filter(|record| record.kind == RecordKind::Completion)
        .map(|record| record.request_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["req-0", "req-2"]);
    assert_eq!(verified_size(&first).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_records_are_stored_alone_or_with_the_next_urgent_one_in_order() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let store = sqlite_store(dir.path()).await;
    let log = AuditLog::start(store.clone(), settings(1024, AuditOnFull::Refuse))
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
    let size = || async {
        store
            .audit_size("test.example/audit")
            .await
            .unwrap_or_else(|err| panic!("size: {err}"))
    };
    // Alone: stored once the linger runs out.
    log.submit_deferred(record(0, "t1"))
        .unwrap_or_else(|err| panic!("submit: {err}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while size().await < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "deferred record never stored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Followed by an urgent record: both stored, in submit order.
    log.submit_deferred(record(1, "t1"))
        .unwrap_or_else(|err| panic!("submit: {err}"));
    let urgent = log
        .submit(record(2, "t1"))
        .unwrap_or_else(|err| panic!("submit: {err}"))
        .durable()
        .await
        .unwrap_or_else(|err| panic!("durable: {err}"));
    assert_eq!(urgent, 2);
    assert_eq!(
        size().await,
        3,
        "the deferred record committed with the urgent one"
    );
    log.shutdown().await;
    let rows = store
        .list_audit(
            "test.example/audit",
            &AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap_or_default();
    let mut ids: Vec<(u64, String)> = rows
        .iter()
        .map(|row| {
            let record = AuditRecord::parse(row.record.as_bytes())
                .unwrap_or_else(|err| panic!("record: {err}"));
            (row.index, record.request_id)
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            (0, "req-0".to_owned()),
            (1, "req-1".to_owned()),
            (2, "req-2".to_owned())
        ]
    );
}

/// Completion records handed over as answers are returned are journaled after the current
/// task yields; a shutdown right behind them still waits for every one. On a current-thread
/// runtime they cannot run before `shutdown` yields, so a shutdown that closed the log first
/// would lose them all.
#[tokio::test(flavor = "current_thread")]
async fn shutdown_waits_for_completion_records_submitted_after_answers() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let store = sqlite_store(dir.path()).await;
    let settings = AuditSettings {
        spool: Some(SpoolSettings {
            path: dir.path().join("journal").join("log.spool"),
            max_bytes: 1 << 20,
            acknowledge: AuditAcknowledge::Journal,
        }),
        ..settings(256, AuditOnFull::Refuse)
    };
    let log = AuditLog::start(store.clone(), settings)
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
    for i in 0..50u64 {
        let request_id = flowgate_types::RequestId::new(format!("req-{i}"));
        log.submit_after_answer(record(i, "t1"), &request_id);
    }
    log.shutdown().await;
    assert_eq!(verified_size(&log).await, 50);
    let rows = store
        .list_audit(
            log.origin(),
            &AuditFilter {
                limit: 100,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap_or_else(|err| panic!("list: {err}"));
    for i in 0..50u64 {
        let id = format!("\"req-{i}\"");
        assert!(
            rows.iter().any(|row| row.record.contains(&id)),
            "{id} missing"
        );
    }
}
