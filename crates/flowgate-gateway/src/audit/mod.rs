//! `AuditLog`: this node's audit log handle, in one of two modes (`[audit] acknowledge`).
//! Journal mode (the default): `submit` appends the record to the Merkle log and writes it to
//! the node's journal itself (`journal`), so its receipt is ready at once; one thread
//! (`storer`) moves the journal into the store every few milliseconds. Store mode: `submit`
//! queues the record without blocking; one writer thread (`writer`) drains whatever is queued
//! (group commit), appends the records to the Merkle log in queue order, stores the batch with
//! its checkpoints and subtree roots in one store transaction, then completes each
//! submitter's receipt with the record's index. Checkpoints are published every N records or
//! T seconds; on start the appender is rebuilt from the store (signing key kept in the store,
//! generated on first start) after replaying anything left in the disk spool or journal.
//!
//! When the queue is full, `on_full` decides: `refuse` → `AuditError::Full`, `serve` →
//! `AuditError::Dropped` and a gap marker counting the lost records is logged before the next
//! batch. Leaves out: streaming to NATS/Kafka (`sink`), HTTP (see `admin::audit`).

mod background;
mod copy;
mod journal;
pub mod sink;
mod spool;
mod storer;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use flowgate_audit::appender::{AppenderError, LogAppender};
use flowgate_audit::checkpoint::CheckpointPolicy;
use flowgate_audit::note::{NoteError, NoteSigner, NoteVerifier};
use flowgate_audit::record::AuditRecord;
use flowgate_audit::source::rebuild_appender_state;
use flowgate_config::{AuditAcknowledge, AuditConfig, AuditOnFull};
use flowgate_store::{AuditAppender, AuditStore, BlockingAppender, OriginLog, StoreError};
use tokio::sync::oneshot;

pub use copy::JournalCopy;
pub use spool::SpoolError;
use writer::{Pending, Writer, WriterGauges};

/// Why a record could not be (or was not) made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The queue (or the spool) is full and the mode is `refuse`: answer 503.
    #[error("the audit queue is full")]
    Full,
    /// The queue (or the spool) is full and the mode is `serve`: the record was dropped; a
    /// gap marker will count it. Keep serving.
    #[error("the audit queue is full; the record was dropped and a gap marker will be logged")]
    Dropped,
    /// The log was shut down.
    #[error("the audit log is shut down")]
    Closed,
    /// The store and the spool stayed unavailable through shutdown; the record was not
    /// stored.
    #[error("the audit store is unavailable")]
    Unavailable,
}

impl AuditError {
    /// True when the request must be refused (503) rather than served without a record.
    pub fn refuses(self) -> bool {
        !matches!(self, Self::Dropped)
    }
}

