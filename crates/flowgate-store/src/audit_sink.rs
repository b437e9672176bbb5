//! Audit stream cursors: where each sink (NATS JetStream, Kafka) stands in each origin's log,
//! persisted so a restarted gateway resumes tailing the store where it left off instead of
//! republishing everything. Also the bounded checkpoint read the tail needs. SQL for
//! `AuditStore`'s sink methods; leaves out publishing (`flowgate-gateway::audit::sink`).

use flowgate_types::now_millis;
use sqlx::Row;

use crate::StoreError;
use crate::audit::StoredCheckpoint;
use crate::audit::checkpoint_from_row;
use crate::sql::{SqlStore, query_error};

/// How far a sink has published one origin's log. Both fields only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCursor {
    /// The first record index not yet acknowledged by the sink.
    pub next_index: u64,
    /// The tree size of the last checkpoint the sink acknowledged (0: none yet).
    pub checkpoint_size: u64,
}

/// Stored integers are non-negative by construction; values beyond `i64::MAX` saturate.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) async fn cursor(
    store: &SqlStore,
    origin: &str,
    sink: &str,
) -> Result<Option<SinkCursor>, StoreError> {
    let error = query_error("read audit sink cursor");
    let row = sqlx::query(
        "SELECT next_index, checkpoint_size FROM audit_sink_cursors WHERE origin = $1 AND sink = $2",
    )
    .bind(origin)
    .bind(sink)
    .fetch_optional(&store.pool)
    .await
    .map_err(&error)?;
    row.map(|row| {
        Ok(SinkCursor {
            next_index: to_u64(row.try_get("next_index").map_err(&error)?),
            checkpoint_size: to_u64(row.try_get("checkpoint_size").map_err(&error)?),
        })
    })
    .transpose()
}

/// Upsert that keeps the larger of the stored and the given values, so a slow writer (two
/// publishers for one origin, a retried save) can never move a cursor backwards.
pub(crate) async fn save_cursor(
    store: &SqlStore,
    origin: &str,
    sink: &str,
    cursor: SinkCursor,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_sink_cursors (origin, sink, next_index, checkpoint_size, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (origin, sink) DO UPDATE SET \
         next_index = CASE WHEN excluded.next_index > audit_sink_cursors.next_index THEN excluded.next_index ELSE audit_sink_cursors.next_index END, \
         checkpoint_size = CASE WHEN excluded.checkpoint_size > audit_sink_cursors.checkpoint_size THEN excluded.checkpoint_size ELSE audit_sink_cursors.checkpoint_size END, \
         updated_at = excluded.updated_at",
    )
    .bind(origin)
    .bind(sink)
    .bind(to_i64(cursor.next_index))
    .bind(to_i64(cursor.checkpoint_size))
    .bind(now_millis())
    .execute(&store.pool)
    .await
    .map_err(query_error("save audit sink cursor"))?;
    Ok(())
}

pub(crate) async fn checkpoints_between(
    store: &SqlStore,
    origin: &str,
    after: u64,
    up_to: u64,
    limit: usize,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let error = query_error("read audit checkpoints");
    let rows = sqlx::query(
        "SELECT size, note FROM audit_checkpoints WHERE origin = $1 AND size > $2 AND size <= $3 ORDER BY size LIMIT $4",
    )
    .bind(origin)
    .bind(to_i64(after))
    .bind(to_i64(up_to))
    .bind(to_i64(limit as u64))
    .fetch_all(&store.pool)
    .await
    .map_err(&error)?;
    rows.iter()
        .map(|row| checkpoint_from_row(row, &error))
        .collect()
}
