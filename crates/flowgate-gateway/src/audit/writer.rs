//! The audit writer of store mode (`acknowledge = "store"`; journal mode has `journal` and
//! `storer` instead, and shares this file's batches and spool replay): ONE OS thread per node
//! that drains the submit queue (group commit),
//! appends each record to the Merkle log in queue order, writes the batch with its subtree
//! roots and checkpoints through the store's synchronous appender (one transaction), then
//! completes each submitter's receipt with the record's index. A batch holding only records
//! nobody waits for (completion records) lingers up to `LINGER` for the next urgent record,
//! so the two share a commit.
//!
//! When the store fails, the batch goes to the disk spool (synced before the receipts
//! complete) and so does every later batch, to keep the order, until a replay has moved the
//! whole spool into the store. When the spool is full, `on_full` decides for the records
//! waiting: `refuse` fails their receipts with `Full` (503), `serve` drops them (a gap marker
//! counting them is appended once there is room again). Without a spool (or when writing it
//! fails) the batch stays in memory and is retried with back-off while requests wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use flowgate_audit::appender::LogAppender;
use flowgate_audit::checkpoint::{CheckpointPolicy, SignedCheckpoint};
use flowgate_audit::merkle::SubtreeRoot;
use flowgate_audit::note::NoteSigner;
use flowgate_audit::record::AuditRecord;
use flowgate_audit::source::rebuild_appender_state;
use flowgate_config::AuditOnFull;
use flowgate_store::{
    AuditAppender, AuditEntry, AuditStore, AuditWrite, LogTail, OriginLog, StoreError,
    StoredCheckpoint,
};
use tokio::sync::oneshot;

use super::spool::{Spool, SpooledBatch, SpooledCheckpoint, SpooledSubtree};
use super::{AuditError, CheckpointHook, now_ms};

/// A record waiting for the writer, with its submitter's receipt.
pub(super) struct Pending {
    pub record: AuditRecord,
    pub done: oneshot::Sender<Result<u64, AuditError>>,
    /// Someone waits for this record to be durable (a request-side record). Records nobody
    /// waits for (completion records) may wait up to `LINGER` to share the next commit.
    pub urgent: bool,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Pending")
    }
}

/// State shared between the writer thread and the `AuditLog` handles.
#[derive(Debug, Default)]
pub(super) struct WriterGauges {
    /// Records submitted and not yet taken by the writer.
    pub queued: AtomicUsize,
    /// Dropped records not yet covered by a gap marker.
    pub dropped: AtomicU64,
    /// Records dropped in `serve` mode since start.
    pub dropped_total: AtomicU64,
    /// Bytes in the disk spool.
    pub spool_bytes: AtomicU64,
    /// The spool is full: new records meet `on_full`.
    pub spool_full: AtomicBool,
    /// Set by `shutdown`: the writer flushes and stops.
    pub closed: AtomicBool,
    /// `AuditLog::stored` callers (journal mode): completed after the store thread's next
    /// round, which stores what was journaled when they asked.
    pub flushes: std::sync::Mutex<Vec<oneshot::Sender<()>>>,
}

/// Longest time records nobody waits for are held back to share a commit with the next
/// urgent record (at a few thousand requests per second, a request's completion record then
/// rides with a later request's record instead of costing a commit of its own).
const LINGER: Duration = Duration::from_millis(2);
/// Longest pause between replay attempts while the store stays down.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub(super) struct Writer {
    pub checkpoint_hook: CheckpointHook,
    pub appender: LogAppender,
    /// The store's synchronous write side.
    pub target: Box<dyn AuditAppender>,
    /// The store itself, to rebuild the appender after a conflicting writer.
    pub store: Arc<dyn AuditStore>,
    pub runtime: tokio::runtime::Handle,
    pub origin: String,
    /// Records; `None` only wakes the writer (shutdown).
    pub receiver: Receiver<Option<Box<Pending>>>,
    pub gauges: Arc<WriterGauges>,
    pub on_full: AuditOnFull,
    pub max_batch: usize,
    pub policy: CheckpointPolicy,
    pub tick: Duration,
    pub spool: Option<Spool>,
    /// Completed when the thread is done (shutdown waits for it).
    pub finished: Option<oneshot::Sender<()>>,
}

