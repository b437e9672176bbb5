//! `AuditLog`: this node's audit writer. Request handlers `submit` records into a bounded
//! queue without blocking; ONE writer task drains whatever is queued (group commit), runs
//! `LogAppender::append` per record in queue order, stores the batch with its checkpoints and
//! subtree roots in one store transaction, then completes each submitter's receipt with the
//! record's index. Checkpoints are published every N records or T seconds; on start the
//! appender is rebuilt from the store (signing key kept in the store, generated on first
//! start).
//!
//! When the store fails, the writer keeps the batch in memory and retries it in order (so the
//! queue is the spool: once it is full, `on_full` decides: `refuse` → `AuditError::Full`,
//! `serve` → `AuditError::Dropped` and a gap marker counting the lost records is logged
//! before the next batch). Leaves out: a disk spool surviving a restart while the store is
//! down, streaming to NATS/Kafka, HTTP (see `admin::audit`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flowgate_audit::appender::{AppenderError, LogAppender};
use flowgate_audit::checkpoint::CheckpointPolicy;
use flowgate_audit::merkle::SubtreeRoot;
use flowgate_audit::note::{NoteError, NoteSigner, NoteVerifier};
use flowgate_audit::record::AuditRecord;
use flowgate_audit::source::rebuild_appender_state;
use flowgate_config::{AuditConfig, AuditOnFull};
use flowgate_store::{AuditEntry, AuditStore, AuditWrite, OriginLog, StoreError, StoredCheckpoint};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Why a record could not be (or was not) made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The queue is full and the mode is `refuse`: answer 503.
    #[error("the audit queue is full")]
    Full,
    /// The queue is full and the mode is `serve`: the record was dropped; a gap marker will
    /// count it. Keep serving.
    #[error("the audit queue is full; the record was dropped and a gap marker will be logged")]
    Dropped,
    /// The log was shut down.
    #[error("the audit log is shut down")]
    Closed,
    /// The store stayed unreachable through shutdown; the record was not stored.
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
}

/// Completes when the submitted record is committed.
#[derive(Debug)]
pub struct AuditReceipt(oneshot::Receiver<Result<u64, AuditError>>);

impl AuditReceipt {
    /// The record's index in this node's log (for `x-flowgate-audit-index`) once it is
    /// durable in the store.
    ///
    /// # Errors
    /// `Closed` if the writer stopped first, `Unavailable` if the store never came back.
    pub async fn durable(self) -> Result<u64, AuditError> {
        self.0.await.unwrap_or(Err(AuditError::Closed))
    }
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
}

impl AuditSettings {
    pub fn from_config(config: &AuditConfig) -> Self {
        let every_records = std::num::NonZeroU64::new(config.checkpoint_every_records)
            .unwrap_or(std::num::NonZeroU64::MIN);
        let every_ms =
            std::num::NonZeroU64::new(config.checkpoint_every_seconds.saturating_mul(1000))
                .unwrap_or(std::num::NonZeroU64::MIN);
        Self {
            origin: config.origin.clone().unwrap_or_else(default_origin),
            policy: CheckpointPolicy {
                every_records,
                every_ms,
            },
            on_full: config.on_full,
            queue_capacity: config.queue_capacity.max(1),
            max_batch: 4096,
        }
    }
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

struct Pending {
    record: AuditRecord,
    done: oneshot::Sender<Result<u64, AuditError>>,
}

/// Called with (origin, tree size) after each checkpoint is durably stored; set once by
/// `AuditLog::on_checkpoint` (the gateway emits `audit.checkpoint` webhook events from it).
type CheckpointFn = Box<dyn Fn(&str, u64) + Send + Sync>;

#[derive(Clone, Default)]
struct CheckpointHook(Arc<std::sync::OnceLock<CheckpointFn>>);

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
    sender: mpsc::Sender<Pending>,
    on_full: AuditOnFull,
    /// Dropped records not yet covered by a gap marker.
    dropped: Arc<AtomicU64>,
    dropped_total: AtomicU64,
    origin: String,
    verifier: NoteVerifier,
    store: Arc<dyn AuditStore>,
    stop: CancellationToken,
    writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Pending")
    }
}

/// The node's audit writer handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

fn now_ms() -> u64 {
    u64::try_from(flowgate_types::now_millis()).unwrap_or(0)
}

