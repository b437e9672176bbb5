//! The async store drivers against an in-memory `AuditSource`, polled without a runtime.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use flowgate_audit::checkpoint;
use flowgate_audit::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use flowgate_audit::source::{AuditSource, prove_consistency, prove_inclusion, verify_source};
use flowgate_audit::verify::{StoredEntry, VerifyError};

use crate::support::{Log, build_log, options, signer};

struct MemoryStore {
    log: Log,
}

impl AuditSource for MemoryStore {
    type Error = std::io::Error;

    async fn record_count(&self) -> Result<u64, Self::Error> {
        Ok(self.log.entries.len() as u64)
    }

    async fn read_entries(
        &self,
        from: u64,
        limit: usize,
        out: &mut Vec<StoredEntry>,
    ) -> Result<(), Self::Error> {
        out.extend(
            self.log
                .entries
                .iter()
                .skip(from as usize)
                .take(limit)
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
        out.extend(
            self.log.entries[start as usize..end as usize]
                .iter()
                .map(|e| leaf_hash(&e.record)),
        );
        Ok(())
    }

    async fn read_checkpoints(&self, out: &mut Vec<String>) -> Result<(), Self::Error> {
        out.extend(self.log.checkpoints.iter().cloned());
        Ok(())
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
    let store = MemoryStore { log };
    for page in [1, 7, 95, 1000] {
        let report = run(verify_source(&store, options(), page)).expect("intact");
        assert_eq!(report.size, 95, "page size {page}");
    }
    let mut broken = MemoryStore { log: store.log };
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
    let store = MemoryStore { log };
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
    let store = MemoryStore { log };
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
