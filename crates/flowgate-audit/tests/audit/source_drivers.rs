//! The async store drivers against an in-memory `AuditSource`, polled without a runtime.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use flowgate_audit::checkpoint;
use flowgate_audit::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use flowgate_audit::source::{
    AuditSource, LogAnchor, anchor_at, prove_consistency, prove_inclusion, verify_source,
    write_export,
};
use flowgate_audit::verify::{StoredEntry, VerifyError};

use crate::support::{Log, build_log, build_log_with_interval, options, signer};

struct MemoryStore {
    log: Log,
    anchor: Option<LogAnchor>,
    /// Serve `log.subtrees` from `read_subtree_root`.
    cache_subtrees: bool,
    /// Leaf hashes handed out, to show what the subtree cache saves.
    leaf_reads: AtomicU64,
}

impl MemoryStore {
    fn new(log: Log) -> Self {
        Self {
            log,
            anchor: None,
            cache_subtrees: false,
            leaf_reads: AtomicU64::new(0),
        }
    }

    fn first(&self) -> u64 {
        self.anchor.as_ref().map_or(0, |anchor| anchor.size)
    }

    fn stored(&self, start: u64, end: u64) -> &[StoredEntry] {
        let first = self.first();
        let len = self.log.entries.len();
        let start = (start.saturating_sub(first) as usize).min(len);
        let end = (end.saturating_sub(first) as usize).min(len);
        &self.log.entries[start..end.max(start)]
    }
}

impl AuditSource for MemoryStore {
    type Error = std::io::Error;

    async fn record_count(&self) -> Result<u64, Self::Error> {
        Ok(self.first() + self.log.entries.len() as u64)
    }

    async fn read_entries(
        &self,
        from: u64,
        limit: usize,
        out: &mut Vec<StoredEntry>,
    ) -> Result<(), Self::Error> {
        out.extend(
            self.stored(from, from.saturating_add(limit as u64))
                .iter()
                .cloned(),
        );
        Ok(())
    }

    async fn read_leaf_hashes(
        &self,
        start: u64,
        end: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), Self::Error> {
        let stored = self.stored(start, end);
        self.leaf_reads
            .fetch_add(stored.len() as u64, Ordering::Relaxed);
        out.extend(stored.iter().map(|e| leaf_hash(&e.record)));
        Ok(())
    }

    async fn read_subtree_root(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error> {
        Ok(self
            .cache_subtrees
            .then(|| {
                self.log
                    .subtrees
                    .iter()
                    .find(|s| s.level == level && s.index == index)
                    .map(|s| s.hash)
            })
            .flatten())
    }

    async fn read_checkpoints(&self, out: &mut Vec<String>) -> Result<(), Self::Error> {
        out.extend(self.log.checkpoints.iter().cloned());
        Ok(())
    }

    async fn read_anchor(&self) -> Result<Option<LogAnchor>, Self::Error> {
        Ok(self.anchor.clone())
    }
}

/// Polls a future that never waits (the in-memory store is always ready).
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}

#[test]
fn verify_source_pages_through_the_store() {
    let (log, _) = build_log(95);
    let store = MemoryStore::new(log);
    for page in [1, 7, 95, 1000] {
        let report = run(verify_source(&store, options(), page)).expect("intact");
        assert_eq!(report.size, 95, "page size {page}");
    }
    let mut broken = MemoryStore::new(store.log);
    broken.log.entries[5].record[3] ^= 1;
    let error = run(verify_source(&broken, options(), 10)).expect_err("tampered");
    assert!(matches!(error, VerifyError::Tampered { .. }));
}

#[test]
fn proofs_from_the_store_verify_against_signed_checkpoints() {
    let (log, _) = build_log(95);
    let verifiers = [signer().verifier()];
    let checkpoints: Vec<_> = log
        .checkpoints
        .iter()
        .map(|note| {
            checkpoint::open(note, &verifiers)
                .expect("signed")
                .checkpoint
        })
        .collect();
    let store = MemoryStore::new(log);
    let latest = checkpoints.last().expect("has checkpoints");
    for index in [0, 1, 42, 94] {
        let proof = run(prove_inclusion(&store, index, latest.size)).expect("provable");
        let leaf = leaf_hash(&store.log.entries[index as usize].record);
        assert_eq!(
            verify_inclusion(index, latest.size, &leaf, &proof, &latest.root),
            Ok(())
        );
    }
    let older = &checkpoints[2];
    let proof = run(prove_consistency(&store, older.size, latest.size)).expect("provable");
    assert_eq!(
        verify_consistency(older.size, latest.size, &proof, &older.root, &latest.root),
        Ok(())
    );
    assert!(run(prove_inclusion(&store, 5, 200)).is_err());
}

#[test]
fn inclusion_bundle_round_trips_and_detects_tampering() {
    use flowgate_audit::proof::InclusionBundle;
    use flowgate_audit::verify::{EXIT_TAMPERED, EXIT_UNKNOWN_KEY};

    let (log, _) = build_log(95);
    let note = log.checkpoints.last().expect("has checkpoints").clone();
    let store = MemoryStore::new(log);
    let index = 42;
    let proof = run(prove_inclusion(&store, index, 95)).expect("provable");
    let bundle = InclusionBundle::new(
        crate::support::ORIGIN,
        index,
        &store.log.entries[index as usize].record,
        95,
        proof,
        &note,
    )
    .expect("record is JSON");
    let json = serde_json::to_string_pretty(&bundle).expect("serialises");
    let parsed: InclusionBundle = serde_json::from_str(&json).expect("parses back");
    let record = parsed.verify(&[signer().verifier()]).expect("proof holds");
    assert_eq!(record.request_id, "req-000021");

    let forged: InclusionBundle =
        serde_json::from_str(&json.replace("req-000021", "req-000099")).expect("still JSON");
    let error = forged
        .verify(&[signer().verifier()])
        .expect_err("record changed");
    assert_eq!(error.exit_code(), EXIT_TAMPERED);
    assert_eq!(error.first_bad_index(), Some(42));

    let mut wrong_index = parsed.clone();
    wrong_index.index = 43;
    assert_eq!(
        wrong_index
            .verify(&[signer().verifier()])
            .map_err(|e| e.exit_code())
            .err(),
        Some(EXIT_TAMPERED)
    );
    let error = parsed
        .verify(&[crate::support::stranger().verifier()])
        .expect_err("unknown key");
    assert_eq!(error.exit_code(), EXIT_UNKNOWN_KEY);
}