impl AuditLog {
    /// Loads or creates the node's signing key, rebuilds the appender from the store and
    /// starts the writer task (on the current tokio runtime).
    ///
    /// # Errors
    /// [`AuditStartError`].
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
        let (sender, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let checkpoint_hook = CheckpointHook::default();
        let writer = Writer {
            checkpoint_hook: checkpoint_hook.clone(),
            appender,
            store: Arc::clone(&store),
            origin: origin.clone(),
            receiver,
            dropped: Arc::clone(&dropped),
            max_batch: settings.max_batch.max(1),
            policy: settings.policy,
            tick: Duration::from_millis(settings.policy.every_ms.get().min(60_000)),
        };
        let handle = tokio::spawn(writer.run(stop.clone()));
        Ok(Self {
            shared: Arc::new(Shared {
                checkpoint_hook,
                sender,
                on_full: settings.on_full,
                dropped,
                dropped_total: AtomicU64::new(0),
                origin,
                verifier,
                store,
                stop,
                writer: std::sync::Mutex::new(Some(handle)),
            }),
        })
    }

    /// Queues `record` for the writer. Never blocks.
    ///
    /// # Errors
    /// `Full` (refuse mode) or `Dropped` (serve mode) when the queue is full; `Closed` after
    /// shutdown.
    pub fn submit(&self, record: AuditRecord) -> Result<AuditReceipt, AuditError> {
        let (done, receipt) = oneshot::channel();
        match self.shared.sender.try_send(Pending { record, done }) {
            Ok(()) => Ok(AuditReceipt(receipt)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(AuditError::Closed),
            Err(mpsc::error::TrySendError::Full(_)) => match self.shared.on_full {
                AuditOnFull::Refuse => Err(AuditError::Full),
                AuditOnFull::Serve => {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    self.shared.dropped_total.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("audit queue full: record dropped, a gap marker will follow");
                    Err(AuditError::Dropped)
                }
            },
        }
    }

    /// Flushes everything queued, publishes a final checkpoint and stops the writer. Later
    /// submits fail with `Closed`. Idempotent.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        let handle = self
            .shared
            .writer
            .lock()
            .map(|mut slot| slot.take())
            .unwrap_or(None);
        if let Some(handle) = handle
            && let Err(err) = handle.await
        {
            tracing::error!(error = %err, "audit writer task failed");
        }
    }

    /// Registers the function called with (origin, size) after each checkpoint is stored.
    /// It runs on the writer task, so it must not block. Only the first registration counts;
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
    /// A full queue means the store is not keeping up (or is down): `on_full` applies.
    pub fn backlog(&self) -> (usize, usize) {
        let sender = &self.shared.sender;
        let capacity = sender.max_capacity();
        (capacity.saturating_sub(sender.capacity()), capacity)
    }

    /// What happens to records once the queue is full.
    pub fn on_full(&self) -> AuditOnFull {
        self.shared.on_full
    }

    /// Records dropped in `serve` mode since start (alert metric).
    pub fn dropped_total(&self) -> u64 {
        self.shared.dropped_total.load(Ordering::Relaxed)
    }
}

struct Writer {
    checkpoint_hook: CheckpointHook,
    appender: LogAppender,
    store: Arc<dyn AuditStore>,
    origin: String,
    receiver: mpsc::Receiver<Pending>,
    dropped: Arc<AtomicU64>,
    max_batch: usize,
    policy: CheckpointPolicy,
    tick: Duration,
}

/// One group commit being assembled.
#[derive(Default)]
struct Batch {
    entries: Vec<AuditEntry>,
    subtrees: Vec<SubtreeRoot>,
    checkpoints: Vec<StoredCheckpoint>,
    waiters: Vec<(oneshot::Sender<Result<u64, AuditError>>, u64)>,
}