/// Why the audit log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditStartError {
    #[error("the configured store keeps no audit log")]
    Unsupported,
    #[error("audit store: {0}")]
    Store(#[from] StoreError),
    #[error("audit signing key: {0}")]
    Key(#[from] NoteError),
    #[error("audit appender: {0}")]
    Appender(#[from] AppenderError),
    #[error("rebuilding the audit log state failed: {detail}")]
    Rebuild { detail: String },
    #[error("audit spool: {0}")]
    Spool(#[from] SpoolError),
    #[error("the audit spool could not be replayed into the store: {detail}")]
    Replay { detail: String },
    #[error("the audit writer thread could not start: {0}")]
    Thread(#[source] std::io::Error),
}

/// Completes when the submitted record is durable (journaled; or, in store mode, committed
/// by the store or synced to the spool).
#[derive(Debug)]
pub struct AuditReceipt(Receipt);

#[derive(Debug)]
enum Receipt {
    /// Journal mode: written before `submit` returned.
    Journaled(u64),
    /// Store mode: completed by the writer thread.
    Waiting(oneshot::Receiver<Result<u64, AuditError>>),
}

impl AuditReceipt {
    /// The record's index in this node's log (for `x-flowgate-audit-index`) once it is
    /// durable.
    ///
    /// # Errors
    /// `Closed` if the writer stopped first, `Full`/`Dropped` when the spool was full,
    /// `Unavailable` if neither the store nor the spool took it.
    pub async fn durable(self) -> Result<u64, AuditError> {
        match self.0 {
            Receipt::Journaled(index) => Ok(index),
            Receipt::Waiting(receiver) => receiver.await.unwrap_or(Err(AuditError::Closed)),
        }
    }
}

/// The local spool (the journal, in journal mode) for batches the store has not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// The spool file (one per origin).
    pub path: PathBuf,
    /// Bytes the spool may hold (while the store does not take them) before `on_full`
    /// applies.
    pub max_bytes: u64,
    /// Whether a record is acknowledged once journaled here or once stored.
    pub acknowledge: AuditAcknowledge,
}

/// How the writer runs.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub origin: String,
    pub policy: CheckpointPolicy,
    pub on_full: AuditOnFull,
    pub queue_capacity: usize,
    /// Most records per group commit.
    pub max_batch: usize,
    /// `None`: no disk spool; batches the store refuses wait in memory.
    pub spool: Option<SpoolSettings>,
}

impl AuditSettings {
    pub fn from_config(config: &AuditConfig) -> Self {
        let every_records = std::num::NonZeroU64::new(config.checkpoint_every_records)
            .unwrap_or(std::num::NonZeroU64::MIN);
        let every_ms =
            std::num::NonZeroU64::new(config.checkpoint_every_seconds.saturating_mul(1000))
                .unwrap_or(std::num::NonZeroU64::MIN);
        let origin = config.origin.clone().unwrap_or_else(default_origin);
        let spool = (config.spool_max_bytes > 0).then(|| SpoolSettings {
            path: config.spool_dir.join(spool_file_name(&origin)),
            max_bytes: config.spool_max_bytes,
            acknowledge: config.acknowledge,
        });
        Self {
            origin,
            policy: CheckpointPolicy {
                every_records,
                every_ms,
            },
            on_full: config.on_full,
            queue_capacity: config.queue_capacity.max(1),
            max_batch: 4096,
            spool,
        }
    }
}

/// What an earlier run left, replayed.
struct LeftOver {
    /// The store-mode spool, emptied.
    spool: spool::Spool,
    /// The number of the next journal segment.
    next_segment: u64,
    /// Where the stored log ends now.
    tail: Option<flowgate_store::LogTail>,
}

/// Replays what an earlier run left for the store: the store-mode spool file, then the
/// journal segments (removed once replayed).
fn replay_left_over(
    settings: &SpoolSettings,
    target: &mut dyn AuditAppender,
    origin: &str,
    max_batch: usize,
) -> Result<LeftOver, AuditStartError> {
    let replay_error = |err: writer::ReplayError| AuditStartError::Replay {
        detail: err.to_string(),
    };
    let mut tail = None;
    let mut spool = spool::Spool::open(&settings.path, settings.max_bytes)?;
    writer::replay_spool(&mut spool, target, origin, max_batch, &mut tail).map_err(replay_error)?;
    let segments = journal::existing_segments(&settings.path)?;
    let next_segment = segments.last().map_or(0, |(seq, _)| seq + 1);
    for (_, path) in segments {
        let mut segment = spool::Spool::open(&path, u64::MAX)?;
        writer::replay_spool(&mut segment, target, origin, max_batch, &mut tail)
            .map_err(replay_error)?;
        std::fs::remove_file(&path).map_err(|source| SpoolError::Io { path, source })?;
    }
    Ok(LeftOver {
        spool,
        next_segment,
        tail,
    })
}

/// `<origin>.spool` with every character but ASCII letters, digits, `.`, `-` and `_`
/// replaced by `_` (origins may hold `/`).
fn spool_file_name(origin: &str) -> String {
    let name: String = origin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}.spool")
}

/// `flowgate-<hostname>`, with characters a checkpoint origin cannot carry replaced by `-`.
pub fn default_origin() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '+' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("flowgate-{host}")
}

/// Called with (origin, tree size) after each checkpoint is durably stored; set once by
/// `AuditLog::on_checkpoint` (the gateway emits `audit.checkpoint` webhook events from it).
type CheckpointFn = Box<dyn Fn(&str, u64) + Send + Sync>;

#[derive(Clone, Default)]
struct CheckpointHook(Arc<std::sync::OnceLock<CheckpointFn>>);

impl CheckpointHook {
    fn get(&self) -> Option<&CheckpointFn> {
        self.0.get()
    }
}

impl std::fmt::Debug for CheckpointHook {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(if self.0.get().is_some() {
            "CheckpointHook(set)"
        } else {
            "CheckpointHook(unset)"
        })
    }
}

