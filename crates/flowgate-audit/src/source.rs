//! The store-facing trait: where the verifier and proof generation read records, leaf hashes
//! and checkpoints from, plus the async drivers that page through it.
//!
//! The SQLite and PostgreSQL audit stores implement [`AuditSource`] with sqlx; the trait's
//! futures are `Send` so the drivers run on any async runtime. This module owns no SQL and
//! no runtime.

use std::future::Future;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::appender::{AppenderState, CACHED_SUBTREE_MIN_LEVEL};
use crate::checkpoint;
use crate::export::{ExportHeader, ExportWriter};
use crate::merkle::{self, Frontier, Hash, ProofError, ProveError};
use crate::note::NoteVerifier;
use crate::record::AuditRecord;
use crate::verify::{
    LogVerifier, StoredEntry, VerifyError, VerifyOptions, VerifyReport, base64_hash,
};

/// Where a pruned log now starts: the frontier of the first `size` records (whose rows were
/// deleted by retention) and the time of record `size - 1`. Retention keeps the signed
/// checkpoint at `size`, which proves the anchor, so what remains still verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogAnchor {
    /// Number of records before the first stored one.
    pub size: u64,
    /// Frontier of those records.
    #[serde(with = "base64_hash::list")]
    pub frontier: Vec<Hash>,
    /// Time of record `size - 1`.
    pub last_time_ms: u64,
}

