//! Audit log storage: the `AuditStore` trait (one node's log per `origin`: entries with their
//! filter columns and rule findings, signed checkpoints, cached subtree roots, the node's
//! signing key, persisted appender state and retention anchor), its `SqlStore`
//! implementation, and `OriginLog`, the adapter that exposes one origin as a
//! `flowgate_audit::source::AuditSource` for verification, proofs and export.
//!
//! Appends are multi-row INSERTs in one transaction per batch (group commit). Leaves out the
//! Merkle tree and signing (`flowgate-audit`), the write queue (`flowgate-gateway::audit`)
//! and HTTP.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use flowgate_audit::merkle::{Hash, SubtreeRoot};
use flowgate_audit::record::{Decision, RecordKind, RuleFinding};
use flowgate_audit::source::{AuditSource, LogAnchor};
use flowgate_audit::verify::StoredEntry;
use flowgate_types::now_millis;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::StoreError;
use crate::appender::AuditAppender;
use crate::audit_sink::SinkCursor;
use crate::sql::{SqlStore, begin_write, query_error};

/// One appended record with the columns the API filters on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the origin's log.
    pub index: u64,
    /// Canonical record JSON, byte for byte what was hashed.
    pub record: String,
    /// `SHA-256(0x00 || record)`.
    pub leaf_hash: Hash,
    /// Log time written into the record.
    pub time_ms: u64,
    pub kind: RecordKind,
    pub request_id: String,
    pub tenant_id: String,
    pub decision: Decision,
    pub model: String,
    /// HTTP status (completion records).
    pub status: Option<u16>,
    /// Rules that matched, in order.
    pub findings: Vec<RuleFinding>,
}

impl AuditEntry {
    /// The entry of `record` stored at `index` as `canonical` (what the appender hashed, at
    /// `time_ms`, its log time); the filter columns come from `record`.
    pub fn new(
        index: u64,
        canonical: String,
        leaf_hash: Hash,
        time_ms: u64,
        record: &flowgate_audit::record::AuditRecord,
    ) -> Self {
        Self {
            index,
            record: canonical,
            leaf_hash,
            time_ms,
            kind: record.kind,
            request_id: record.request_id.clone(),
            tenant_id: record.tenant_id.clone(),
            decision: record.decision,
            model: record.model.clone(),
            status: record.http_status,
            findings: record.findings.clone(),
        }
    }
}

/// A `size, note` row of `audit_checkpoints`.
pub(crate) fn checkpoint_from_row(
    row: &sqlx::any::AnyRow,
    error: &impl Fn(sqlx::Error) -> StoreError,
) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        size: to_u64(row.try_get("size").map_err(error)?),
        note: row.try_get("note").map_err(error)?,
    })
}

/// A signed checkpoint to store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredCheckpoint {
    /// Tree size it commits to.
    pub size: u64,
    /// The C2SP signed note.
    pub note: String,
}

/// Everything one group commit writes, atomically.
#[derive(Debug, Clone, Copy)]
pub struct AuditWrite<'a> {
    pub entries: &'a [AuditEntry],
    pub subtrees: &'a [SubtreeRoot],
    pub checkpoints: &'a [StoredCheckpoint],
    /// Serialised `AppenderState` to keep as the restart hint (usually with a checkpoint).
    pub state: Option<&'a str>,
}

/// A node's identity and restart data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditNode {
    pub origin: String,
    /// C2SP private key text (`PRIVATE+KEY+...`).
    pub signing_key: String,
    /// Last persisted `AppenderState` JSON.
    pub state: Option<String>,
    /// Retention anchor, when old records were pruned.
    pub anchor: Option<LogAnchor>,
}

/// Filters of `GET /v1/audit`; newest first, `before_index` is the cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub decision: Option<String>,
    pub tenant_id: Option<String>,
    pub rule_id: Option<String>,
    pub model: Option<String>,
    /// The records of one request (what webhook payloads link to).
    pub request_id: Option<String>,
    /// Inclusive lower bound on `time_ms`.
    pub from_ms: Option<u64>,
    /// Exclusive upper bound on `time_ms`.
    pub to_ms: Option<u64>,
    /// Only entries with a smaller index (pagination cursor).
    pub before_index: Option<u64>,
    pub limit: u32,
}