/// One group commit being assembled.
#[derive(Default)]
pub(super) struct Batch {
    pub entries: Vec<AuditEntry>,
    pub subtrees: Vec<SubtreeRoot>,
    pub checkpoints: Vec<StoredCheckpoint>,
    pub waiters: Vec<(oneshot::Sender<Result<u64, AuditError>>, u64)>,
}

/// The stored form of a canonical record at `index`, as the appender produced it.
fn entry_from_canonical(index: u64, canonical: String) -> Result<AuditEntry, String> {
    let record = AuditRecord::parse(canonical.as_bytes()).map_err(|err| err.to_string())?;
    let leaf_hash = flowgate_audit::merkle::leaf_hash(canonical.as_bytes());
    Ok(AuditEntry::new(
        index,
        canonical,
        leaf_hash,
        record.time_ms,
        &record,
    ))
}

pub(super) fn stored(checkpoint: SignedCheckpoint) -> StoredCheckpoint {
    StoredCheckpoint {
        size: checkpoint.checkpoint.size,
        note: checkpoint.note,
    }
}

impl Batch {
    /// Appends `other`, whose records follow this batch's.
    pub fn absorb(&mut self, other: Self) {
        self.entries.extend(other.entries);
        self.subtrees.extend(other.subtrees);
        self.checkpoints.extend(other.checkpoints);
        self.waiters.extend(other.waiters);
    }

    fn to_spooled(&self, state: Option<String>) -> SpooledBatch {
        SpooledBatch {
            first_index: self.entries.first().map_or(0, |entry| entry.index),
            records: self
                .entries
                .iter()
                .map(|entry| entry.record.clone())
                .collect(),
            subtrees: self
                .subtrees
                .iter()
                .map(SpooledSubtree::from_root)
                .collect(),
            checkpoints: self
                .checkpoints
                .iter()
                .map(SpooledCheckpoint::from)
                .collect(),
            state,
        }
    }

    fn from_spooled(spooled: SpooledBatch) -> Result<(Self, Option<String>), String> {
        let mut entries = Vec::with_capacity(spooled.records.len());
        for (index, canonical) in (spooled.first_index..).zip(spooled.records) {
            entries.push(entry_from_canonical(index, canonical)?);
        }
        let batch = Self {
            entries,
            subtrees: spooled
                .subtrees
                .iter()
                .map(SpooledSubtree::to_root)
                .collect(),
            checkpoints: spooled
                .checkpoints
                .into_iter()
                .map(StoredCheckpoint::from)
                .collect(),
            waiters: Vec::new(),
        };
        Ok((batch, spooled.state))
    }

    fn write<'a>(&'a self, state: Option<&'a str>) -> AuditWrite<'a> {
        AuditWrite {
            entries: &self.entries,
            subtrees: &self.subtrees,
            checkpoints: &self.checkpoints,
            state,
        }
    }

    /// Moves `tail` past this batch.
    fn extend_tail(&self, tail: &mut LogTail) {
        if let Some(last) = self.entries.last() {
            tail.next_index = last.index + 1;
            tail.last_leaf = Some(last.leaf_hash);
        }
        if let Some(size) = self
            .checkpoints
            .iter()
            .map(|checkpoint| checkpoint.size)
            .max()
        {
            tail.checkpoint_size = Some(size);
        }
    }

    /// Whether a store ending at `tail` already holds this batch (it was written before a
    /// crash, or by an attempt that timed out but committed).
    ///
    /// # Errors
    /// `StoreError::Conflict` when the batch reaches the stored log's last entry and that
    /// entry is not this batch's: another writer appended to this origin.
    fn stored_in(&self, tail: LogTail, origin: &str) -> Result<bool, ReplayError> {
        match self.entries.first() {
            Some(first) if first.index >= tail.next_index => Ok(false),
            Some(first) => {
                let last_stored = tail.next_index - 1;
                let ours = usize::try_from(last_stored - first.index)
                    .ok()
                    .and_then(|offset| self.entries.get(offset));
                match (ours, tail.last_leaf) {
                    (Some(entry), Some(stored)) if entry.leaf_hash != stored => {
                        Err(ReplayError::Store(StoreError::Conflict {
                            entity: "audit entry",
                            value: format!(
                                "{origin}/{last_stored}: the stored record is another writer's"
                            ),
                        }))
                    }
                    _ => Ok(true),
                }
            }
            None => Ok({
                let newest = self
                    .checkpoints
                    .iter()
                    .map(|checkpoint| checkpoint.size)
                    .max();
                newest.is_some_and(|size| Some(size) <= tail.checkpoint_size)
            }),
        }
    }
}