/// Read access to one node's stored audit log.
pub trait AuditSource: Sync {
    /// The store's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Number of records stored.
    fn record_count(&self) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Appends up to `limit` entries with index `from` and above, in index order, to `out`
    /// (fewer at the end of the log). Include the stored leaf hash if the store keeps one.
    fn read_entries(
        &self,
        from: u64,
        limit: usize,
        out: &mut Vec<StoredEntry>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Appends the stored leaf hashes for indices `start..end`, in order, to `out`.
    fn read_leaf_hashes(
        &self,
        start: u64,
        end: u64,
        out: &mut Vec<Hash>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Appends every stored checkpoint note (any order) to `out`.
    fn read_checkpoints(
        &self,
        out: &mut Vec<String>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The cached root of the perfect subtree over leaves `index << level ..
    /// (index + 1) << level`, if the store keeps it (from [`crate::appender::Appended`]'s
    /// `subtrees`). The default keeps none and proofs then read leaf hashes.
    fn read_subtree_root(
        &self,
        level: u8,
        index: u64,
    ) -> impl Future<Output = Result<Option<Hash>, Self::Error>> + Send {
        let _ = (level, index);
        async { Ok(None) }
    }

    /// The retention anchor, if old records were pruned (see [`anchor_at`]). Stores without
    /// retention keep the default: none, the log starts at index 0.
    fn read_anchor(&self) -> impl Future<Output = Result<Option<LogAnchor>, Self::Error>> + Send {
        async { Ok(None) }
    }
}

/// Verifies a stored log, reading entries `page_size` at a time. With `options.resume` and a
/// saved state, reading starts at the saved size.
///
/// # Errors
/// Any [`VerifyError`]; store failures become [`VerifyError::Io`].
pub async fn verify_source<S: AuditSource>(
    source: &S,
    options: VerifyOptions,
    page_size: usize,
) -> Result<VerifyReport, VerifyError> {
    let anchor = source.read_anchor().await.map_err(VerifyError::io)?;
    let mut verifier = match anchor {
        Some(anchor)
            if !(options.resume
                && options
                    .saved
                    .as_ref()
                    .is_some_and(|saved| saved.size >= anchor.size)) =>
        {
            let frontier = Frontier::from_parts(anchor.size, anchor.frontier).map_err(|error| {
                VerifyError::tampered(
                    Some(anchor.size),
                    crate::verify::Tamper::MalformedCheckpoint {
                        detail: format!("retention anchor: {error}"),
                    },
                )
            })?;
            let mut options = options;
            options.resume = false;
            LogVerifier::starting_at(options, frontier, anchor.last_time_ms)?
        }
        _ => LogVerifier::new(options)?,
    };
    let mut notes = Vec::new();
    source
        .read_checkpoints(&mut notes)
        .await
        .map_err(VerifyError::io)?;
    for note in &notes {
        verifier.add_checkpoint(note)?;
    }
    let page_size = page_size.max(1);
    let mut page = Vec::with_capacity(page_size);
    loop {
        page.clear();
        source
            .read_entries(verifier.size(), page_size, &mut page)
            .await
            .map_err(VerifyError::io)?;
        let read = page.len();
        verifier.push_batch(&page)?;
        if read < page_size {
            break;
        }
    }
    verifier.finish()
}

/// Root of `start..end`: cached perfect subtrees where the store has them, leaf hashes
/// elsewhere.
async fn subtree_root<S: AuditSource>(
    source: &S,
    start: u64,
    end: u64,
    buffer: &mut Vec<Hash>,
) -> Result<Hash, ProveError<S::Error>> {
    let Some(pieces) = merkle::perfect_pieces(start, end) else {
        return leaves_root(source, start, end, buffer).await;
    };
    let mut roots = Vec::with_capacity(pieces.len());
    for (level, index) in pieces {
        let cached = if level >= CACHED_SUBTREE_MIN_LEVEL {
            source
                .read_subtree_root(level, index)
                .await
                .map_err(ProveError::Source)?
        } else {
            None
        };
        let root = match cached {
            Some(root) => root,
            None => {
                let from = index << level;
                leaves_root(source, from, from + (1 << level), buffer).await?
            }
        };
        roots.push(root);
    }
    let mut iter = roots.iter().rev();
    let Some(last) = iter.next() else {
        return Ok(merkle::EMPTY_ROOT);
    };
    Ok(iter.fold(*last, |acc, left| merkle::node_hash(left, &acc)))
}

/// Root of `start..end` computed from the stored leaf hashes.
async fn leaves_root<S: AuditSource>(
    source: &S,
    start: u64,
    end: u64,
    buffer: &mut Vec<Hash>,
) -> Result<Hash, ProveError<S::Error>> {
    let mut frontier = merkle::Frontier::new();
    let mut position = start;
    while position < end {
        let chunk_end = end.min(position.saturating_add(merkle::LEAF_READ_CHUNK));
        buffer.clear();
        source
            .read_leaf_hashes(position, chunk_end, buffer)
            .await
            .map_err(ProveError::Source)?;
        if buffer.len() as u64 != chunk_end - position {
            return Err(ProofError::NotEnoughLeaves {
                size: end,
                available: position + buffer.len() as u64,
            }
            .into());
        }
        for leaf in buffer.iter() {
            frontier.push(*leaf);
        }
        position = chunk_end;
    }
    Ok(frontier.root())
}

async fn proof_from_ranges<S: AuditSource>(
    source: &S,
    size: u64,
    ranges: Vec<(u64, u64)>,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let available = source.record_count().await.map_err(ProveError::Source)?;
    if size > available {
        return Err(ProofError::NotEnoughLeaves { size, available }.into());
    }
    let mut buffer = Vec::new();
    let mut proof = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        proof.push(subtree_root(source, start, end, &mut buffer).await?);
    }
    Ok(proof)
}

/// Inclusion proof of `index` in the tree of the first `size` stored records. With the
/// store caching subtree roots ([`AuditSource::read_subtree_root`]) it costs O(log size)
/// cached reads plus fewer than 2 × 256 leaf hashes per proof hash; without, O(size) leaf
/// hashes.
///
/// # Errors
/// [`ProofError`] for invalid arguments, or a store failure.
pub async fn prove_inclusion<S: AuditSource>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let ranges = merkle::inclusion_proof_ranges(index, size)?;
    proof_from_ranges(source, size, ranges).await
}

/// Consistency proof between the trees of the first `size1` and `size2` stored records.
///
/// # Errors
/// [`ProofError`] for invalid arguments, or a store failure.
pub async fn prove_consistency<S: AuditSource>(
    source: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let ranges = merkle::consistency_proof_ranges(size1, size2)?;
    proof_from_ranges(source, size2, ranges).await
}

/// Computes the retention anchor at `size` (a checkpoint size, so the kept checkpoint proves
/// it): reads the leaf hashes after the current anchor and the record at `size - 1`. Store
/// it, then delete records below `size` and all but the last checkpoint below it.
///
/// # Errors
/// [`ProofError::NotEnoughLeaves`] or a store failure.
pub async fn anchor_at<S: AuditSource>(
    source: &S,
    size: u64,
) -> Result<LogAnchor, ProveError<S::Error>> {
    let available = source.record_count().await.map_err(ProveError::Source)?;
    if size > available {
        return Err(ProofError::NotEnoughLeaves { size, available }.into());
    }
    let current = source.read_anchor().await.map_err(ProveError::Source)?;
    extend_anchor(source, current, size).await
}

/// Extends `start` (or the empty log) to the anchor at `size`, which the caller checked is
/// at most the stored record count.
async fn extend_anchor<S: AuditSource>(
    source: &S,
    start: Option<LogAnchor>,
    size: u64,
) -> Result<LogAnchor, ProveError<S::Error>> {
    let (mut frontier, mut last_time_ms) = match start {
        Some(anchor) if anchor.size <= size => (
            Frontier::from_parts(anchor.size, anchor.frontier).map_err(|_| {
                ProofError::NotEnoughLeaves {
                    size,
                    available: anchor.size,
                }
            })?,
            anchor.last_time_ms,
        ),
        _ => (Frontier::new(), 0),
    };
    let mut buffer = Vec::new();
    while frontier.size() < size {
        let start = frontier.size();
        let end = size.min(start.saturating_add(merkle::LEAF_READ_CHUNK));
        buffer.clear();
        source
            .read_leaf_hashes(start, end, &mut buffer)
            .await
            .map_err(ProveError::Source)?;
        if buffer.len() as u64 != end - start {
            return Err(ProofError::NotEnoughLeaves {
                size,
                available: start + buffer.len() as u64,
            }
            .into());
        }
        for leaf in &buffer {
            frontier.push(*leaf);
        }
    }
    if size > 0 {
        let mut last = Vec::with_capacity(1);
        source
            .read_entries(size - 1, 1, &mut last)
            .await
            .map_err(ProveError::Source)?;
        if let Some(time_ms) = last
            .first()
            .and_then(|entry| AuditRecord::parse(&entry.record).ok())
            .map(|record| record.time_ms)
        {
            last_time_ms = time_ms;
        }
    }
    Ok(LogAnchor {
        size,
        frontier: frontier.hashes().to_vec(),
        last_time_ms,
    })
}

/// Rebuilds the appender state of a stored log at start-up: the frontier from the stored
/// leaf hashes, the last record's time, and the newest checkpoint that opens with
/// `verifiers` (the node's own key). `now_ms` restarts the checkpoint timer.
///
/// `hint` is an [`AppenderState`] persisted earlier (for example with each checkpoint): when
/// it is not beyond the stored log, only the leaves after it are read, so a restart costs
/// O(records since the hint) instead of O(log size). Records the hint covers are trusted
/// (`audit verify` checks them).
///
/// # Errors
/// A store failure.
pub async fn rebuild_appender_state<S: AuditSource>(
    source: &S,
    verifiers: &[NoteVerifier],
    hint: Option<AppenderState>,
    now_ms: u64,
) -> Result<AppenderState, ProveError<S::Error>> {
    let size = source.record_count().await.map_err(ProveError::Source)?;
    let start = match hint {
        Some(hint)
            if hint.size <= size
                && Frontier::from_parts(hint.size, hint.frontier.clone()).is_ok() =>
        {
            Some(LogAnchor {
                size: hint.size,
                frontier: hint.frontier,
                last_time_ms: hint.last_time_ms,
            })
        }
        _ => source.read_anchor().await.map_err(ProveError::Source)?,
    };
    let anchor = extend_anchor(source, start, size).await?;
    let mut notes = Vec::new();
    source
        .read_checkpoints(&mut notes)
        .await
        .map_err(ProveError::Source)?;
    let last_checkpoint_size = notes
        .iter()
        .filter_map(|note| checkpoint::open(note, verifiers).ok())
        .map(|signed| signed.checkpoint.size)
        .filter(|&checkpoint_size| checkpoint_size <= size)
        .max()
        .unwrap_or(0);
    Ok(AppenderState {
        size,
        frontier: anchor.frontier,
        last_time_ms: anchor.last_time_ms,
        last_checkpoint_size,
        last_checkpoint_ms: now_ms,
    })
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError<E> {
    /// The store failed.
    #[error("reading the audit store failed")]
    Source(#[source] E),
    /// Writing the file failed.
    #[error("writing the export failed")]
    Write(#[source] std::io::Error),
    /// The range is not inside the stored log.
    #[error("range {from}..{to} is not inside the stored log {first}..{size}")]
    Range {
        /// Requested first index.
        from: u64,
        /// Requested end (exclusive).
        to: u64,
        /// First stored index (after retention).
        first: u64,
        /// Records stored.
        size: u64,
    },
}

/// Writes records `from..to` with every stored checkpoint whose size lies in `from..=to`
/// (each placed after its last record) in the export format of [`crate::export`]. Pick
/// `to` at a checkpoint size so every exported record is signed. The checkpoints are read
/// with `verifiers` to learn their sizes; notes that do not open are skipped. `out` is
/// written synchronously: pass a buffered writer, and call from a context that may block.
///
/// # Errors
/// [`ExportError`].
pub async fn write_export<S: AuditSource, W: Write>(
    source: &S,
    origin: &str,
    verifiers: &[NoteVerifier],
    from: u64,
    to: u64,
    out: W,
) -> Result<W, ExportError<S::Error>> {
    let size = source.record_count().await.map_err(ExportError::Source)?;
    let anchor = source.read_anchor().await.map_err(ExportError::Source)?;
    let first = anchor.as_ref().map_or(0, |anchor| anchor.size);
    if from > to || to > size || from < first {
        return Err(ExportError::Range {
            from,
            to,
            first,
            size,
        });
    }
    let header_anchor = anchor_at(source, from).await.map_err(|error| match error {
        ProveError::Source(error) => ExportError::Source(error),
        ProveError::Invalid(_) => ExportError::Range {
            from,
            to,
            first,
            size,
        },
    })?;
    let mut notes = Vec::new();
    source
        .read_checkpoints(&mut notes)
        .await
        .map_err(ExportError::Source)?;
    let mut checkpoints: Vec<(u64, String)> = notes
        .into_iter()
        .filter_map(|note| {
            let size = checkpoint::open(&note, verifiers).ok()?.checkpoint.size;
            (from..=to).contains(&size).then_some((size, note))
        })
        .collect();
    checkpoints.sort_by_key(|(size, _)| *size);
    checkpoints.dedup_by_key(|(size, _)| *size);
    let mut pending = checkpoints.into_iter().peekable();
    let header = ExportHeader {
        origin: origin.to_owned(),
        start: from,
        frontier: header_anchor.frontier,
        last_time_ms: header_anchor.last_time_ms,
    };
    let mut writer = ExportWriter::new(out, &header).map_err(ExportError::Write)?;
    while let Some((_, note)) = pending.next_if(|(size, _)| *size == from) {
        writer.checkpoint(&note).map_err(ExportError::Write)?;
    }
    let mut page = Vec::with_capacity(1024);
    let mut next = from;
    while next < to {
        page.clear();
        let limit = usize::try_from((to - next).min(1024)).unwrap_or(1024);
        source
            .read_entries(next, limit, &mut page)
            .await
            .map_err(ExportError::Source)?;
        if page.is_empty() {
            break;
        }
        for entry in &page {
            writer
                .record(entry.index, &entry.record)
                .map_err(ExportError::Write)?;
            while let Some((_, note)) = pending.next_if(|(size, _)| *size == entry.index + 1) {
                writer.checkpoint(&note).map_err(ExportError::Write)?;
            }
        }
        next += page.len() as u64;
    }
    writer.finish().map_err(ExportError::Write)
}
