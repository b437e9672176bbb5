//! `Journal`: the audit log's write side with `acknowledge = "journal"` (the default).
//! `AuditLog::submit` appends the record to the Merkle log and writes it, with the subtree
//! roots and checkpoint it completed, as one frame to the node's journal, on the request's own
//! thread: a few microseconds, no hand-off to another thread. Once written, the record
//! survives a crash of the process and its index is known; the request may be answered.
//!
//! The journal is a series of segment files `<spool file>.<seq>` in the spool's format. The
//! store thread (`storer`) closes the active segment every few milliseconds, writes the closed
//! ones to the store (several frames to a transaction) and deletes them. While the store
//! fails they stay, and records keep going to the journal until it holds `max_bytes`, past
//! which `on_full` applies: `refuse` fails the append with `Full`, `serve` drops the record
//! and the next append logs a gap marker counting the drops.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use flowgate_audit::appender::LogAppender;
use flowgate_audit::checkpoint::SignedCheckpoint;
use flowgate_audit::record::AuditRecord;
use flowgate_config::AuditOnFull;

use super::spool::{Spool, SpoolError, SpooledBatch, SpooledCheckpoint, SpooledSubtree};
use super::writer::{WriterGauges, canonical_text};
use super::{AuditError, now_ms};

/// The journal segment `seq` of the spool file `spool_path`.
fn segment_path(spool_path: &Path, seq: u64) -> PathBuf {
    let mut name = spool_path.as_os_str().to_owned();
    name.push(format!(".{seq}"));
    PathBuf::from(name)
}

