//! Log verification: replays stored entries and checkpoints and proves the log intact, or
//! names the first bad index with an error whose category maps to a process exit code.
//!
//! [`LogVerifier`] is push-based so async stores can page through their tables and feed it:
//! add every stored checkpoint note with [`LogVerifier::add_checkpoint`] (any time before
//! the log reaches its size), push entries in index order with [`LogVerifier::push_entry`],
//! then [`LogVerifier::finish`]. It checks contiguous indices from 0 (or from a saved state),
//! that every record parses against the schema, non-decreasing log time, stored leaf hashes,
//! every checkpoint's signature and its root recomputed from the leaves (so consecutive
//! checkpoints are consistent: all are prefixes of one sequence), and anti-rollback against a
//! [`VerifiedState`] saved by an earlier run.
//!
//! Leaves out reading stores and files (see [`crate::source`] and [`crate::export`]).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointError, SignedCheckpoint};
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{NoteError, NoteVerifier};
use crate::record::{RecordError, check_record};

/// One stored log entry as read back from a store or export file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Index the store recorded for the entry.
    pub index: u64,
    /// The canonical record bytes.
    pub record: Vec<u8>,
    /// The leaf hash the store recorded beside the record, if it keeps one.
    pub leaf_hash: Option<Hash>,
}

/// Read access to an entry, so callers can push borrowed data without copying.
pub trait LogEntry {
    /// Index the store recorded.
    fn index(&self) -> u64;
    /// Canonical record bytes.
    fn record(&self) -> &[u8];
    /// Stored leaf hash, if any.
    fn stored_leaf_hash(&self) -> Option<&Hash>;
}

impl LogEntry for StoredEntry {
    fn index(&self) -> u64 {
        self.index
    }
    fn record(&self) -> &[u8] {
        &self.record
    }
    fn stored_leaf_hash(&self) -> Option<&Hash> {
        self.leaf_hash.as_ref()
    }
}

impl<T: LogEntry + ?Sized> LogEntry for &T {
    fn index(&self) -> u64 {
        (**self).index()
    }
    fn record(&self) -> &[u8] {
        (**self).record()
    }
    fn stored_leaf_hash(&self) -> Option<&Hash> {
        (**self).stored_leaf_hash()
    }
}

/// Serde helpers writing hashes as standard base64 strings.
pub(crate) mod base64_hash {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use crate::merkle::Hash;

    pub(crate) fn serialize<S: Serializer>(hash: &Hash, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(hash))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Hash, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        decode(&text).map_err(D::Error::custom)
    }

    pub(crate) fn decode(text: &str) -> Result<Hash, &'static str> {
        STANDARD
            .decode(text)
            .ok()
            .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
            .ok_or("expected a base64 SHA-256 hash")
    }

    pub(crate) mod list {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            hashes: &[Hash],
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(hashes.iter().map(|hash| STANDARD.encode(hash)))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Vec<Hash>, D::Error> {
            let texts = <Vec<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
            texts
                .iter()
                .map(|text| decode(text).map_err(D::Error::custom))
                .collect()
        }
    }
}

/// What an auditor keeps between runs: the log size and root it verified, the frontier to
/// resume from, and the last log time. Serialises to JSON (hashes in base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiedState {
    /// The log's origin.
    pub origin: String,
    /// Number of records verified.
    pub size: u64,
    /// Root of those records.
    #[serde(with = "base64_hash")]
    pub root: Hash,
    /// Frontier at `size`, to continue without rereading the prefix.
    #[serde(with = "base64_hash::list")]
    pub frontier: Vec<Hash>,
    /// Time of the record at `size - 1` (0 when empty).
    pub last_time_ms: u64,
}

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Origin every checkpoint must carry.
    pub origin: String,
    /// Public keys accepted for checkpoints (the node's current and past keys).
    pub verifiers: Vec<NoteVerifier>,
    /// A state from an earlier run. The log must still contain it (anti-rollback).
    pub saved: Option<VerifiedState>,
    /// Start at `saved.size` with the saved frontier instead of replaying from index 0.
    pub resume: bool,
    /// Fail as unverifiable when records after the last checkpoint are covered by no signature.
    pub require_full_coverage: bool,
    /// Threads for [`LogVerifier::push_batch`] (0: all available cores).
    pub parallelism: usize,
}

