//! Tamper detection on real export files: written with `ExportWriter`, altered on disk, and
//! verified with nothing but the public key string.

use std::io::{BufReader, Write as _};
use std::path::Path;

use flowgate_audit::checkpoint::{self, Checkpoint};
use flowgate_audit::export::{ExportHeader, ExportWriter, verify_export};
use flowgate_audit::merkle::{Frontier, leaf_hash, root_of};
use flowgate_audit::note::NoteVerifier;
use flowgate_audit::verify::{
    EXIT_IO, EXIT_TAMPERED, EXIT_UNKNOWN_KEY, VerifiedState, VerifyError, VerifyOptions,
    VerifyReport,
};

use crate::support::{Log, ORIGIN, build_log, signer, stranger};

/// Writes `log` from index `from` on, placing each checkpoint after its last record.
fn write_export(path: &Path, log: &Log, from: u64) {
    let verifiers = [signer().verifier()];
    let mut by_size: Vec<(u64, &str)> = log
        .checkpoints
        .iter()
        .map(|note| {
            let size = checkpoint::open(note, &verifiers)
                .map(|c| c.checkpoint.size)
                .unwrap_or(u64::MAX);
            (size, note.as_str())
        })
        .filter(|(size, _)| *size >= from)
        .collect();
    by_size.sort_by_key(|(size, _)| *size);
    let mut frontier = Frontier::new();
    for entry in &log.entries[..from as usize] {
        frontier.push(leaf_hash(&entry.record));
    }
    let header = ExportHeader {
        origin: ORIGIN.into(),
        start: from,
        frontier: frontier.hashes().to_vec(),
        last_time_ms: if from == 0 {
            0
        } else {
            flowgate_audit::record::AuditRecord::parse(&log.entries[from as usize - 1].record)
                .expect("parses")
                .time_ms
        },
    };
    let file = std::fs::File::create(path).expect("temp file");
    let mut writer = ExportWriter::new(std::io::BufWriter::new(file), &header).expect("header");
    let mut pending = by_size.into_iter().peekable();
    while let Some((_, note)) = pending.next_if(|(size, _)| *size == from) {
        writer.checkpoint(note).expect("write");
    }
    for entry in &log.entries[from as usize..] {
        writer.record(entry.index, &entry.record).expect("write");
        while let Some((_, note)) = pending.next_if(|(size, _)| *size == entry.index + 1) {
            writer.checkpoint(note).expect("write");
        }
    }
    writer.finish().expect("flush");
}

/// Verifies like `flowgate audit verify --export FILE --pubkey KEY` would.
fn verify_file(
    path: &Path,
    pubkey: &str,
    saved: Option<VerifiedState>,
) -> Result<VerifyReport, VerifyError> {
    let key = NoteVerifier::parse(pubkey).expect("public key parses");
    let mut options = VerifyOptions::new(ORIGIN, vec![key]);
    options.saved = saved;
    let file = std::fs::File::open(path).map_err(VerifyError::io)?;
    verify_export(BufReader::new(file), options)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("readable")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut file = std::fs::File::create(path).expect("writable");
    for line in lines {
        writeln!(file, "{line}").expect("write");
    }
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.jsonl");
    let (log, _) = build_log(95);
    write_export(&path, &log, 0);
    (dir, path, signer().verifier().to_string())
}

fn assert_tampered(result: Result<VerifyReport, VerifyError>) -> VerifyError {
    let error = result.expect_err("tampering must be detected");
    assert_eq!(error.exit_code(), EXIT_TAMPERED, "{error}");
    error
}

fn record_line(lines: &[String], index: u64) -> usize {
    let needle = format!("{{\"type\":\"record\",\"index\":{index},");
    lines
        .iter()
        .position(|l| l.starts_with(&needle))
        .expect("record line present")
}

#[test]
fn intact_export_verifies_with_only_the_public_key() {
    let (_dir, path, pubkey) = setup();
    let report = verify_file(&path, &pubkey, None).expect("intact");
    assert_eq!(
        (
            report.size,
            report.checkpoints_verified,
            report.uncovered_records
        ),
        (95, 10, 0)
    );
    let all = lines(&path);
    assert!(all[0].starts_with("{\"type\":\"header\""));
    assert_eq!(all.len(), 1 + 95 + 10);
}

#[test]
fn export_from_the_middle_verifies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("part.jsonl");
    let (log, _) = build_log(95);
    write_export(&path, &log, 40);
    let report =
        verify_file(&path, &signer().verifier().to_string(), None).expect("partial export");
    assert_eq!((report.start_index, report.records_verified), (40, 55));
    assert_eq!(report.checkpoints_verified, 7, "40 (at start) and 50..=95");

    // A forged frontier in the header is caught by the first checkpoint after it.
    let mut all = lines(&path);
    let mut header: serde_json::Value = serde_json::from_str(&all[0]).expect("json");
    header["frontier"][0] = serde_json::Value::String(base64_of(&[9; 32]));
    all[0] = header.to_string();
    write_lines(&path, &all);
    assert_tampered(verify_file(&path, &signer().verifier().to_string(), None));
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn one_byte_changed_in_file() {
    let (_dir, path, pubkey) = setup();
    let mut bytes = std::fs::read(&path).expect("readable");
    let needle = b"{\"type\":\"record\",\"index\":42,";
    let line_start = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("record 42");
    let at = line_start
        + bytes[line_start..]
            .windows(4)
            .position(|w| w == b"req-")
            .expect("request id")
        + 6;
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&path, bytes).expect("writable");
    let error = assert_tampered(verify_file(&path, &pubkey, None));
    assert_eq!(error.first_bad_index(), Some(40));
}

