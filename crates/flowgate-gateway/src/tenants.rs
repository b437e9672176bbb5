//! Tenant and key operations shared by the admin API, the CLI and development bootstrap:
//! validation, minting a key (the secret is returned once and only its digest is stored),
//! rotation. Storage is the `Store`'s; HTTP is the admin module's.

use flowgate_store::{KeyRecord, NewKey, NewTenant, Store, StoreError, Tenant};
use flowgate_types::{ApiKeySecret, KeyHasher, KeyId, TenantId, now_millis};
use serde::{Deserialize, Serialize};

/// Presets a tenant may choose (the policy engine defines what they do).
pub const RULE_PRESETS: &[&str] = &["default", "strict", "audit-only", "none"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    #[serde(default)]
    pub rules_preset: Option<String>,
    #[serde(default)]
    pub max_requests_per_minute: Option<u32>,
    #[serde(default)]
    pub max_tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub max_concurrent_requests: Option<u32>,
    #[serde(default)]
    pub allowed_models: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("tenant not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key as shown once to its owner.
#[derive(Debug, Serialize)]
pub struct IssuedKey {
    pub id: KeyId,
    pub api_key: String,
    pub prefix: String,
    pub created_at: i64,
}

fn issue(tenant: &TenantId, hasher: &KeyHasher, now: i64) -> (NewKey, IssuedKey) {
    let secret = ApiKeySecret::generate();
    let new_key = NewKey {
        id: KeyId::generate(),
        tenant_id: tenant.clone(),
        digest: hasher.digest(secret.expose()),
        prefix: secret.display_prefix(),
        created_at: now,
    };
    let issued = IssuedKey {
        id: new_key.id.clone(),
        api_key: secret.expose().to_owned(),
        prefix: new_key.prefix.clone(),
        created_at: now,
    };
    (new_key, issued)
}

pub fn validate_name(name: &str) -> Result<(), TenantError> {
    let valid = !name.trim().is_empty() && name.len() <= 128 && !name.chars().any(char::is_control);
    if valid {
        Ok(())
    } else {
        Err(TenantError::Invalid {
            field: "name",
            message: "must be 1-128 printable characters".to_owned(),
        })
    }
}

pub fn validate_preset(preset: &str) -> Result<(), TenantError> {
    if RULE_PRESETS.contains(&preset) {
        Ok(())
    } else {
        Err(TenantError::Invalid {
            field: "rules_preset",
            message: format!("`{preset}` is not one of {}", RULE_PRESETS.join(", ")),
        })
    }
}

/// Creates a tenant and its first key.
pub async fn create(
    store: &dyn Store,
    hasher: &KeyHasher,
    request: CreateTenant,
) -> Result<(Tenant, IssuedKey), TenantError> {
    validate_name(&request.name)?;
    let preset = request.rules_preset.unwrap_or_else(|| "default".to_owned());
    validate_preset(&preset)?;
    let now = now_millis();
    let tenant = NewTenant {
        id: TenantId::generate(),
        name: request.name.trim().to_owned(),
        rules_preset: preset,
        max_requests_per_minute: request.max_requests_per_minute,
        max_tokens_per_minute: request.max_tokens_per_minute,
        max_concurrent_requests: request.max_concurrent_requests,
        allowed_models: request.allowed_models,
        created_at: now,
    };
    let (new_key, issued) = issue(&tenant.id, hasher, now);
    let created = store.create_tenant(&tenant, &new_key).await?;
    Ok((created, issued))
}

/// Adds a key to an existing tenant.
pub async fn add_key(
    store: &dyn Store,
    hasher: &KeyHasher,
    tenant: &TenantId,
) -> Result<IssuedKey, TenantError> {
    if store.get_tenant(tenant).await?.is_none() {
        return Err(TenantError::NotFound);
    }
    let (new_key, issued) = issue(tenant, hasher, now_millis());
    store.create_key(&new_key).await?;
    Ok(issued)
}

/// Result of a rotation: the new key, and when the old ones stop working.
#[derive(Debug, Serialize)]
pub struct Rotation {
    pub new_key: IssuedKey,
    pub old_keys_expire_at: i64,
    pub old_keys: u64,
}

/// Issues a new key and schedules every other live key of the tenant to expire after
/// `revoke_after_seconds` (they keep working until then).
pub async fn rotate(
    store: &dyn Store,
    hasher: &KeyHasher,
    tenant: &TenantId,
    revoke_after_seconds: u64,
) -> Result<Rotation, TenantError> {
    let new_key = add_key(store, hasher, tenant).await?;
    let delay_ms = i64::try_from(revoke_after_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let expires_at = now_millis().saturating_add(delay_ms);
    let old_keys = store
        .expire_keys_except(tenant, &new_key.id, expires_at)
        .await?;
    Ok(Rotation {
        new_key,
        old_keys_expire_at: expires_at,
        old_keys,
    })
}

/// A key as listed (never the secret).
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub id: KeyId,
    pub prefix: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl From<KeyRecord> for KeyView {
    fn from(record: KeyRecord) -> Self {
        Self {
            id: record.id,
            prefix: record.prefix,
            created_at: record.created_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
        }
    }
}