impl VerifyOptions {
    /// Options for a full replay with the given keys, no saved state.
    #[must_use]
    pub fn new(origin: &str, verifiers: Vec<NoteVerifier>) -> Self {
        Self {
            origin: origin.to_owned(),
            verifiers,
            saved: None,
            resume: false,
            require_full_coverage: false,
            parallelism: 0,
        }
    }
}

/// The integrity violation found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Tamper {
    /// An entry carries the wrong index (deleted, duplicated or reordered record).
    #[error("expected index {expected}, found {found}")]
    IndexMismatch {
        /// The next index in sequence.
        expected: u64,
        /// The index stored.
        found: u64,
    },
    /// Record bytes do not parse against the schema.
    #[error("record does not parse: {detail}")]
    UnparseableRecord {
        /// Parser message.
        detail: String,
    },
    /// The stored leaf hash does not match the record bytes.
    #[error("stored leaf hash does not match the record")]
    LeafHashMismatch,
    /// Log time decreased.
    #[error("time {time_ms} is before the previous record's {previous_ms}")]
    TimeWentBackwards {
        /// Previous record's time.
        previous_ms: u64,
        /// This record's time.
        time_ms: u64,
    },
    /// A signed checkpoint's root differs from the root recomputed from the records.
    #[error("checkpoint at size {size} does not match the records")]
    CheckpointRootMismatch {
        /// Checkpoint size.
        size: u64,
    },
    /// A signed checkpoint covers more records than the log holds (tail truncated).
    #[error("checkpoint at size {size} but the log ends at {log_size}")]
    CheckpointBeyondLog {
        /// Checkpoint size.
        size: u64,
        /// Records present.
        log_size: u64,
    },
    /// Two checkpoints of one size carry different roots.
    #[error("two different roots signed for size {size}")]
    ForkedCheckpoints {
        /// The size with two roots.
        size: u64,
    },
    /// A checkpoint arrived after the log passed its size.
    #[error("checkpoint at size {size} arrived after {log_size} records")]
    CheckpointOutOfOrder {
        /// Checkpoint size.
        size: u64,
        /// Records already consumed.
        log_size: u64,
    },
    /// A checkpoint claims a known key but its signature fails.
    #[error("bad signature by {name} {key_id:08x}")]
    BadSignature {
        /// Key name.
        name: String,
        /// Key hash.
        key_id: u32,
    },
    /// A checkpoint note or body is malformed.
    #[error("malformed checkpoint: {detail}")]
    MalformedCheckpoint {
        /// What was wrong.
        detail: String,
    },
    /// A checkpoint names another log.
    #[error("checkpoint origin {found:?}, expected {expected:?}")]
    OriginMismatch {
        /// Expected origin.
        expected: String,
        /// Origin in the checkpoint.
        found: String,
    },
    /// The log is shorter than a previously verified state (rollback or truncation).
    #[error("log has {log_size} records, fewer than the {saved_size} verified before")]
    Rollback {
        /// Size in the saved state.
        saved_size: u64,
        /// Records present now.
        log_size: u64,
    },
    /// The log's prefix no longer has the root verified before (history rewritten).
    #[error("root at saved size {size} differs from the saved root")]
    SavedRootMismatch {
        /// Size in the saved state.
        size: u64,
    },
    /// An inclusion proof does not lead from the record to the signed root.
    #[error("inclusion proof fails: {detail}")]
    InclusionProofFailed {
        /// Why.
        detail: String,
    },
    /// An export file line is not valid.
    #[error("export line {line} is malformed: {detail}")]
    MalformedExportLine {
        /// 1-based line number.
        line: u64,
        /// What was wrong.
        detail: String,
    },
}

