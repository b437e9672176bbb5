//! Builds signed in-memory logs for the tests.

use std::num::NonZeroU64;

use flowgate_audit::appender::LogAppender;
use flowgate_audit::checkpoint::CheckpointPolicy;
use flowgate_audit::note::{NoteSigner, NoteVerifier};
use flowgate_audit::record::{
    AuditRecord, Decision, Latencies, RecordKind, RuleFinding, SCHEMA_VERSION, Usage,
};
use flowgate_audit::verify::{StoredEntry, VerifyOptions};

pub const ORIGIN: &str = "gw-test.flowgate";

pub fn signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, &[11; 32]).expect("valid key name")
}

pub fn stranger() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, &[12; 32]).expect("valid key name")
}

pub fn record(i: u64) -> AuditRecord {
    AuditRecord {
        schema: SCHEMA_VERSION,
        kind: if i.is_multiple_of(2) {
            RecordKind::Request
        } else {
            RecordKind::Completion
        },
        request_id: format!("req-{:06}", i / 2),
        time_ms: 1_763_700_000_000 + i * 3,
        tenant_id: "acme".into(),
        key_id: "key-1".into(),
        route: "/v1/chat/completions".into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        stream: i.is_multiple_of(3),
        decision: if i.is_multiple_of(7) {
            Decision::Block
        } else {
            Decision::Allow
        },
        findings: if i.is_multiple_of(7) {
            vec![RuleFinding {
                rule_id: "secrets.aws".into(),
                action: "block".into(),
                count: 1,
            }]
        } else {
            Vec::new()
        },
        request_hash: Some(format!("{:064x}", i)),
        response_hash: (i % 2 == 1).then(|| format!("{:064x}", i + 1)),
        encrypted_content: None,
        usage: (i % 2 == 1).then_some(Usage {
            input: 10 + i,
            output: 20,
            cached: 0,
            estimated: false,
        }),
        latency: Latencies {
            total_us: Some(900 + i),
            upstream_us: Some(800),
            overhead_us: Some(100 + i),
            ttft_us: None,
        },
        http_status: (i % 2 == 1).then_some(200),
        gap: None,
    }
}

/// A log as a store would hold it.
#[derive(Clone)]
pub struct Log {
    pub entries: Vec<StoredEntry>,
    pub checkpoints: Vec<String>,
    pub subtrees: Vec<flowgate_audit::merkle::SubtreeRoot>,
}

/// Appends `count` records (checkpoint every 10 records) and a final checkpoint.
pub fn build_log(count: u64) -> (Log, LogAppender) {
    build_log_with_interval(count, 10)
}

/// Appends `count` records with a checkpoint every `interval` records and a final one.
pub fn build_log_with_interval(count: u64, interval: u64) -> (Log, LogAppender) {
    let policy = CheckpointPolicy {
        every_records: NonZeroU64::new(interval).expect("non-zero"),
        every_ms: NonZeroU64::new(3_600_000).expect("non-zero"),
    };
    let mut appender = LogAppender::new(ORIGIN, signer(), policy, 0).expect("valid origin");
    let mut log = Log {
        entries: Vec::new(),
        checkpoints: Vec::new(),
        subtrees: Vec::new(),
    };
    extend_log(&mut log, &mut appender, 0..count);
    (log, appender)
}

pub fn extend_log(log: &mut Log, appender: &mut LogAppender, range: std::ops::Range<u64>) {
    for i in range {
        let appended = appender.append(&record(i), 1);
        log.entries.push(StoredEntry {
            index: appended.index,
            record: appended.canonical,
            leaf_hash: None,
        });
        log.checkpoints.extend(appended.checkpoint.map(|c| c.note));
        log.subtrees.extend(appended.subtrees);
    }
    log.checkpoints
        .extend(appender.checkpoint_now(2).map(|c| c.note));
}

pub fn verifier_key() -> NoteVerifier {
    signer().verifier()
}

pub fn options() -> VerifyOptions {
    VerifyOptions::new(ORIGIN, vec![verifier_key()])
}
