//! Webhooks: events the gateway reports to operators' HTTP receivers, delivered from a
//! durable outbox.
//!
//! Three stages, so delivery never slows the request path:
//! 1. `Webhooks::emit` (any code path, including the data plane) puts an `Event` on a bounded
//!    in-memory queue with `try_send`: no await, no lock, no database. A full queue drops the
//!    event and counts it (`dropped_events`).
//! 2. The outbox writer task drains the queue in batches and writes one `pending` delivery
//!    row per subscribed webhook (`enqueue`), then wakes the worker.
//! 3. The delivery worker claims due rows (optimistically, so replicas sharing a database
//!    never send the same attempt twice), POSTs the stored JSON signed with the webhook's
//!    secret (`flowgate-signature: t=<unix>,v1=<hex HMAC-SHA-256 of "t.body">`) through the
//!    `OutboundClient` (addresses checked again at connect time), and records the outcome:
//!    2xx → `delivered`; otherwise retried after `retry_backoff · 2^(attempt-1)` until
//!    `max_retries` retries have failed → `failed`.
//!
//! Rows survive restarts: a pending row is delivered by whichever node sees it due. Delivery
//! is at least once (a crash between the POST and the write-back repeats it after the
//! claim's lease); receivers deduplicate on the payload `id`. Payloads carry ids, counts and
//! rule ids, never prompt text or matched values: `Event` has typed constructors only.
//! Leaves out HTTP routes (`admin::webhooks`) and SQL (`flowgate_store::WebhookStore`).

pub mod secret;

use crate::metrics::{Metrics, WebhookOutcome};
use flowgate_config::Config;
use flowgate_providers::allowlist::{AddressPolicy, OutboundUrl, UrlRefusal};
use flowgate_providers::{OutboundClient, OutboundError};
use flowgate_store::{
    AttemptOutcome, Delivery, DeliveryStatus, NewDelivery, StoreError, Webhook, WebhookStore,
};
use flowgate_types::{KeyId, MasterKey, RequestId, TenantId, now_millis, random_bytes, to_hex};
use http::header::{HeaderName, HeaderValue, USER_AGENT};
use secret::SecretSealer;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "flowgate-signature";
/// Events held in memory between `emit` and the outbox writer.
pub const QUEUE_CAPACITY: usize = 4096;
/// Rows claimed (and attempted concurrently) per worker round.
const CLAIM_BATCH: u32 = 16;
/// The longest a worker sleeps before looking for due rows (other nodes' rows, expired
/// leases); its own retries wake it at their due time.
const MAX_POLL: Duration = Duration::from_secs(1);
/// How long resolving a webhook host may take at creation.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The event types a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    RequestBlocked,
    RequestFlagged,
    RatelimitExceeded,
    KeyRotated,
    AuditCheckpoint,
}