/// The journal segments of `spool_path` left in its folder, oldest first.
///
/// # Errors
/// I/O errors reading the folder (a missing folder holds none).
pub(super) fn existing_segments(spool_path: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let io = |source| SpoolError::Io {
        path: spool_path.to_owned(),
        source,
    };
    let (Some(folder), Some(name)) = (
        spool_path.parent(),
        spool_path.file_name().and_then(|name| name.to_str()),
    ) else {
        return Ok(Vec::new());
    };
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(io(err)),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io)?;
        let file_name = entry.file_name();
        let seq = file_name
            .to_str()
            .and_then(|file| file.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(seq) = seq {
            segments.push((seq, entry.path()));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

fn spooled_checkpoint(checkpoint: SignedCheckpoint) -> SpooledCheckpoint {
    SpooledCheckpoint {
        size: checkpoint.checkpoint.size,
        note: checkpoint.note,
    }
}

#[derive(Debug)]
pub(super) struct Journal {
    appender: LogAppender,
    spool_path: PathBuf,
    /// The segment frames are appended to, and its number.
    active: Spool,
    seq: u64,
    /// Closed segments the store has not taken yet, oldest first, with their bytes.
    closed: VecDeque<(PathBuf, u64)>,
    closed_bytes: u64,
    /// A frame whose write failed: written before anything newer (its records hold indices).
    unwritten: Option<SpooledBatch>,
    max_bytes: u64,
    on_full: AuditOnFull,
    gauges: Arc<WriterGauges>,
    /// Records dropped while full (`serve`), not yet counted by a gap marker.
    dropped: u64,
    /// Set by `stop`: later appends fail with `Closed`.
    stopped: bool,
}

impl Journal {
    /// A journal continuing `appender`'s log in segment `seq` of `spool_path`.
    pub fn new(
        appender: LogAppender,
        spool_path: &Path,
        seq: u64,
        max_bytes: u64,
        on_full: AuditOnFull,
        gauges: Arc<WriterGauges>,
    ) -> Result<Self, SpoolError> {
        Ok(Self {
            appender,
            spool_path: spool_path.to_owned(),
            active: Spool::open(&segment_path(spool_path, seq), u64::MAX)?,
            seq,
            closed: VecDeque::new(),
            closed_bytes: 0,
            unwritten: None,
            max_bytes,
            on_full,
            gauges,
            dropped: 0,
            stopped: false,
        })
    }

    /// Appends `record` to the log and the journal; its index once written.
    ///
    /// # Errors
    /// `Full`/`Dropped` when the journal holds `max_bytes` the store has not taken;
    /// `Unavailable` when the journal cannot be written; `Closed` after `stop`.
    pub fn append(&mut self, record: &AuditRecord) -> Result<u64, AuditError> {
        if self.stopped {
            return Err(AuditError::Closed);
        }
        if !self.write_unwritten() {
            return Err(AuditError::Unavailable);
        }
        if self.unstored_bytes() >= self.max_bytes {
            return Err(self.overflow());
        }
        let now = now_ms();
        let mut frame = self.frame();
        self.push_gap(&mut frame, now);
        let index = self.push(&mut frame, record, now);
        self.write(frame).map(|()| index)
    }

    /// Journals the checkpoint due by time, if any (the store thread's timer).
    pub fn tick(&mut self) {
        let checkpoint = self.appender.tick(now_ms());
        self.write_checkpoint(checkpoint);
    }

    /// The last frame: a gap marker for records still uncounted, the final checkpoint. Later
    /// appends fail with `Closed`.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let now = now_ms();
        let mut frame = self.frame();
        self.push_gap(&mut frame, now);
        if !frame.records.is_empty() && self.write(frame).is_err() {
            return;
        }
        let checkpoint = self.appender.checkpoint_now(now);
        self.write_checkpoint(checkpoint);
    }

    /// Closes the active segment (when it holds frames) and starts the next one.
    pub fn rotate(&mut self) {
        if !self.write_unwritten() || self.active.is_empty() {
            return;
        }
        let next_path = segment_path(&self.spool_path, self.seq + 1);
        match Spool::open(&next_path, u64::MAX) {
            Ok(next) => {
                let done = std::mem::replace(&mut self.active, next);
                self.closed_bytes += done.len();
                self.closed.push_back((done.path().to_owned(), done.len()));
                self.seq += 1;
            }
            Err(err) => {
                tracing::error!(error = %err, "audit journal: the next segment cannot be opened; keeping the current one");
            }
        }
    }

    /// The closed segments waiting for the store, oldest first.
    pub fn closed_segments(&self) -> Vec<PathBuf> {
        self.closed.iter().map(|(path, _)| path.clone()).collect()
    }

    /// The store holds `path` (the oldest closed segment) now.
    pub fn segment_stored(&mut self, path: &Path) {
        if self
            .closed
            .front()
            .is_some_and(|(oldest, _)| oldest == path)
            && let Some((_, bytes)) = self.closed.pop_front()
        {
            self.closed_bytes -= bytes;
        }
    }

    /// Bytes journaled that the store has not taken.
    pub fn unstored_bytes(&self) -> u64 {
        self.closed_bytes + self.active.len()
    }

    /// Whether new records meet `on_full`.
    pub fn is_full(&self) -> bool {
        self.unstored_bytes() >= self.max_bytes
    }

    fn overflow(&mut self) -> AuditError {
        match self.on_full {
            AuditOnFull::Refuse => AuditError::Full,
            AuditOnFull::Serve => {
                self.dropped += 1;
                self.gauges.dropped_total.fetch_add(1, Ordering::Relaxed);
                AuditError::Dropped
            }
        }
    }

    /// An empty frame starting at the log's next index.
    fn frame(&self) -> SpooledBatch {
        SpooledBatch {
            first_index: self.appender.size(),
            records: Vec::new(),
            subtrees: Vec::new(),
            checkpoints: Vec::new(),
            state: None,
        }
    }

    /// Counts the records dropped since the last marker with a gap marker in `frame`.
    fn push_gap(&mut self, frame: &mut SpooledBatch, now: u64) {
        if self.dropped > 0 {
            let gap = AuditRecord::gap(now, self.dropped, "queue_or_spool_full");
            self.dropped = 0;
            self.push(frame, &gap, now);
        }
    }

    fn push(&mut self, frame: &mut SpooledBatch, record: &AuditRecord, now: u64) -> u64 {
        let appended = self.appender.append(record, now);
        frame
            .subtrees
            .extend(appended.subtrees.iter().map(SpooledSubtree::from_root));
        frame
            .checkpoints
            .extend(appended.checkpoint.map(spooled_checkpoint));
        frame.records.push(canonical_text(appended.canonical));
        appended.index
    }

    fn write_checkpoint(&mut self, checkpoint: Option<SignedCheckpoint>) {
        if let Some(checkpoint) = checkpoint {
            let mut frame = self.frame();
            frame.checkpoints.push(spooled_checkpoint(checkpoint));
            // A failed write keeps the frame for the next attempt (logged there).
            let _ = self.write(frame);
        }
    }

    /// Writes `frame` to the active segment; a frame with checkpoints carries the appender
    /// state (the restart hint stored with them).
    fn write(&mut self, mut frame: SpooledBatch) -> Result<(), AuditError> {
        if !frame.checkpoints.is_empty() {
            frame.state = serde_json::to_string(&self.appender.state()).ok();
        }
        match self.active.push(&frame, false) {
            Ok(()) => Ok(()),
            Err(err) => {
                tracing::error!(error = %err, "audit journal write failed; requests are refused until it works again");
                self.unwritten = Some(frame);
                Err(AuditError::Unavailable)
            }
        }
    }

    /// Retries the frame a failed write left; true when none is left.
    fn write_unwritten(&mut self) -> bool {
        match self.unwritten.take() {
            None => true,
            Some(frame) => self.write(frame).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_found_in_order_and_other_files_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().join("eu.log.spool");
        for seq in [10u64, 2, 1] {
            std::fs::write(segment_path(&spool, seq), b"").expect("write");
        }
        for other in [
            "eu.log.spool",
            "eu.log.spool.x",
            "eu.log.spool.3.tmp",
            "other.spool.4",
        ] {
            std::fs::write(dir.path().join(other), b"").expect("write");
        }
        let found: Vec<u64> = existing_segments(&spool)
            .expect("segments")
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(found, vec![1, 2, 10]);
        assert!(
            existing_segments(&dir.path().join("missing/eu.spool"))
                .expect("missing folder")
                .is_empty()
        );
    }
}