/// The canonical record bytes as text. The canonical encoder writes only Rust strings and
/// ASCII, so they are valid UTF-8; the lossy branch is unreachable.
pub(super) fn canonical_text(canonical: Vec<u8>) -> String {
    String::from_utf8(canonical)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

/// Why spooled batches could not all be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("audit store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Spool(#[from] super::spool::SpoolError),
    #[error(
        "spooled batch at index {first} does not continue the stored log (it ends at {stored})"
    )]
    Gap { first: u64, stored: u64 },
    #[error("spooled record is invalid: {0}")]
    Record(String),
}

/// Stores `batch` (with the appender `state` saved beside it) in one transaction unless the
/// store holds it already. `tail` is as for [`replay_spool`]. Returns the sizes of the
/// checkpoints written.
///
/// # Errors
/// [`ReplayError`], `tail` then `None`.
pub(super) fn store_once(
    batch: &Batch,
    state: Option<&str>,
    target: &mut dyn AuditAppender,
    origin: &str,
    known_tail: &mut Option<LogTail>,
) -> Result<Vec<u64>, ReplayError> {
    let mut tail = match known_tail.take() {
        Some(tail) => tail,
        None => target.tail(origin)?,
    };
    if !batch.stored_in(tail, origin)? {
        if let Some(first) = batch.entries.first()
            && first.index != tail.next_index
        {
            return Err(ReplayError::Gap {
                first: first.index,
                stored: tail.next_index,
            });
        }
        target.append(origin, batch.write(state))?;
        batch.extend_tail(&mut tail);
    }
    *known_tail = Some(tail);
    Ok(batch
        .checkpoints
        .iter()
        .map(|checkpoint| checkpoint.size)
        .collect())
}

/// Moves every spooled batch into the store, in order, skipping those already stored,
/// several frames to a transaction (up to `max_records` records), then empties the spool.
/// `tail` is where the stored log ends (read from the store when `None`), kept up to date for
/// the next call. Returns the sizes of the checkpoints written.
///
/// # Errors
/// [`ReplayError`]; the spool is left as it was (what was written is skipped next time) and
/// `tail` is `None` (an attempt that failed may have committed after all).
pub(super) fn replay_spool(
    spool: &mut Spool,
    target: &mut dyn AuditAppender,
    origin: &str,
    max_records: usize,
    known_tail: &mut Option<LogTail>,
) -> Result<Vec<u64>, ReplayError> {
    let mut tail = match known_tail.take() {
        Some(tail) => tail,
        None => target.tail(origin)?,
    };
    let mut offset = 0;
    let mut merged = Batch::default();
    let mut state = None;
    let mut written = Vec::new();
    let mut write = |merged: &mut Batch, state: &mut Option<String>| {
        if merged.entries.is_empty() && merged.checkpoints.is_empty() {
            return Ok(());
        }
        target.append(origin, merged.write(state.as_deref()))?;
        written.extend(merged.checkpoints.iter().map(|checkpoint| checkpoint.size));
        *merged = Batch::default();
        *state = None;
        Ok::<(), StoreError>(())
    };
    while let Some((spooled, next)) = spool.read_at(offset)? {
        offset = next;
        let (batch, batch_state) = Batch::from_spooled(spooled).map_err(ReplayError::Record)?;
        if batch.stored_in(tail, origin)? {
            continue;
        }
        if let Some(first) = batch.entries.first()
            && first.index != tail.next_index
        {
            return Err(ReplayError::Gap {
                first: first.index,
                stored: tail.next_index,
            });
        }
        // From here `tail` also covers what is merged and about to be written.
        batch.extend_tail(&mut tail);
        merged.absorb(batch);
        if batch_state.is_some() {
            state = batch_state;
        }
        if merged.entries.len() >= max_records {
            write(&mut merged, &mut state)?;
        }
    }
    write(&mut merged, &mut state)?;
    spool.clear()?;
    *known_tail = Some(tail);
    Ok(written)
}