/// Why the log cannot be judged (without evidence of tampering).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Unverifiable {
    /// A record uses a schema newer than this build understands.
    #[error("record schema {schema} is not supported")]
    UnsupportedSchema {
        /// The record's schema.
        schema: u32,
    },
    /// Records after the last checkpoint are covered by no signature.
    #[error("{records} records after the last checkpoint are not signed")]
    NotCovered {
        /// Uncovered records.
        records: u64,
    },
    /// The saved state is unusable (wrong origin, frontier does not match root).
    #[error("saved state is unusable: {reason}")]
    BadSavedState {
        /// What was wrong.
        reason: &'static str,
    },
    /// No verifier keys were supplied.
    #[error("no public keys supplied")]
    NoKeys,
    /// The export file has no valid header.
    #[error("export has no header")]
    MissingExportHeader,
}

/// Verification failed. Each category has its own process exit code ([`VerifyError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The log was altered: exit code 3.
    #[error("tampered (first bad index {index:?}): {kind}")]
    Tampered {
        /// First index that is not proven good (the record at fault, or the first one after
        /// the last verified checkpoint when only a root mismatch shows it).
        index: Option<u64>,
        /// What was found.
        kind: Tamper,
    },
    /// The log cannot be judged: exit code 4.
    #[error("unverifiable (at index {index:?}): {kind}")]
    Unverifiable {
        /// Index concerned, if any.
        index: Option<u64>,
        /// Why.
        kind: Unverifiable,
    },
    /// A checkpoint is signed only by keys not supplied: exit code 5.
    #[error("checkpoint signed by unknown key {name} {key_id:08x}")]
    UnknownKey {
        /// Key name on the signature.
        name: String,
        /// Key hash on the signature.
        key_id: u32,
    },
    /// Reading the log failed: exit code 6.
    #[error("reading the log failed")]
    Io {
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Exit code of a successful verification.
pub const EXIT_OK: i32 = 0;
/// Exit code for [`VerifyError::Tampered`].
pub const EXIT_TAMPERED: i32 = 3;
/// Exit code for [`VerifyError::Unverifiable`].
pub const EXIT_UNVERIFIABLE: i32 = 4;
/// Exit code for [`VerifyError::UnknownKey`].
pub const EXIT_UNKNOWN_KEY: i32 = 5;
/// Exit code for [`VerifyError::Io`].
pub const EXIT_IO: i32 = 6;

/// JSON form of a failed verification, for `flowgate audit verify` output.
#[derive(Debug, Clone, Serialize)]
pub struct FailureReport {
    /// Always false.
    pub ok: bool,
    /// `tampered`, `unverifiable`, `unknown_key` or `io`.
    pub category: &'static str,
    /// Process exit code.
    pub exit_code: i32,
    /// First bad index, if known.
    pub first_bad_index: Option<u64>,
    /// Human-readable description.
    pub message: String,
}

impl VerifyError {
    /// Process exit code: 3 tampered, 4 unverifiable, 5 unknown key, 6 I/O (0 is success,
    /// 1 and 2 stay free for generic and usage errors).
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Tampered { .. } => EXIT_TAMPERED,
            Self::Unverifiable { .. } => EXIT_UNVERIFIABLE,
            Self::UnknownKey { .. } => EXIT_UNKNOWN_KEY,
            Self::Io { .. } => EXIT_IO,
        }
    }

    /// The first bad index, when known.
    #[must_use]
    pub fn first_bad_index(&self) -> Option<u64> {
        match self {
            Self::Tampered { index, .. } | Self::Unverifiable { index, .. } => *index,
            Self::UnknownKey { .. } | Self::Io { .. } => None,
        }
    }

    /// The JSON-serialisable failure report.
    #[must_use]
    pub fn report(&self) -> FailureReport {
        let category = match self {
            Self::Tampered { .. } => "tampered",
            Self::Unverifiable { .. } => "unverifiable",
            Self::UnknownKey { .. } => "unknown_key",
            Self::Io { .. } => "io",
        };
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        FailureReport {
            ok: false,
            category,
            exit_code: self.exit_code(),
            first_bad_index: self.first_bad_index(),
            message,
        }
    }

    /// Wraps a store or file error.
    pub fn io(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Io {
            source: source.into(),
        }
    }

    pub(crate) fn tampered(index: Option<u64>, kind: Tamper) -> Self {
        Self::Tampered { index, kind }
    }
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Always true.
    pub ok: bool,
    /// The log's origin.
    pub origin: String,
    /// First index replayed (0, or the saved size when resuming).
    pub start_index: u64,
    /// Records in the log after this run.
    pub size: u64,
    /// Root of the whole log (base64).
    pub root: String,
    /// Records replayed in this run.
    pub records_verified: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints_verified: u64,
    /// Checkpoints before the resume point, whose roots were verified in an earlier run.
    pub checkpoints_skipped: u64,
    /// Size of the newest verified checkpoint.
    pub last_checkpoint_size: Option<u64>,
    /// Records after the newest checkpoint (hash-chained, but not yet signed).
    pub uncovered_records: u64,
    /// Time of the last record.
    pub last_time_ms: u64,
    /// State to save for the next run's anti-rollback check.
    pub state: VerifiedState,
}

