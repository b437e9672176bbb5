//! `Journal`: the audit log's write side with `acknowledge = "journal"` (the default).
//! `AuditLog::submit` appends the record to the Merkle log and writes it, with the subtree
//! roots and checkpoint it completed, as one frame to the node's journal, on the request's own
//! thread: a few microseconds, no hand-off to another thread. Once written, the record
//! survives a crash of the process and its index is known; the request may be answered.
//!
//! The journal is a series of segment files `<spool file>.<seq>` in the spool's format. The
//! store thread (`storer`) closes the active segment every few milliseconds, writes the closed
//! ones to the store and deletes them. While the store keeps up, each segment's records also
//! wait in memory in their stored form, so the store thread writes them in one transaction
//! without reading the file back; after a failure it replays the files instead. While the store
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
use flowgate_store::AuditEntry;

use super::spool::{Spool, SpoolError, SpooledBatch, SpooledCheckpoint, SpooledSubtree};
use super::writer::{Batch, WriterGauges, canonical_text, stored};
use super::{AuditError, now_ms};

/// The most unstored journal bytes before the store thread counts as behind (and leaves the
/// idle scheduling class: `background`).
const BEHIND_BYTES: u64 = 4 * 1024 * 1024;
/// How long the active segment may go without being closed (the store thread closes it every
/// `Background::period`) before the store thread counts as behind: in the idle scheduling
/// class it can be starved by a busy machine, and a trickle of records never reaches the bytes
/// mark.
const STALE_MS: u64 = 500;