impl Writer {
    pub fn run(mut self) {
        let mut queued: Vec<Pending> = Vec::with_capacity(self.max_batch);
        let mut next_tick = Instant::now() + self.tick;
        let mut next_replay = Instant::now();
        let mut replay_backoff = Duration::from_millis(50);
        loop {
            let closed = self.gauges.closed.load(Ordering::Acquire);
            let mut wake = next_tick;
            if self.spooling() {
                wake = wake.min(next_replay);
            }
            // Once closed, only drain what is queued.
            let wait = if closed {
                Duration::ZERO
            } else {
                wake.saturating_duration_since(Instant::now())
            };
            let mut disconnected = false;
            match self.receiver.recv_timeout(wait) {
                Ok(Some(pending)) => queued.push(*pending),
                Ok(None) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => disconnected = true,
            }
            while queued.len() < self.max_batch {
                match self.receiver.try_recv() {
                    Ok(Some(pending)) => queued.push(*pending),
                    Ok(None) => {}
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            if !closed && !disconnected && !queued.is_empty() && !queued.iter().any(|p| p.urgent) {
                disconnected = self.linger(&mut queued);
            }
            self.gauges
                .queued
                .fetch_sub(queued.len(), Ordering::Relaxed);
            if self.spooling() && Instant::now() >= next_replay {
                if self.replay() {
                    replay_backoff = Duration::from_millis(50);
                } else {
                    next_replay = Instant::now() + replay_backoff;
                    replay_backoff = (replay_backoff * 2).min(MAX_BACKOFF);
                }
            }
            self.commit(&mut queued);
            if Instant::now() >= next_tick {
                let checkpoint = self.appender.tick(now_ms());
                self.store_checkpoint(checkpoint);
                next_tick = Instant::now() + self.tick;
            }
            let drained = queued.is_empty() && self.gauges.queued.load(Ordering::Relaxed) == 0;
            if disconnected || (closed && drained) {
                break;
            }
        }
        self.finish();
    }

    /// Waits up to `LINGER` for an urgent record (or a full batch) to commit with what is
    /// queued. True when the channel closed.
    fn linger(&self, queued: &mut Vec<Pending>) -> bool {
        let deadline = Instant::now() + LINGER;
        while queued.len() < self.max_batch {
            match self
                .receiver
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Some(pending)) => {
                    let urgent = pending.urgent;
                    queued.push(*pending);
                    if urgent {
                        break;
                    }
                }
                // A wake-up (shutdown) or the deadline: commit now.
                Ok(None) | Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return true,
            }
        }
        false
    }

    /// The final gap marker and checkpoint, a last replay attempt, then the signal.
    fn finish(&mut self) {
        let mut none = Vec::new();
        self.commit(&mut none);
        let checkpoint = self.appender.checkpoint_now(now_ms());
        self.store_checkpoint(checkpoint);
        if self.spooling() && !self.replay() {
            tracing::warn!(
                bytes = self.gauges.spool_bytes.load(Ordering::Relaxed),
                "audit store still unavailable at shutdown: records stay in the spool and are replayed at the next start"
            );
        }
        if let Some(finished) = self.finished.take() {
            let _ = finished.send(());
        }
    }

    /// Stores a checkpoint due without new records (timer, shutdown).
    fn store_checkpoint(&mut self, checkpoint: Option<SignedCheckpoint>) {
        if let Some(checkpoint) = checkpoint {
            let mut batch = Batch::default();
            batch.checkpoints.push(stored(checkpoint));
            self.store_batch(batch);
        }
    }

    fn publish_spool_gauges(&self) {
        if let Some(spool) = &self.spool {
            self.gauges
                .spool_bytes
                .store(spool.len(), Ordering::Relaxed);
            self.gauges
                .spool_full
                .store(!spool.has_room(), Ordering::Relaxed);
        }
    }

    fn spooling(&self) -> bool {
        self.spool.as_ref().is_some_and(|spool| !spool.is_empty())
    }

    /// One replay attempt; true when the spool is empty afterwards.
    fn replay(&mut self) -> bool {
        let Some(spool) = self.spool.as_mut() else {
            return true;
        };
        let outcome = replay_spool(
            spool,
            self.target.as_mut(),
            &self.origin,
            self.max_batch,
            &mut None,
        );
        self.publish_spool_gauges();
        match outcome {
            Ok(_) => {
                tracing::info!("audit spool replayed into the store");
                true
            }
            Err(err) => {
                tracing::debug!(error = %err, "audit spool replay failed; retrying");
                false
            }
        }
    }