impl EventKind {
    pub const ALL: [Self; 5] = [
        Self::RequestBlocked,
        Self::RequestFlagged,
        Self::RatelimitExceeded,
        Self::KeyRotated,
        Self::AuditCheckpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestBlocked => "request.blocked",
            Self::RequestFlagged => "request.flagged",
            Self::RatelimitExceeded => "ratelimit.exceeded",
            Self::KeyRotated => "key.rotated",
            Self::AuditCheckpoint => "audit.checkpoint",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// Event-specific fields: identifiers and numbers only.
#[derive(Debug, Clone)]
enum Details {
    Rules {
        rule_ids: Vec<String>,
    },
    RateLimit {
        limit: &'static str,
    },
    KeyRotated {
        new_key_id: KeyId,
        old_keys: u64,
        old_keys_expire_at: i64,
    },
    Checkpoint {
        origin: String,
        size: u64,
    },
}

/// Something worth telling webhooks about. Built only through the constructors below, which
/// take identifiers and counts, so a payload can never carry prompt text or matched values.
#[derive(Debug, Clone)]
pub struct Event {
    kind: EventKind,
    created_at: i64,
    tenant_id: Option<TenantId>,
    request_id: Option<RequestId>,
    details: Details,
}

impl Event {
    /// A request refused by policy; `rule_ids` are the rules that blocked it.
    pub fn request_blocked(
        tenant_id: TenantId,
        request_id: RequestId,
        rule_ids: Vec<String>,
    ) -> Self {
        Self::with(
            EventKind::RequestBlocked,
            Some(tenant_id),
            Some(request_id),
            Details::Rules { rule_ids },
        )
    }

    /// A request let through but flagged by policy.
    pub fn request_flagged(
        tenant_id: TenantId,
        request_id: RequestId,
        rule_ids: Vec<String>,
    ) -> Self {
        Self::with(
            EventKind::RequestFlagged,
            Some(tenant_id),
            Some(request_id),
            Details::Rules { rule_ids },
        )
    }

    /// A request refused with 429; `limit` names which limit (`requests`, `tokens`,
    /// `concurrency`).
    pub fn ratelimit_exceeded(
        tenant_id: TenantId,
        request_id: RequestId,
        limit: &'static str,
    ) -> Self {
        Self::with(
            EventKind::RatelimitExceeded,
            Some(tenant_id),
            Some(request_id),
            Details::RateLimit { limit },
        )
    }

    /// A tenant's keys were rotated: the new key's id (never the key) and when the old ones
    /// stop working.
    pub fn key_rotated(
        tenant_id: TenantId,
        new_key_id: KeyId,
        old_keys: u64,
        old_keys_expire_at: i64,
    ) -> Self {
        Self::with(
            EventKind::KeyRotated,
            Some(tenant_id),
            None,
            Details::KeyRotated {
                new_key_id,
                old_keys,
                old_keys_expire_at,
            },
        )
    }

    /// The audit log published a signed checkpoint.
    pub fn audit_checkpoint(origin: String, size: u64) -> Self {
        Self::with(
            EventKind::AuditCheckpoint,
            None,
            None,
            Details::Checkpoint { origin, size },
        )
    }

    fn with(
        kind: EventKind,
        tenant_id: Option<TenantId>,
        request_id: Option<RequestId>,
        details: Details,
    ) -> Self {
        Self {
            kind,
            created_at: now_millis(),
            tenant_id,
            request_id,
            details,
        }
    }

    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The JSON body receivers get (signed byte for byte as stored).
    fn payload(&self, event_id: &str) -> serde_json::Value {
        let data = match &self.details {
            Details::Rules { rule_ids } => json!({ "rule_ids": rule_ids }),
            Details::RateLimit { limit } => json!({ "limit": limit }),
            Details::KeyRotated {
                new_key_id,
                old_keys,
                old_keys_expire_at,
            } => json!({
                "new_key_id": new_key_id,
                "old_keys": old_keys,
                "old_keys_expire_at": old_keys_expire_at,
            }),
            Details::Checkpoint { origin, size } => json!({ "origin": origin, "size": size }),
        };
        let audit_link = self
            .request_id
            .as_ref()
            .map(|request_id| format!("/v1/audit?request_id={request_id}"));
        json!({
            "id": event_id,
            "object": "event",
            "type": self.kind.as_str(),
            "created_at": self.created_at,
            "tenant_id": self.tenant_id,
            "request_id": self.request_id,
            "links": { "audit_record": audit_link },
            "data": data,
        })
    }
}

/// Writes outbox rows for `events`: one per (event, enabled webhook subscribed to its type),
/// all in one transaction. Used by the outbox writer and by the CLI (which has no queue).
/// Returns how many rows were written.
pub async fn enqueue(store: &dyn WebhookStore, events: &[Event]) -> Result<usize, StoreError> {
    if events.is_empty() {
        return Ok(0);
    }
    let webhooks: Vec<Webhook> = store
        .list_webhooks()
        .await?
        .into_iter()
        .filter(|webhook| !webhook.disabled)
        .collect();
    let now = now_millis();
    let mut rows = Vec::new();
    for event in events {
        let subscribed: Vec<&Webhook> = webhooks
            .iter()
            .filter(|webhook| {
                webhook
                    .events
                    .iter()
                    .any(|name| name == event.kind.as_str())
            })
            .collect();
        if subscribed.is_empty() {
            continue;
        }
        let event_id = format!("evt_{}", to_hex(&random_bytes::<12>()));
        let payload = event.payload(&event_id).to_string();
        for webhook in subscribed {
            rows.push(NewDelivery {
                id: format!("whd_{}", to_hex(&random_bytes::<12>())),
                webhook_id: webhook.id.clone(),
                event: event.kind.as_str().to_owned(),
                payload: payload.clone(),
                next_attempt_at: now,
                created_at: now,
            });
        }
    }
    store.enqueue_deliveries(&rows).await?;
    Ok(rows.len())
}

/// Delivery settings, from `WEBHOOK_*` and the environment.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Retries after the first attempt before a delivery is marked failed.
    pub max_retries: u32,
    /// Whole-exchange limit of one attempt.
    pub timeout: Duration,
    /// Delay before the first retry; doubles with each further retry.
    pub retry_backoff: Duration,
    /// Production: target URLs must be https.
    pub require_https: bool,
    /// Which addresses targets may resolve to (shared with upstreams).
    pub policy: AddressPolicy,
}

impl WebhookSettings {
    pub fn from_config(config: &Config) -> Self {
        let development = config.is_development();
        Self {
            max_retries: config.webhooks.max_retries,
            timeout: config.webhooks.timeout,
            retry_backoff: config.webhooks.retry_backoff,
            require_https: !development,
            policy: if development {
                AddressPolicy::development()
            } else {
                AddressPolicy::production()
            }
            .with_allowed_networks(config.outbound.allowed_networks.iter().copied()),
        }
    }