/// Opens a checkpoint note for verification: signature by a known key, parseable body,
/// expected origin. `index` is reported as the first bad index on failure.
pub(crate) fn open_checkpoint(
    note: &str,
    verifiers: &[NoteVerifier],
    origin: &str,
    index: Option<u64>,
) -> Result<SignedCheckpoint, VerifyError> {
    let signed = checkpoint::open(note, verifiers).map_err(|error| match error {
        CheckpointError::Note(NoteError::UnknownKey { name, key_id }) => {
            VerifyError::UnknownKey { name, key_id }
        }
        CheckpointError::Note(NoteError::BadSignature { name, key_id }) => {
            VerifyError::tampered(index, Tamper::BadSignature { name, key_id })
        }
        other => VerifyError::tampered(
            index,
            Tamper::MalformedCheckpoint {
                detail: other.to_string(),
            },
        ),
    })?;
    if signed.checkpoint.origin != origin {
        return Err(VerifyError::tampered(
            index,
            Tamper::OriginMismatch {
                expected: origin.to_owned(),
                found: signed.checkpoint.origin,
            },
        ));
    }
    Ok(signed)
}

/// Push-based verifier state. See the module docs for the calling protocol.
#[derive(Debug)]
pub struct LogVerifier {
    options: VerifyOptions,
    frontier: Frontier,
    start_index: u64,
    last_time_ms: u64,
    /// Checkpoints not yet reached, sorted by size, deduplicated.
    pending: VecDeque<SignedCheckpoint>,
    /// Size and root of the newest checkpoint already checked.
    last_checked: Option<(u64, Hash)>,
    checkpoints_verified: u64,
    checkpoints_skipped: u64,
    threads: usize,
}

/// Batches smaller than this many entries per thread are checked on the calling thread.
const PARALLEL_MIN_PER_THREAD: usize = 4096;

/// Entries read from an iterator per [`LogVerifier::push_batch`] call in [`verify_log`].
const ITERATOR_BATCH: usize = 32_768;

/// The per-entry work that needs no ordering: index, schema scan and leaf hash.
struct Prepared {
    time_ms: u64,
    leaf: Hash,
}

fn prepare<E: LogEntry>(entry: &E, expected: u64) -> Result<Prepared, VerifyError> {
    let found = entry.index();
    if found != expected {
        return Err(VerifyError::tampered(
            Some(expected.min(found)),
            Tamper::IndexMismatch { expected, found },
        ));
    }
    let bytes = entry.record();
    let time_ms = match check_record(bytes) {
        Ok(time_ms) => time_ms,
        Err(RecordError::Invalid { detail }) => {
            return Err(VerifyError::tampered(
                Some(expected),
                Tamper::UnparseableRecord { detail },
            ));
        }
        Err(RecordError::UnsupportedSchema { schema }) => {
            return Err(VerifyError::Unverifiable {
                index: Some(expected),
                kind: Unverifiable::UnsupportedSchema { schema },
            });
        }
    };
    let leaf = leaf_hash(bytes);
    if entry
        .stored_leaf_hash()
        .is_some_and(|stored| *stored != leaf)
    {
        return Err(VerifyError::tampered(
            Some(expected),
            Tamper::LeafHashMismatch,
        ));
    }
    Ok(Prepared { time_ms, leaf })
}

