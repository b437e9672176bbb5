//! Persistent state behind one interface, `Store`: tenants, API keys (digests only), tenants'
//! own policy rules (JSON, `rules`) and the change counter replicas poll to refresh their in-memory caches. `SqlStore` implements it
//! for SQLite (the embedded default, WAL) and PostgreSQL with the same SQL text through
//! sqlx's `Any` driver; only the DDL differs, in `migrations/<backend>/`. The request path
//! never calls a `Store`: the gateway loads a snapshot and serves from memory.
//!
//! Webhook subscriptions and their delivery outbox live behind `WebhookStore`
//! (`webhook_store`), the audit log behind `AuditStore` (`audit_store`).
//!
//! `conformance` holds the one test suite every implementation must pass.

mod appender;
pub mod audit;
mod audit_sink;
mod audit_sqlite;
pub mod conformance;
mod credentials;
mod data_keys;
mod migrate;
mod model;
mod rules;
mod sql;
pub mod webhook;

pub use appender::{AuditAppender, BlockingAppender, LogTail};
pub use audit::{
    AuditEntry, AuditFilter, AuditNode, AuditRow, AuditStats, AuditStore, AuditWrite, NamedCount,
    OriginLog, RuleCount, StoredCheckpoint,
};
pub use audit_sink::SinkCursor;
pub use audit_sqlite::SqliteAuditAppender;
pub use credentials::{Reseal, StoredCredential};
pub use data_keys::StoredDataKey;
pub use migrate::MigrationReport;
pub use model::{KeyLimits, KeyRecord, NewKey, NewTenant, StoreSnapshot, Tenant, TenantPatch};
pub use rules::StoredRule;
pub use sql::{SqlStore, StoreOptions};
pub use webhook::{AttemptOutcome, Delivery, DeliveryStatus, NewDelivery, Webhook, WebhookStore};

use async_trait::async_trait;
use flowgate_types::{KeyId, TenantId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the store: {source}")]
    Connect {
        #[source]
        source: sqlx::Error,
    },
    #[error("store query failed during {operation}: {source}")]
    Query {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("embedded SQLite failed during {operation}: {source}")]
    Embedded {
        operation: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{entity} `{value}` already exists")]
    Conflict { entity: &'static str, value: String },
    #[error("stored {field} is corrupt: {detail}")]
    Corrupt { field: &'static str, detail: String },
    #[error("migration {version} failed: {source}")]
    Migration {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    #[error("store schema version {found} is newer than this binary knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
}

/// The storage interface. Every method is one transaction; every mutation bumps the change
/// counter in the same transaction, so a replica that sees a new counter value reloads.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Cheap reachability check for `/health/ready`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes connections; later calls fail with `StoreError::Connect` or `Query`.
    async fn close(&self);
    /// Applies pending versioned migrations.
    async fn migrate(&self) -> Result<MigrationReport, StoreError>;

    /// Creates a tenant together with its first key.
    async fn create_tenant(
        &self,
        tenant: &NewTenant,
        first_key: &NewKey,
    ) -> Result<Tenant, StoreError>;
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError>;
    async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// Returns `None` when the tenant does not exist.
    async fn update_tenant(
        &self,
        id: &TenantId,
        patch: &TenantPatch,
        now: i64,
    ) -> Result<Option<Tenant>, StoreError>;
    /// Deletes the tenant, its keys and its rules; false when it did not exist.
    async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError>;

    async fn create_key(&self, key: &NewKey) -> Result<KeyRecord, StoreError>;
    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<KeyRecord>, StoreError>;
    /// Revokes one key at `now`; false when the key does not belong to the tenant.
    async fn revoke_key(
        &self,
        tenant: &TenantId,
        key: &KeyId,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Sets `expires_at` on every live key of the tenant except `keep` (key rotation) and
    /// returns how many keys were scheduled to expire.
    async fn expire_keys_except(
        &self,
        tenant: &TenantId,
        keep: &KeyId,
        expires_at: i64,
    ) -> Result<u64, StoreError>;

    /// A tenant's own policy rules, oldest first.
    async fn list_rules(&self, tenant: &TenantId) -> Result<Vec<StoredRule>, StoreError>;
    async fn get_rule(
        &self,
        tenant: &TenantId,
        rule_id: &str,
    ) -> Result<Option<StoredRule>, StoreError>;
    /// Adds a rule; `Conflict { entity: "rule" }` when the tenant already has that rule id.
    async fn create_rule(&self, rule: &StoredRule) -> Result<(), StoreError>;
    /// Replaces a rule's JSON; `None` when the tenant has no rule with that id.
    async fn replace_rule(
        &self,
        tenant: &TenantId,
        rule_id: &str,
        rule: &str,
        now: i64,
    ) -> Result<Option<StoredRule>, StoreError>;
    /// Deletes a rule; false when it did not exist.
    async fn delete_rule(&self, tenant: &TenantId, rule_id: &str) -> Result<bool, StoreError>;

    /// Every stored provider credential (sealed), ordered by provider name.
    async fn list_provider_credentials(&self) -> Result<Vec<StoredCredential>, StoreError>;
    /// Stores (or replaces) the sealed credential of a provider.
    async fn set_provider_credential(
        &self,
        provider: &str,
        sealed: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Deletes a provider's credential; false when it had none.
    async fn delete_provider_credential(&self, provider: &str) -> Result<bool, StoreError>;
    /// Master-key rotation: replaces every provider credential, webhook secret and tenant
    /// data key in one transaction. All or nothing: `Conflict` (and no change) when a row no
    /// longer holds its `old_sealed` or a table has rows missing from the lists.
    async fn reseal_secrets(
        &self,
        credentials: &[Reseal],
        webhook_secrets: &[Reseal],
        data_keys: &[Reseal],
        now: i64,
    ) -> Result<(), StoreError>;

    /// Every tenant's sealed data key (audit content kept in the log).
    async fn list_tenant_data_keys(&self) -> Result<Vec<StoredDataKey>, StoreError>;
    /// Stores `sealed` as the tenant's data key unless it has one; returns the stored key
    /// (so racing replicas agree on one).
    async fn create_tenant_data_key(
        &self,
        tenant_id: &str,
        sealed: &str,
        now: i64,
    ) -> Result<String, StoreError>;
    /// Deletes the tenant's data key, which erases the content kept under it; false when it
    /// had none.
    async fn erase_tenant_data_key(&self, tenant_id: &str) -> Result<bool, StoreError>;

    /// The change counter (monotonic; bumped by every mutation).
    async fn change_version(&self) -> Result<i64, StoreError>;
    /// Everything the request path needs, read in one transaction.
    async fn load_snapshot(&self) -> Result<StoreSnapshot, StoreError>;

    /// The audit log storage of the same database, if this store keeps one.
    fn audit_store(&self) -> Option<std::sync::Arc<dyn AuditStore>> {
        None
    }

    /// The webhook subscriptions and delivery outbox of the same database, if this store
    /// keeps them.
    fn webhook_store(&self) -> Option<std::sync::Arc<dyn WebhookStore>> {
        None
    }
}
