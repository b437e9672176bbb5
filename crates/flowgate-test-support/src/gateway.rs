//! `TestGateway`: the real gateway, in process, on 127.0.0.1 port 0 with a fresh SQLite file
//! in a temp folder, fresh master and admin keys, and one tenant ("test") whose key is ready.

use flowgate_config::Config;
use flowgate_gateway::{Gateway, Secrets, bootstrap, tenants};
use flowgate_store::Store;
use flowgate_types::MasterKey;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct TestGateway {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    pub internal_url: String,
    pub admin_key: String,
    pub tenant_id: String,
    pub tenant_key: String,
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub master_key: MasterKey,
    gateway: Option<Gateway>,
    _data: tempfile::TempDir,
}

/// A config file routing model `gpt-4o-mini` (and `renamed`, sent upstream as `upstream-model`)
/// to the given OpenAI-compatible base URL.
pub fn config_for_upstream(base_url: &str) -> String {
    format!(
        r#"
[[providers]]
name = "mock"
kind = "openai"
base_url = "{base_url}"
first_byte_timeout_ms = 2000
idle_timeout_ms = 1000
total_timeout_ms = 10000
# One attempt: these tests assert how each upstream failure maps; retries are tested apart.
max_retries = 0

[[models]]
name = "gpt-4o-mini"
routes = [ {{ provider = "mock" }} ]

[[models]]
name = "renamed"
routes = [ {{ provider = "mock", model = "upstream-model" }} ]

[[models]]
name = "text-embedding-3-small"
routes = [ {{ provider = "mock" }} ]
"#
    )
}

impl TestGateway {
    /// Starts a gateway with this config file text and extra environment variables (which
    /// override the harness's own, e.g. `FLOWGATE_DATABASE_URL` to share a database).
    pub async fn spawn(config_toml: &str, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let master_key = MasterKey::generate();
        let admin_key = format!(
            "fga_{}",
            flowgate_types::to_hex(&flowgate_types::random_bytes::<24>())
        );
        let mut env = BTreeMap::new();
        env.insert("FLOWGATE_MASTER_KEY".to_owned(), master_key.to_base64());
        env.insert("FLOWGATE_ADMIN_API_KEY".to_owned(), admin_key.clone());
        env.insert(
            "FLOWGATE_DATA_DIR".to_owned(),
            data.path().display().to_string(),
        );
        env.insert(
            "FLOWGATE_DATABASE_URL".to_owned(),
            format!("sqlite://{}/flowgate.db", data.path().display()),
        );
        for (name, value) in extra_env {
            env.insert((*name).to_owned(), (*value).to_owned());
        }
        let mut text = String::from(
            "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\nshutdown_grace_seconds = 5\n",
        );
        let rest = config_toml.trim_start();
        if let Some(server_body) = rest.strip_prefix("[server]") {
            // Let the caller's [server] keys extend ours.
            text.push_str(server_body);
        } else {
            text.push_str(rest);
        }
        let config = flowgate_config::from_sources(Some(&text), &env, false)?;
        // The caller may have overridden the keys (replicas sharing a database share them).
        let master_key = config.master_key.clone().unwrap_or(master_key);
        let admin_key = config
            .admin_api_key
            .as_ref()
            .map_or(admin_key, |key| key.expose().to_owned());
        let store = bootstrap::open_store(&config).await?;
        let hasher = bootstrap::key_hasher(&master_key);
        // A second gateway on a shared database reuses the "test" tenant with a key of its own.
        let (tenant_id, tenant_key) = match store.find_tenant_by_name("test").await? {
            Some(existing) => {
                let key = tenants::add_key(store.as_ref(), &hasher, &existing.id).await?;
                (existing.id, key.api_key)
            }
            None => {
                let (tenant, key) = tenants::create(
                    store.as_ref(),
                    &hasher,
                    tenants::CreateTenant {
                        name: "test".to_owned(),
                        rules_preset: None,
                        max_requests_per_minute: None,
                        max_tokens_per_minute: None,
                        max_concurrent_requests: None,
                        allowed_models: Vec::new(),
                    },
                )
                .await?;
                (tenant.id, key.api_key)
            }
        };
        let config = Arc::new(config);
        let secrets = Secrets {
            master_key: master_key.clone(),
            admin_api_key: admin_key.clone(),
        };
        let gateway = Gateway::start(Arc::clone(&config), Arc::clone(&store), &secrets).await?;
        Ok(Self {
            base_url: format!("http://{}", gateway.public_addr),
            internal_url: format!("http://{}", gateway.internal_addr),
            admin_key,
            tenant_id: tenant_id.to_string(),
            tenant_key,
            store,
            config,
            master_key,
            gateway: Some(gateway),
            _data: data,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The database URL this gateway uses.
    pub fn database_url(&self) -> String {
        self.config.store.url.expose().to_owned()
    }

    /// The data folder (holds the SQLite file).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }

    /// Graceful shutdown; true when every in-flight request finished before the deadline.
    pub async fn shutdown(&mut self) -> bool {
        match self.gateway.take() {
            Some(gateway) => gateway.shutdown().await,
            None => true,
        }
    }

    /// The running gateway (for its shutdown token).
    pub fn gateway(&self) -> Option<&Gateway> {
        self.gateway.as_ref()
    }
}