#[test]
fn record_deleted_from_file() {
    let (_dir, path, pubkey) = setup();
    let mut all = lines(&path);
    all.remove(record_line(&all, 30));
    write_lines(&path, &all);
    let error = assert_tampered(verify_file(&path, &pubkey, None));
    assert_eq!(error.first_bad_index(), Some(30));
}

#[test]
fn records_reordered_in_file() {
    let (_dir, path, pubkey) = setup();
    let mut all = lines(&path);
    let (a, b) = (record_line(&all, 61), record_line(&all, 62));
    all.swap(a, b);
    write_lines(&path, &all);
    let error = assert_tampered(verify_file(&path, &pubkey, None));
    assert_eq!(error.first_bad_index(), Some(61));
}

#[test]
fn record_duplicated_in_file() {
    let (_dir, path, pubkey) = setup();
    let mut all = lines(&path);
    let at = record_line(&all, 70);
    let copy = all[at].clone();
    all.insert(at + 1, copy);
    write_lines(&path, &all);
    let error = assert_tampered(verify_file(&path, &pubkey, None));
    assert_eq!(error.first_bad_index(), Some(70));
}

#[test]
fn tail_truncated_and_resigned_against_saved_state() {
    let (_dir, path, pubkey) = setup();
    let saved = verify_file(&path, &pubkey, None).expect("intact").state;

    let mut all = lines(&path);
    all.truncate(record_line(&all, 80));
    all.retain(|line| {
        !line.contains("\"type\":\"checkpoint\"") || {
            let value: serde_json::Value = serde_json::from_str(line).expect("json");
            let note = value["note"].as_str().expect("note");
            checkpoint::open(note, &[signer().verifier()]).is_ok_and(|c| c.checkpoint.size <= 80)
        }
    });
    let (log, _) = build_log(80);
    let leaves: Vec<_> = log.entries.iter().map(|e| leaf_hash(&e.record)).collect();
    let resigned = Checkpoint {
        origin: ORIGIN.into(),
        size: 80,
        root: root_of(&leaves),
        extensions: vec![],
    }
    .sign(&signer())
    .expect("signable");
    let mut line = String::from("{\"type\":\"checkpoint\",\"note\":");
    line.push_str(&serde_json::to_string(&resigned.note).expect("string"));
    line.push('}');
    all.push(line);
    write_lines(&path, &all);

    let report = verify_file(&path, &pubkey, None).expect("self-consistent without saved state");
    assert_eq!(report.size, 80);
    let error = assert_tampered(verify_file(&path, &pubkey, Some(saved)));
    assert_eq!(error.first_bad_index(), Some(80));
    assert!(error.to_string().contains("fewer than the 95"), "{error}");
}

#[test]
fn checkpoint_from_unknown_key_in_file() {
    let (_dir, path, pubkey) = setup();
    let (log, _) = build_log(95);
    let leaves: Vec<_> = log.entries.iter().map(|e| leaf_hash(&e.record)).collect();
    let foreign = Checkpoint {
        origin: ORIGIN.into(),
        size: 95,
        root: root_of(&leaves),
        extensions: vec![],
    }
    .sign(&stranger())
    .expect("signable");
    let mut all = lines(&path);
    let last = all.len() - 1;
    assert!(all[last].contains("\"type\":\"checkpoint\""));
    all[last] = format!(
        "{{\"type\":\"checkpoint\",\"note\":{}}}",
        serde_json::to_string(&foreign.note).expect("string")
    );
    write_lines(&path, &all);
    let error = verify_file(&path, &pubkey, None).expect_err("unknown key");
    assert_eq!(error.exit_code(), EXIT_UNKNOWN_KEY);

    // Trusting only the foreign key does not help: the earlier checkpoints are then unknown.
    let error = verify_file(&path, &stranger().verifier().to_string(), None)
        .expect_err("earlier checkpoints are by the real key");
    assert_eq!(error.exit_code(), EXIT_UNKNOWN_KEY);
}

#[test]
fn unreadable_file_is_an_io_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let error = verify_file(
        &dir.path().join("missing.jsonl"),
        &signer().verifier().to_string(),
        None,
    )
    .expect_err("missing file");
    assert_eq!(error.exit_code(), EXIT_IO);
    let json = serde_json::to_value(error.report()).expect("serialises");
    assert_eq!(json["category"], "io");
}
