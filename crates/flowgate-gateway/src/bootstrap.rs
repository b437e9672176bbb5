//! Start-up helpers shared by `serve`, `serve --dev` and the test harness: opening and
//! migrating the store, resolving secrets, and the development defaults (a generated master
//! key and admin key kept in 0600 files under the data folder, the built-in mock provider and
//! models, and a demo tenant whose key is printed once).

use crate::server::Secrets;
use crate::state::KEY_HASH_LABEL;
use crate::tenants::{self, CreateTenant, IssuedKey, TenantError};
use flowgate_config::{Config, ModelConfig, ProviderConfig, ProviderKind, RouteConfig, Timeouts};
use flowgate_store::{SqlStore, Store, StoreError, StoreOptions};
use flowgate_types::{KeyHasher, MasterKey};
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

/// Model names the development mock serves.
pub const DEV_CHAT_MODEL: &str = "mock-chat";
pub const DEV_EMBEDDING_MODEL: &str = "mock-embed";
pub const DEMO_TENANT: &str = "demo";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadFile { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error("{0} is required outside development")]
    MissingSecret(&'static str),
}

/// Opens the configured store and, if configured, applies migrations.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, BootstrapError> {
    let store = SqlStore::connect(&StoreOptions {
        url: config.store.url.expose().to_owned(),
        max_connections: config.store.max_connections,
        schema: None,
    })
    .await?;
    if config.store.migrate_on_start {
        let report = store.migrate().await?;
        if !report.applied.is_empty() {
            tracing::info!(applied = ?report.applied, "store migrated");
        }
    }
    Ok(Arc::new(store))
}

/// Secrets from the configuration (production), failing if one is missing.
pub fn configured_secrets(config: &Config) -> Result<Secrets, BootstrapError> {
    Ok(Secrets {
        master_key: config
            .master_key
            .clone()
            .ok_or(BootstrapError::MissingSecret("FLOWGATE_MASTER_KEY"))?,
        admin_api_key: config
            .admin_api_key
            .as_ref()
            .ok_or(BootstrapError::MissingSecret("FLOWGATE_ADMIN_API_KEY"))?
            .expose()
            .to_owned(),
    })
}

/// Development secrets: configured ones win; otherwise read or create 0600 files in the data
/// folder. The bool says whether the admin key was created now (and so should be printed).
pub fn development_secrets(config: &Config) -> Result<(Secrets, bool), BootstrapError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| BootstrapError::File {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let master_key = match &config.master_key {
        Some(key) => key.clone(),
        None => {
            let path = config.data_dir.join("master.key");
            let (text, _) = read_or_create_secret(&path, || MasterKey::generate().to_base64())?;
            MasterKey::from_base64(&text).map_err(|err| BootstrapError::BadFile {
                path: path.display().to_string(),
                message: err.to_string(),
            })?
        }
    };
    let (admin_api_key, created) = match &config.admin_api_key {
        Some(key) => (key.expose().to_owned(), false),
        None => read_or_create_secret(&config.data_dir.join("admin.key"), || {
            let bytes: [u8; 24] = flowgate_types::random_bytes();
            format!("fga_{}", flowgate_types::to_hex(&bytes))
        })?,
    };
    Ok((
        Secrets {
            master_key,
            admin_api_key,
        },
        created,
    ))
}

fn read_or_create_secret(
    path: &Path,
    generate: impl FnOnce() -> String,
) -> Result<(String, bool), BootstrapError> {
    let file_error = |source| BootstrapError::File {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text.trim().to_owned(), false)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let value = generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(file_error)?;
            file.write_all(value.as_bytes()).map_err(file_error)?;
            file.sync_all().map_err(file_error)?;
            Ok((value, true))
        }
        Err(err) => Err(file_error(err)),
    }
}

/// Adds the built-in mock provider and its models unless the names are already taken.
pub fn add_development_mock(config: &mut Config) {
    if config
        .providers
        .iter()
        .any(|provider| provider.name == "mock")
    {
        return;
    }
    config.providers.push(ProviderConfig {
        name: "mock".to_owned(),
        kind: ProviderKind::Mock,
        base_url: String::new(),
        api_key: None,
        credential: flowgate_config::CredentialSource::Env,
        timeouts: Timeouts::default(),
        api_version: None,
        retry: flowgate_config::RetryPolicy::default(),
        breaker: flowgate_config::BreakerPolicy::default(),
    });
    let provider = config.providers.len() - 1;
    for name in [DEV_CHAT_MODEL, DEV_EMBEDDING_MODEL] {
        if config.models.iter().all(|model| model.name != name) {
            config.models.push(ModelConfig {
                name: name.to_owned(),
                routes: vec![RouteConfig {
                    provider,
                    upstream_model: name.to_owned(),
                    weight: None,
                }],
            });
        }
    }
}

/// Creates the demo tenant on first start and returns its key (to print once).
pub async fn ensure_demo_tenant(
    store: &dyn Store,
    master_key: &MasterKey,
) -> Result<Option<IssuedKey>, BootstrapError> {
    if store.find_tenant_by_name(DEMO_TENANT).await?.is_some() {
        return Ok(None);
    }
    let hasher = KeyHasher::new(&master_key.derive(KEY_HASH_LABEL));
    let (_, key) = tenants::create(
        store,
        &hasher,
        CreateTenant {
            name: DEMO_TENANT.to_owned(),
            rules_preset: None,
            max_requests_per_minute: None,
            max_tokens_per_minute: None,
            max_concurrent_requests: None,
            allowed_models: Vec::new(),
        },
    )
    .await?;
    Ok(Some(key))
}

/// The key hasher for a master key (used by the CLI's tenant commands).
pub fn key_hasher(master_key: &MasterKey) -> KeyHasher {
    KeyHasher::new(&master_key.derive(KEY_HASH_LABEL))
}
