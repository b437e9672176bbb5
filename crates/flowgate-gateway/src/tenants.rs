//! Tenant and key operations shared by the admin API, the CLI and development bootstrap:
//! validation, minting a key (the secret is returned once and only its digest is stored),
//! rotation. Storage is the `Store`'s; HTTP is the admin module's.

use flowgate_store::{KeyLimits, KeyRecord, NewKey, NewTenant, Store, StoreError, Tenant};
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

/// The body of `POST /v1/tenants/{id}/keys`: the new key's own limits, each optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[serde(default)]
    pub max_requests_per_minute: Option<u32>,
    #[serde(default)]
    pub max_tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub max_concurrent_requests: Option<u32>,
}

impl CreateKey {
    /// The limits, validated: each set value is at least 1, tokens at most the limiter's
    /// maximum.
    pub fn limits(&self) -> Result<KeyLimits, TenantError> {
        let zero = |field: &'static str| TenantError::Invalid {
            field,
            message: "must be at least 1 (leave it unset for no limit)".to_owned(),
        };
        if self.max_requests_per_minute == Some(0) {
            return Err(zero("max_requests_per_minute"));
        }
        if self.max_concurrent_requests == Some(0) {
            return Err(zero("max_concurrent_requests"));
        }
        match self.max_tokens_per_minute {
            Some(0) => return Err(zero("max_tokens_per_minute")),
            Some(tokens) if tokens > flowgate_ratelimit::MAX_LIMIT => {
                return Err(TenantError::Invalid {
                    field: "max_tokens_per_minute",
                    message: format!("must be at most {}", flowgate_ratelimit::MAX_LIMIT),
                });
            }
            _ => {}
        }
        Ok(KeyLimits {
            max_requests_per_minute: self.max_requests_per_minute,
            max_tokens_per_minute: self.max_tokens_per_minute,
            max_concurrent_requests: self.max_concurrent_requests,
        })
    }
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
    /// The key's own limits (`null`: only the tenant's apply).
    #[serde(flatten)]
    pub limits: KeyLimits,
}

fn issue(
    tenant: &TenantId,
    hasher: &KeyHasher,
    now: i64,
    limits: KeyLimits,
) -> (NewKey, IssuedKey) {
    let secret = ApiKeySecret::generate();
    let new_key = NewKey {
        id: KeyId::generate(),
        tenant_id: tenant.clone(),
        digest: hasher.digest(secret.expose()),
        prefix: secret.display_prefix(),
        created_at: now,
        limits,
    };
    let issued = IssuedKey {
        id: new_key.id.clone(),
        api_key: secret.expose().to_owned(),
        prefix: new_key.prefix.clone(),
        created_at: now,
        limits,
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
    let (new_key, issued) = issue(&tenant.id, hasher, now, KeyLimits::default());
    let created = store.create_tenant(&tenant, &new_key).await?;
    Ok((created, issued))
}

/// Adds a key without limits of its own to an existing tenant.
pub async fn add_key(
    store: &dyn Store,
    hasher: &KeyHasher,
    tenant: &TenantId,
) -> Result<IssuedKey, TenantError> {
    add_key_with_limits(store, hasher, tenant, KeyLimits::default()).await
}

/// Adds a key with its own limits (checked beside the tenant's) to an existing tenant.
pub async fn add_key_with_limits(
    store: &dyn Store,
    hasher: &KeyHasher,
    tenant: &TenantId,
    limits: KeyLimits,
) -> Result<IssuedKey, TenantError> {
    if store.get_tenant(tenant).await?.is_none() {
        return Err(TenantError::NotFound);
    }
    let (new_key, issued) = issue(tenant, hasher, now_millis(), limits);
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
/// `revoke_after_seconds` (they keep working until then). The new key carries the limits of
/// the key it replaces: the tenant's newest live key.
pub async fn rotate(
    store: &dyn Store,
    hasher: &KeyHasher,
    tenant: &TenantId,
    revoke_after_seconds: u64,
) -> Result<Rotation, TenantError> {
    let now = now_millis();
    let carried = store
        .list_keys(tenant)
        .await?
        .into_iter()
        .filter(|key| key.is_live(now))
        .max_by(|a, b| (a.created_at, a.id.as_str()).cmp(&(b.created_at, b.id.as_str())))
        .map(|key| key.limits)
        .unwrap_or_default();
    let new_key = add_key_with_limits(store, hasher, tenant, carried).await?;
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
    /// The key's own limits (`null`: only the tenant's apply).
    #[serde(flatten)]
    pub limits: KeyLimits,
}

impl From<KeyRecord> for KeyView {
    fn from(record: KeyRecord) -> Self {
        Self {
            id: record.id,
            prefix: record.prefix,
            created_at: record.created_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            limits: record.limits,
        }
    }
}