#[derive(Debug)]
struct Shared {
    checkpoint_hook: CheckpointHook,
    /// Records to the writer thread; `None` wakes it. Boxed: the channel allocates all its
    /// slots up front, 8 bytes each instead of a whole record.
    sender: SyncSender<Option<Box<Pending>>>,
    capacity: usize,
    on_full: AuditOnFull,
    gauges: Arc<WriterGauges>,
    spool_capacity: Option<u64>,
    /// Journal mode: `submit` journals records itself (the writer thread only stores them).
    journal: Option<Arc<std::sync::Mutex<journal::Journal>>>,
    /// The journal's store thread's scheduling class (promoted when it falls behind).
    background: Arc<background::Background>,
    origin: String,
    verifier: NoteVerifier,
    store: Arc<dyn AuditStore>,
    finished: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
    /// `submit_after_answer` tasks not yet run; `shutdown` waits for them.
    after_answer: tokio_util::task::TaskTracker,
}

/// The node's audit log handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

fn now_ms() -> u64 {
    u64::try_from(flowgate_types::now_millis()).unwrap_or(0)
}

/// Longest wait of `AuditLog::stored` for the store thread's round.
const STORED_WAIT: Duration = Duration::from_secs(5);
/// Longest wait of `AuditLog::shutdown` for completion records handed over as answers left
/// (each is one journal append, so only a stalled process reaches it).
const AFTER_ANSWER_WAIT: Duration = Duration::from_secs(5);

/// How long one store attempt of the writer may take when the store is driven through the
/// runtime (PostgreSQL) before the batch is spooled instead.
const STORE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest the journal's store thread lets an attempt run while attempts run out of time.
const STORE_ATTEMPT_MAX_TIMEOUT: Duration = Duration::from_secs(8);

