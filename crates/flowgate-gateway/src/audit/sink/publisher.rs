//! `AuditStream`: the background task that tails this node's audit log in the store and
//! publishes it to one `AuditSink`. Each round reads the records after the persisted cursor
//! (at most `batch_size`) and the stored checkpoints they complete, publishes them (records
//! first, in index order, then the checkpoints), waits for every acknowledgement, then moves
//! the cursor and saves it. A failed round changes nothing: after a back-off the same
//! messages go out again with the same de-duplication ids (at-least-once; the sink drops
//! the copies it already has). Once caught up it polls the store every `poll_interval`.
//!
//! It never touches the request path: the writer does not know it exists, and it only reads
//! the store. Shutdown (after the audit writer's final flush) makes one last bounded attempt
//! to publish what is left; anything after that goes out from the cursor at the next start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use flowgate_config::AuditStreamConfig;
use flowgate_store::{AuditStore, SinkCursor, StoreError};
use tokio_util::sync::CancellationToken;

use super::{AuditSink, SinkError, SinkMessage};

/// Most checkpoints published per round.
const CHECKPOINTS_PER_ROUND: usize = 64;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The sink as the publisher last saw it (health details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    /// Not connected yet.
    Connecting,
    /// The last publish or set-up succeeded.
    Up,
    /// The last publish or set-up failed; retrying with back-off.
    Down,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Up => "ok",
            Self::Down => "unavailable",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Up,
            2 => Self::Down,
            _ => Self::Connecting,
        }
    }
}

/// Counters and gauges of one stream (metrics and health).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTotals {
    /// Records acknowledged by the sink (duplicates included) since start.
    pub records: u64,
    /// Checkpoints acknowledged by the sink since start.
    pub checkpoints: u64,
    /// Acknowledged messages the sink already had (republished after a lost ack).
    pub duplicates: u64,
    /// Rounds that failed (sink or store error) since start.
    pub failures: u64,
    /// Records stored but not yet acknowledged, as of the last round.
    pub lag: u64,
    pub status: StreamStatus,
}

#[derive(Debug, Default)]
struct Counters {
    records: AtomicU64,
    checkpoints: AtomicU64,
    duplicates: AtomicU64,
    failures: AtomicU64,
    lag: AtomicU64,
    status: AtomicU8,
}

impl Counters {
    fn set_status(&self, status: StreamStatus) {
        let value = match status {
            StreamStatus::Connecting => 0,
            StreamStatus::Up => 1,
            StreamStatus::Down => 2,
        };
        self.status.store(value, Ordering::Relaxed);
    }
}

/// Settings of the tail, from `[audit.stream]`.
#[derive(Debug, Clone)]
struct Tail {
    origin: String,
    subject_prefix: String,
    batch_size: usize,
    poll_interval: Duration,
    drain_timeout: Duration,
}

#[derive(Debug)]
struct Shared {
    sink: Arc<dyn AuditSink>,
    store: Arc<dyn AuditStore>,
    tail: Tail,
    counters: Counters,
    stop: CancellationToken,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Handle of this node's audit stream publisher; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditStream {
    shared: Arc<Shared>,
}

#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("audit store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Whether the tail has more to publish right away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    More,
    CaughtUp,
}

/// The publisher's position between rounds.
#[derive(Debug, Default)]
struct TailState {
    /// Loaded from the store on the first round.
    cursor: Option<SinkCursor>,
    /// The sink's `prepare` succeeded and nothing failed since.
    prepared: bool,
    /// The last round failed (logs once per outage).
    failing: bool,
    /// `cursor` moved but saving it failed; the next round saves it again.
    unsaved: bool,
}

impl AuditStream {
    /// A publisher of `origin`'s log to `sink`; nothing runs before `start`.
    pub fn new(
        sink: Arc<dyn AuditSink>,
        store: Arc<dyn AuditStore>,
        origin: &str,
        config: &AuditStreamConfig,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                sink,
                store,
                tail: Tail {
                    origin: origin.to_owned(),
                    subject_prefix: config.subject_prefix.clone(),
                    batch_size: config.batch_size.max(1),
                    poll_interval: config.poll_interval,
                    drain_timeout: config.drain_timeout,
                },
                counters: Counters::default(),
                stop: CancellationToken::new(),
                task: std::sync::Mutex::new(None),
            }),
        }
    }

    /// Spawns the publisher task (on the current runtime). Later calls do nothing.
    pub fn start(&self) {
        let Ok(mut slot) = self.shared.task.lock() else {
            return;
        };
        if slot.is_none() && !self.shared.stop.is_cancelled() {
            *slot = Some(tokio::spawn(run(Arc::clone(&self.shared))));
        }
    }

    /// Stops the publisher after a final drain bounded by `drain_timeout`, and waits for it.
    /// Call after the audit writer's shutdown so its last records and checkpoint go out.
    /// Idempotent.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        let handle = self
            .shared
            .task
            .lock()
            .map(|mut slot| slot.take())
            .unwrap_or(None);
        if let Some(handle) = handle
            && let Err(err) = handle.await
        {
            tracing::error!(error = %err, "audit stream task failed");
        }
    }

    /// The sink's name (`nats/<stream>`), also the metrics label.
    pub fn sink_name(&self) -> &str {
        self.shared.sink.name()
    }

    pub fn totals(&self) -> StreamTotals {
        let counters = &self.shared.counters;
        StreamTotals {
            records: counters.records.load(Ordering::Relaxed),
            checkpoints: counters.checkpoints.load(Ordering::Relaxed),
            duplicates: counters.duplicates.load(Ordering::Relaxed),
            failures: counters.failures.load(Ordering::Relaxed),
            lag: counters.lag.load(Ordering::Relaxed),
            status: StreamStatus::from_u8(counters.status.load(Ordering::Relaxed)),
        }
    }
}

