//! Sustained audit append rate on SQLite (file, WAL, synchronous=NORMAL): batches of 1,000
//! realistic records (one rule finding each, a checkpoint every 1,000) stored with
//! `AuditStore::append_audit`, exactly as the gateway's writer group-commits them. Only the
//! store call is timed; the appender work is measured by flowgate-audit's own bench.
//! Target: at least 50,000 records/s. Measured 2026-11-21 17:28 UTC, pinned to one CPU with
//! other builds paused: 68,000 records/s (14.7 ms per 1,000-record batch; anonymous `?`
//! parameters on SQLite, 100 rows per INSERT). Earlier, with numbered parameters and 25 rows:
//! 18,000-30,000 records/s.
//!
//! `sqlite_writer_batch_*` time the same batches through `SqliteAuditAppender` (what the
//! gateway's writer thread uses on SQLite: its own connection, cached prepared statements, one
//! transaction per batch), with 1,000 records per batch (sustained rate) and with 2 (a
//! request's two records committed alone: the per-commit cost at low load).
//!
//! Run: `cargo bench -p flowgate-store --bench audit_append`.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowgate_audit::appender::LogAppender;
use flowgate_audit::checkpoint::CheckpointPolicy;
use flowgate_audit::note::NoteSigner;
use flowgate_audit::record::{
    AuditRecord, Decision, Latencies, RecordKind, RuleFinding, SCHEMA_VERSION, Usage,
};
use flowgate_store::{AuditEntry, AuditStore, AuditWrite, Store, StoredCheckpoint};

const ORIGIN: &str = "bench.flowgate";
const BATCH: u64 = 1_000;

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        schema: SCHEMA_VERSION,
        kind: RecordKind::Completion,
        request_id: format!("01J9Z{i:021}"),
        time_ms: 1_763_700_000_000 + i,
        tenant_id: format!("tenant-{}", i % 16),
        key_id: "key-0001".into(),
        route: "/v1/chat/completions".into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        stream: true,
        decision: Decision::Flag,
        findings: vec![RuleFinding {
            rule_id: "pii.email".into(),
            action: "flag".into(),
            count: 1,
        }],
        request_hash: Some("3f".repeat(32)),
        response_hash: Some("a7".repeat(32)),
        encrypted_content: None,
        usage: Some(Usage {
            input: 120,
            output: 480,
            cached: 0,
            estimated: false,
        }),
        latency: Latencies {
            total_us: Some(812_345),
            upstream_us: Some(812_001),
            overhead_us: Some(344),
            ttft_us: Some(120_000),
        },
        http_status: Some(200),
        gap: None,
    }
}

struct Batch {
    entries: Vec<AuditEntry>,
    checkpoints: Vec<StoredCheckpoint>,
    subtrees: Vec<flowgate_audit::merkle::SubtreeRoot>,
}

fn next_batch(appender: &mut LogAppender, next: &mut u64, size: u64) -> Batch {
    let mut batch = Batch {
        entries: Vec::with_capacity(size as usize),
        checkpoints: Vec::new(),
        subtrees: Vec::new(),
    };
    for _ in 0..size {
        let record = record(*next);
        *next += 1;
        let appended = appender.append(&record, record.time_ms);
        batch.subtrees.extend(appended.subtrees);
        if let Some(checkpoint) = appended.checkpoint {
            batch.checkpoints.push(StoredCheckpoint {
                size: checkpoint.checkpoint.size,
                note: checkpoint.note,
            });
        }
        batch.entries.push(AuditEntry::new(
            appended.index,
            String::from_utf8(appended.canonical).unwrap_or_default(),
            appended.leaf_hash,
            appended.time_ms,
            &record,
        ));
    }
    batch
}

/// Appends `iterations` batches of `size` records with `append`, timing only the appends.
fn timed_appends(
    iterations: u64,
    appender: &mut LogAppender,
    next: &mut u64,
    size: u64,
    mut append: impl FnMut(AuditWrite<'_>) -> Result<(), flowgate_store::StoreError>,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        let batch = next_batch(appender, next, size);
        let started = Instant::now();
        append(AuditWrite {
            entries: &batch.entries,
            subtrees: &batch.subtrees,
            checkpoints: &batch.checkpoints,
            state: None,
        })
        .unwrap_or_else(|err| panic!("append: {err}"));
        total += started.elapsed();
    }
    total
}

fn append_rate(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|err| panic!("runtime: {err}"));
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("tempdir: {err}"));
    let store = runtime.block_on(async {
        let url = format!("sqlite://{}/bench.db", dir.path().display());
        let store = flowgate_store::conformance::migrated_sqlite(&url).await;
        let signer = NoteSigner::generate(ORIGIN).unwrap_or_else(|err| panic!("key: {err}"));
        store
            .create_audit_node(ORIGIN, &signer.to_private_key_string())
            .await
            .unwrap_or_else(|err| panic!("node: {err}"));
        store
    });
    let signer = NoteSigner::generate(ORIGIN).unwrap_or_else(|err| panic!("key: {err}"));
    let policy = CheckpointPolicy {
        every_records: NonZeroU64::new(BATCH).unwrap_or(NonZeroU64::MIN),
        every_ms: NonZeroU64::new(u64::MAX).unwrap_or(NonZeroU64::MIN),
    };
    let mut appender =
        LogAppender::new(ORIGIN, signer, policy, 0).unwrap_or_else(|err| panic!("appender: {err}"));
    let mut next = 0u64;
    let mut group = criterion.benchmark_group("audit_store");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    group.bench_function("sqlite_append_batch_1000", |bencher| {
        bencher.iter_custom(|iterations| {
            timed_appends(iterations, &mut appender, &mut next, BATCH, |write| {
                runtime.block_on(store.append_audit(ORIGIN, write))
            })
        });
    });
    let mut writer = store
        .dedicated_appender()
        .unwrap_or_else(|err| panic!("writer connection: {err}"))
        .unwrap_or_else(|| panic!("SQLite has a dedicated appender"));
    for size in [BATCH, 2] {
        group.throughput(Throughput::Elements(size));
        group.bench_function(format!("sqlite_writer_batch_{size}"), |bencher| {
            bencher.iter_custom(|iterations| {
                timed_appends(iterations, &mut appender, &mut next, size, |write| {
                    writer.append(ORIGIN, write)
                })
            });
        });
    }
    group.finish();
    runtime.block_on(store.close());
}

criterion_group!(benches, append_rate);
criterion_main!(benches);
