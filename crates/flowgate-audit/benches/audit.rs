//! Benchmarks of the audit log core: pure appender throughput (records/s, including
//! canonical encoding, leaf hashing, frontier update and periodic checkpoint signing) and
//! verifier throughput over an in-memory log (target: at least 1,000,000 records/s).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-audit cargo bench -p flowgate-audit --bench audit`.

use std::hint::black_box;
use std::num::NonZeroU64;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowgate_audit::appender::LogAppender;
use flowgate_audit::checkpoint::CheckpointPolicy;
use flowgate_audit::note::NoteSigner;
use flowgate_audit::record::{
    AuditRecord, Decision, Latencies, RecordKind, RuleFinding, SCHEMA_VERSION, Usage,
};
use flowgate_audit::verify::{StoredEntry, VerifyOptions, verify_log};

const ORIGIN: &str = "bench.flowgate";

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        schema: SCHEMA_VERSION,
        kind: RecordKind::Completion,
        request_id: format!("01J9Z{i:021}"),
        time_ms: 1_763_700_000_000 + i,
        tenant_id: "tenant-acme".into(),
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

fn policy() -> CheckpointPolicy {
    CheckpointPolicy {
        every_records: NonZeroU64::new(1_000).unwrap_or(NonZeroU64::MIN),
        every_ms: NonZeroU64::new(10_000).unwrap_or(NonZeroU64::MIN),
    }
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, &[1; 32]).unwrap_or_else(|error| panic!("{error}"))
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    let sample = record(1);
    let mut appender =
        LogAppender::new(ORIGIN, signer(), policy(), 0).unwrap_or_else(|error| panic!("{error}"));
    group.bench_function("record", |b| {
        b.iter(|| black_box(appender.append(black_box(&sample), 0)));
    });
    group.finish();
}

fn bench_verify(c: &mut Criterion) {
    const RECORDS: u64 = 100_000;
    let mut appender =
        LogAppender::new(ORIGIN, signer(), policy(), 0).unwrap_or_else(|error| panic!("{error}"));
    let mut entries = Vec::with_capacity(RECORDS as usize);
    let mut checkpoints = Vec::new();
    for i in 0..RECORDS {
        let appended = appender.append(&record(i), 0);
        entries.push(StoredEntry {
            index: appended.index,
            record: appended.canonical,
            leaf_hash: None,
        });
        checkpoints.extend(appended.checkpoint.map(|c| c.note));
    }
    let options = VerifyOptions::new(ORIGIN, vec![appender.verifier()]);
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(20);
    group.bench_function("in_memory_100k", |b| {
        b.iter(|| {
            let report = verify_log(
                options.clone(),
                checkpoints.iter().map(Ok::<_, std::io::Error>),
                entries.iter().map(Ok::<_, std::io::Error>),
            )
            .unwrap_or_else(|error| panic!("{error}"));
            black_box(report)
        });
    });
    let mut one_thread = options.clone();
    one_thread.parallelism = 1;
    group.bench_function("in_memory_100k_one_thread", |b| {
        b.iter(|| {
            let report = verify_log(
                one_thread.clone(),
                checkpoints.iter().map(Ok::<_, std::io::Error>),
                entries.iter().map(Ok::<_, std::io::Error>),
            )
            .unwrap_or_else(|error| panic!("{error}"));
            black_box(report)
        });
    });
    group.finish();
}

criterion_group!(benches, bench_append, bench_verify);
criterion_main!(benches);
