//! The audit export file: JSON lines that a SIEM can ingest and an auditor can verify with
//! nothing but the log's public key (`flowgate audit verify --export FILE --pubkey KEY`).
//!
//! Format `flowgate-audit-export` version 1, one JSON object per line:
//!
//! 1. Header, exactly once and first:
//!    `{"type":"header","format":"flowgate-audit-export","version":1,"origin":O,"start":S,"frontier":[...],"last_time_ms":T}`.
//!    `start` is the index of the first record; `frontier` (base64 hashes) is the Merkle
//!    frontier of the first `start` records and `last_time_ms` the time of record `start - 1`
//!    (both empty/0 when `start` is 0). They are not signed themselves: the first checkpoint
//!    after `start` proves them, because its root depends on them.
//! 2. Records: `{"type":"record","index":N,"record":R}` where `R` is the canonical record,
//!    embedded byte for byte (the leaf hash is computed over exactly those bytes).
//! 3. Checkpoints: `{"type":"checkpoint","note":"<signed note text>"}`, anywhere before the
//!    log reaches their size; the writer puts each right after its last record.
//!
//! Exports should end at a checkpoint size so every record is signed; records after the last
//! checkpoint are reported as `uncovered_records` (or rejected with `require_full_coverage`).
//!
//! Leaves out selecting the range to export (the gateway reads its store).

use std::borrow::Cow;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::merkle::{Frontier, Hash};
use crate::verify::{
    LogEntry, LogVerifier, Tamper, Unverifiable, VerifyError, VerifyOptions, VerifyReport,
    base64_hash,
};

/// Value of the header's `format` member.
pub const EXPORT_FORMAT: &str = "flowgate-audit-export";
/// Version of the format this crate writes and reads.
pub const EXPORT_VERSION: u32 = 1;

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportHeader {
    /// The log's origin.
    pub origin: String,
    /// Index of the first record in the file.
    pub start: u64,
    /// Frontier of the first `start` records.
    #[serde(with = "base64_hash::list")]
    pub frontier: Vec<Hash>,
    /// Time of record `start - 1` (0 when `start` is 0).
    pub last_time_ms: u64,
}

#[derive(Serialize)]
struct HeaderLine<'a> {
    #[serde(rename = "type")]
    line_type: &'static str,
    format: &'static str,
    version: u32,
    #[serde(flatten)]
    header: &'a ExportHeader,
}

/// Writes an export file line by line.
#[derive(Debug)]
pub struct ExportWriter<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> ExportWriter<W> {
    /// Writes the header line.
    ///
    /// # Errors
    /// Write failures.
    pub fn new(mut out: W, header: &ExportHeader) -> std::io::Result<Self> {
        let mut line = serde_json::to_vec(&HeaderLine {
            line_type: "header",
            format: EXPORT_FORMAT,
            version: EXPORT_VERSION,
            header,
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        out.write_all(&line)?;
        Ok(Self { out, line })
    }

    /// Writes one record line; `canonical` must be the stored canonical record bytes.
    ///
    /// # Errors
    /// Write failures.
    pub fn record(&mut self, index: u64, canonical: &[u8]) -> std::io::Result<()> {
        self.line.clear();
        self.line
            .extend_from_slice(b"{\"type\":\"record\",\"index\":");
        self.line.extend_from_slice(index.to_string().as_bytes());
        self.line.extend_from_slice(b",\"record\":");
        self.line.extend_from_slice(canonical);
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)
    }

    /// Writes one checkpoint line.
    ///
    /// # Errors
    /// Write failures.
    pub fn checkpoint(&mut self, note: &str) -> std::io::Result<()> {
        self.line.clear();
        self.line
            .extend_from_slice(b"{\"type\":\"checkpoint\",\"note\":");
        crate::canonical::write_str(note, &mut self.line);
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)
    }

    /// Flushes and returns the writer.
    ///
    /// # Errors
    /// Flush failures.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    line_type: Cow<'a, str>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    record: Option<&'a RawValue>,
    #[serde(default, borrow)]
    note: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    format: Option<Cow<'a, str>>,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    start: Option<u64>,
    #[serde(default)]
    frontier: Option<Vec<Cow<'a, str>>>,
    #[serde(default)]
    last_time_ms: Option<u64>,
}