/// One listed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub index: u64,
    pub time_ms: u64,
    pub record: String,
}

/// A named count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedCount {
    pub name: String,
    pub count: u64,
}

/// How often one rule fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleCount {
    pub rule_id: String,
    /// Records in which it fired.
    pub records: u64,
    /// Sum of its match counts.
    pub hits: u64,
}

/// Aggregates over a time range (gap markers are counted apart).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditStats {
    /// Records (request-side and completion) excluding gap markers.
    pub records: u64,
    /// Distinct request ids.
    pub requests: u64,
    /// Distinct request ids with at least one record of each decision.
    pub by_decision: Vec<NamedCount>,
    pub by_model: Vec<NamedCount>,
    pub by_tenant: Vec<NamedCount>,
    /// Up to 10, most records first.
    pub top_triggered_rules: Vec<RuleCount>,
    /// Gap markers and the records they say were lost.
    pub gaps: u64,
    pub lost_records: u64,
}

/// Storage of per-node audit logs. Object safe; every method is one transaction.
#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug {
    /// The node row of `origin`, if the node ever started.
    async fn audit_node(&self, origin: &str) -> Result<Option<AuditNode>, StoreError>;
    /// Creates the node row with `signing_key` unless it exists; returns the stored row
    /// (so two racing first starts agree on one key).
    async fn create_audit_node(
        &self,
        origin: &str,
        signing_key: &str,
    ) -> Result<AuditNode, StoreError>;
    /// Origins with a node row, sorted.
    async fn audit_origins(&self) -> Result<Vec<String>, StoreError>;
    /// Appends one batch (entries, findings, subtree roots, checkpoints, state) atomically.
    async fn append_audit(&self, origin: &str, write: AuditWrite<'_>) -> Result<(), StoreError>;
    /// Log size: the index after the last stored entry (or the anchor size).
    async fn audit_size(&self, origin: &str) -> Result<u64, StoreError>;
    /// Entries `from..` in index order, at most `limit`.
    async fn audit_entries(
        &self,
        origin: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError>;
    /// Stored leaf hashes of `start..end` in order.
    async fn audit_leaf_hashes(
        &self,
        origin: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<Hash>, StoreError>;
    /// Cached subtree root.
    async fn audit_subtree(
        &self,
        origin: &str,
        level: u8,
        index: u64,
    ) -> Result<Option<Hash>, StoreError>;
    /// Every stored checkpoint, by size.
    async fn audit_checkpoints(&self, origin: &str) -> Result<Vec<StoredCheckpoint>, StoreError>;
    /// Filtered listing, newest first.
    async fn list_audit(
        &self,
        origin: &str,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRow>, StoreError>;
    /// Aggregates over `from_ms..to_ms`, optionally for one tenant.
    async fn audit_stats(
        &self,
        origin: &str,
        tenant_id: Option<&str>,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
    ) -> Result<AuditStats, StoreError>;
    /// Retention: stores `anchor` and deletes entries below it (their leaf hashes are kept
    /// for proofs of later records) and checkpoints smaller than it (the one at
    /// `anchor.size` stays). Returns the number of entries deleted.
    async fn prune_audit(&self, origin: &str, anchor: &LogAnchor) -> Result<u64, StoreError>;
    /// A synchronous appender with a connection of its own for the audit writer thread, when
    /// this store has a faster path than `append_audit` (SQLite); `None` otherwise.
    ///
    /// # Errors
    /// When the connection cannot be opened.
    fn dedicated_appender(&self) -> Result<Option<Box<dyn AuditAppender>>, StoreError> {
        Ok(None)
    }
    /// Where audit stream `sink` stands in `origin`'s log; `None` before its first save.
    async fn audit_sink_cursor(
        &self,
        origin: &str,
        sink: &str,
    ) -> Result<Option<SinkCursor>, StoreError>;
    /// Saves a sink's cursor. Each field keeps the larger of the stored and the given value:
    /// a cursor never moves backwards.
    async fn save_audit_sink_cursor(
        &self,
        origin: &str,
        sink: &str,
        cursor: SinkCursor,
    ) -> Result<(), StoreError>;
    /// Stored checkpoints with `after < size <= up_to`, by size, at most `limit`.
    async fn audit_checkpoints_between(
        &self,
        origin: &str,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError>;
}

/// One origin of an [`AuditStore`] as a `flowgate_audit` source.
#[derive(Debug, Clone)]
pub struct OriginLog {
    store: Arc<dyn AuditStore>,
    origin: String,
}

impl OriginLog {
    pub fn new(store: Arc<dyn AuditStore>, origin: &str) -> Self {
        Self {
            store,
            origin: origin.to_owned(),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl AuditSource for OriginLog {
    type Error = StoreError;

    async fn record_count(&self) -> Result<u64, StoreError> {
        self.store.audit_size(&self.origin).await
    }

    async fn read_entries(
        &self,
        from: u64,
        limit: usize,
        out: &mut Vec<StoredEntry>,
    ) -> Result<(), StoreError> {
        out.extend(self.store.audit_entries(&self.origin, from, limit).await?);
        Ok(())
    }

    async fn read_leaf_hashes(
        &self,
        start: u64,
        end: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), StoreError> {
        out.extend(
            self.store
                .audit_leaf_hashes(&self.origin, start, end)
                .await?,
        );
        Ok(())
    }

    async fn read_checkpoints(&self, out: &mut Vec<String>) -> Result<(), StoreError> {
        out.extend(
            self.store
                .audit_checkpoints(&self.origin)
                .await?
                .into_iter()
                .map(|checkpoint| checkpoint.note),
        );
        Ok(())
    }

    async fn read_subtree_root(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        self.store.audit_subtree(&self.origin, level, index).await
    }

    async fn read_anchor(&self) -> Result<Option<LogAnchor>, StoreError> {
        Ok(self
            .store
            .audit_node(&self.origin)
            .await?
            .and_then(|node| node.anchor))
    }
}

/// Stored integers are non-negative by construction; values beyond `i64::MAX` saturate.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) fn hex(hash: &Hash) -> String {
    flowgate_types::to_hex(hash)
}

pub(crate) fn hash_from_hex(field: &'static str, text: &str) -> Result<Hash, StoreError> {
    let corrupt = || StoreError::Corrupt {
        field,
        detail: "not a 64-digit hex hash".into(),
    };
    if text.len() != 64 {
        return Err(corrupt());
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16).ok_or_else(corrupt)?;
        let low = char::from(pair[1]).to_digit(16).ok_or_else(corrupt)?;
        *slot = u8::try_from(high * 16 + low).map_err(|_| corrupt())?;
    }
    Ok(out)
}

const ENTRY_COLUMNS: usize = 11;
const FINDING_COLUMNS: usize = 8;
/// Rows per INSERT statement. Measured on SQLite (benches/audit_append.rs, anonymous `?`
/// parameters): 100 rows 68k records/s, 25 rows 54k; with numbered parameters larger
/// statements got slower instead (each bind looked its name up).
const ROWS_PER_STATEMENT: usize = 100;

/// `INSERT INTO table (columns) VALUES ($1, ...), ...` for `rows` rows.
/// How a multi-row INSERT names its parameters. PostgreSQL needs `$n`. SQLite takes anonymous
/// `?`, which it binds by position; its numbered parameters cost a linear name lookup per bind
/// (quadratic per statement: `?` doubled the append rate in benches/audit_append.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    Numbered,
    Anonymous,
}

fn insert_sql(head: &str, columns: usize, rows: usize, style: Placeholders) -> String {
    let mut sql = String::with_capacity(head.len() + rows * columns * 6);
    sql.push_str(head);
    for row in 0..rows {
        sql.push_str(if row == 0 { " (" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match style {
                // Writing to a String cannot fail.
                Placeholders::Numbered => {
                    let _ = write!(sql, "${}", row * columns + column + 1);
                }
                Placeholders::Anonymous => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

const ENTRY_HEAD: &str = "INSERT INTO audit_entries (origin, idx, record, leaf_hash, time_ms, kind, request_id, tenant_id, decision, model, status) VALUES";
const FINDING_HEAD: &str = "INSERT INTO audit_findings (origin, idx, position, rule_id, action, hits, time_ms, tenant_id) VALUES";

/// The INSERT for `rows` rows; full-size statements are built once per placeholder style.
fn rows_sql(head: &'static str, columns: usize, rows: usize, style: Placeholders) -> String {
    static FULL: OnceLock<[[String; 2]; 2]> = OnceLock::new();
    if rows != ROWS_PER_STATEMENT {
        return insert_sql(head, columns, rows, style);
    }
    let full = FULL.get_or_init(|| {
        let both = |head, columns| {
            [Placeholders::Numbered, Placeholders::Anonymous]
                .map(|style| insert_sql(head, columns, ROWS_PER_STATEMENT, style))
        };
        [
            both(ENTRY_HEAD, ENTRY_COLUMNS),
            both(FINDING_HEAD, FINDING_COLUMNS),
        ]
    });
    let table = usize::from(head == FINDING_HEAD);
    let column = usize::from(style == Placeholders::Anonymous);
    full[table][column].clone()
}

fn node_from_row(row: &AnyRow) -> Result<AuditNode, StoreError> {
    let error = query_error("read audit node");
    let anchor: Option<String> = row.try_get("anchor").map_err(&error)?;
    let anchor = anchor
        .map(|text| {
            serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
                field: "audit_nodes.anchor",
                detail: err.to_string(),
            })
        })
        .transpose()?;
    Ok(AuditNode {
        origin: row.try_get("origin").map_err(&error)?,
        signing_key: row.try_get("signing_key").map_err(&error)?,
        state: row.try_get("state").map_err(&error)?,
        anchor,
    })
}

/// Appends `, column op $N` conditions and remembers the values to bind.
#[derive(Default)]
struct Conditions {
    sql: String,
    texts: Vec<(usize, String)>,
    numbers: Vec<(usize, i64)>,
    next: usize,
}

enum Bind {
    Text(String),
    Number(i64),
}

impl Conditions {
    fn new(first_free: usize) -> Self {
        Self {
            next: first_free,
            ..Self::default()
        }
    }

    fn add(&mut self, template: &str, value: Bind) {
        let placeholder = format!("${}", self.next);
        self.sql.push_str(" AND ");
        self.sql.push_str(&template.replace('?', &placeholder));
        match value {
            Bind::Text(text) => self.texts.push((self.next, text)),
            Bind::Number(number) => self.numbers.push((self.next, number)),
        }
        self.next += 1;
    }

    /// Values in placeholder order.
    fn ordered(&self) -> Vec<Bind> {
        let mut all: Vec<(usize, Bind)> = self
            .texts
            .iter()
            .map(|(slot, text)| (*slot, Bind::Text(text.clone())))
            .chain(
                self.numbers
                    .iter()
                    .map(|(slot, number)| (*slot, Bind::Number(*number))),
            )
            .collect();
        all.sort_by_key(|(slot, _)| *slot);
        all.into_iter().map(|(_, bind)| bind).collect()
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    values: Vec<Bind>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for value in values {
        query = match value {
            Bind::Text(text) => query.bind(text),
            Bind::Number(number) => query.bind(number),
        };
    }
    query
}

fn time_conditions(
    conditions: &mut Conditions,
    column_prefix: &str,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
) {
    if let Some(from) = from_ms {
        conditions.add(
            &format!("{column_prefix}time_ms >= ?"),
            Bind::Number(to_i64(from)),
        );
    }
    if let Some(to) = to_ms {
        conditions.add(
            &format!("{column_prefix}time_ms < ?"),
            Bind::Number(to_i64(to)),
        );
    }
}

async fn named_counts(
    store: &SqlStore,
    sql: String,
    origin: &str,
    values: Vec<Bind>,
) -> Result<Vec<NamedCount>, StoreError> {
    let error = query_error("audit stats");
    let rows = bind_all(
        sqlx::query(AssertSqlSafe(sql)).bind(origin.to_owned()),
        values,
    )
    .fetch_all(&store.pool)
    .await
    .map_err(&error)?;
    rows.iter()
        .map(|row| {
            Ok(NamedCount {
                name: row.try_get("name").map_err(&error)?,
                count: to_u64(row.try_get("n").map_err(&error)?),
            })
        })
        .collect()
}

#[async_trait]
impl AuditStore for SqlStore {
    fn dedicated_appender(&self) -> Result<Option<Box<dyn AuditAppender>>, StoreError> {
        match self.sqlite_file() {
            Some(path) => Ok(Some(Box::new(crate::SqliteAuditAppender::open(path)?))),
            None => Ok(None),
        }
    }

    async fn audit_node(&self, origin: &str) -> Result<Option<AuditNode>, StoreError> {
        let row = sqlx::query(
            "SELECT origin, signing_key, state, anchor FROM audit_nodes WHERE origin = $1",
        )
        .bind(origin)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("audit node"))?;
        row.as_ref().map(node_from_row).transpose()
    }

    async fn create_audit_node(
        &self,
        origin: &str,
        signing_key: &str,
    ) -> Result<AuditNode, StoreError> {
        let error = query_error("create audit node");
        sqlx::query(
            "INSERT INTO audit_nodes (origin, signing_key, created_at) VALUES ($1, $2, $3) ON CONFLICT (origin) DO NOTHING",
        )
        .bind(origin)
        .bind(signing_key)
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(&error)?;
        self.audit_node(origin).await?.ok_or(StoreError::Corrupt {
            field: "audit_nodes",
            detail: "node row missing right after insert".into(),
        })
    }

    async fn audit_origins(&self) -> Result<Vec<String>, StoreError> {
        let error = query_error("audit origins");
        let rows = sqlx::query("SELECT origin FROM audit_nodes ORDER BY origin")
            .fetch_all(&self.pool)
            .await
            .map_err(&error)?;
        rows.iter()
            .map(|row| row.try_get("origin").map_err(&error))
            .collect()
    }

    async fn append_audit(&self, origin: &str, write: AuditWrite<'_>) -> Result<(), StoreError> {
        let error = query_error("append audit");
        let style = if self.is_sqlite() {
            Placeholders::Anonymous
        } else {
            Placeholders::Numbered
        };
        let mut transaction = begin_write(&self.pool).await.map_err(&error)?;
        for chunk in write.entries.chunks(ROWS_PER_STATEMENT) {
            let sql = rows_sql(ENTRY_HEAD, ENTRY_COLUMNS, chunk.len(), style);
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for entry in chunk {
                query = query
                    .bind(origin)
                    .bind(to_i64(entry.index))
                    .bind(entry.record.as_str())
                    .bind(hex(&entry.leaf_hash))
                    .bind(to_i64(entry.time_ms))
                    .bind(entry.kind.as_str())
                    .bind(entry.request_id.as_str())
                    .bind(entry.tenant_id.as_str())
                    .bind(entry.decision.as_str())
                    .bind(entry.model.as_str())
                    .bind(entry.status.map(i64::from));
            }
            query.execute(&mut *transaction).await.map_err(&error)?;
        }
        let findings: Vec<(&AuditEntry, usize, &RuleFinding)> = write
            .entries
            .iter()
            .flat_map(|entry| {
                entry
                    .findings
                    .iter()
                    .enumerate()
                    .map(move |(position, finding)| (entry, position, finding))
            })
            .collect();
        for chunk in findings.chunks(ROWS_PER_STATEMENT) {
            let sql = rows_sql(FINDING_HEAD, FINDING_COLUMNS, chunk.len(), style);
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (entry, position, finding) in chunk {
                query = query
                    .bind(origin)
                    .bind(to_i64(entry.index))
                    .bind(to_i64(*position as u64))
                    .bind(finding.rule_id.as_str())
                    .bind(finding.action.as_str())
                    .bind(to_i64(finding.count))
                    .bind(to_i64(entry.time_ms))
                    .bind(entry.tenant_id.as_str());
            }
            query.execute(&mut *transaction).await.map_err(&error)?;
        }
        for subtree in write.subtrees {
            sqlx::query(
                "INSERT INTO audit_subtrees (origin, level, idx, hash) VALUES ($1, $2, $3, $4) ON CONFLICT (origin, level, idx) DO NOTHING",
            )
            .bind(origin)
            .bind(i64::from(subtree.level))
            .bind(to_i64(subtree.index))
            .bind(hex(&subtree.hash))
            .execute(&mut *transaction)
            .await
            .map_err(&error)?;
        }
        for checkpoint in write.checkpoints {
            sqlx::query(
                "INSERT INTO audit_checkpoints (origin, size, note, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(origin)
            .bind(to_i64(checkpoint.size))
            .bind(checkpoint.note.as_str())
            .bind(now_millis())
            .execute(&mut *transaction)
            .await
            .map_err(&error)?;
        }
        if let Some(state) = write.state {
            sqlx::query("UPDATE audit_nodes SET state = $1 WHERE origin = $2")
                .bind(state)
                .bind(origin)
                .execute(&mut *transaction)
                .await
                .map_err(&error)?;
        }
        transaction.commit().await.map_err(&error)?;
        Ok(())
    }

    async fn audit_size(&self, origin: &str) -> Result<u64, StoreError> {
        let error = query_error("audit size");
        let last: Option<i64> =
            sqlx::query("SELECT MAX(idx) AS last FROM audit_entries WHERE origin = $1")
                .bind(origin)
                .fetch_one(&self.pool)
                .await
                .and_then(|row| row.try_get("last"))
                .map_err(&error)?;
        match last {
            Some(last) => Ok(to_u64(last) + 1),
            None => Ok(self
                .audit_node(origin)
                .await?
                .and_then(|node| node.anchor)
                .map_or(0, |anchor| anchor.size)),
        }
    }

    async fn audit_entries(
        &self,
        origin: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let error = query_error("read audit entries");
        let rows = sqlx::query(
            "SELECT idx, record, leaf_hash FROM audit_entries WHERE origin = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
        )
        .bind(origin)
        .bind(to_i64(from))
        .bind(to_i64(limit as u64))
        .fetch_all(&self.pool)
        .await
        .map_err(&error)?;
        rows.iter()
            .map(|row| {
                let record: String = row.try_get("record").map_err(&error)?;
                let leaf: String = row.try_get("leaf_hash").map_err(&error)?;
                Ok(StoredEntry {
                    index: to_u64(row.try_get("idx").map_err(&error)?),
                    record: record.into_bytes(),
                    leaf_hash: Some(hash_from_hex("audit_entries.leaf_hash", &leaf)?),
                })
            })
            .collect()
    }

    async fn audit_leaf_hashes(
        &self,
        origin: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let error = query_error("read audit leaf hashes");
        let rows = sqlx::query(
            "SELECT leaf_hash FROM (SELECT idx, leaf_hash FROM audit_pruned_leaves WHERE origin = $1 AND idx >= $2 AND idx < $3 UNION ALL SELECT idx, leaf_hash FROM audit_entries WHERE origin = $1 AND idx >= $2 AND idx < $3) leaves ORDER BY idx",
        )
        .bind(origin)
        .bind(to_i64(start))
        .bind(to_i64(end))
        .fetch_all(&self.pool)
        .await
        .map_err(&error)?;
        rows.iter()
            .map(|row| {
                let leaf: String = row.try_get("leaf_hash").map_err(&error)?;
                hash_from_hex("audit_entries.leaf_hash", &leaf)
            })
            .collect()
    }

    async fn audit_subtree(
        &self,
        origin: &str,
        level: u8,
        index: u64,
    ) -> Result<Option<Hash>, StoreError> {
        let error = query_error("read audit subtree");
        let hash: Option<String> = sqlx::query(
            "SELECT hash FROM audit_subtrees WHERE origin = $1 AND level = $2 AND idx = $3",
        )
        .bind(origin)
        .bind(i64::from(level))
        .bind(to_i64(index))
        .fetch_optional(&self.pool)
        .await
        .map_err(&error)?
        .map(|row| row.try_get("hash"))
        .transpose()
        .map_err(&error)?;
        hash.map(|hash| hash_from_hex("audit_subtrees.hash", &hash))
            .transpose()
    }

    async fn audit_checkpoints(&self, origin: &str) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let error = query_error("read audit checkpoints");
        let rows =
            sqlx::query("SELECT size, note FROM audit_checkpoints WHERE origin = $1 ORDER BY size")
                .bind(origin)
                .fetch_all(&self.pool)
                .await
                .map_err(&error)?;
        rows.iter()
            .map(|row| checkpoint_from_row(row, &error))
            .collect()
    }

    async fn list_audit(
        &self,
        origin: &str,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let error = query_error("list audit");
        let mut conditions = Conditions::new(2);
        if let Some(decision) = &filter.decision {
            conditions.add("e.decision = ?", Bind::Text(decision.clone()));
        }
        if let Some(tenant) = &filter.tenant_id {
            conditions.add("e.tenant_id = ?", Bind::Text(tenant.clone()));
        }
        if let Some(model) = &filter.model {
            conditions.add("e.model = ?", Bind::Text(model.clone()));
        }
        if let Some(request_id) = &filter.request_id {
            conditions.add("e.request_id = ?", Bind::Text(request_id.clone()));
        }
        if let Some(rule) = &filter.rule_id {
            conditions.add(
                "EXISTS (SELECT 1 FROM audit_findings f WHERE f.origin = e.origin AND f.idx = e.idx AND f.rule_id = ?)",
                Bind::Text(rule.clone()),
            );
        }
        time_conditions(&mut conditions, "e.", filter.from_ms, filter.to_ms);
        if let Some(before) = filter.before_index {
            conditions.add("e.idx < ?", Bind::Number(to_i64(before)));
        }
        let sql = format!(
            "SELECT e.idx, e.time_ms, e.record FROM audit_entries e WHERE e.origin = $1{} ORDER BY e.idx DESC LIMIT {}",
            conditions.sql,
            filter.limit.max(1)
        );
        let rows = bind_all(
            sqlx::query(AssertSqlSafe(sql)).bind(origin.to_owned()),
            conditions.ordered(),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(&error)?;
        rows.iter()
            .map(|row| {
                Ok(AuditRow {
                    index: to_u64(row.try_get("idx").map_err(&error)?),
                    time_ms: to_u64(row.try_get("time_ms").map_err(&error)?),
                    record: row.try_get("record").map_err(&error)?,
                })
            })
            .collect()
    }

    async fn audit_stats(
        &self,
        origin: &str,
        tenant_id: Option<&str>,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
    ) -> Result<AuditStats, StoreError> {
        let error = query_error("audit stats");
        let mut conditions = Conditions::new(2);
        if let Some(tenant) = tenant_id {
            conditions.add("tenant_id = ?", Bind::Text(tenant.to_owned()));
        }
        time_conditions(&mut conditions, "", from_ms, to_ms);
        let filter = conditions.sql.clone();
        let values = || conditions.ordered();
        let totals = bind_all(
            sqlx::query(AssertSqlSafe(format!(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS r FROM audit_entries WHERE origin = $1 AND kind <> 'gap'{filter}"
            )))
            .bind(origin.to_owned()),
            values(),
        )
        .fetch_one(&self.pool)
        .await
        .map_err(&error)?;
        let gap_rows = bind_all(
            sqlx::query(AssertSqlSafe(format!(
                "SELECT record FROM audit_entries WHERE origin = $1 AND kind = 'gap'{filter}"
            )))
            .bind(origin.to_owned()),
            values(),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(&error)?;
        let mut lost_records = 0u64;
        for row in &gap_rows {
            let record: String = row.try_get("record").map_err(&error)?;
            if let Ok(record) = flowgate_audit::record::AuditRecord::parse(record.as_bytes()) {
                lost_records += record.gap.map_or(0, |gap| gap.lost);
            }
        }
        let grouped = |column: &str, distinct: bool| {
            format!(
                "SELECT {column} AS name, COUNT({}) AS n FROM audit_entries WHERE origin = $1 AND kind <> 'gap'{filter} GROUP BY {column} ORDER BY n DESC, name",
                if distinct { "DISTINCT request_id" } else { "*" }
            )
        };
        let by_decision = named_counts(self, grouped("decision", true), origin, values()).await?;
        let by_model = named_counts(self, grouped("model", true), origin, values()).await?;
        let by_tenant = named_counts(self, grouped("tenant_id", true), origin, values()).await?;
        let rule_rows = bind_all(
            sqlx::query(AssertSqlSafe(format!(
                "SELECT rule_id, COUNT(*) AS n, CAST(SUM(hits) AS BIGINT) AS h FROM audit_findings WHERE origin = $1{filter} GROUP BY rule_id ORDER BY n DESC, rule_id LIMIT 10"
            )))
            .bind(origin.to_owned()),
            values(),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(&error)?;
        let top_triggered_rules = rule_rows
            .iter()
            .map(|row| {
                Ok(RuleCount {
                    rule_id: row.try_get("rule_id").map_err(&error)?,
                    records: to_u64(row.try_get("n").map_err(&error)?),
                    hits: to_u64(
                        row.try_get::<Option<i64>, _>("h")
                            .map_err(&error)?
                            .unwrap_or(0),
                    ),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(AuditStats {
            records: to_u64(totals.try_get("n").map_err(&error)?),
            requests: to_u64(totals.try_get("r").map_err(&error)?),
            by_decision,
            by_model,
            by_tenant,
            top_triggered_rules,
            gaps: gap_rows.len() as u64,
            lost_records,
        })
    }

    async fn prune_audit(&self, origin: &str, anchor: &LogAnchor) -> Result<u64, StoreError> {
        let error = query_error("prune audit");
        let anchor_json = serde_json::to_string(anchor).map_err(|err| StoreError::Corrupt {
            field: "audit_nodes.anchor",
            detail: err.to_string(),
        })?;
        let size = to_i64(anchor.size);
        let mut transaction = begin_write(&self.pool).await.map_err(&error)?;
        sqlx::query("UPDATE audit_nodes SET anchor = $1 WHERE origin = $2")
            .bind(anchor_json)
            .bind(origin)
            .execute(&mut *transaction)
            .await
            .map_err(&error)?;
        // Leaf hashes stay (64 hex digits each, no content) so inclusion proofs of later
        // records can still be computed across the pruned prefix.
        sqlx::query(
            "INSERT INTO audit_pruned_leaves (origin, idx, leaf_hash) SELECT origin, idx, leaf_hash FROM audit_entries WHERE origin = $1 AND idx < $2",
        )
        .bind(origin)
        .bind(size)
        .execute(&mut *transaction)
        .await
        .map_err(&error)?;
        let deleted = sqlx::query("DELETE FROM audit_entries WHERE origin = $1 AND idx < $2")
            .bind(origin)
            .bind(size)
            .execute(&mut *transaction)
            .await
            .map_err(&error)?
            .rows_affected();
        sqlx::query("DELETE FROM audit_findings WHERE origin = $1 AND idx < $2")
            .bind(origin)
            .bind(size)
            .execute(&mut *transaction)
            .await
            .map_err(&error)?;
        sqlx::query("DELETE FROM audit_checkpoints WHERE origin = $1 AND size < $2")
            .bind(origin)
            .bind(size)
            .execute(&mut *transaction)
            .await
            .map_err(&error)?;
        transaction.commit().await.map_err(&error)?;
        Ok(deleted)
    }

    async fn audit_sink_cursor(
        &self,
        origin: &str,
        sink: &str,
    ) -> Result<Option<SinkCursor>, StoreError> {
        crate::audit_sink::cursor(self, origin, sink).await
    }

    async fn save_audit_sink_cursor(
        &self,
        origin: &str,
        sink: &str,
        cursor: SinkCursor,
    ) -> Result<(), StoreError> {
        crate::audit_sink::save_cursor(self, origin, sink, cursor).await
    }

    async fn audit_checkpoints_between(
        &self,
        origin: &str,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        crate::audit_sink::checkpoints_between(self, origin, after, up_to, limit).await
    }
}
