//! The journal's store thread (journal mode): every `Background::period` (50 ms in the idle
//! scheduling class, else 5 ms: `background`), or when woken, it closes the active journal
//! segment and moves the closed ones into the store, oldest first, several
//! frames to a transaction, deleting each once stored; it also journals the checkpoints due by
//! time and announces the stored ones. While the store fails, segments wait and attempts back
//! off; the journal's bound then decides (`on_full`). At shutdown it journals the final
//! checkpoint and stores what is left, retrying a failing store for up to `SHUTDOWN_RETRY`;
//! what the store did not take is replayed at the next start.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowgate_store::{AuditAppender, LogTail, StoreError};
use tokio::sync::oneshot;

use super::CheckpointHook;
use super::background::Background;
use super::journal::{Journal, SegmentBatch};
use super::spool::Spool;
use super::writer::{Pending, ReplayError, WriterGauges, replay_spool, store_once};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long shutdown keeps trying a store that fails before leaving the rest in the journal
/// (a store just back, reconnecting on a loaded machine, may fail an attempt or two).
const SHUTDOWN_RETRY: Duration = Duration::from_secs(5);

pub(super) struct Storer {
    pub journal: Arc<Mutex<Journal>>,
    pub target: Box<dyn AuditAppender>,
    pub origin: String,
    pub gauges: Arc<WriterGauges>,
    pub checkpoint_hook: CheckpointHook,
    /// Wakes the thread (`None`: a flush request or shutdown); records never come this way.
    pub wake: Receiver<Option<Box<Pending>>>,
    /// Interval of the timer checkpoints.
    pub tick: Duration,
    /// Most records per store transaction.
    pub max_batch: usize,
    /// Completed when the thread is done (shutdown waits for it).
    pub finished: Option<oneshot::Sender<()>>,
    /// Where the stored log ends, once known (read again after a failure).
    pub tail: Option<LogTail>,
    /// Another writer appended to this origin: storing stops for good (a replay would take
    /// its records for ours), the journal keeps ours, and `on_full` applies in the end.
    pub conflicted: bool,
    /// Its scheduling class: idle while it keeps up, normal while behind. Records wait
    /// `background.period()` at most (none of their requests waits for the store).
    pub background: Arc<Background>,
}

impl Storer {
    pub fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick;
        let mut retry_at = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut behind = false;
        let mut shutdown_deadline = None;
        self.background.enter();
        let period = self.background.period();
        loop {
            let mut closed = self.gauges.closed.load(Ordering::Acquire);
            if !closed {
                let wait = period.min(next_tick.saturating_duration_since(Instant::now()));
                if let Err(RecvTimeoutError::Disconnected) = self.wake.recv_timeout(wait) {
                    closed = true;
                }
                closed |= self.gauges.closed.load(Ordering::Acquire);
            }
            let flushes = self
                .gauges
                .flushes
                .lock()
                .map(|mut flushes| std::mem::take(&mut *flushes))
                .unwrap_or_default();
            let Some(segments) = self.close_segment(closed, &mut next_tick) else {
                break;
            };
            if !self.conflicted && (!behind || closed || Instant::now() >= retry_at) {
                match self.store(segments) {
                    Ok(()) => {
                        behind = false;
                        backoff = FIRST_BACKOFF;
                        if self
                            .journal
                            .lock()
                            .is_ok_and(|journal| journal.has_caught_up())
                        {
                            self.background.enter();
                        }
                    }
                    Err(ReplayError::Store(StoreError::Conflict { .. })) => {
                        tracing::error!(origin = %self.origin, "another writer appended to this audit log: storing stops and records stay in the journal (give every node its own [audit] origin)");
                        self.conflicted = true;
                        behind = true;
                    }
                    Err(err) => {
                        if !behind {
                            tracing::warn!(error = %err, "audit store write failed; records wait in the journal until it is back");
                        }
                        behind = true;
                        retry_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            self.publish(behind);
            for done in flushes {
                let _ = done.send(());
            }
            if closed {
                let deadline =
                    *shutdown_deadline.get_or_insert_with(|| Instant::now() + SHUTDOWN_RETRY);
                let left = deadline.saturating_duration_since(Instant::now());
                if behind && !self.conflicted && !left.is_zero() {
                    std::thread::sleep(backoff.min(left));
                    continue;
                }
                if behind {
                    tracing::warn!(
                        "audit store still unavailable at shutdown: records stay in the journal and are replayed at the next start"
                    );
                }
                break;
            }
        }
        if let Some(finished) = self.finished.take() {
            let _ = finished.send(());
        }
    }

    /// Under the journal's lock: the timer checkpoint (or, at shutdown, the final frame),
    /// then a new segment. The closed segments to store; `None` if the lock is poisoned.
    fn close_segment(
        &self,
        closed: bool,
        next_tick: &mut Instant,
    ) -> Option<Vec<(PathBuf, Option<SegmentBatch>)>> {
        let mut journal = self.journal.lock().ok()?;
        if closed {
            journal.stop();
        } else if Instant::now() >= *next_tick {
            journal.tick();
            *next_tick = Instant::now() + self.tick;
        }
        journal.rotate();
        Some(journal.take_closed())
    }

    /// Moves `segments` into the store in order (from memory, else from the file), deleting
    /// each once stored. Records stop being kept in memory after a failure, and start again
    /// once everything is stored.
    fn store(&mut self, segments: Vec<(PathBuf, Option<SegmentBatch>)>) -> Result<(), ReplayError> {
        let stored = self.store_segments(segments);
        if let Ok(mut journal) = self.journal.lock() {
            journal.keep_records(stored.is_ok());
        }
        stored
    }

    fn store_segments(
        &mut self,
        segments: Vec<(PathBuf, Option<SegmentBatch>)>,
    ) -> Result<(), ReplayError> {
        for (path, records) in segments {
            let checkpoints = match records {
                Some(records) => store_once(
                    &records.batch,
                    records.state.as_deref(),
                    self.target.as_mut(),
                    &self.origin,
                    &mut self.tail,
                )?,
                None => replay_spool(
                    &mut Spool::open(&path, u64::MAX)?,
                    self.target.as_mut(),
                    &self.origin,
                    self.max_batch,
                    &mut self.tail,
                )?,
            };
            if let Err(err) = std::fs::remove_file(&path) {
                // Harmless: it is empty, and a replay skips what the store holds.
                tracing::warn!(path = %path.display(), error = %err, "stored audit journal segment could not be removed");
            }
            if let Ok(mut journal) = self.journal.lock() {
                journal.segment_stored(&path);
            }
            if let Some(hook) = self.checkpoint_hook.get() {
                for size in checkpoints {
                    hook(&self.origin, size);
                }
            }
        }
        Ok(())
    }

    /// Journal bytes the store has not taken (none while it keeps up) and fullness.
    fn publish(&self, behind: bool) {
        let Ok(journal) = self.journal.lock() else {
            return;
        };
        let waiting = if behind { journal.unstored_bytes() } else { 0 };
        self.gauges.spool_bytes.store(waiting, Ordering::Relaxed);
        self.gauges
            .spool_full
            .store(journal.is_full(), Ordering::Relaxed);
    }
}
