//! Tenants' data keys for audit content kept in the log (`[audit] hash_prompts = false`).
//!
//! Each tenant gets 256 random bits, stored sealed with `flowgate_types::Envelope` under a
//! key derived from the master key (`DATA_KEY_LABEL`; the associated data binds the tenant
//! id). Keys are created on demand when a snapshot is built and exist in clear only in
//! memory (`TenantEntry::data_key`). `flowgate tenants erase-content` deletes a tenant's key,
//! which erases every content sealed under it; the next snapshot gives the tenant a new one.
//! `rotate_master` re-seals them with the other secrets.

use std::collections::HashMap;

use flowgate_audit::sealed::TenantDataKey;
use flowgate_store::{Reseal, Store, StoreError, Tenant};
use flowgate_types::{Envelope, MasterKey, now_millis};

/// The label the data-key encryption key is derived under.
pub const DATA_KEY_LABEL: &str = "audit-data-key-kek";

/// The envelope tenant data keys are sealed with under `master_key`.
pub fn envelope(master_key: &MasterKey) -> Envelope {
    Envelope::new(master_key, DATA_KEY_LABEL)
}

fn context(tenant_id: &str) -> String {
    format!("tenant-data-key:{tenant_id}")
}

#[derive(Debug, thiserror::Error)]
pub enum DataKeyError {
    #[error(
        "tenant `{tenant}`: the stored audit data key cannot be decrypted with the current master key"
    )]
    Sealed { tenant: String },
    #[error("no random source for a new audit data key: {0}")]
    Entropy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn open(envelope: &Envelope, tenant_id: &str, sealed: &str) -> Result<TenantDataKey, DataKeyError> {
    envelope
        .open(&context(tenant_id), sealed)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .map(TenantDataKey::from_bytes)
        .ok_or_else(|| DataKeyError::Sealed {
            tenant: tenant_id.to_owned(),
        })
}

/// Every tenant's data key, creating (and storing) the missing ones.
///
/// # Errors
/// [`DataKeyError`].
pub async fn load(
    store: &dyn Store,
    envelope: &Envelope,
    tenants: &[Tenant],
) -> Result<HashMap<String, TenantDataKey>, DataKeyError> {
    let mut keys = HashMap::with_capacity(tenants.len());
    for stored in store.list_tenant_data_keys().await? {
        let key = open(envelope, &stored.tenant_id, &stored.sealed)?;
        keys.insert(stored.tenant_id, key);
    }
    for tenant in tenants {
        let id = tenant.id.as_str();
        if keys.contains_key(id) {
            continue;
        }
        let fresh = TenantDataKey::generate().map_err(|err| DataKeyError::Entropy(err.message))?;
        let sealed = envelope.seal(&context(id), &fresh.to_bytes());
        // Another replica may have stored one first: use the stored key.
        let stored = store
            .create_tenant_data_key(id, &sealed, now_millis())
            .await?;
        keys.insert(id.to_owned(), open(envelope, id, &stored)?);
    }
    Ok(keys)
}

/// One tenant's stored data key, if it has one (it never had one, or it was erased).
///
/// # Errors
/// [`DataKeyError`].
pub async fn find(
    store: &dyn Store,
    master_key: &MasterKey,
    tenant_id: &str,
) -> Result<Option<TenantDataKey>, DataKeyError> {
    let envelope = envelope(master_key);
    store
        .list_tenant_data_keys()
        .await?
        .into_iter()
        .find(|stored| stored.tenant_id == tenant_id)
        .map(|stored| open(&envelope, tenant_id, &stored.sealed))
        .transpose()
}

/// Every stored data key sealed again from `old` to `new` (a master-key rotation).
///
/// # Errors
/// [`DataKeyError::Sealed`] for a key `old` does not open.
pub async fn reseal(
    store: &dyn Store,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<Vec<Reseal>, DataKeyError> {
    let (old, new) = (envelope(old), envelope(new));
    let mut resealed = Vec::new();
    for stored in store.list_tenant_data_keys().await? {
        let context = context(&stored.tenant_id);
        let new_sealed =
            old.reseal(&new, &context, &stored.sealed)
                .map_err(|_| DataKeyError::Sealed {
                    tenant: stored.tenant_id.clone(),
                })?;
        resealed.push(Reseal {
            id: stored.tenant_id,
            old_sealed: stored.sealed,
            new_sealed,
        });
    }
    Ok(resealed)
}