    fn push(&mut self, batch: &mut Batch, record: &AuditRecord, now: u64) -> u64 {
        let appended = self.appender.append(record, now);
        let index = appended.index;
        batch.subtrees.extend(appended.subtrees);
        batch.checkpoints.extend(appended.checkpoint.map(stored));
        batch.entries.push(AuditEntry::new(
            index,
            canonical_text(appended.canonical),
            appended.leaf_hash,
            appended.time_ms,
            record,
        ));
        index
    }

    /// Refuses or drops what is queued because the spool is full; nothing is appended.
    fn overflow(&self, queued: &mut Vec<Pending>) {
        for Pending { done, .. } in queued.drain(..) {
            let error = match self.on_full {
                AuditOnFull::Refuse => AuditError::Full,
                AuditOnFull::Serve => {
                    self.gauges.dropped.fetch_add(1, Ordering::Relaxed);
                    self.gauges.dropped_total.fetch_add(1, Ordering::Relaxed);
                    AuditError::Dropped
                }
            };
            let _ = done.send(Err(error));
        }
    }

    fn commit(&mut self, queued: &mut Vec<Pending>) {
        if self.spooling() && self.spool.as_ref().is_some_and(|spool| !spool.has_room()) {
            if !queued.is_empty() {
                tracing::warn!(records = queued.len(), on_full = ?self.on_full, "audit spool full");
            }
            self.overflow(queued);
            return;
        }
        let lost = self.gauges.dropped.swap(0, Ordering::Relaxed);
        if queued.is_empty() && lost == 0 {
            return;
        }
        let now = now_ms();
        let mut batch = Batch {
            entries: Vec::with_capacity(queued.len() + 1),
            waiters: Vec::with_capacity(queued.len()),
            ..Batch::default()
        };
        for Pending { record, done, .. } in queued.drain(..) {
            let index = self.push(&mut batch, &record, now);
            batch.waiters.push((done, index));
        }
        // Drops happen while the queue or spool is full, so after what was kept: the
        // marker follows.
        if lost > 0 {
            self.push(
                &mut batch,
                &AuditRecord::gap(now, lost, "queue_or_spool_full"),
                now,
            );
        }
        self.store_batch(batch);
    }

    fn state_text(&self, batch: &Batch) -> Option<String> {
        (!batch.checkpoints.is_empty())
            .then(|| serde_json::to_string(&self.appender.state()).ok())
            .flatten()
    }

    /// One store attempt.
    fn write_to_store(&mut self, batch: &Batch) -> Result<(), StoreError> {
        let state = self.state_text(batch);
        self.target
            .append(&self.origin, batch.write(state.as_deref()))
    }

    /// Stores the batch (or spools it), then completes the receipts.
    fn store_batch(&mut self, mut batch: Batch) {
        let mut delay = Duration::from_millis(20);
        let mut attempts_after_close = 0u32;
        let outcome = loop {
            if !self.spooling() {
                match self.write_to_store(&batch) {
                    Ok(()) => break Ok(()),
                    Err(StoreError::Conflict { .. }) => {
                        // Another writer appended to this origin (two nodes configured with
                        // one name): continue from the stored log instead of retrying.
                        tracing::error!(origin = %self.origin, "another writer appended to this audit log; resynchronising (give every node its own [audit] origin)");
                        match self.resync(&mut batch) {
                            Ok(()) => continue,
                            Err(detail) => {
                                tracing::warn!(%detail, "audit resynchronisation failed; retrying");
                            }
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, records = batch.entries.len(), "audit store write failed");
                    }
                }
            }
            // The store failed, or older batches wait in the spool: spool this one after them.
            let state = self.state_text(&batch);
            // (`commit` checked the room before appending the records.)
            if let Some(spool) = self.spool.as_mut() {
                match spool.push(&batch.to_spooled(state), true) {
                    Ok(()) => {
                        self.publish_spool_gauges();
                        break Ok(());
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "audit spool write failed; keeping the batch in memory");
                    }
                }
            }
            if self.gauges.closed.load(Ordering::Acquire) {
                attempts_after_close += 1;
                if attempts_after_close >= 5 {
                    tracing::error!(
                        records = batch.entries.len(),
                        "audit store and spool unavailable at shutdown: records not stored"
                    );
                    break Err(AuditError::Unavailable);
                }
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(MAX_BACKOFF);
        };
        if outcome.is_ok()
            && let Some(hook) = self.checkpoint_hook.get()
        {
            for checkpoint in &batch.checkpoints {
                hook(&self.origin, checkpoint.size);
            }
        }
        for (done, index) in batch.waiters {
            // A submitter that stopped waiting is fine: the record is stored all the same.
            let _ = done.send(outcome.map(|()| index));
        }
    }