    /// Delay after the failed attempt number `attempts` (1-based).
    fn backoff_after(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        self.retry_backoff.saturating_mul(1u32 << doublings)
    }
}

/// Why a webhook cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("url: {0}")]
    Url(#[from] UrlRefusal),
    #[error("events: {0}")]
    Events(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A created webhook and its secret (the only time the secret is shown).
#[derive(Debug)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    pub secret: String,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn WebhookStore>,
    settings: WebhookSettings,
    sealer: SecretSealer,
    client: OutboundClient,
    sender: mpsc::Sender<Event>,
    /// Taken by `start` (the outbox writer owns it).
    receiver: Mutex<Option<mpsc::Receiver<Event>>>,
    /// Wakes the worker when new rows were written.
    written: Notify,
    dropped: AtomicU64,
    /// `flowgate_webhook_deliveries_total{outcome}`.
    metrics: Arc<Metrics>,
}

/// The node's webhook handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

impl Webhooks {
    /// Builds the handle (no tasks yet: see `start`).
    pub fn new(
        store: Arc<dyn WebhookStore>,
        settings: WebhookSettings,
        master_key: &MasterKey,
        metrics: Arc<Metrics>,
    ) -> Result<Self, OutboundError> {
        let client = OutboundClient::new(settings.policy.clone(), settings.timeout)?;
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                settings,
                sealer: SecretSealer::new(master_key),
                client,
                sender,
                receiver: Mutex::new(Some(receiver)),
                written: Notify::new(),
                dropped: AtomicU64::new(0),
                metrics,
            }),
        })
    }

    /// Queues `event` for the outbox. Never blocks, never touches the database: when the
    /// queue is full (or the node is shutting down) the event is dropped and counted.
    pub fn emit(&self, event: Event) {
        let Err(err) = self.inner.sender.try_send(event) else {
            return;
        };
        let dropped = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        match err {
            mpsc::error::TrySendError::Full(_) if dropped.is_power_of_two() => {
                tracing::warn!(
                    dropped_total = dropped,
                    "webhook event queue full: event dropped"
                );
            }
            mpsc::error::TrySendError::Full(_) => {}
            mpsc::error::TrySendError::Closed(_) => {
                tracing::warn!("webhook event emitted after the webhooks stopped: dropped");
            }
        }
    }

    /// Events dropped because the queue was full, since start.
    pub fn dropped_events(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    pub fn store(&self) -> &Arc<dyn WebhookStore> {
        &self.inner.store
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.inner.settings
    }

    /// Checks the target (form, https outside development, every resolved address against
    /// the allowlist), mints and seals a secret and stores the webhook.
    pub async fn create(
        &self,
        url: &str,
        events: &[String],
    ) -> Result<CreatedWebhook, WebhookError> {
        let settings = &self.inner.settings;
        let mut kinds: Vec<String> = Vec::new();
        for name in events {
            let kind = EventKind::parse(name).ok_or_else(|| {
                WebhookError::Events(format!(
                    "`{name}` is not one of {}",
                    EventKind::ALL.map(EventKind::as_str).join(", ")
                ))
            })?;
            if !kinds.iter().any(|known| known == kind.as_str()) {
                kinds.push(kind.as_str().to_owned());
            }
        }
        if kinds.is_empty() {
            return Err(WebhookError::Events(
                "at least one event type is required".to_owned(),
            ));
        }
        let url = url.trim();
        OutboundUrl::check(
            url,
            settings.require_https,
            &settings.policy,
            RESOLVE_TIMEOUT,
        )
        .await?;
        let secret = secret::generate();
        let webhook = Webhook {
            id: format!("wh_{}", to_hex(&random_bytes::<12>())),
            url: url.to_owned(),
            events: kinds,
            secret_sealed: self.inner.sealer.seal(&secret),
            created_at: now_millis(),
            disabled: false,
        };
        self.inner.store.create_webhook(&webhook).await?;
        Ok(CreatedWebhook { webhook, secret })
    }

    /// Starts the outbox writer and the delivery worker on `tasks`; both stop when `stop` is
    /// cancelled (the writer first flushes what is queued). A second call does nothing.
    pub async fn start(&self, tasks: &TaskTracker, stop: &CancellationToken) {
        let Some(receiver) = self.inner.receiver.lock().await.take() else {
            return;
        };
        tasks.spawn(Arc::clone(&self.inner).write_outbox(receiver, stop.clone()));
        tasks.spawn(Arc::clone(&self.inner).deliver(stop.clone()));
    }
}

