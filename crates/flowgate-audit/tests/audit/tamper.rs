//! Tamper detection over in-memory logs: each attack is caught with the right category,
//! exit code and first bad index.

use flowgate_audit::checkpoint::Checkpoint;
use flowgate_audit::merkle::root_of;
use flowgate_audit::verify::{
    EXIT_TAMPERED, EXIT_UNKNOWN_KEY, EXIT_UNVERIFIABLE, StoredEntry, Tamper, Unverifiable,
    VerifiedState, VerifyError, VerifyOptions, VerifyReport, verify_log,
};

use crate::support::{
    Log, ORIGIN, build_log, build_log_with_interval, extend_log, options, record, signer, stranger,
};

fn verify(log: &Log, options: VerifyOptions) -> Result<VerifyReport, VerifyError> {
    verify_log(
        options,
        log.checkpoints.iter().map(Ok::<_, std::io::Error>),
        log.entries.iter().map(Ok::<_, std::io::Error>),
    )
}

fn expect_tamper(result: Result<VerifyReport, VerifyError>) -> (Option<u64>, Tamper) {
    match result {
        Err(error @ VerifyError::Tampered { .. }) => {
            assert_eq!(error.exit_code(), EXIT_TAMPERED);
            let VerifyError::Tampered { index, kind } = error else {
                unreachable!("matched above")
            };
            (index, kind)
        }
        other => panic!("expected tampering, got {other:?}"),
    }
}

/// Changes one letter inside the `request_id` string value of a record.
fn flip_one_byte(entry: &mut StoredEntry) {
    let at = entry
        .record
        .windows(4)
        .position(|w| w == b"req-")
        .expect("record has a request id");
    entry.record[at + 1] ^= 0x20;
}

#[test]
fn intact_log_verifies_and_reports() {
    let (log, appender) = build_log(95);
    let report = verify(&log, options()).expect("intact log verifies");
    assert!(report.ok);
    assert_eq!(report.size, 95);
    assert_eq!(report.records_verified, 95);
    assert_eq!(report.checkpoints_verified, 10);
    assert_eq!(report.last_checkpoint_size, Some(95));
    assert_eq!(report.uncovered_records, 0);
    assert_eq!(report.state.root, appender.root());
    let json = serde_json::to_value(&report).expect("report serialises");
    assert_eq!(json["size"], 95);
    assert_eq!(json["state"]["size"], 95);
}

#[test]
fn one_byte_changed() {
    let (mut log, _) = build_log(95);
    flip_one_byte(&mut log.entries[37]);
    let (index, kind) = expect_tamper(verify(&log, options()));
    assert_eq!(kind, Tamper::CheckpointRootMismatch { size: 40 });
    assert_eq!(
        index,
        Some(30),
        "first index not covered by a good checkpoint"
    );

    // With stored leaf hashes the exact record is named.
    let (mut log, _) = build_log(95);
    for entry in &mut log.entries {
        entry.leaf_hash = Some(flowgate_audit::merkle::leaf_hash(&entry.record));
    }
    flip_one_byte(&mut log.entries[37]);
    let (index, kind) = expect_tamper(verify(&log, options()));
    assert_eq!((index, kind), (Some(37), Tamper::LeafHashMismatch));

    // A change that breaks the JSON is an unparseable record.
    let (mut log, _) = build_log(95);
    log.entries[12].record[0] = b'[';
    let (index, kind) = expect_tamper(verify(&log, options()));
    assert_eq!(index, Some(12));
    assert!(matches!(kind, Tamper::UnparseableRecord { .. }), "{kind:?}");
}

#[test]
fn record_deleted() {
    let (mut log, _) = build_log(95);
    log.entries.remove(50);
    let (index, kind) = expect_tamper(verify(&log, options()));
    assert_eq!(index, Some(50));
    assert_eq!(
        kind,
        Tamper::IndexMismatch {
            expected: 50,
            found: 51
        }
    );

    // Renumbering after the deletion is caught by the next checkpoint.
    for (position, entry) in log.entries.iter_mut().enumerate() {
        entry.index = position as u64;
    }
    let (index, kind) = expect_tamper(verify(&log, options()));
    assert_eq!(index, Some(50));
    assert_eq!(kind, Tamper::CheckpointRootMismatch { size: 60 });
}

#[test]
fn records_reordered() {
    let (mut log, _) = build_log(95);
    log.entries.swap(20, 21);
    let (index, kind) = expect_tamper(verify(&log, options()));
    assert_eq!(index, Some(20));
    assert_eq!(
        kind,
        Tamper::IndexMismatch {
            expected: 20,
            found: 21
        }
    );

    // Swapping the indices back too: the later record's time comes first.
    log.entries[20].index = 20;
    log.entries[21].index = 21;
    let (index, kind) = expect_tamper(verify(&log, options()));
    assert_eq!(index, Some(21));
    assert!(matches!(kind, Tamper::TimeWentBackwards { .. }), "{kind:?}");
}

