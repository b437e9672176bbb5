//! The log appender: a pure state machine that turns records into numbered, hashed,
//! canonical leaves and, when the [`CheckpointPolicy`] says so, signed checkpoints.
//!
//! It does no IO and reads no clock: the caller passes `now_ms`, stores what
//! [`LogAppender::append`] returns (record bytes, leaf hash, index, checkpoint note) in one
//! transaction, and on restart rebuilds the appender from the saved [`AppenderState`]
//! (size, frontier, last time, last checkpoint) with [`LogAppender::restore`].
//!
//! Leaves out the write queue, group commit, spooling and storage.

use crate::checkpoint::{self, Checkpoint, CheckpointPolicy, SignedCheckpoint};
use crate::merkle::{Frontier, FrontierError, Hash, SubtreeRoot, leaf_hash};
use crate::note::{NoteSigner, NoteVerifier};
use crate::record::AuditRecord;

/// Why an appender could not be created or restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppenderError {
    /// The origin cannot head a checkpoint.
    #[error("invalid origin {origin:?}")]
    InvalidOrigin {
        /// The rejected origin.
        origin: String,
    },
    /// The saved frontier does not fit the saved size.
    #[error(transparent)]
    Frontier(#[from] FrontierError),
    /// The saved last checkpoint is beyond the saved size.
    #[error("last checkpoint size {checkpoint_size} exceeds log size {size}")]
    CheckpointBeyondSize {
        /// Saved checkpoint size.
        checkpoint_size: u64,
        /// Saved log size.
        size: u64,
    },
}

/// Everything needed to continue a log after a restart. Persist it (or rebuild it from the
/// store: `size` = number of records, `frontier` from the stored leaf hashes with
/// [`Frontier::push`], `last_time_ms` from the last record, `last_checkpoint_*` from the last
/// stored checkpoint).
/// Serialises to JSON with the frontier hashes in base64.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppenderState {
    /// Number of records in the log.
    pub size: u64,
    /// Perfect-subtree roots of the tree of `size` leaves, largest first.
    #[serde(with = "crate::verify::base64_hash::list")]
    pub frontier: Vec<Hash>,
    /// Time of the last record (0 for an empty log).
    pub last_time_ms: u64,
    /// Size of the last published checkpoint (0 if none).
    pub last_checkpoint_size: u64,
    /// When the last checkpoint was published (epoch ms; 0 if none).
    pub last_checkpoint_ms: u64,
}

/// What one append produced. Store `canonical` and `leaf_hash` under `index`, and the
/// checkpoint note if present, atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Position of the record in the log (0-based), returned to clients as
    /// `x-flowgate-audit-index`.
    pub index: u64,
    /// `SHA-256(0x00 || canonical)`.
    pub leaf_hash: Hash,
    /// The canonical record bytes.
    pub canonical: Vec<u8>,
    /// Log time written into the record (the caller's time, raised to keep the log
    /// non-decreasing).
    pub time_ms: u64,
    /// A checkpoint covering this record, when the policy made one due.
    pub checkpoint: Option<SignedCheckpoint>,
    /// Perfect subtrees of at least [`CACHED_SUBTREE_MIN_LEVEL`] levels this record
    /// completed (one every 256 records on average, empty otherwise, no allocation then).
    /// Store them to make proof generation O(log n) reads
    /// ([`crate::source::AuditSource::read_subtree_root`]).
    pub subtrees: Vec<SubtreeRoot>,
}

/// Smallest subtree height the appender reports for caching: 2^8 = 256 leaves, so a proof
/// reads at most a few hundred leaf hashes per level besides the cached roots.
pub const CACHED_SUBTREE_MIN_LEVEL: u8 = 8;

/// The append-only log state of one node.
#[derive(Debug)]
pub struct LogAppender {
    origin: String,
    signer: NoteSigner,
    policy: CheckpointPolicy,
    frontier: Frontier,
    last_time_ms: u64,
    last_checkpoint_size: u64,
    last_checkpoint_ms: u64,
}

