//! Rows as the rest of flowgate sees them. Times are epoch milliseconds; key material is only
//! ever a digest.

use flowgate_types::{KeyDigest, KeyId, TenantId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub rules_preset: String,
    pub max_requests_per_minute: Option<u32>,
    pub max_tokens_per_minute: Option<u64>,
    pub max_concurrent_requests: Option<u32>,
    /// Models this tenant may call; empty means every configured model.
    pub allowed_models: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: TenantId,
    pub name: String,
    pub rules_preset: String,
    pub max_requests_per_minute: Option<u32>,
    pub max_tokens_per_minute: Option<u64>,
    pub max_concurrent_requests: Option<u32>,
    pub allowed_models: Vec<String>,
    pub created_at: i64,
}

/// A partial update; `None` leaves a field unchanged, `Some(None)` clears an optional limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub rules_preset: Option<String>,
    #[serde(default, with = "double_option")]
    pub max_requests_per_minute: Option<Option<u32>>,
    #[serde(default, with = "double_option")]
    pub max_tokens_per_minute: Option<Option<u64>>,
    #[serde(default, with = "double_option")]
    pub max_concurrent_requests: Option<Option<u32>>,
    pub allowed_models: Option<Vec<String>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

/// A key's own limits, beside its tenant's; `None` adds no limit of that kind (the tenant's
/// limits always apply as well).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    #[serde(default)]
    pub max_requests_per_minute: Option<u32>,
    #[serde(default)]
    pub max_tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub max_concurrent_requests: Option<u32>,
}

impl KeyLimits {
    /// Whether the key has any limit of its own.
    pub fn any(&self) -> bool {
        self.max_requests_per_minute.is_some()
            || self.max_tokens_per_minute.is_some()
            || self.max_concurrent_requests.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub tenant_id: TenantId,
    pub digest: KeyDigest,
    /// Non-secret display prefix, e.g. `fgk_AbC1`.
    pub prefix: String,
    pub created_at: i64,
    /// After this instant the key answers 401 (set by rotation).
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub limits: KeyLimits,
}

impl KeyRecord {
    /// Whether the key authenticates at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|deadline| now < deadline)
    }
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: KeyId,
    pub tenant_id: TenantId,
    pub digest: KeyDigest,
    pub prefix: String,
    pub created_at: i64,
    pub limits: KeyLimits,
}

/// What the gateway caches: read in one transaction, stamped with the change counter.
#[derive(Debug, Clone)]
pub struct StoreSnapshot {
    pub version: i64,
    pub tenants: Vec<Tenant>,
    pub keys: Vec<KeyRecord>,
    /// Every tenant's own policy rules, by tenant then creation order.
    pub rules: Vec<crate::StoredRule>,
}