impl Inner {
    async fn write_outbox(
        self: Arc<Self>,
        mut receiver: mpsc::Receiver<Event>,
        stop: CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(256);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                received = receiver.recv_many(&mut batch, 256) => {
                    if received == 0 {
                        break;
                    }
                    self.write_batch(&mut batch, &stop).await;
                }
            }
        }
        // Shutdown: nothing new is accepted; what is queued is written.
        receiver.close();
        while let Ok(event) = receiver.try_recv() {
            batch.push(event);
        }
        self.write_batch(&mut batch, &stop).await;
    }

    /// Writes a batch, retrying a failing store a few times (the queue keeps absorbing new
    /// events meanwhile, and drops them once full).
    async fn write_batch(&self, batch: &mut Vec<Event>, stop: &CancellationToken) {
        if batch.is_empty() {
            return;
        }
        for attempt in 1..=5u32 {
            match enqueue(self.store.as_ref(), batch).await {
                Ok(rows) => {
                    if rows > 0 {
                        self.written.notify_one();
                    }
                    batch.clear();
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, attempt, "writing webhook outbox rows failed");
                    if stop.is_cancelled() {
                        break;
                    }
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        let lost = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        self.dropped.fetch_add(lost, Ordering::Relaxed);
        tracing::error!(
            events = lost,
            "webhook events dropped: the store refused the outbox rows"
        );
        batch.clear();
    }

    async fn deliver(self: Arc<Self>, stop: CancellationToken) {
        let lease = self.settings.timeout.saturating_mul(2) + Duration::from_secs(5);
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let mut sleep_for = Duration::ZERO;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.written.notified() => {}
                () = tokio::time::sleep(sleep_for) => {}
            }
            let mut next_due: Option<i64> = None;
            loop {
                let now = now_millis();
                let claimed = match self
                    .store
                    .claim_due_deliveries(now, now.saturating_add(lease_ms), CLAIM_BATCH)
                    .await
                {
                    Ok(claimed) => claimed,
                    Err(err) => {
                        tracing::warn!(error = %err, "claiming webhook deliveries failed");
                        break;
                    }
                };
                if claimed.is_empty() {
                    break;
                }
                let attempts = claimed.into_iter().map(|delivery| self.attempt(delivery));
                let outcomes = tokio::select! {
                    // Cut off by shutdown: the claimed rows are retried after their lease.
                    () = stop.cancelled() => return,
                    outcomes = futures_util::future::join_all(attempts) => outcomes,
                };
                for due in outcomes.into_iter().flatten() {
                    next_due = Some(next_due.map_or(due, |earliest| earliest.min(due)));
                }
            }
            let until_next = next_due
                .map(|due| Duration::from_millis(u64::try_from(due - now_millis()).unwrap_or(0)));
            sleep_for = until_next.map_or(MAX_POLL, |wait| wait.min(MAX_POLL));
        }
    }

    /// One attempt; returns the next due time when the delivery stays pending.
    async fn attempt(&self, delivery: Delivery) -> Option<i64> {
        let attempts = delivery.attempts.saturating_add(1);
        let result = self.send(&delivery).await;
        let now = now_millis();
        let (status, next_attempt_at, last_status, last_error) = match result {
            Ok(code) if code.is_success() => {
                self.metrics.webhook_delivery(WebhookOutcome::Delivered);
                (DeliveryStatus::Delivered, now, Some(code.as_u16()), None)
            }
            failure => {
                let (last_status, error) = match failure {
                    Ok(code) => (Some(code.as_u16()), format!("receiver answered {code}")),
                    Err(err) => (None, err),
                };
                if attempts > self.settings.max_retries {
                    self.metrics.webhook_delivery(WebhookOutcome::Failed);
                    tracing::warn!(delivery_id = %delivery.id, webhook_id = %delivery.webhook_id, attempts, error = %error, "webhook delivery failed for good");
                    (DeliveryStatus::Failed, now, last_status, Some(error))
                } else {
                    self.metrics.webhook_delivery(WebhookOutcome::Retried);
                    let delay = self.settings.backoff_after(attempts);
                    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                    tracing::debug!(delivery_id = %delivery.id, attempts, error = %error, "webhook delivery will be retried");
                    (
                        DeliveryStatus::Pending,
                        now.saturating_add(delay_ms),
                        last_status,
                        Some(error),
                    )
                }
            }
        };
        let outcome = AttemptOutcome {
            attempts,
            status,
            next_attempt_at,
            last_error,
            last_status,
            now,
        };
        if let Err(err) = self.store.record_attempt(&delivery.id, &outcome).await {
            // The claim's lease expires and the row is attempted again.
            tracing::warn!(delivery_id = %delivery.id, error = %err, "recording a webhook attempt failed");
            return None;
        }
        (status == DeliveryStatus::Pending).then_some(next_attempt_at)
    }

    /// POSTs the stored payload; `Err` carries an operator-facing reason.
    async fn send(&self, delivery: &Delivery) -> Result<http::StatusCode, String> {
        let webhook = self
            .store
            .get_webhook(&delivery.webhook_id)
            .await
            .map_err(|err| format!("reading the webhook failed: {err}"))?
            .ok_or_else(|| "webhook deleted".to_owned())?;
        if webhook.disabled {
            return Err("webhook disabled".to_owned());
        }
        let secret = self
            .sealer
            .open(&webhook.secret_sealed)
            .map_err(|err| err.to_string())?;
        let url = OutboundUrl::parse(&webhook.url, self.settings.require_https)
            .map_err(|err| format!("url refused: {err}"))?;
        let unix_seconds = now_millis() / 1000;
        let body = bytes::Bytes::from(delivery.payload.clone().into_bytes());
        let signature = secret::signature(&secret, unix_seconds, &body);
        let header = |value: &str| {
            HeaderValue::from_str(value).map_err(|_| "header value not representable".to_owned())
        };
        let headers = [
            (
                HeaderName::from_static(SIGNATURE_HEADER),
                header(&signature)?,
            ),
            (
                HeaderName::from_static("flowgate-event"),
                header(&delivery.event)?,
            ),
            (
                HeaderName::from_static("flowgate-delivery"),
                header(&delivery.id)?,
            ),
            (USER_AGENT, HeaderValue::from_static("flowgate-webhooks/1")),
        ];
        self.client
            .post_json(&url, &headers, body, self.settings.timeout)
            .await
            .map_err(|err| err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_ids_and_links_only() {
        let event = Event::request_blocked(
            TenantId::new("ten_1"),
            RequestId::new("req_1"),
            vec!["secret.aws_access_key".to_owned()],
        );
        let payload = event.payload("evt_1");
        assert_eq!(payload["type"], "request.blocked");
        assert_eq!(payload["id"], "evt_1");
        assert_eq!(payload["tenant_id"], "ten_1");
        assert_eq!(payload["request_id"], "req_1");
        assert_eq!(
            payload["links"]["audit_record"],
            "/v1/audit?request_id=req_1"
        );
        assert_eq!(payload["data"]["rule_ids"][0], "secret.aws_access_key");
        let rotated = Event::key_rotated(TenantId::new("ten_1"), KeyId::new("key_2"), 1, 99);
        let payload = rotated.payload("evt_2");
        assert_eq!(payload["links"]["audit_record"], serde_json::Value::Null);
        assert_eq!(payload["data"]["new_key_id"], "key_2");
        assert_eq!(payload["data"]["old_keys_expire_at"], 99);
    }

    #[test]
    fn event_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("key.created"), None);
    }

    #[test]
    fn backoff_doubles() {
        let settings = WebhookSettings {
            max_retries: 3,
            timeout: Duration::from_secs(1),
            retry_backoff: Duration::from_millis(500),
            require_https: true,
            policy: AddressPolicy::production(),
        };
        let delays: Vec<u128> = (1..=4)
            .map(|n| settings.backoff_after(n).as_millis())
            .collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000]);
    }
}