    /// Rebuilds the appender from the store and re-appends the batch's records after what is
    /// stored now, renumbering the receipts. Pending checkpoints are dropped (the stored log
    /// has its own).
    fn resync(&mut self, batch: &mut Batch) -> Result<(), String> {
        let store = Arc::clone(&self.store);
        let origin = self.origin.clone();
        let (signer, state) = self.runtime.block_on(async move {
            let node = store
                .audit_node(&origin)
                .await
                .map_err(|err| err.to_string())?
                .ok_or_else(|| "the audit node row is missing".to_owned())?;
            let signer = NoteSigner::parse(&node.signing_key).map_err(|err| err.to_string())?;
            let verifier = signer.verifier();
            let hint = node
                .state
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok());
            let source = OriginLog::new(store, &origin);
            let state =
                rebuild_appender_state(&source, std::slice::from_ref(&verifier), hint, now_ms())
                    .await
                    .map_err(|err| err.to_string())?;
            Ok::<_, String>((signer, state))
        })?;
        self.appender = LogAppender::restore(&self.origin, signer, self.policy, state)
            .map_err(|err| err.to_string())?;
        let old = std::mem::take(batch);
        let first_old = old.entries.first().map_or(0, |entry| entry.index);
        let now = now_ms();
        let mut renumbered = Vec::with_capacity(old.entries.len());
        for entry in &old.entries {
            let record =
                AuditRecord::parse(entry.record.as_bytes()).map_err(|err| err.to_string())?;
            renumbered.push(self.push(batch, &record, now));
        }
        for (done, index) in old.waiters {
            let position = usize::try_from(index.saturating_sub(first_old)).unwrap_or(usize::MAX);
            match renumbered.get(position) {
                Some(new_index) => batch.waiters.push((done, *new_index)),
                None => {
                    let _ = done.send(Err(AuditError::Unavailable));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_audit::record::RecordKind;

    const ORIGIN: &str = "writer.test/log";

    fn batch_of(index: u64, request_id: &str) -> Batch {
        let mut record = AuditRecord::gap(1_700_000_000_000, index, "");
        record.kind = RecordKind::Completion;
        record.gap = None;
        request_id.clone_into(&mut record.request_id);
        let canonical = String::from_utf8(record.to_canonical()).expect("canonical JSON is text");
        Batch {
            entries: vec![entry_from_canonical(index, canonical).expect("entry")],
            ..Batch::default()
        }
    }

    #[tokio::test]
    async fn records_are_skipped_as_stored_only_when_the_stored_leaf_is_theirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/store.db", dir.path().display());
        let store = flowgate_store::conformance::migrated_sqlite(&url).await;
        let mut target = store
            .dedicated_appender()
            .expect("appender")
            .expect("SQLite has a dedicated appender");
        // Another writer on the same origin stored its record 0 ...
        let theirs = batch_of(0, "theirs");
        target
            .append(ORIGIN, theirs.write(None))
            .expect("append theirs");

        // ... so ours, also numbered 0, is a conflict, not "already stored".
        let mut tail = None;
        let ours = store_once(&batch_of(0, "ours"), None, &mut *target, ORIGIN, &mut tail);
        assert!(
            matches!(ours, Err(ReplayError::Store(StoreError::Conflict { .. }))),
            "{ours:?}"
        );
        // A batch that is the stored one (an attempt that failed but committed) is skipped.
        let mut tail = None;
        store_once(&theirs, None, &mut *target, ORIGIN, &mut tail).expect("skipped as stored");
        assert_eq!(tail.map(|tail| tail.next_index), Some(1));
    }
}