struct BorrowedEntry<'a> {
    index: u64,
    record: &'a [u8],
}

impl LogEntry for BorrowedEntry<'_> {
    fn index(&self) -> u64 {
        self.index
    }
    fn record(&self) -> &[u8] {
        self.record
    }
    fn stored_leaf_hash(&self) -> Option<&Hash> {
        None
    }
}

fn malformed(line: u64, index: u64, detail: impl Into<String>) -> VerifyError {
    VerifyError::Tampered {
        index: Some(index),
        kind: Tamper::MalformedExportLine {
            line,
            detail: detail.into(),
        },
    }
}

fn parse_header(line_number: u64, line: &Line<'_>) -> Result<ExportHeader, VerifyError> {
    if line.format.as_deref() != Some(EXPORT_FORMAT) || line.version != Some(EXPORT_VERSION) {
        return Err(VerifyError::Unverifiable {
            index: None,
            kind: Unverifiable::MissingExportHeader,
        });
    }
    let (Some(origin), Some(start), Some(frontier), Some(last_time_ms)) = (
        line.origin.clone(),
        line.start,
        line.frontier.as_ref(),
        line.last_time_ms,
    ) else {
        return Err(malformed(line_number, 0, "header lacks a member"));
    };
    let frontier = frontier
        .iter()
        .map(|text| base64_hash::decode(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|detail| malformed(line_number, start, detail))?;
    Ok(ExportHeader {
        origin,
        start,
        frontier,
        last_time_ms,
    })
}

/// Verifies an export read from `reader` with the keys and saved state in `options` (its
/// `origin` must match the header's; `resume` is ignored: the header sets the start).
///
/// # Errors
/// Any [`VerifyError`]: malformed lines are [`Tamper::MalformedExportLine`], read failures
/// [`VerifyError::Io`].
pub fn verify_export<R: BufRead>(
    mut reader: R,
    mut options: VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    options.resume = false;
    let mut buffer = Vec::with_capacity(1024);
    let mut line_number = 0u64;
    let mut verifier: Option<LogVerifier> = None;
    loop {
        buffer.clear();
        let read = reader
            .read_until(b'\n', &mut buffer)
            .map_err(VerifyError::io)?;
        if read == 0 {
            break;
        }
        line_number += 1;
        let content = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
        let next_index = verifier.as_ref().map_or(0, LogVerifier::size);
        let line: Line<'_> = serde_json::from_slice(content)
            .map_err(|error| malformed(line_number, next_index, error.to_string()))?;
        let Some(active) = verifier.as_mut() else {
            if line.line_type != "header" {
                return Err(VerifyError::Unverifiable {
                    index: None,
                    kind: Unverifiable::MissingExportHeader,
                });
            }
            let header = parse_header(line_number, &line)?;
            if header.origin != options.origin {
                return Err(VerifyError::Tampered {
                    index: Some(header.start),
                    kind: Tamper::OriginMismatch {
                        expected: options.origin,
                        found: header.origin,
                    },
                });
            }
            let frontier = Frontier::from_parts(header.start, header.frontier)
                .map_err(|error| malformed(line_number, header.start, error.to_string()))?;
            verifier = Some(LogVerifier::starting_at(
                options.clone(),
                frontier,
                header.last_time_ms,
            )?);
            continue;
        };
        match line.line_type.as_ref() {
            "record" => {
                let (Some(index), Some(record)) = (line.index, line.record) else {
                    return Err(malformed(
                        line_number,
                        next_index,
                        "record line lacks index or record",
                    ));
                };
                active.push_entry(BorrowedEntry {
                    index,
                    record: record.get().as_bytes(),
                })?;
            }
            "checkpoint" => {
                let Some(note) = line.note.as_deref() else {
                    return Err(malformed(
                        line_number,
                        next_index,
                        "checkpoint line lacks a note",
                    ));
                };
                active.add_checkpoint(note)?;
            }
            other => {
                return Err(malformed(
                    line_number,
                    next_index,
                    format!("unexpected line type {other:?}"),
                ));
            }
        }
    }
    match verifier {
        Some(active) => active.finish(),
        None => Err(VerifyError::Unverifiable {
            index: None,
            kind: Unverifiable::MissingExportHeader,
        }),
    }
}