/// Prepares a run of entries, stopping at the first error.
fn prepare_run<E: LogEntry>(entries: &[E], first: u64) -> (Vec<Prepared>, Option<VerifyError>) {
    let mut prepared = Vec::with_capacity(entries.len());
    for (offset, entry) in entries.iter().enumerate() {
        match prepare(entry, first + offset as u64) {
            Ok(item) => prepared.push(item),
            Err(error) => return (prepared, Some(error)),
        }
    }
    (prepared, None)
}

impl LogVerifier {
    /// Starts a verification.
    ///
    /// # Errors
    /// [`VerifyError::Unverifiable`] when no keys are given or the saved state is unusable.
    pub fn new(options: VerifyOptions) -> Result<Self, VerifyError> {
        if options.verifiers.is_empty() {
            return Err(VerifyError::Unverifiable {
                index: None,
                kind: Unverifiable::NoKeys,
            });
        }
        let mut frontier = Frontier::new();
        let mut last_time_ms = 0;
        if let Some(saved) = &options.saved {
            let bad = |reason| VerifyError::Unverifiable {
                index: None,
                kind: Unverifiable::BadSavedState { reason },
            };
            if saved.origin != options.origin {
                return Err(bad("origin differs"));
            }
            if options.resume {
                frontier = Frontier::from_parts(saved.size, saved.frontier.clone())
                    .map_err(|_| bad("frontier does not fit the size"))?;
                if frontier.root() != saved.root {
                    return Err(bad("frontier does not match the root"));
                }
                last_time_ms = saved.last_time_ms;
            }
        }
        let options_parallelism = options.parallelism;
        Ok(Self {
            start_index: frontier.size(),
            options,
            frontier,
            last_time_ms,
            pending: VecDeque::new(),
            last_checked: None,
            checkpoints_verified: 0,
            checkpoints_skipped: 0,
            threads: match options_parallelism {
                0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
                threads => threads,
            },
        })
    }

    /// Starts from an explicit position: `frontier` of the first `frontier.size()` records
    /// (for example the frontier kept at a retention boundary or an export header) and the
    /// last log time before it. The frontier is trusted until the next checkpoint checks it.
    ///
    /// # Errors
    /// As [`LogVerifier::new`].
    pub fn starting_at(
        options: VerifyOptions,
        frontier: Frontier,
        last_time_ms: u64,
    ) -> Result<Self, VerifyError> {
        let mut verifier = Self::new(options)?;
        if verifier.start_index == 0 {
            if let Some(saved) = &verifier.options.saved
                && saved.size == frontier.size()
                && saved.root != frontier.root()
            {
                return Err(VerifyError::tampered(
                    Some(saved.size),
                    Tamper::SavedRootMismatch { size: saved.size },
                ));
            }
            verifier.start_index = frontier.size();
            verifier.frontier = frontier;
            verifier.last_time_ms = last_time_ms;
        }
        Ok(verifier)
    }