impl AuditLog {
    /// Loads or creates the node's signing key, replays the spool left by an earlier run,
    /// rebuilds the appender from the store and starts the writer thread (which drives the
    /// store on the current tokio runtime when it has no synchronous appender).
    ///
    /// # Errors
    /// [`AuditStartError`]; in particular `Replay` when the spool holds records the store
    /// cannot take now (starting would number new records after a log missing them).
    pub async fn start(
        store: Arc<dyn AuditStore>,
        settings: AuditSettings,
    ) -> Result<Self, AuditStartError> {
        let origin = settings.origin.clone();
        let node = match store.audit_node(&origin).await? {
            Some(node) => node,
            None => {
                let signer = NoteSigner::generate(&origin)?;
                store
                    .create_audit_node(&origin, &signer.to_private_key_string())
                    .await?
            }
        };
        let runtime = tokio::runtime::Handle::current();
        let journal_settings = settings
            .spool
            .as_ref()
            .filter(|spool| spool.acknowledge == AuditAcknowledge::Journal);
        let mut target: Box<dyn AuditAppender> = match store.dedicated_appender()? {
            Some(appender) => appender,
            None => {
                let blocking = BlockingAppender::new(
                    Arc::clone(&store),
                    runtime.clone(),
                    STORE_ATTEMPT_TIMEOUT,
                );
                // No request waits on the journal's store thread: a slow store gets longer
                // attempts. The store-mode writer spools what the store does not take in time.
                Box::new(if journal_settings.is_some() {
                    blocking.growing_to(STORE_ATTEMPT_MAX_TIMEOUT)
                } else {
                    blocking
                })
            }
        };
        let (target, spool, next_segment, tail) = match settings.spool.clone() {
            Some(spool_settings) => {
                let replay_origin = origin.clone();
                let max_batch = settings.max_batch.max(1);
                let (replayed, target) = tokio::task::spawn_blocking(move || {
                    let replayed = replay_left_over(
                        &spool_settings,
                        target.as_mut(),
                        &replay_origin,
                        max_batch,
                    );
                    (replayed, target)
                })
                .await
                .map_err(|err| AuditStartError::Replay {
                    detail: err.to_string(),
                })?;
                let left = replayed?;
                (target, Some(left.spool), left.next_segment, left.tail)
            }
            None => (target, None, 0, None),
        };
        let signer = NoteSigner::parse(&node.signing_key)?;
        let verifier = signer.verifier();
        let hint = node
            .state
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok());
        let source = OriginLog::new(Arc::clone(&store), &origin);
        let state =
            rebuild_appender_state(&source, std::slice::from_ref(&verifier), hint, now_ms())
                .await
                .map_err(|err| AuditStartError::Rebuild {
                    detail: err.to_string(),
                })?;
        let appender = LogAppender::restore(&origin, signer, settings.policy, state)?;
        let capacity = settings.queue_capacity.max(1);
        // In journal mode the channel only wakes the store thread: no slots for records.
        let (sender, receiver) = std::sync::mpsc::sync_channel(if journal_settings.is_some() {
            1
        } else {
            capacity
        });
        let gauges = Arc::new(WriterGauges::default());
        let checkpoint_hook = CheckpointHook::default();
        let (finished, finished_receiver) = oneshot::channel();
        let tick = Duration::from_millis(settings.policy.every_ms.get().min(60_000));
        let max_batch = settings.max_batch.max(1);
        let background = Arc::new(if journal_settings.is_some() {
            background::Background::probe()
        } else {
            background::Background::normal()
        });
        let journal = match journal_settings {
            Some(journal_settings) => {
                let journal = Arc::new(std::sync::Mutex::new(journal::Journal::new(
                    appender,
                    &journal_settings.path,
                    next_segment,
                    journal_settings.max_bytes,
                    settings.on_full,
                    Arc::clone(&gauges),
                )?));
                let storer = storer::Storer {
                    journal: Arc::clone(&journal),
                    target,
                    origin: origin.clone(),
                    gauges: Arc::clone(&gauges),
                    checkpoint_hook: checkpoint_hook.clone(),
                    wake: receiver,
                    tick,
                    max_batch,
                    finished: Some(finished),
                    // Known from the replay: a record another writer stored at one of our
                    // indices since then is a conflict, never taken for ours.
                    tail,
                    conflicted: false,
                    background: Arc::clone(&background),
                };
                std::thread::Builder::new()
                    .name("flowgate-audit".to_owned())
                    .spawn(move || storer.run())
                    .map_err(AuditStartError::Thread)?;
                Some(journal)
            }
            None => {
                let writer = Writer {
                    checkpoint_hook: checkpoint_hook.clone(),
                    appender,
                    target,
                    store: Arc::clone(&store),
                    runtime,
                    origin: origin.clone(),
                    receiver,
                    gauges: Arc::clone(&gauges),
                    on_full: settings.on_full,
                    max_batch,
                    policy: settings.policy,
                    tick,
                    spool,
                    finished: Some(finished),
                };
                std::thread::Builder::new()
                    .name("flowgate-audit".to_owned())
                    .spawn(move || writer.run())
                    .map_err(AuditStartError::Thread)?;
                None
            }
        };
        Ok(Self {
            shared: Arc::new(Shared {
                checkpoint_hook,
                sender,
                capacity,
                on_full: settings.on_full,
                gauges,
                spool_capacity: settings.spool.map(|spool| spool.max_bytes),
                journal,
                background,
                origin,
                verifier,
                store,
                finished: std::sync::Mutex::new(Some(finished_receiver)),
                after_answer: tokio_util::task::TaskTracker::new(),
            }),
        })
    }

    /// Queues `record` for the writer. Never blocks.
    ///
    /// # Errors
    /// `Full` (refuse mode) or `Dropped` (serve mode) when the queue is full; `Closed` after
    /// shutdown.
    pub fn submit(&self, record: AuditRecord) -> Result<AuditReceipt, AuditError> {
        self.enqueue(record, true)
    }

    /// Queues a record nobody waits for (a completion record): the writer may hold it up to
    /// 2 ms so that it shares the next request record's commit. Never blocks.
    ///
    /// # Errors
    /// As `submit`.
    pub fn submit_deferred(&self, record: AuditRecord) -> Result<(), AuditError> {
        self.enqueue(record, false).map(drop)
    }

    /// Queues a completion record once the current task yields: called as an answer is
    /// returned, it runs after the connection's task has written that answer, so the record's
    /// journal write is not part of the answer's latency. `shutdown` waits for these. Outside
    /// a runtime it submits at once. A record the log does not take is logged, not returned:
    /// nobody waits for it, and the log's gap marker counts it.
    pub fn submit_after_answer(&self, record: AuditRecord, request_id: &flowgate_types::RequestId) {
        let submit = |log: &Self, record: AuditRecord, request_id: &flowgate_types::RequestId| {
            if let Err(err) = log.submit_deferred(record) {
                tracing::warn!(request_id = %request_id, error = %err, "completion audit record not queued");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let log = self.clone();
                let request_id = request_id.clone();
                self.shared
                    .after_answer
                    .spawn_on(async move { submit(&log, record, &request_id) }, &runtime);
            }
            Err(_) => submit(self, record, request_id),
        }
    }

    fn enqueue(&self, record: AuditRecord, urgent: bool) -> Result<AuditReceipt, AuditError> {
        let gauges = &self.shared.gauges;
        if gauges.closed.load(Ordering::Acquire) {
            return Err(AuditError::Closed);
        }
        if let Some(journal) = &self.shared.journal {
            let mut journal = journal.lock().map_err(|_| AuditError::Unavailable)?;
            let index = journal.append(&record)?;
            if journal.is_behind() {
                self.shared.background.promote();
            }
            return Ok(AuditReceipt(Receipt::Journaled(index)));
        }
        let (done, receipt) = oneshot::channel();
        gauges.queued.fetch_add(1, Ordering::Relaxed);
        let pending = Pending {
            record,
            done,
            urgent,
        };
        match self.shared.sender.try_send(Some(Box::new(pending))) {
            Ok(()) => Ok(AuditReceipt(Receipt::Waiting(receipt))),
            Err(error) => {
                gauges.queued.fetch_sub(1, Ordering::Relaxed);
                match error {
                    TrySendError::Disconnected(_) => Err(AuditError::Closed),
                    TrySendError::Full(_) => match self.shared.on_full {
                        AuditOnFull::Refuse => Err(AuditError::Full),
                        AuditOnFull::Serve => {
                            gauges.dropped.fetch_add(1, Ordering::Relaxed);
                            gauges.dropped_total.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                "audit queue full: record dropped, a gap marker will follow"
                            );
                            Err(AuditError::Dropped)
                        }
                    },
                }
            }
        }
    }

    /// Waits until the records acknowledged so far are in the store: in journal mode they may
    /// be only in the journal for a few milliseconds (reads of the log call this first, so
    /// they see every record whose request was answered). Returns at once in store mode and
    /// after shutdown, after one store attempt when the store is down (what it lacks stays in
    /// the journal), and after `STORED_WAIT` at most.
    pub async fn stored(&self) {
        if self.shared.journal.is_none() || self.shared.gauges.closed.load(Ordering::Acquire) {
            return;
        }
        let (done, flushed) = oneshot::channel();
        match self.shared.gauges.flushes.lock() {
            Ok(mut flushes) => flushes.push(done),
            Err(_) => return,
        }
        // Wake the store thread, at normal priority: a reader waits for it (in the idle
        // class a busy machine could starve it; it goes back once it has caught up). Bounded:
        // a round that retries a slow store, or a thread that stopped meanwhile, must not
        // hold a reader forever.
        self.shared.background.promote();
        let _ = self.shared.sender.try_send(None);
        let _ = tokio::time::timeout(STORED_WAIT, flushed).await;
    }

    /// Flushes everything queued, publishes a final checkpoint and stops the writer. Later
    /// submits fail with `Closed`. Idempotent.
    pub async fn shutdown(&self) {
        let after_answer = &self.shared.after_answer;
        after_answer.close();
        if tokio::time::timeout(AFTER_ANSWER_WAIT, after_answer.wait())
            .await
            .is_err()
        {
            tracing::error!("completion records still pending at shutdown");
        }
        self.shared.gauges.closed.store(true, Ordering::Release);
        // Wake the writer if it waits for records; when the queue is full it is busy and
        // sees `closed` on its next round. Shutdown waits for it: out of the idle class.
        self.shared.background.promote();
        let _ = self.shared.sender.try_send(None);
        let finished = self
            .shared
            .finished
            .lock()
            .map(|mut slot| slot.take())
            .unwrap_or(None);
        if let Some(finished) = finished
            && finished.await.is_err()
        {
            tracing::error!("audit writer thread stopped without finishing");
        }
    }

    /// Registers the function called with (origin, size) after each checkpoint is stored.
    /// It runs on the writer thread, so it must not block. Only the first registration counts;
    /// returns false for later ones.
    pub fn on_checkpoint(&self, hook: impl Fn(&str, u64) + Send + Sync + 'static) -> bool {
        self.shared.checkpoint_hook.0.set(Box::new(hook)).is_ok()
    }

    /// This node's log name.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// The public key verifying this node's checkpoints.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.shared.verifier
    }

    pub fn store(&self) -> &Arc<dyn AuditStore> {
        &self.shared.store
    }

    /// This node's log as an `AuditSource` (verification, proofs, export).
    pub fn source(&self) -> OriginLog {
        OriginLog::new(Arc::clone(&self.shared.store), &self.shared.origin)
    }

    /// The writer's backlog: (records queued and not yet taken by the writer, queue capacity).
    /// A full queue means the writer is not keeping up: `on_full` applies.
    pub fn backlog(&self) -> (usize, usize) {
        let queued = self.shared.gauges.queued.load(Ordering::Relaxed);
        (queued.min(self.shared.capacity), self.shared.capacity)
    }

    /// Whether the journal's store thread runs in the idle scheduling class now (it keeps
    /// up, and the process may move it back: `background`).
    pub fn stores_in_background(&self) -> bool {
        self.shared.background.is_idle()
    }

    /// The disk spool: (bytes held, capacity), `None` without a spool. Bytes above zero mean
    /// the store is not taking records.
    pub fn spool(&self) -> Option<(u64, u64)> {
        let bytes = self.shared.gauges.spool_bytes.load(Ordering::Relaxed);
        self.shared.spool_capacity.map(|capacity| (bytes, capacity))
    }

    /// Whether new records meet `on_full` because the spool is full (or the queue is).
    pub fn is_full(&self) -> bool {
        if let Some(journal) = &self.shared.journal {
            return journal.lock().map_or(true, |journal| journal.is_full());
        }
        let (queued, capacity) = self.backlog();
        queued >= capacity || self.shared.gauges.spool_full.load(Ordering::Relaxed)
    }

    /// What happens to records once the queue is full.
    pub fn on_full(&self) -> AuditOnFull {
        self.shared.on_full
    }

    /// Records dropped in `serve` mode since start (alert metric).
    pub fn dropped_total(&self) -> u64 {
        self.shared.gauges.dropped_total.load(Ordering::Relaxed)
    }
}

