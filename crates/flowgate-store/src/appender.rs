//! `AuditAppender`: the synchronous write side of an audit store, owned by the gateway's one
//! audit writer thread. SQLite stores hand out a connection of its own
//! (`SqliteAuditAppender`); any other store is driven through `BlockingAppender`, which runs
//! the async `AuditStore::append_audit` on the tokio runtime from the writer thread, each
//! attempt bounded in time (a store that hangs is as good as down for the writer, which then
//! spools; if the attempt committed after all, the replay sees it in `tail` and skips it).

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
        }
    }

    fn bounded<T>(
        &self,
        attempt: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.runtime.block_on(async {
            tokio::time::timeout(self.attempt_timeout, attempt)
                .await
                .unwrap_or(Err(StoreError::Connect {
                    source: sqlx::Error::PoolTimedOut,
                }))
        })
    }
}

impl AuditAppender for BlockingAppender {
    fn append(&mut self, origin: &str, write: AuditWrite<'_>) -> Result<(), StoreError> {
        self.bounded(self.store.append_audit(origin, write))
    }

    fn tail(&mut self, origin: &str) -> Result<LogTail, StoreError> {
        self.bounded(async {
            let next_index = self.store.audit_size(origin).await?;
            let checkpoint_size = self
                .store
                .audit_checkpoints(origin)
                .await?
                .iter()
                .map(|checkpoint| checkpoint.size)
                .max();
            let last_leaf = match next_index.checked_sub(1) {
                Some(last) => self
                    .store
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