    /// Number of records consumed so far, including the resumed prefix.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    fn covered_up_to(&self) -> u64 {
        self.last_checked.map_or(self.start_index, |(size, _)| size)
    }

    /// Adds a stored checkpoint note: checks its signature and origin now, and its root when
    /// the log reaches its size.
    ///
    /// # Errors
    /// [`VerifyError::UnknownKey`], or [`VerifyError::Tampered`] for a bad signature, wrong
    /// origin, malformed note, fork, or a checkpoint the log already passed.
    pub fn add_checkpoint(&mut self, note: &str) -> Result<(), VerifyError> {
        let covered = Some(self.covered_up_to());
        let signed = open_checkpoint(note, &self.options.verifiers, &self.options.origin, covered)?;
        let size = signed.checkpoint.size;
        if size < self.start_index {
            self.checkpoints_skipped += 1;
            return Ok(());
        }
        if size < self.frontier.size() {
            // Already passed: only acceptable as a duplicate of the checkpoint checked there.
            return match self.last_checked {
                Some((checked_size, root)) if checked_size == size => {
                    if root == signed.checkpoint.root {
                        Ok(())
                    } else {
                        Err(VerifyError::tampered(
                            covered,
                            Tamper::ForkedCheckpoints { size },
                        ))
                    }
                }
                _ => Err(VerifyError::tampered(
                    covered,
                    Tamper::CheckpointOutOfOrder {
                        size,
                        log_size: self.frontier.size(),
                    },
                )),
            };
        }
        let position = self
            .pending
            .partition_point(|queued| queued.checkpoint.size < size);
        if let Some(existing) = self.pending.get(position)
            && existing.checkpoint.size == size
        {
            if existing.checkpoint.root != signed.checkpoint.root {
                return Err(VerifyError::tampered(
                    covered,
                    Tamper::ForkedCheckpoints { size },
                ));
            }
            return Ok(());
        }
        self.pending.insert(position, signed);
        self.check_reached()
    }

    /// Checks every pending checkpoint whose size the log has reached.
    fn check_reached(&mut self) -> Result<(), VerifyError> {
        let size = self.frontier.size();
        while self
            .pending
            .front()
            .is_some_and(|queued| queued.checkpoint.size == size)
        {
            let Some(queued) = self.pending.pop_front() else {
                break;
            };
            let root = self.frontier.root();
            if queued.checkpoint.root != root {
                return Err(VerifyError::tampered(
                    Some(self.covered_up_to()),
                    Tamper::CheckpointRootMismatch { size },
                ));
            }
            if size == self.start_index
                && let Some(saved) = &self.options.saved
                && saved.size == size
                && saved.root != root
            {
                return Err(VerifyError::tampered(
                    Some(self.covered_up_to()),
                    Tamper::SavedRootMismatch { size },
                ));
            }
            self.last_checked = Some((size, root));
            self.checkpoints_verified += 1;
        }
        Ok(())
    }

    /// Consumes the next entry.
    ///
    /// # Errors
    /// [`VerifyError::Tampered`] naming the entry's index, or [`VerifyError::Unverifiable`]
    /// for a newer record schema.
    pub fn push_entry<E: LogEntry>(&mut self, entry: E) -> Result<(), VerifyError> {
        let prepared = prepare(&entry, self.frontier.size())?;
        self.accept(&prepared)
    }

    /// Consumes a batch of consecutive entries, scanning and hashing them on several threads
    /// when the batch is large enough, and reports the same first error as pushing them one
    /// by one would.
    ///
    /// # Errors
    /// As [`LogVerifier::push_entry`].
    pub fn push_batch<E: LogEntry + Sync>(&mut self, entries: &[E]) -> Result<(), VerifyError> {
        let threads = self
            .threads
            .min(entries.len() / PARALLEL_MIN_PER_THREAD)
            .max(1);
        let first = self.frontier.size();
        if threads == 1 {
            for entry in entries {
                let prepared = prepare(entry, self.frontier.size())?;
                self.accept(&prepared)?;
            }
            return Ok(());
        }
        let chunk = entries.len().div_ceil(threads);
        let runs = std::thread::scope(|scope| {
            let workers: Vec<_> = entries
                .chunks(chunk)
                .enumerate()
                .map(|(number, part)| {
                    let start = first + (number * chunk) as u64;
                    scope.spawn(move || prepare_run(part, start))
                })
                .collect();
            workers
                .into_iter()
                .map(std::thread::ScopedJoinHandle::join)
                .collect::<Vec<_>>()
        });
        for run in runs {
            let (prepared, error) = run.map_err(|_| {
                VerifyError::io(std::io::Error::other("verification worker panicked"))
            })?;
            for item in &prepared {
                self.accept(item)?;
            }
            if let Some(error) = error {
                return Err(error);
            }
        }
        Ok(())
    }

    /// The ordered part of consuming an entry: time order, tree, saved state, checkpoints.
    fn accept(&mut self, prepared: &Prepared) -> Result<(), VerifyError> {
        let index = self.frontier.size();
        if prepared.time_ms < self.last_time_ms {
            return Err(VerifyError::tampered(
                Some(index),
                Tamper::TimeWentBackwards {
                    previous_ms: self.last_time_ms,
                    time_ms: prepared.time_ms,
                },
            ));
        }
        self.frontier.push(prepared.leaf);
        self.last_time_ms = prepared.time_ms;
        if let Some(saved) = &self.options.saved
            && saved.size == self.frontier.size()
            && !self.options.resume
            && saved.root != self.frontier.root()
        {
            return Err(VerifyError::tampered(
                Some(self.covered_up_to()),
                Tamper::SavedRootMismatch { size: saved.size },
            ));
        }
        if self.pending.front().is_some() {
            self.check_reached()?;
        }
        Ok(())
    }

    /// Ends the replay: any checkpoint beyond the log or a shorter log than the saved state
    /// is tampering.
    ///
    /// # Errors
    /// [`VerifyError::Tampered`] or [`VerifyError::Unverifiable`] (coverage required).
    pub fn finish(self) -> Result<VerifyReport, VerifyError> {
        let log_size = self.frontier.size();
        if let Some(saved) = &self.options.saved
            && log_size < saved.size
        {
            return Err(VerifyError::tampered(
                Some(log_size),
                Tamper::Rollback {
                    saved_size: saved.size,
                    log_size,
                },
            ));
        }
        if let Some(beyond) = self.pending.front() {
            return Err(VerifyError::tampered(
                Some(log_size),
                Tamper::CheckpointBeyondLog {
                    size: beyond.checkpoint.size,
                    log_size,
                },
            ));
        }
        let covered = self.covered_up_to();
        let uncovered_records = log_size - covered;
        if self.options.require_full_coverage && uncovered_records > 0 {
            return Err(VerifyError::Unverifiable {
                index: Some(covered),
                kind: Unverifiable::NotCovered {
                    records: uncovered_records,
                },
            });
        }
        let root = self.frontier.root();
        Ok(VerifyReport {
            ok: true,
            origin: self.options.origin.clone(),
            start_index: self.start_index,
            size: log_size,
            root: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, root),
            records_verified: log_size - self.start_index,
            checkpoints_verified: self.checkpoints_verified,
            checkpoints_skipped: self.checkpoints_skipped,
            last_checkpoint_size: self.last_checked.map(|(size, _)| size),
            uncovered_records,
            last_time_ms: self.last_time_ms,
            state: VerifiedState {
                origin: self.options.origin,
                size: log_size,
                root,
                frontier: self.frontier.hashes().to_vec(),
                last_time_ms: self.last_time_ms,
            },
        })
    }
}

/// Verifies a whole log from iterators over stored checkpoint notes and entries (any order of
/// checkpoints; entries in index order). Convenient for synchronous stores and tests.
///
/// # Errors
/// Any [`VerifyError`]; source failures become [`VerifyError::Io`].
pub fn verify_log<C, N, I, E, SourceError>(
    options: VerifyOptions,
    checkpoints: C,
    entries: I,
) -> Result<VerifyReport, VerifyError>
where
    C: IntoIterator<Item = Result<N, SourceError>>,
    N: AsRef<str>,
    I: IntoIterator<Item = Result<E, SourceError>>,
    E: LogEntry + Sync,
    SourceError: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut verifier = LogVerifier::new(options)?;
    for note in checkpoints {
        verifier.add_checkpoint(note.map_err(VerifyError::io)?.as_ref())?;
    }
    let mut batch = Vec::with_capacity(ITERATOR_BATCH);
    let mut entries = entries.into_iter();
    loop {
        batch.clear();
        for entry in entries.by_ref().take(ITERATOR_BATCH) {
            batch.push(entry.map_err(VerifyError::io)?);
        }
        verifier.push_batch(&batch)?;
        if batch.len() < ITERATOR_BATCH {
            break;
        }
    }
    verifier.finish()
}