impl Writer {
    async fn run(mut self, stop: CancellationToken) {
        let mut queued: Vec<Pending> = Vec::with_capacity(self.max_batch);
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                biased;
                received = self.receiver.recv_many(&mut queued, self.max_batch) => {
                    if received == 0 {
                        break;
                    }
                    self.commit(&mut queued, &stop).await;
                }
                () = stop.cancelled() => {
                    self.receiver.close();
                    while self.receiver.recv_many(&mut queued, self.max_batch).await > 0 {
                        self.commit(&mut queued, &stop).await;
                    }
                    break;
                }
                _ = ticker.tick() => {
                    if let Some(checkpoint) = self.appender.tick(now_ms()) {
                        let mut batch = Batch::default();
                        batch.checkpoints.push(StoredCheckpoint { size: checkpoint.checkpoint.size, note: checkpoint.note });
                        self.store_batch(batch, &stop).await;
                    }
                }
            }
        }
        // Final flush of a gap marker for drops seen after the last batch, then the final
        // checkpoint.
        self.commit(&mut queued, &stop).await;
        if let Some(checkpoint) = self.appender.checkpoint_now(now_ms()) {
            let mut batch = Batch::default();
            batch.checkpoints.push(StoredCheckpoint {
                size: checkpoint.checkpoint.size,
                note: checkpoint.note,
            });
            self.store_batch(batch, &stop).await;
        }
    }

    fn push(&mut self, batch: &mut Batch, record: AuditRecord, now: u64) -> u64 {
        let appended = self.appender.append(&record, now);
        let index = appended.index;
        batch.subtrees.extend(appended.subtrees);
        if let Some(checkpoint) = appended.checkpoint {
            batch.checkpoints.push(StoredCheckpoint {
                size: checkpoint.checkpoint.size,
                note: checkpoint.note,
            });
        }
        // The canonical encoder writes only Rust strings and ASCII, so this is valid UTF-8;
        // the lossy branch is unreachable.
        let canonical = String::from_utf8(appended.canonical)
            .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned());
        batch.entries.push(AuditEntry {
            index,
            record: canonical,
            leaf_hash: appended.leaf_hash,
            time_ms: appended.time_ms,
            kind: record.kind,
            request_id: record.request_id,
            tenant_id: record.tenant_id,
            decision: record.decision,
            model: record.model,
            status: record.http_status,
            findings: record.findings,
        });
        index
    }

    async fn commit(&mut self, queued: &mut Vec<Pending>, stop: &CancellationToken) {
        let lost = self.dropped.swap(0, Ordering::Relaxed);
        if queued.is_empty() && lost == 0 {
            return;
        }
        let now = now_ms();
        let mut batch = Batch {
            entries: Vec::with_capacity(queued.len() + 1),
            waiters: Vec::with_capacity(queued.len()),
            ..Batch::default()
        };
        for Pending { record, done } in queued.drain(..) {
            let index = self.push(&mut batch, record, now);
            batch.waiters.push((done, index));
        }
        // Drops happen while the queue is full, so after what it held: the marker follows.
        if lost > 0 {
            self.push(&mut batch, AuditRecord::gap(now, lost, "queue_full"), now);
        }
        self.store_batch(batch, stop).await;
    }

    /// Writes the batch, retrying with back-off while the store fails (indefinitely while
    /// running, a few times once shutdown started), then completes the receipts.
    async fn store_batch(&mut self, mut batch: Batch, stop: &CancellationToken) {
        let mut delay = Duration::from_millis(20);
        let mut attempts_after_stop = 0u32;
        let outcome = loop {
            let state = (!batch.checkpoints.is_empty())
                .then(|| serde_json::to_string(&self.appender.state()).ok())
                .flatten();
            let write = AuditWrite {
                entries: &batch.entries,
                subtrees: &batch.subtrees,
                checkpoints: &batch.checkpoints,
                state: state.as_deref(),
            };
            let err = match self.store.append_audit(&self.origin, write).await {
                Ok(()) => break Ok(()),
                Err(err) => err,
            };
            if stop.is_cancelled() {
                attempts_after_stop += 1;
                if attempts_after_stop >= 5 {
                    tracing::error!(error = %err, records = batch.entries.len(), "audit store unavailable at shutdown: records not stored");
                    break Err(AuditError::Unavailable);
                }
            }
            if matches!(err, StoreError::Conflict { .. }) {
                // Another writer appended to this origin (two nodes configured with one
                // name): continue from the stored log instead of retrying forever.
                tracing::error!(origin = %self.origin, "another writer appended to this audit log; resynchronising (give every node its own [audit] origin)");
                match self.resync(&mut batch).await {
                    Ok(()) => continue,
                    Err(detail) => {
                        tracing::warn!(%detail, "audit resynchronisation failed; retrying");
                    }
                }
            } else {
                tracing::warn!(error = %err, records = batch.entries.len(), "audit store write failed; retrying");
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        };
        if outcome.is_ok()
            && let Some(hook) = self.checkpoint_hook.0.get()
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
    async fn resync(&mut self, batch: &mut Batch) -> Result<(), String> {
        let node = self
            .store
            .audit_node(&self.origin)
            .await
            .map_err(|err| err.to_string())?
            .ok_or_else(|| "the audit node row is missing".to_owned())?;
        let signer = NoteSigner::parse(&node.signing_key).map_err(|err| err.to_string())?;
        let verifier = signer.verifier();
        let hint = node
            .state
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok());
        let source = OriginLog::new(Arc::clone(&self.store), &self.origin);
        let state =
            rebuild_appender_state(&source, std::slice::from_ref(&verifier), hint, now_ms())
                .await
                .map_err(|err| err.to_string())?;
        self.appender = LogAppender::restore(&self.origin, signer, self.policy, state)
            .map_err(|err| err.to_string())?;
        let old = std::mem::take(batch);
        let first_old = old.entries.first().map_or(0, |entry| entry.index);
        let now = now_ms();
        let mut renumbered = Vec::with_capacity(old.entries.len());
        for entry in &old.entries {
            let record =
                AuditRecord::parse(entry.record.as_bytes()).map_err(|err| err.to_string())?;
            renumbered.push(self.push(batch, record, now));
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