#[test]
fn record_duplicated() {
    let (mut log, _) = build_log(95);
    let copy = log.entries[10].clone();
    log.entries.insert(11, copy);
    let (index, kind) = expect_tamper(verify(&log, options()));
    assert_eq!(index, Some(10));
    assert_eq!(
        kind,
        Tamper::IndexMismatch {
            expected: 11,
            found: 10
        }
    );
}

#[test]
fn tail_truncated_without_resigning() {
    let (mut log, _) = build_log(95);
    log.entries.truncate(83);
    let (index, kind) = expect_tamper(verify(&log, options()));
    assert_eq!(index, Some(83));
    assert_eq!(
        kind,
        Tamper::CheckpointBeyondLog {
            size: 90,
            log_size: 83
        }
    );
}

/// The operator holds the key: truncates the tail, drops the later checkpoints and signs a
/// fresh one. The log is self-consistent, so only the auditor's saved state catches it.
#[test]
fn tail_truncated_and_resigned_against_saved_state() {
    let (log, _) = build_log(95);
    let saved: VerifiedState = verify(&log, options()).expect("intact").state;

    let mut forged = log;
    forged.entries.truncate(83);
    forged.checkpoints.retain(|note| {
        flowgate_audit::checkpoint::open(note, &[signer().verifier()])
            .is_ok_and(|c| c.checkpoint.size <= 83)
    });
    let leaves: Vec<_> = forged
        .entries
        .iter()
        .map(|e| flowgate_audit::merkle::leaf_hash(&e.record))
        .collect();
    let resigned = Checkpoint {
        origin: ORIGIN.into(),
        size: 83,
        root: root_of(&leaves),
        extensions: vec![],
    }
    .sign(&signer())
    .expect("signable");
    forged.checkpoints.push(resigned.note);

    verify(&forged, options()).expect("without a saved state the forgery is self-consistent");

    let mut with_state = options();
    with_state.saved = Some(saved.clone());
    let (index, kind) = expect_tamper(verify(&forged, with_state));
    assert_eq!(
        kind,
        Tamper::Rollback {
            saved_size: 95,
            log_size: 83
        }
    );
    assert_eq!(index, Some(83));

    // Rewriting the tail to a longer log with other records is caught at the saved size.
    let (mut rewritten, mut appender) = build_log(83);
    rewritten.checkpoints.clear();
    extend_log(&mut rewritten, &mut appender, 1_000..1_020);
    for (position, entry) in rewritten.entries.iter_mut().enumerate() {
        entry.index = position as u64;
    }
    let mut with_state = options();
    with_state.saved = Some(saved);
    let (_, kind) = expect_tamper(verify(&rewritten, with_state));
    assert!(
        matches!(
            kind,
            Tamper::SavedRootMismatch { size: 95 } | Tamper::TimeWentBackwards { .. }
        ),
        "{kind:?}"
    );
}

#[test]
fn checkpoint_from_unknown_key() {
    let (mut log, _) = build_log(95);
    let leaves: Vec<_> = log
        .entries
        .iter()
        .map(|e| flowgate_audit::merkle::leaf_hash(&e.record))
        .collect();
    let foreign = Checkpoint {
        origin: ORIGIN.into(),
        size: 95,
        root: root_of(&leaves),
        extensions: vec![],
    }
    .sign(&stranger())
    .expect("signable");
    *log.checkpoints.last_mut().expect("has checkpoints") = foreign.note;
    let error = verify(&log, options()).expect_err("unknown key");
    assert_eq!(error.exit_code(), EXIT_UNKNOWN_KEY);
    assert!(matches!(error, VerifyError::UnknownKey { .. }));
    let report = error.report();
    assert_eq!(report.category, "unknown_key");
    assert_eq!(report.exit_code, EXIT_UNKNOWN_KEY);
}

#[test]
fn corrupted_signature_and_forked_checkpoint() {
    let (mut log, _) = build_log(95);
    let note = &mut log.checkpoints[3];
    let at = note.rfind(' ').expect("signature line") + 10;
    let mut bytes = note.clone().into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    *note = String::from_utf8(bytes).expect("ASCII");
    let (_, kind) = expect_tamper(verify(&log, options()));
    assert!(matches!(kind, Tamper::BadSignature { .. }), "{kind:?}");

    let (mut log, _) = build_log(95);
    let fork = Checkpoint {
        origin: ORIGIN.into(),
        size: 50,
        root: [7; 32],
        extensions: vec![],
    }
    .sign(&signer())
    .expect("signable");
    log.checkpoints.push(fork.note);
    let (_, kind) = expect_tamper(verify(&log, options()));
    assert_eq!(kind, Tamper::ForkedCheckpoints { size: 50 });
}

