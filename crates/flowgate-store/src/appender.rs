//! `AuditAppender`: the synchronous write side of an audit store, owned by the gateway's one
//! audit writer thread. SQLite stores hand out a connection of its own
//! (`SqliteAuditAppender`); any other store is driven through `BlockingAppender`, which runs
//! the async `AuditStore::append_audit` on the tokio runtime from the writer thread, each
//! attempt bounded in time (a store that hangs is as good as down for the writer, which then
//! spools; if the attempt committed after all, the replay sees it in `tail` and skips it). The
//! bound may grow while attempts run out of time, where nothing waits on them.

use std::sync::Arc;
use std::time::Duration;

use crate::StoreError;
use crate::audit::{AuditStore, AuditWrite};
use flowgate_audit::merkle::Hash;

/// Where an origin's stored log ends (what a replay of spooled batches skips).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogTail {
    /// Index after the last stored entry (the anchor's size when everything was pruned).
    pub next_index: u64,
    /// Size of the largest stored checkpoint.
    pub checkpoint_size: Option<u64>,
    /// Leaf hash of the entry at `next_index - 1` (`None` for an empty log), so that a writer
    /// skipping records as "already stored" can check they are its own.
    pub last_leaf: Option<Hash>,
}

/// Appends batches from one thread; blocking.
pub trait AuditAppender: Send + std::fmt::Debug {
    /// Appends one batch (entries, findings, subtree roots, checkpoints, state) atomically.
    ///
    /// # Errors
    /// `StoreError::Conflict` when an entry index or checkpoint size is already stored;
    /// any other error when the store is unreachable or failed.
    fn append(&mut self, origin: &str, write: AuditWrite<'_>) -> Result<(), StoreError>;

    /// Where the stored log of `origin` ends.
    ///
    /// # Errors
    /// When the store is unreachable or failed.
    fn tail(&mut self, origin: &str) -> Result<LogTail, StoreError>;
}

/// Drives an async [`AuditStore`] from a thread outside the runtime.
#[derive(Debug)]
pub struct BlockingAppender {
    store: Arc<dyn AuditStore>,
    runtime: tokio::runtime::Handle,
    attempt_timeout: Duration,
    /// The longest bound: see `growing_to`.
    max_timeout: Duration,
    /// The bound of the next call: `attempt_timeout`, doubled after each call that ran out
    /// of time (up to `max_timeout`); a store found this slow keeps the longer bound.
    bound: Duration,
}

impl BlockingAppender {
    /// `runtime` runs the store's futures (`Handle::current()` from inside it); each call
    /// fails with `StoreError::Connect` (pool timed out) after `attempt_timeout`.
    pub fn new(
        store: Arc<dyn AuditStore>,
        runtime: tokio::runtime::Handle,
        attempt_timeout: Duration,
    ) -> Self {
        Self {
            store,
            runtime,
            attempt_timeout,
            max_timeout: attempt_timeout,
            bound: attempt_timeout,
        }
    }

    /// While calls run out of time, each next call gets twice as long, up to `max_timeout`:
    /// a store that is slow rather than down (reconnecting on a loaded machine) then gets
    /// attempts long enough to succeed instead of failing each one. Only for a writer nothing
    /// waits on while it tries.
    #[must_use]
    pub fn growing_to(mut self, max_timeout: Duration) -> Self {
        self.max_timeout = max_timeout.max(self.attempt_timeout);
        self
    }

    fn bounded<T>(
        &mut self,
        attempt: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let bound = self.bound;
        match self
            .runtime
            .block_on(async { tokio::time::timeout(bound, attempt).await })
        {
            Ok(answered) => answered,
            Err(_) => {
                self.bound = (bound * 2).min(self.max_timeout);
                Err(StoreError::Connect {
                    source: sqlx::Error::PoolTimedOut,
                })
            }
        }
    }
}

impl AuditAppender for BlockingAppender {
    fn append(&mut self, origin: &str, write: AuditWrite<'_>) -> Result<(), StoreError> {
        let store = Arc::clone(&self.store);
        self.bounded(async move { store.append_audit(origin, write).await })
    }

    fn tail(&mut self, origin: &str) -> Result<LogTail, StoreError> {
        let store = Arc::clone(&self.store);
        self.bounded(async move {
            let next_index = store.audit_size(origin).await?;
            let checkpoint_size = store
                .audit_checkpoints(origin)
                .await?
                .iter()
                .map(|checkpoint| checkpoint.size)
                .max();
            let last_leaf = match next_index.checked_sub(1) {
                Some(last) => store
                    .audit_leaf_hashes(origin, last, next_index)
                    .await?
                    .first()
                    .copied(),
                None => None,
            };
            Ok(LogTail {
                next_index,
                checkpoint_size,
                last_leaf,
            })
        })
    }
}
