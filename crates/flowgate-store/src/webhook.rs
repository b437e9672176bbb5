//! Webhook storage: the `WebhookStore` trait (webhook subscriptions and their durable
//! delivery outbox) and its `SqlStore` implementation. A delivery row is written once per
//! (webhook, event) and moves `pending` → `delivered` | `failed`; pending rows survive a
//! restart and are claimed again by whichever node's worker sees them due.
//!
//! Claiming is optimistic and backend-neutral: a worker reads due rows, then pushes each
//! row's `next_attempt_at` forward by a lease with an `UPDATE … WHERE next_attempt_at = <read
//! value>`; only the rows it actually moved are its own, so two replicas never deliver the
//! same attempt twice. Webhook changes do not bump the change counter: nothing on the request
//! path reads webhooks. Leaves out signing, HTTP and the in-memory event queue
//! (`flowgate-gateway::webhooks`).

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::StoreError;
use crate::sql::{SqlStore, begin_write, query_error};

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `wh_` + hex.
    pub id: String,
    /// Target URL, checked against the address allowlist when created.
    pub url: String,
    /// Event types this webhook receives (`key.rotated`, …).
    pub events: Vec<String>,
    /// The signing secret as the gateway sealed it (encrypted under the master key); the
    /// store never sees it in clear.
    pub secret_sealed: String,
    pub created_at: i64,
    /// A disabled webhook gets no new deliveries.
    pub disabled: bool,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (at `next_attempt_at`).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; kept for inspection, never retried.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Corrupt {
                field: "webhook_deliveries.status",
                detail: format!("unknown status `{other}`"),
            }),
        }
    }
}

/// One outbox row to insert (status `pending`, no attempts yet).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// `whd_` + hex.
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    /// The JSON body to POST, exactly as it will be signed and sent.
    pub payload: String,
    /// Due time of the first attempt (usually the creation time).
    pub next_attempt_at: i64,
    pub created_at: i64,
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub payload: String,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub status: DeliveryStatus,
    /// Why the last attempt failed (transport error or status), for operators.
    pub last_error: Option<String>,
    /// HTTP status of the last attempt, when the receiver answered.
    pub last_status: Option<u16>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The result of one attempt, written back to the row the worker claimed.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    /// Total attempts including this one.
    pub attempts: u32,
    pub status: DeliveryStatus,
    /// The next due time (meaningful while `Pending`).
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub last_status: Option<u16>,
    pub now: i64,
}