#[test]
fn resume_from_saved_state_reads_only_new_records() {
    let (mut log, mut appender) = build_log(95);
    let saved = verify(&log, options()).expect("intact").state;
    let json = serde_json::to_string(&saved).expect("state serialises");
    let saved: VerifiedState = serde_json::from_str(&json).expect("state parses back");
    extend_log(&mut log, &mut appender, 95..130);
    let tail = Log {
        entries: log.entries[95..].to_vec(),
        checkpoints: log.checkpoints.clone(),
        subtrees: Vec::new(),
    };
    let mut resume = options();
    resume.saved = Some(saved);
    resume.resume = true;
    let report = verify(&tail, resume).expect("new records verify");
    assert_eq!(report.start_index, 95);
    assert_eq!(report.records_verified, 35);
    assert_eq!(report.size, 130);
    assert_eq!(report.checkpoints_skipped, 9);
    assert_eq!(report.state.root, appender.root());
}

#[test]
fn unverifiable_cases_have_their_own_exit_code() {
    let (mut log, _) = build_log(95);
    log.checkpoints.pop();
    let mut strict = options();
    strict.require_full_coverage = true;
    let error = verify(&log, strict).expect_err("tail not signed");
    assert_eq!(error.exit_code(), EXIT_UNVERIFIABLE);
    assert!(matches!(
        error,
        VerifyError::Unverifiable {
            index: Some(90),
            kind: Unverifiable::NotCovered { records: 5 }
        }
    ));
    let lenient = verify(&log, options()).expect("lenient by default");
    assert_eq!(lenient.uncovered_records, 5);

    let mut newer = record(0);
    newer.schema = 99;
    let log = Log {
        entries: vec![StoredEntry {
            index: 0,
            record: newer.to_canonical(),
            leaf_hash: None,
        }],
        checkpoints: vec![],
        subtrees: vec![],
    };
    let error = verify(&log, options()).expect_err("newer schema");
    assert_eq!(error.exit_code(), EXIT_UNVERIFIABLE);

    let error = verify(&log, VerifyOptions::new(ORIGIN, vec![])).expect_err("no keys");
    assert_eq!(error.exit_code(), EXIT_UNVERIFIABLE);
}

#[test]
fn store_errors_map_to_io() {
    let entries = vec![Err::<StoredEntry, _>(std::io::Error::other("disk gone"))];
    let error = verify_log(
        options(),
        Vec::<Result<String, std::io::Error>>::new(),
        entries,
    )
    .expect_err("store failed");
    assert_eq!(error.exit_code(), flowgate_audit::verify::EXIT_IO);
    assert!(error.report().message.contains("disk gone"));
}

/// Large batches are checked on several threads; the verdict and first bad index must be
/// the same as checking one entry at a time.
#[test]
fn parallel_batches_report_the_same_first_error() {
    let (intact, _) = build_log_with_interval(20_000, 1_000);
    let mut cases: Vec<(&str, Log)> = vec![("intact", intact.clone())];
    let mut flipped = intact.clone();
    flip_one_byte(&mut flipped.entries[15_123]);
    cases.push(("byte flipped", flipped));
    let mut stored = intact.clone();
    for entry in &mut stored.entries {
        entry.leaf_hash = Some(flowgate_audit::merkle::leaf_hash(&entry.record));
    }
    flip_one_byte(&mut stored.entries[15_123]);
    cases.push(("stored hash", stored));
    let mut deleted = intact.clone();
    deleted.entries.remove(12_000);
    cases.push(("deleted", deleted));
    let mut swapped = intact.clone();
    swapped.entries.swap(9_000, 9_001);
    swapped.entries[9_000].index = 9_000;
    swapped.entries[9_001].index = 9_001;
    cases.push(("swapped", swapped));
    let mut two_faults = intact;
    two_faults.entries[3_000].record[0] = b'[';
    two_faults.entries.remove(19_000);
    cases.push(("two faults", two_faults));

    for (name, log) in cases {
        let mut sequential = options();
        sequential.parallelism = 1;
        let mut parallel = options();
        parallel.parallelism = 3;
        let expected = verify(&log, sequential).map_err(|error| error.to_string());
        let got = verify(&log, parallel).map_err(|error| error.to_string());
        assert_eq!(got, expected, "{name}");
        assert_eq!(name == "intact", expected.is_ok(), "{name}: {expected:?}");
    }
}