impl LogAppender {
    /// A new, empty log named `origin`, signing checkpoints with `signer`. `now_ms` starts
    /// the checkpoint timer.
    ///
    /// # Errors
    /// [`AppenderError::InvalidOrigin`].
    pub fn new(
        origin: &str,
        signer: NoteSigner,
        policy: CheckpointPolicy,
        now_ms: u64,
    ) -> Result<Self, AppenderError> {
        Self::restore(
            origin,
            signer,
            policy,
            AppenderState {
                size: 0,
                frontier: Vec::new(),
                last_time_ms: 0,
                last_checkpoint_size: 0,
                last_checkpoint_ms: now_ms,
            },
        )
    }

    /// Continues a log from a saved state.
    ///
    /// # Errors
    /// [`AppenderError`] when the origin or the state is inconsistent.
    pub fn restore(
        origin: &str,
        signer: NoteSigner,
        policy: CheckpointPolicy,
        state: AppenderState,
    ) -> Result<Self, AppenderError> {
        if checkpoint::check_origin(origin).is_err() {
            return Err(AppenderError::InvalidOrigin {
                origin: origin.to_owned(),
            });
        }
        if state.last_checkpoint_size > state.size {
            return Err(AppenderError::CheckpointBeyondSize {
                checkpoint_size: state.last_checkpoint_size,
                size: state.size,
            });
        }
        let frontier = Frontier::from_parts(state.size, state.frontier)?;
        Ok(Self {
            origin: origin.to_owned(),
            signer,
            policy,
            frontier,
            last_time_ms: state.last_time_ms,
            last_checkpoint_size: state.last_checkpoint_size,
            last_checkpoint_ms: state.last_checkpoint_ms,
        })
    }

    /// The state to persist for [`LogAppender::restore`].
    #[must_use]
    pub fn state(&self) -> AppenderState {
        AppenderState {
            size: self.frontier.size(),
            frontier: self.frontier.hashes().to_vec(),
            last_time_ms: self.last_time_ms,
            last_checkpoint_size: self.last_checkpoint_size,
            last_checkpoint_ms: self.last_checkpoint_ms,
        }
    }

    /// The log's origin.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The public key that verifies this log's checkpoints.
    #[must_use]
    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// Number of records appended.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Root of the current tree (O(log n)).
    #[must_use]
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Appends one record. The record's `time_ms` is raised to the previous record's time if
    /// it is earlier, so log time never decreases.
    pub fn append(&mut self, record: &AuditRecord, now_ms: u64) -> Appended {
        let mut canonical = Vec::with_capacity(1024);
        let time_ms = record.time_ms.max(self.last_time_ms);
        record.write_canonical(time_ms, &mut canonical);
        let leaf = leaf_hash(&canonical);
        let index = self.frontier.size();
        let mut subtrees = Vec::new();
        self.frontier.push_reporting(leaf, |subtree| {
            if subtree.level >= CACHED_SUBTREE_MIN_LEVEL {
                subtrees.push(subtree);
            }
        });
        self.last_time_ms = time_ms;
        let checkpoint = self.tick(now_ms);
        Appended {
            index,
            leaf_hash: leaf,
            canonical,
            time_ms,
            checkpoint,
            subtrees,
        }
    }

    /// Publishes a checkpoint if the policy makes one due at `now_ms` (call it from a timer so
    /// quiet logs still get one within the configured interval).
    pub fn tick(&mut self, now_ms: u64) -> Option<SignedCheckpoint> {
        if self.policy.is_due(
            self.frontier.size(),
            now_ms,
            self.last_checkpoint_size,
            self.last_checkpoint_ms,
        ) {
            Some(self.publish(now_ms))
        } else {
            None
        }
    }

    /// Publishes a checkpoint now if the tree grew since the last one (for example at
    /// shutdown or before an export).
    pub fn checkpoint_now(&mut self, now_ms: u64) -> Option<SignedCheckpoint> {
        (self.frontier.size() > self.last_checkpoint_size).then(|| self.publish(now_ms))
    }

    fn publish(&mut self, now_ms: u64) -> SignedCheckpoint {
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size: self.frontier.size(),
            root: self.frontier.root(),
            extensions: Vec::new(),
        };
        let note = crate::note::sign_valid(&checkpoint.to_text(), &self.signer);
        self.last_checkpoint_size = checkpoint.size;
        self.last_checkpoint_ms = now_ms;
        SignedCheckpoint { checkpoint, note }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;