/// Retention: prune below a checkpoint size, keep the anchor and the checkpoint there; what
/// remains still verifies, and a forged anchor does not.
#[test]
fn pruned_store_still_verifies() {
    let (log, _) = build_log(95);
    let mut store = MemoryStore::new(log);
    let anchor = run(anchor_at(&store, 40)).expect("anchor");
    store.log.entries.drain(..40);
    store.log.checkpoints.drain(..3);
    store.anchor = Some(anchor.clone());
    let report = run(verify_source(&store, options(), 16)).expect("pruned log verifies");
    assert_eq!(
        (report.start_index, report.records_verified, report.size),
        (40, 55, 95)
    );
    assert_eq!(report.checkpoints_verified, 7, "40, 50, ..., 90 and 95");

    // A second prune builds on the first anchor.
    let second = run(anchor_at(&store, 70)).expect("anchor");
    assert_eq!(second.size, 70);

    let mut forged = anchor;
    forged.frontier[0] = [3; 32];
    store.anchor = Some(forged);
    let error = run(verify_source(&store, options(), 16)).expect_err("forged anchor");
    assert_eq!(error.exit_code(), flowgate_audit::verify::EXIT_TAMPERED);
}

#[test]
fn export_from_store_verifies_as_a_file() {
    let (log, _) = build_log(95);
    let store = MemoryStore::new(log);
    let verifiers = [signer().verifier()];
    for (from, to, records, checkpoints) in [(0, 95, 95, 10), (30, 60, 30, 4), (95, 95, 0, 1)] {
        let bytes = run(write_export(
            &store,
            crate::support::ORIGIN,
            &verifiers,
            from,
            to,
            Vec::new(),
        ))
        .expect("export");
        let report = flowgate_audit::export::verify_export(bytes.as_slice(), options())
            .expect("export verifies");
        assert_eq!(
            (
                report.start_index,
                report.records_verified,
                report.checkpoints_verified,
                report.uncovered_records
            ),
            (from, records, checkpoints, 0),
            "{from}..{to}"
        );
    }
    assert!(
        run(write_export(
            &store,
            crate::support::ORIGIN,
            &verifiers,
            10,
            200,
            Vec::new()
        ))
        .is_err()
    );
}

#[test]
fn appender_state_rebuilt_from_the_store_continues_the_log() {
    let (log, appender) = build_log(95);
    let store = MemoryStore::new(log);
    let expected = appender.state();
    let (_, partial_appender) = build_log(60);
    for hint in [None, Some(partial_appender.state())] {
        let state = run(flowgate_audit::source::rebuild_appender_state(
            &store,
            &[signer().verifier()],
            hint,
            5,
        ))
        .expect("rebuilt");
        assert_eq!(state.size, expected.size);
        assert_eq!(state.frontier, expected.frontier);
        assert_eq!(state.last_time_ms, expected.last_time_ms);
        assert_eq!(state.last_checkpoint_size, 95);
        assert_eq!(state.last_checkpoint_ms, 5);
    }
    // The hint is trusted, not re-read: a wrong one shows in the result (verify catches it).
    let mut wrong = partial_appender.state();
    wrong.frontier[0] = [1; 32];
    let state = run(flowgate_audit::source::rebuild_appender_state(
        &store,
        &[signer().verifier()],
        Some(wrong),
        5,
    ))
    .expect("rebuilt");
    assert_ne!(state.frontier, expected.frontier);
}

#[test]
fn cached_subtree_roots_make_proofs_cheap() {
    let (log, appender) = build_log_with_interval(3_000, 1_000);
    assert!(log.subtrees.iter().all(|s| s.level >= 8));
    assert_eq!(
        log.subtrees.len(),
        11 + 5 + 2 + 1,
        "levels 8, 9, 10, 11 below 3000"
    );
    let root = appender.root();
    let mut plain = MemoryStore::new(log);
    let mut without = Vec::new();
    for index in [0, 1_234, 2_999] {
        without.push(run(prove_inclusion(&plain, index, 3_000)).expect("provable"));
    }
    let consistency_without = run(prove_consistency(&plain, 1_500, 3_000)).expect("provable");
    let uncached_reads = plain.leaf_reads.swap(0, Ordering::Relaxed);
    plain.cache_subtrees = true;
    for (position, index) in [0u64, 1_234, 2_999].into_iter().enumerate() {
        let proof = run(prove_inclusion(&plain, index, 3_000)).expect("provable");
        assert_eq!(proof, without[position]);
        let leaf = leaf_hash(&plain.log.entries[index as usize].record);
        assert_eq!(verify_inclusion(index, 3_000, &leaf, &proof, &root), Ok(()));
    }
    let consistency = run(prove_consistency(&plain, 1_500, 3_000)).expect("provable");
    assert_eq!(consistency, consistency_without);
    let cached_reads = plain.leaf_reads.load(Ordering::Relaxed);
    assert!(
        cached_reads * 5 < uncached_reads,
        "cached {cached_reads} vs uncached {uncached_reads} leaf reads"
    );
}
