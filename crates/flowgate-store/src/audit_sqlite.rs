//! `SqliteAuditAppender`: the audit writer thread's own synchronous connection to the store's
//! SQLite file (rusqlite over the same bundled SQLite as sqlx). One `BEGIN IMMEDIATE … COMMIT`
//! per batch with cached prepared statements, and no hop to an async worker thread per
//! statement: at a few thousand requests per second the async path spent more CPU on those
//! hops than on SQLite (docs/performance.md). Writes the same rows as
//! `SqlStore::append_audit`; the two are checked against each other by the conformance
//! suite.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::StoreError;
use crate::appender::{AuditAppender, LogTail};
use crate::audit::{AuditWrite, hash_from_hex, hex, to_i64, to_u64};
use flowgate_audit::merkle::Hash;

/// Appends audit batches to a SQLite store file.
#[derive(Debug)]
pub struct SqliteAuditAppender {
    connection: Connection,
}

const INSERT_ENTRY: &str = "INSERT INTO audit_entries (origin, idx, record, leaf_hash, time_ms, kind, request_id, tenant_id, decision, model, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_FINDING: &str = "INSERT INTO audit_findings (origin, idx, position, rule_id, action, hits, time_ms, tenant_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_SUBTREE: &str = "INSERT INTO audit_subtrees (origin, level, idx, hash) VALUES (?, ?, ?, ?) ON CONFLICT (origin, level, idx) DO NOTHING";
const INSERT_CHECKPOINT: &str =
    "INSERT INTO audit_checkpoints (origin, size, note, created_at) VALUES (?, ?, ?, ?)";
const UPDATE_STATE: &str = "UPDATE audit_nodes SET state = ? WHERE origin = ?";

fn sqlite_error(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |source| match &source {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict {
                entity: operation,
                value: String::new(),
            }
        }
        _ => StoreError::Embedded { operation, source },
    }
}

impl SqliteAuditAppender {
    /// Opens the (already migrated) SQLite file at `path` with the store's settings: WAL,
    /// `synchronous = NORMAL` (a commit survives the process being killed; the WAL is synced
    /// at checkpoints), a 5 s busy timeout against the store's other connections.
    ///
    /// # Errors
    /// `StoreError::Embedded` when the file cannot be opened or configured.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let error = sqlite_error("open the audit writer connection");
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&error)?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(&error)?;
        connection
            .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(&error)?;
        connection.set_prepared_statement_cache_capacity(8);
        Ok(Self { connection })
    }
}

impl AuditAppender for SqliteAuditAppender {
    fn append(&mut self, origin: &str, write: AuditWrite<'_>) -> Result<(), StoreError> {
        let error = sqlite_error("append audit");
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&error)?;
        {
            let mut entries = transaction.prepare_cached(INSERT_ENTRY).map_err(&error)?;
            let mut findings = transaction.prepare_cached(INSERT_FINDING).map_err(&error)?;
            for entry in write.entries {
                let index = to_i64(entry.index);
                let time_ms = to_i64(entry.time_ms);
                entries
                    .execute(params![
                        origin,
                        index,
                        entry.record,
                        hex(&entry.leaf_hash),
                        time_ms,
                        entry.kind.as_str(),
                        entry.request_id,
                        entry.tenant_id,
                        entry.decision.as_str(),
                        entry.model,
                        entry.status.map(i64::from),
                    ])
                    .map_err(&error)?;
                for (position, finding) in entry.findings.iter().enumerate() {
                    findings
                        .execute(params![
                            origin,
                            index,
                            to_i64(position as u64),
                            finding.rule_id,
                            finding.action,
                            to_i64(finding.count),
                            time_ms,
                            entry.tenant_id,
                        ])
                        .map_err(&error)?;
                }
            }
            if !write.subtrees.is_empty() {
                let mut subtrees = transaction.prepare_cached(INSERT_SUBTREE).map_err(&error)?;
                for subtree in write.subtrees {
                    subtrees
                        .execute(params![
                            origin,
                            i64::from(subtree.level),
                            to_i64(subtree.index),
                            hex(&subtree.hash),
                        ])
                        .map_err(&error)?;
                }
            }
            if !write.checkpoints.is_empty() {
                let mut checkpoints = transaction
                    .prepare_cached(INSERT_CHECKPOINT)
                    .map_err(&error)?;
                for checkpoint in write.checkpoints {
                    checkpoints
                        .execute(params![
                            origin,
                            to_i64(checkpoint.size),
                            checkpoint.note,
                            flowgate_types::now_millis(),
                        ])
                        .map_err(&error)?;
                }
            }
            if let Some(state) = write.state {
                transaction
                    .prepare_cached(UPDATE_STATE)
                    .and_then(|mut update| update.execute(params![state, origin]))
                    .map_err(&error)?;
            }
        }
        transaction.commit().map_err(&error)
    }

    fn tail(&mut self, origin: &str) -> Result<LogTail, StoreError> {
        let error = sqlite_error("read the audit log tail");
        let next_index: Option<i64> = self
            .connection
            .query_row(
                "SELECT MAX(idx) + 1 FROM audit_entries WHERE origin = ?",
                params![origin],
                |row| row.get(0),
            )
            .optional()
            .map_err(&error)?
            .flatten();
        let checkpoint: Option<i64> = self
            .connection
            .query_row(
                "SELECT MAX(size) FROM audit_checkpoints WHERE origin = ?",
                params![origin],
                |row| row.get(0),
            )
            .optional()
            .map_err(&error)?
            .flatten();
        let next_index = match next_index {
            Some(next) => to_u64(next),
            // Everything pruned: the log continues after the retention anchor.
            None => self.anchor_size(origin)?,
        };
        let last_leaf = match next_index.checked_sub(1) {
            Some(last) => self.leaf_hash(origin, last)?,
            None => None,
        };
        Ok(LogTail {
            next_index,
            checkpoint_size: checkpoint.map(to_u64),
            last_leaf,
        })
    }
}

impl SqliteAuditAppender {
    /// The stored (or pruned) leaf hash at `index`.
    fn leaf_hash(&self, origin: &str, index: u64) -> Result<Option<Hash>, StoreError> {
        let leaf: Option<String> = self
            .connection
            .query_row(
                "SELECT leaf_hash FROM audit_entries WHERE origin = ?1 AND idx = ?2 UNION ALL SELECT leaf_hash FROM audit_pruned_leaves WHERE origin = ?1 AND idx = ?2",
                params![origin, to_i64(index)],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite_error("read an audit leaf hash"))?;
        leaf.map(|leaf| hash_from_hex("audit_entries.leaf_hash", &leaf))
            .transpose()
    }

    fn anchor_size(&self, origin: &str) -> Result<u64, StoreError> {
        let anchor: Option<String> = self
            .connection
            .query_row(
                "SELECT anchor FROM audit_nodes WHERE origin = ?",
                params![origin],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite_error("read the audit anchor"))?
            .flatten();
        let Some(anchor) = anchor else { return Ok(0) };
        serde_json::from_str::<flowgate_audit::source::LogAnchor>(&anchor)
            .map(|anchor| anchor.size)
            .map_err(|err| StoreError::Corrupt {
                field: "audit_nodes.anchor",
                detail: err.to_string(),
            })
    }
}