    use super::*;
    use crate::merkle::root_of;
    use crate::record::tests::sample;

    fn policy(records: u64, ms: u64) -> CheckpointPolicy {
        CheckpointPolicy {
            every_records: NonZeroU64::new(records).unwrap_or(NonZeroU64::MIN),
            every_ms: NonZeroU64::new(ms).unwrap_or(NonZeroU64::MIN),
        }
    }

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("gw-1", &[5; 32]).expect("valid name")
    }

    #[test]
    fn appends_number_hash_and_checkpoint_on_count() {
        let mut appender = LogAppender::new("gw-1", signer(), policy(3, 60_000), 0).expect("valid");
        let mut leaves = Vec::new();
        let mut checkpoints = Vec::new();
        for i in 0..7u64 {
            let appended = appender.append(&sample(), 10);
            assert_eq!(appended.index, i);
            assert_eq!(appended.leaf_hash, leaf_hash(&appended.canonical));
            leaves.push(appended.leaf_hash);
            checkpoints.extend(appended.checkpoint);
        }
        let sizes: Vec<u64> = checkpoints.iter().map(|c| c.checkpoint.size).collect();
        assert_eq!(sizes, [3, 6]);
        assert_eq!(checkpoints[1].checkpoint.root, root_of(&leaves[..6]));
        let opened =
            checkpoint::open(&checkpoints[1].note, &[appender.verifier()]).expect("signed");
        assert_eq!(opened.checkpoint.size, 6);
        assert_eq!(appender.root(), root_of(&leaves));
    }

    #[test]
    fn time_based_checkpoints_only_when_grown() {
        let mut appender =
            LogAppender::new("gw-1", signer(), policy(1_000, 100), 0).expect("valid");
        assert!(appender.tick(500).is_none(), "empty log");
        assert!(appender.append(&sample(), 50).checkpoint.is_none());
        let first = appender.tick(100).expect("due after 100 ms");
        assert_eq!(first.checkpoint.size, 1);
        assert!(
            appender.tick(10_000).is_none(),
            "no growth, no second root for size 1"
        );
        assert!(appender.checkpoint_now(10_000).is_none());
        let appended = appender.append(&sample(), 10_001);
        assert_eq!(
            appended.checkpoint.map(|c| c.checkpoint.size),
            Some(2),
            "interval elapsed"
        );
        appender.append(&sample(), 10_002);
        assert_eq!(
            appender.checkpoint_now(10_003).map(|c| c.checkpoint.size),
            Some(3)
        );
    }

    #[test]
    fn log_time_never_decreases() {
        let mut appender =
            LogAppender::new("gw-1", signer(), policy(1_000, 1_000), 0).expect("valid");
        let mut record = sample();
        record.time_ms = 2_000;
        assert_eq!(appender.append(&record, 0).time_ms, 2_000);
        record.time_ms = 1_000;
        let appended = appender.append(&record, 0);
        assert_eq!(appended.time_ms, 2_000);
        assert_eq!(
            AuditRecord::parse(&appended.canonical).map(|r| r.time_ms),
            Ok(2_000)
        );
    }

    #[test]
    fn restore_continues_the_same_tree() {
        let mut original = LogAppender::new("gw-1", signer(), policy(4, 60_000), 0).expect("valid");
        for _ in 0..5 {
            original.append(&sample(), 1);
        }
        let state = original.state();
        let mut restored = LogAppender::restore("gw-1", signer(), policy(4, 60_000), state.clone())
            .expect("valid");
        assert_eq!(restored.root(), original.root());
        let a = original.append(&sample(), 2);
        let b = restored.append(&sample(), 2);
        assert_eq!(a, b);
        let json = serde_json::to_string(&state).expect("state serialises");
        assert_eq!(
            serde_json::from_str::<AppenderState>(&json).ok(),
            Some(state.clone())
        );
        let mut broken = state;
        broken.frontier.pop();
        assert!(matches!(
            LogAppender::restore("gw-1", signer(), policy(4, 60_000), broken),
            Err(AppenderError::Frontier(_))
        ));
        assert!(LogAppender::new("bad origin", signer(), policy(4, 1), 0).is_err());
    }
}