/// The journal segment `seq` of the spool file `spool_path`.
pub(super) fn segment_path(spool_path: &Path, seq: u64) -> PathBuf {
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

/// A segment's records in their stored form, with the appender state to store beside them.
#[derive(Default)]
pub(super) struct SegmentBatch {
    pub batch: Batch,
    pub state: Option<String>,
}

/// A closed segment waiting for the store.
struct ClosedSegment {
    path: PathBuf,
    bytes: u64,
    /// Its records, unless the store fell behind while it was active (then: the file).
    records: Option<SegmentBatch>,
}

pub(super) struct Journal {
    appender: LogAppender,
    spool_path: PathBuf,
    /// The segment frames are appended to, and its number.
    active: Spool,
    seq: u64,
    /// The active segment's records in stored form (`None`: the store reads the file).
    active_records: Option<SegmentBatch>,
    /// Whether to keep records in memory for the store: off after a store failure until it
    /// has caught up (the files are replayed meanwhile, and memory stays bounded).
    keep: bool,
    /// Closed segments the store has not taken yet, oldest first.
    closed: VecDeque<ClosedSegment>,
    closed_bytes: u64,
    /// A frame whose write failed: written before anything newer (its records hold indices).
    unwritten: Option<SpooledBatch>,
    /// The stored form of the frame being built (reused: no allocation per record).
    scratch: SegmentBatch,
    max_bytes: u64,
    /// Unstored bytes past which the store thread counts as behind.
    behind_bytes: u64,
    /// When the first record went into the active segment (`None`: none yet), and when the
    /// latest did (ms since the epoch): the active segment's age.
    active_since_ms: Option<u64>,
    last_append_ms: u64,
    on_full: AuditOnFull,
    gauges: Arc<WriterGauges>,
    /// Records dropped while full (`serve`), not yet counted by a gap marker.
    dropped: u64,
    /// Set by `stop`: later appends fail with `Closed`.
    stopped: bool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Journal")
            .field("segment", &self.active.path())
            .field("unstored_bytes", &self.unstored_bytes())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// A journal continuing `appender`'s log in segment `seq` of `spool_path` (its file is
    /// created now).
    ///
    /// # Errors
    /// I/O errors creating the segment.
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
            active: open_segment(spool_path, seq)?,
            seq,
            active_records: Some(SegmentBatch::default()),
            keep: true,
            closed: VecDeque::new(),
            closed_bytes: 0,
            unwritten: None,
            scratch: SegmentBatch::default(),
            max_bytes,
            behind_bytes: (max_bytes / 4).min(BEHIND_BYTES),
            active_since_ms: None,
            last_append_ms: 0,
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
        self.write(frame)?;
        self.active_since_ms.get_or_insert(now);
        self.last_append_ms = now;
        Ok(index)
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

    /// Closes the active segment (when it holds frames) and starts the next one, its file
    /// created here (on the store thread) rather than by the next request.
    pub fn rotate(&mut self) {
        if !self.write_unwritten() || self.active.is_empty() {
            return;
        }
        match open_segment(&self.spool_path, self.seq + 1) {
            Ok(next) => {
                let done = std::mem::replace(&mut self.active, next);
                let records = std::mem::replace(
                    &mut self.active_records,
                    self.keep.then(SegmentBatch::default),
                );
                self.active_since_ms = None;
                self.closed_bytes += done.len();
                self.closed.push_back(ClosedSegment {
                    path: done.path().to_owned(),
                    bytes: done.len(),
                    records,
                });
                self.seq += 1;
            }
            Err(err) => {
                tracing::error!(error = %err, "audit journal: the next segment cannot be opened; keeping the current one");
            }
        }
    }

    /// The closed segments waiting for the store, oldest first, with their records in
    /// memory when kept (handed over: a segment that fails to store is replayed from its
    /// file later).
    pub fn take_closed(&mut self) -> Vec<(PathBuf, Option<SegmentBatch>)> {
        self.closed
            .iter_mut()
            .map(|segment| (segment.path.clone(), segment.records.take()))
            .collect()
    }

    /// The store holds `path` (the oldest closed segment) now.
    pub fn segment_stored(&mut self, path: &Path) {
        if self
            .closed
            .front()
            .is_some_and(|segment| segment.path == path)
            && let Some(segment) = self.closed.pop_front()
        {
            self.closed_bytes -= segment.bytes;
        }
    }

    /// Whether to keep records in memory for the store (off while it is behind).
    pub fn keep_records(&mut self, keep: bool) {
        if keep && !self.keep {
            // The active segment's earlier frames are only in the file: it is replayed.
            self.keep = true;
            return;
        }
        self.keep = keep;
        if !keep {
            self.active_records = None;
        }
    }

    /// Bytes journaled that the store has not taken.
    pub fn unstored_bytes(&self) -> u64 {
        self.closed_bytes + self.active.len()
    }

    /// Whether the store is behind: the journal holds more than a quarter of its bound (at
    /// most 4 MiB, a few thousand records) that the store has not taken, or the latest record
    /// went into a segment whose first record came more than `STALE_MS` earlier (the store
    /// thread has not closed it for that long).
    pub fn is_behind(&self) -> bool {
        self.unstored_bytes() > self.behind_bytes
            || self
                .active_since_ms
                .is_some_and(|since| self.last_append_ms.saturating_sub(since) > STALE_MS)
    }

    /// Whether the store has caught up after being behind (half the mark: no flapping).
    pub fn has_caught_up(&self) -> bool {
        self.unstored_bytes() <= self.behind_bytes / 2
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

    /// Counts the records dropped since the last marker with a gap marker.
    fn push_gap(&mut self, frame: &mut SpooledBatch, now: u64) {
        if self.dropped > 0 {
            let gap = AuditRecord::gap(now, self.dropped, "queue_or_spool_full");
            self.dropped = 0;
            self.push(frame, &gap, now);
        }
    }

    /// Appends `record` to the log, into `frame` (journal form) and `scratch` (stored form,
    /// its text taken from the frame once written).
    fn push(&mut self, frame: &mut SpooledBatch, record: &AuditRecord, now: u64) -> u64 {
        let appended = self.appender.append(record, now);
        frame
            .subtrees
            .extend(appended.subtrees.iter().map(SpooledSubtree::from_root));
        self.scratch.batch.subtrees.extend(appended.subtrees);
        if let Some(checkpoint) = appended.checkpoint {
            let checkpoint = stored(checkpoint);
            frame.checkpoints.push(SpooledCheckpoint::from(&checkpoint));
            self.scratch.batch.checkpoints.push(checkpoint);
        }
        frame.records.push(canonical_text(appended.canonical));
        self.scratch.batch.entries.push(AuditEntry::new(
            appended.index,
            String::new(),
            appended.leaf_hash,
            appended.time_ms,
            record,
        ));
        appended.index
    }

    fn write_checkpoint(&mut self, checkpoint: Option<SignedCheckpoint>) {
        if let Some(checkpoint) = checkpoint {
            let checkpoint = stored(checkpoint);
            let mut frame = self.frame();
            frame.checkpoints.push(SpooledCheckpoint::from(&checkpoint));
            self.scratch.batch.checkpoints.push(checkpoint);
            // A failed write keeps the frame for the next attempt (logged there).
            let _ = self.write(frame);
        }
    }

    /// Writes `frame` to the active segment and moves what `push` gathered in `scratch` to
    /// the records kept for the store; a frame with checkpoints carries the appender state
    /// (the restart hint stored with them).
    fn write(&mut self, mut frame: SpooledBatch) -> Result<(), AuditError> {
        if !frame.checkpoints.is_empty() {
            frame.state = serde_json::to_string(&self.appender.state()).ok();
        }
        let written = self.active.push(&frame, false);
        let scratch = &mut self.scratch.batch;
        match (&written, self.active_records.as_mut()) {
            (Ok(()), Some(active)) => {
                for (entry, text) in scratch.entries.iter_mut().zip(frame.records.drain(..)) {
                    entry.record = text;
                }
                active.batch.entries.append(&mut scratch.entries);
                active.batch.subtrees.append(&mut scratch.subtrees);
                active.batch.checkpoints.append(&mut scratch.checkpoints);
                if frame.state.is_some() {
                    active.state = frame.state.take();
                }
            }
            _ => {
                scratch.entries.clear();
                scratch.subtrees.clear();
                scratch.checkpoints.clear();
            }
        }
        if let Err(err) = written {
            tracing::error!(error = %err, "audit journal write failed; requests are refused until it works again");
            self.unwritten = Some(frame);
            // Written later, perhaps into another segment: the store reads the files.
            self.keep_records(false);
            return Err(AuditError::Unavailable);
        }
        Ok(())
    }

    /// Retries the frame a failed write left; true when none is left.
    fn write_unwritten(&mut self) -> bool {
        match self.unwritten.take() {
            None => true,
            Some(frame) => self.write(frame).is_ok(),
        }
    }
}

/// Opens segment `seq` of `spool_path`, its (empty) file created now.
fn open_segment(spool_path: &Path, seq: u64) -> Result<Spool, SpoolError> {
    let mut segment = Spool::open(&segment_path(spool_path, seq), u64::MAX)?;
    segment.file()?;
    Ok(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(dir: &Path, max_bytes: u64, on_full: AuditOnFull) -> Journal {
        let origin = "test.example/journal";
        let signer = flowgate_audit::note::NoteSigner::generate(origin).expect("signer");
        let policy = flowgate_audit::checkpoint::CheckpointPolicy {
            every_records: std::num::NonZeroU64::new(3).expect("3"),
            every_ms: std::num::NonZeroU64::new(60_000).expect("60 s"),
        };
        let appender = LogAppender::new(origin, signer, policy, now_ms()).expect("appender");
        Journal::new(
            appender,
            &dir.join("log.spool"),
            7,
            max_bytes,
            on_full,
            Arc::default(),
        )
        .expect("journal")
    }

    fn record(n: u64) -> AuditRecord {
        let mut record = AuditRecord::gap(now_ms(), 0, "");
        record.kind = flowgate_audit::record::RecordKind::Completion;
        record.gap = None;
        record.request_id = format!("req-{n}");
        record
    }

    /// The frames of a segment file, as the store would get them on a replay.
    fn frames(path: &Path) -> Vec<SpooledBatch> {
        let mut spool = Spool::open(path, u64::MAX).expect("open");
        let mut out = Vec::new();
        let mut offset = 0;
        while let Some((frame, next)) = spool.read_at(offset).expect("read") {
            out.push(frame);
            offset = next;
        }
        out
    }

    #[test]
    fn records_are_journaled_at_once_and_handed_to_the_store_per_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = journal(dir.path(), 1 << 20, AuditOnFull::Refuse);
        let indices: Vec<u64> = (0..4)
            .map(|n| journal.append(&record(n)).expect("append"))
            .collect();
        assert_eq!(indices, vec![0, 1, 2, 3]);
        // Written before `append` returned: the file holds every frame (the third record
        // completed a checkpoint, whose frame carries the appender state).
        let first = segment_path(&dir.path().join("log.spool"), 7);
        let written = frames(&first);
        assert_eq!(written.len(), 4);
        assert_eq!(written[2].checkpoints.len(), 1);
        assert!(written[2].state.is_some());
        assert!(journal.unstored_bytes() > 0);

        journal.rotate();
        journal.append(&record(4)).expect("append");
        let closed = journal.take_closed();
        assert_eq!(closed.len(), 1);
        let (path, records) = &closed[0];
        assert_eq!(path, &first);
        let records = records.as_ref().expect("kept in memory");
        let kept: Vec<u64> = records
            .batch
            .entries
            .iter()
            .map(|entry| entry.index)
            .collect();
        assert_eq!(kept, vec![0, 1, 2, 3]);
        assert_eq!(records.batch.checkpoints.len(), 1);
        assert_eq!(records.state, written[2].state);
        let canonical: Vec<&str> = written
            .iter()
            .flat_map(|frame| frame.records.iter().map(String::as_str))
            .collect();
        let stored: Vec<&str> = records
            .batch
            .entries
            .iter()
            .map(|entry| entry.record.as_str())
            .collect();
        assert_eq!(canonical, stored, "memory and file hold the same records");

        // Stored: the segment no longer counts; after a failure the next one is not kept.
        journal.segment_stored(path);
        journal.keep_records(false);
        journal.rotate();
        let closed = journal.take_closed();
        assert_eq!(closed.len(), 1);
        assert!(closed[0].1.is_none(), "read from the file after a failure");
        assert_eq!(frames(&closed[0].0)[0].first_index, 4);
    }

    #[test]
    fn a_full_journal_refuses_or_drops_then_counts_the_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut refusing = journal(dir.path(), 1, AuditOnFull::Refuse);
        refusing.append(&record(0)).expect("the first record fits");
        assert_eq!(refusing.append(&record(1)), Err(AuditError::Full));

        let mut journal = journal(&dir.path().join("serve"), 1, AuditOnFull::Serve);
        journal.append(&record(0)).expect("the first record fits");
        assert_eq!(journal.append(&record(1)), Err(AuditError::Dropped));
        assert_eq!(journal.append(&record(2)), Err(AuditError::Dropped));
        // Room again (the store took the segment): a gap marker counts the two drops.
        journal.rotate();
        for (path, _) in journal.take_closed() {
            journal.segment_stored(&path);
        }
        assert_eq!(journal.append(&record(3)), Ok(2));
        let frames = frames(journal.active.path());
        let gap = AuditRecord::parse(frames[0].records[0].as_bytes()).expect("gap");
        assert_eq!(gap.gap.map(|gap| gap.lost), Some(2));
        journal.stop();
        assert_eq!(journal.append(&record(4)), Err(AuditError::Closed));
    }

    #[test]
    fn the_store_is_behind_past_a_quarter_of_the_bound_and_caught_up_below_an_eighth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = journal(dir.path(), 64 * 1024, AuditOnFull::Refuse);
        let mut n = 0;
        while !journal.is_behind() {
            assert!(!journal.is_full());
            journal.append(&record(n)).expect("append");
            n += 1;
        }
        assert!(journal.unstored_bytes() > 16 * 1024);
        assert!(
            journal.unstored_bytes() < 17 * 1024,
            "one record past the mark"
        );
        assert!(!journal.has_caught_up());
        journal.rotate();
        for (path, _) in journal.take_closed() {
            journal.segment_stored(&path);
        }
        assert!(journal.has_caught_up() && !journal.is_behind());
    }

    #[test]
    fn the_store_is_behind_when_the_active_segment_has_not_been_closed_for_long() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = journal(dir.path(), 64 * 1024 * 1024, AuditOnFull::Refuse);
        journal.append(&record(0)).expect("append");
        journal.append(&record(1)).expect("append");
        assert!(!journal.is_behind(), "a fresh segment of two records");
        // The first record of the active segment came longer ago than the mark: as if the
        // store thread had not run since.
        journal.active_since_ms = Some(now_ms() - STALE_MS - 1);
        journal.append(&record(2)).expect("append");
        assert!(journal.is_behind());
        assert!(
            journal.has_caught_up(),
            "a few bytes: once stored, it goes back"
        );
        // Closing the segment (what the store thread does every period) resets the age.
        journal.rotate();
        journal.append(&record(3)).expect("append");
        assert!(!journal.is_behind());
    }

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
