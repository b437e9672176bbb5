//! Provider credentials and master-key rotation.
//!
//! A provider configured with `credential = "store"` keeps its upstream credential in the
//! store, sealed with `flowgate_types::Envelope` (AES-256-GCM, a fresh data key per secret,
//! wrapped by a key derived from the master key under `PROVIDER_CREDENTIAL_LABEL`; the
//! associated data binds the provider name). At start, `prepare_providers` checks every
//! provider base URL against the upstream address allowlist and opens the stored
//! credentials into the in-memory configuration, so credentials exist in clear only in
//! memory. `rotate_master` re-encrypts every secret sealed under the master key (provider
//! credentials, webhook signing secrets and tenants' audit data keys) in one store
//! transaction.
//!
//! Not re-encrypted, because they are keyed digests rather than ciphertexts: tenant API-key
//! digests (HMAC under the master-derived key-hash key) and audit content hashes. After a
//! rotation every tenant key must be reissued, and `audit prove-content` needs the old master
//! key for records written before the rotation.

use std::sync::Arc;

use flowgate_config::{Config, CredentialSource, Secret};
use flowgate_store::{Reseal, Store, StoreError};
use flowgate_types::{Envelope, MasterKey, now_millis};

use crate::state::StartError;
use crate::webhooks::secret::SecretSealer;

/// The label the provider-credential key-encryption key is derived under.
pub const PROVIDER_CREDENTIAL_LABEL: &str = "provider-credential-kek";

/// The envelope provider credentials are sealed with under `master_key`.
pub fn envelope(master_key: &MasterKey) -> Envelope {
    Envelope::new(master_key, PROVIDER_CREDENTIAL_LABEL)
}

/// The associated-data context of a provider's credential.
pub fn context(provider: &str) -> String {
    format!("provider:{provider}")
}

/// Seals and stores a provider's credential.
pub async fn store_credential(
    store: &dyn Store,
    master_key: &MasterKey,
    provider: &str,
    credential: &str,
) -> Result<(), StoreError> {
    let sealed = envelope(master_key).seal(&context(provider), credential.as_bytes());
    store
        .set_provider_credential(provider, &sealed, now_millis())
        .await
}

/// Checks every provider base URL against the upstream address allowlist (also run by
/// `flowgate config check`).
pub async fn check_upstreams(config: &Config) -> Result<(), flowgate_providers::UpstreamRefusal> {
    flowgate_providers::check_upstreams(config).await
}

/// Start-up: refuses providers whose base URL the allowlist refuses, then fills in the
/// credential of every `credential = "store"` provider from the store. One-line errors name
/// the provider.
pub async fn prepare_providers(
    config: Arc<Config>,
    store: &dyn Store,
    master_key: &MasterKey,
) -> Result<Arc<Config>, StartError> {
    check_upstreams(&config)
        .await
        .map_err(|err| StartError::Providers(err.to_string()))?;
    if config
        .providers
        .iter()
        .all(|provider| provider.credential != CredentialSource::Store)
    {
        return Ok(config);
    }
    let stored = store
        .list_provider_credentials()
        .await
        .map_err(StartError::Store)?;
    let envelope = envelope(master_key);
    let mut resolved = Config::clone(&config);
    for (index, provider) in resolved.providers.iter_mut().enumerate() {
        if provider.credential != CredentialSource::Store {
            continue;
        }
        let Some(row) = stored.iter().find(|row| row.provider == provider.name) else {
            return Err(StartError::Providers(format!(
                "providers[{index}] `{}` takes its credential from the store, which holds none for it (set one with `flowgate providers set-credential {}`)",
                provider.name, provider.name
            )));
        };
        let secret = envelope
            .open(&context(&provider.name), &row.sealed)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                StartError::Providers(format!(
                    "providers[{index}] `{}`: the stored credential cannot be decrypted with this FLOWGATE_MASTER_KEY (wrong master key or altered row)",
                    provider.name
                ))
            })?;
        provider.api_key = Some(Secret::new(secret));
    }
    Ok(Arc::new(resolved))
}

/// What a master-key rotation re-encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// Providers whose credential was re-encrypted.
    pub providers: Vec<String>,
    /// Webhooks whose signing secret was re-encrypted.
    pub webhooks: Vec<String>,
    /// Tenants whose audit data key was re-encrypted.
    pub data_keys: Vec<String>,
}

/// Why a rotation did not happen (the store is unchanged).
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(
        "provider `{provider}`: the stored credential cannot be decrypted with the current master key"
    )]
    ProviderCredential { provider: String },
    #[error(
        "webhook `{webhook}`: the stored signing secret cannot be decrypted with the current master key"
    )]
    WebhookSecret { webhook: String },
    #[error(transparent)]
    DataKey(#[from] crate::data_keys::DataKeyError),
    #[error("the store keeps no webhooks")]
    NoWebhookStore,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Re-encrypts every secret sealed under `old` so that it opens under `new`, in one store
/// transaction: all secrets move, or (on any error, or a row changed meanwhile) none does.
pub async fn rotate_master(
    store: &dyn Store,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<RotationReport, RotationError> {
    let (old_envelope, new_envelope) = (envelope(old), envelope(new));
    let mut credentials = Vec::new();
    for row in store.list_provider_credentials().await? {
        let resealed = old_envelope
            .reseal(&new_envelope, &context(&row.provider), &row.sealed)
            .map_err(|_| RotationError::ProviderCredential {
                provider: row.provider.clone(),
            })?;
        credentials.push(Reseal {
            id: row.provider,
            old_sealed: row.sealed,
            new_sealed: resealed,
        });
    }
    let webhook_store = store.webhook_store().ok_or(RotationError::NoWebhookStore)?;
    let (old_sealer, new_sealer) = (SecretSealer::new(old), SecretSealer::new(new));
    let mut webhook_secrets = Vec::new();
    for webhook in webhook_store.list_webhooks().await? {
        let secret =
            old_sealer
                .open(&webhook.secret_sealed)
                .map_err(|_| RotationError::WebhookSecret {
                    webhook: webhook.id.clone(),
                })?;
        webhook_secrets.push(Reseal {
            id: webhook.id,
            old_sealed: webhook.secret_sealed,
            new_sealed: new_sealer.seal(&secret),
        });
    }
    let data_keys = crate::data_keys::reseal(store, old, new).await?;
    store
        .reseal_secrets(&credentials, &webhook_secrets, &data_keys, now_millis())
        .await?;
    Ok(RotationReport {
        providers: credentials.into_iter().map(|row| row.id).collect(),
        webhooks: webhook_secrets.into_iter().map(|row| row.id).collect(),
        data_keys: data_keys.into_iter().map(|row| row.id).collect(),
    })
}