/// Why an inclusion proof could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ProofBuildError {
    #[error("no record {index} in the log")]
    NoRecord { index: u64 },
    #[error("record {index} is not covered by a checkpoint yet (newest covers {covered} records)")]
    NotCovered { index: u64, covered: u64 },
    #[error("audit store: {0}")]
    Store(#[from] StoreError),
    #[error("building the proof failed: {detail}")]
    Proof { detail: String },
}

/// The inclusion proof of record `index` against the newest stored checkpoint covering it,
/// as a bundle an auditor verifies offline with the node's public key.
///
/// # Errors
/// [`ProofBuildError`].
pub async fn inclusion_bundle(
    source: &OriginLog,
    verifiers: &[NoteVerifier],
    index: u64,
) -> Result<flowgate_audit::proof::InclusionBundle, ProofBuildError> {
    use flowgate_audit::source::AuditSource as _;
    let mut entries = Vec::with_capacity(1);
    source.read_entries(index, 1, &mut entries).await?;
    let Some(entry) = entries
        .into_iter()
        .next()
        .filter(|entry| entry.index == index)
    else {
        return Err(ProofBuildError::NoRecord { index });
    };
    let mut notes = Vec::new();
    source.read_checkpoints(&mut notes).await?;
    let newest = notes
        .iter()
        .filter_map(|note| {
            flowgate_audit::checkpoint::open(note, verifiers)
                .ok()
                .map(|signed| (signed.checkpoint.size, note))
        })
        .max_by_key(|(size, _)| *size);
    let Some((size, note)) = newest.filter(|(size, _)| *size > index) else {
        return Err(ProofBuildError::NotCovered {
            index,
            covered: newest.map_or(0, |(size, _)| size),
        });
    };
    let proof = flowgate_audit::source::prove_inclusion(source, index, size)
        .await
        .map_err(|err| ProofBuildError::Proof {
            detail: err.to_string(),
        })?;
    flowgate_audit::proof::InclusionBundle::new(
        source.origin(),
        index,
        &entry.record,
        size,
        proof,
        note,
    )
    .map_err(|err| ProofBuildError::Proof {
        detail: err.to_string(),
    })
}