/// Webhook subscriptions and the delivery outbox.
#[async_trait]
pub trait WebhookStore: Send + Sync + std::fmt::Debug {
    async fn create_webhook(&self, webhook: &Webhook) -> Result<(), StoreError>;
    /// Every webhook, oldest first.
    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError>;
    async fn get_webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError>;
    /// Deletes the webhook and its deliveries; false when it did not exist.
    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError>;
    /// Inserts outbox rows in one transaction (all or none).
    async fn enqueue_deliveries(&self, deliveries: &[NewDelivery]) -> Result<(), StoreError>;
    /// Claims up to `limit` pending rows due at `now` (oldest due first) by moving their
    /// `next_attempt_at` to `lease_until`; returns only the rows this call claimed.
    async fn claim_due_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Writes the outcome of an attempt on a claimed row.
    async fn record_attempt(&self, id: &str, outcome: &AttemptOutcome) -> Result<(), StoreError>;
    /// A webhook's deliveries, newest first, at most `limit`.
    async fn list_deliveries(
        &self,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;
}

const WEBHOOK_COLUMNS: &str =
    "SELECT id, url, events, secret_sealed, created_at, disabled FROM webhooks";
const DELIVERY_COLUMNS: &str = "SELECT id, webhook_id, event, payload, attempts, next_attempt_at, status, last_error, last_status, created_at, updated_at FROM webhook_deliveries";

fn webhook_from_row(row: &AnyRow) -> Result<Webhook, StoreError> {
    let get_error = query_error("read webhook");
    let events: String = row.try_get("events").map_err(&get_error)?;
    let disabled: i64 = row.try_get("disabled").map_err(&get_error)?;
    Ok(Webhook {
        id: row.try_get("id").map_err(&get_error)?,
        url: row.try_get("url").map_err(&get_error)?,
        events: serde_json::from_str(&events).map_err(|err| StoreError::Corrupt {
            field: "webhooks.events",
            detail: err.to_string(),
        })?,
        secret_sealed: row.try_get("secret_sealed").map_err(&get_error)?,
        created_at: row.try_get("created_at").map_err(&get_error)?,
        disabled: disabled != 0,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, StoreError> {
    let get_error = query_error("read webhook delivery");
    let attempts: i64 = row.try_get("attempts").map_err(&get_error)?;
    let status: String = row.try_get("status").map_err(&get_error)?;
    let last_status: Option<i64> = row.try_get("last_status").map_err(&get_error)?;
    Ok(Delivery {
        id: row.try_get("id").map_err(&get_error)?,
        webhook_id: row.try_get("webhook_id").map_err(&get_error)?,
        event: row.try_get("event").map_err(&get_error)?,
        payload: row.try_get("payload").map_err(&get_error)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: row.try_get("next_attempt_at").map_err(&get_error)?,
        status: DeliveryStatus::parse(&status)?,
        last_error: row.try_get("last_error").map_err(&get_error)?,
        last_status: last_status.and_then(|value| u16::try_from(value).ok()),
        created_at: row.try_get("created_at").map_err(&get_error)?,
        updated_at: row.try_get("updated_at").map_err(&get_error)?,
    })
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn create_webhook(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let events = serde_json::to_string(&webhook.events).map_err(|err| StoreError::Corrupt {
            field: "webhooks.events",
            detail: err.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO webhooks (id, url, events, secret_sealed, created_at, disabled) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&webhook.id)
        .bind(&webhook.url)
        .bind(events)
        .bind(&webhook.secret_sealed)
        .bind(webhook.created_at)
        .bind(i64::from(webhook.disabled))
        .execute(&self.pool)
        .await
        .map_err(|err| match query_error("create webhook")(err) {
            StoreError::Conflict { .. } => StoreError::Conflict {
                entity: "webhook",
                value: webhook.id.clone(),
            },
            other => other,
        })?;
        Ok(())
    }

    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{WEBHOOK_COLUMNS} ORDER BY created_at, id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("list webhooks"))?;
        rows.iter().map(webhook_from_row).collect()
    }

    async fn get_webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("{WEBHOOK_COLUMNS} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("get webhook"))?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let error = query_error("delete webhook");
        let mut transaction = begin_write(&self.pool).await.map_err(&error)?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id)
            .execute(&mut *transaction)
            .await
            .map_err(&error)?;
        let deleted = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&mut *transaction)
            .await
            .map_err(&error)?
            .rows_affected();
        transaction.commit().await.map_err(&error)?;
        Ok(deleted > 0)
    }

    async fn enqueue_deliveries(&self, deliveries: &[NewDelivery]) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let error = query_error("enqueue webhook deliveries");
        let mut transaction = begin_write(&self.pool).await.map_err(&error)?;
        for delivery in deliveries {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, webhook_id, event, payload, attempts, next_attempt_at, status, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, $5, 'pending', $6, $6)",
            )
            .bind(&delivery.id)
            .bind(&delivery.webhook_id)
            .bind(&delivery.event)
            .bind(&delivery.payload)
            .bind(delivery.next_attempt_at)
            .bind(delivery.created_at)
            .execute(&mut *transaction)
            .await
            .map_err(&error)?;
        }
        transaction.commit().await.map_err(&error)
    }

    async fn claim_due_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let error = query_error("claim webhook deliveries");
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{DELIVERY_COLUMNS} WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2"
        )))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(&error)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut delivery = delivery_from_row(row)?;
            let moved = sqlx::query(
                "UPDATE webhook_deliveries SET next_attempt_at = $3 WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2",
            )
            .bind(&delivery.id)
            .bind(delivery.next_attempt_at)
            .bind(lease_until)
            .execute(&self.pool)
            .await
            .map_err(&error)?
            .rows_affected();
            if moved == 1 {
                delivery.next_attempt_at = lease_until;
                claimed.push(delivery);
            }
        }
        Ok(claimed)
    }

    async fn record_attempt(&self, id: &str, outcome: &AttemptOutcome) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = $2, status = $3, next_attempt_at = $4, last_error = $5, last_status = $6, updated_at = $7 WHERE id = $1",
        )
        .bind(id)
        .bind(i64::from(outcome.attempts))
        .bind(outcome.status.as_str())
        .bind(outcome.next_attempt_at)
        .bind(outcome.last_error.clone())
        .bind(outcome.last_status.map(i64::from))
        .bind(outcome.now)
        .execute(&self.pool)
        .await
        .map_err(query_error("record webhook attempt"))?;
        Ok(())
    }

    async fn list_deliveries(
        &self,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{DELIVERY_COLUMNS} WHERE webhook_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        )))
        .bind(webhook_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("list webhook deliveries"))?;
        rows.iter().map(delivery_from_row).collect()
    }
}