async fn run(shared: Arc<Shared>) {
    let mut state = TailState::default();
    let mut backoff = MIN_BACKOFF;
    loop {
        let outcome = tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            outcome = round(&shared, &mut state) => outcome,
        };
        let wait = match outcome {
            Ok(Progress::More) => {
                backoff = MIN_BACKOFF;
                continue;
            }
            Ok(Progress::CaughtUp) => {
                backoff = MIN_BACKOFF;
                shared.tail.poll_interval
            }
            Err(err) => {
                failed(&shared, &mut state, &err);
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    let drain = async {
        loop {
            match round(&shared, &mut state).await {
                Ok(Progress::CaughtUp) => break,
                Ok(Progress::More) => {}
                Err(err) => {
                    failed(&shared, &mut state, &err);
                    tokio::time::sleep(MIN_BACKOFF).await;
                }
            }
        }
    };
    if tokio::time::timeout(shared.tail.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            sink = shared.sink.name(),
            lag = shared.counters.lag.load(Ordering::Relaxed),
            "audit stream not drained at shutdown; the rest is published from the stored cursor at the next start"
        );
    }
}

fn failed(shared: &Shared, state: &mut TailState, err: &RoundError) {
    shared.counters.failures.fetch_add(1, Ordering::Relaxed);
    if matches!(err, RoundError::Sink(_)) {
        shared.counters.set_status(StreamStatus::Down);
        state.prepared = false;
    }
    if state.failing {
        tracing::debug!(sink = shared.sink.name(), error = %err, "audit stream still failing");
    } else {
        tracing::warn!(sink = shared.sink.name(), error = %err, "audit stream failed; retrying from the cursor");
    }
    state.failing = true;
}

/// One tail step: read after the cursor, publish, await the acks, save the cursor.
async fn round(shared: &Shared, state: &mut TailState) -> Result<Progress, RoundError> {
    let store = &shared.store;
    let tail = &shared.tail;
    let sink = shared.sink.as_ref();
    let mut cursor = match state.cursor {
        Some(cursor) => cursor,
        None => {
            let cursor = store
                .audit_sink_cursor(&tail.origin, sink.name())
                .await?
                .unwrap_or_default();
            state.cursor = Some(cursor);
            cursor
        }
    };
    let size = store.audit_size(&tail.origin).await?;
    shared
        .counters
        .lag
        .store(size.saturating_sub(cursor.next_index), Ordering::Relaxed);
    if !state.prepared {
        sink.prepare().await?;
        state.prepared = true;
        shared.counters.set_status(StreamStatus::Up);
    }

    let entries = if size > cursor.next_index {
        store
            .audit_entries(&tail.origin, cursor.next_index, tail.batch_size)
            .await?
    } else {
        Vec::new()
    };
    let first = entries.first().map_or(size, |entry| entry.index);
    if first > cursor.next_index {
        // Retention pruned records this sink never published: they are gone from the store,
        // so the stream continues after them.
        tracing::warn!(
            sink = sink.name(),
            from = cursor.next_index,
            to = first,
            "audit records were pruned before being streamed; skipping them"
        );
        cursor.next_index = first;
    }
    let next_index = entries
        .last()
        .map_or(cursor.next_index, |entry| entry.index + 1);
    let checkpoints = if next_index > cursor.checkpoint_size {
        store
            .audit_checkpoints_between(
                &tail.origin,
                cursor.checkpoint_size,
                next_index,
                CHECKPOINTS_PER_ROUND,
            )
            .await?
    } else {
        Vec::new()
    };
    let full = entries.len() >= tail.batch_size || checkpoints.len() >= CHECKPOINTS_PER_ROUND;
    let mut messages = Vec::with_capacity(entries.len() + checkpoints.len());
    for entry in entries {
        messages.push(SinkMessage::record(
            &tail.subject_prefix,
            &tail.origin,
            entry.index,
            entry.record,
        ));
    }
    let checkpoint_size = checkpoints
        .last()
        .map_or(cursor.checkpoint_size, |checkpoint| checkpoint.size);
    for checkpoint in checkpoints {
        messages.push(SinkMessage::checkpoint(
            &tail.subject_prefix,
            &tail.origin,
            checkpoint.size,
            checkpoint.note,
        ));
    }
    let records = next_index - cursor.next_index;
    if !messages.is_empty() {
        let published = sink.publish(&messages).await?;
        let counters = &shared.counters;
        counters.set_status(StreamStatus::Up);
        counters.records.fetch_add(records, Ordering::Relaxed);
        counters
            .checkpoints
            .fetch_add(messages.len() as u64 - records, Ordering::Relaxed);
        counters
            .duplicates
            .fetch_add(published.duplicates, Ordering::Relaxed);
    }
    if state.failing {
        tracing::info!(sink = sink.name(), "audit stream recovered");
        state.failing = false;
    }
    let advanced = SinkCursor {
        next_index,
        checkpoint_size,
    };
    shared
        .counters
        .lag
        .store(size.saturating_sub(next_index), Ordering::Relaxed);
    if Some(advanced) != state.cursor || state.unsaved {
        // Progress counts from here even if saving fails: the next round saves again, and a
        // restart before that only republishes (de-duplicated) messages.
        state.cursor = Some(advanced);
        state.unsaved = true;
        store
            .save_audit_sink_cursor(&tail.origin, sink.name(), advanced)
            .await?;
        state.unsaved = false;
    }
    Ok(if full || next_index < size {
        Progress::More
    } else {
        Progress::CaughtUp
    })
}
