//! Raw file + environment -> validated `Config`, in one step. Precedence: built-in defaults,
//! then the file, then the environment variables of DESIGN §2.

use crate::raw::{RawFile, RawProvider};
use crate::*;
use std::collections::{BTreeMap, HashSet};

/// Every environment variable flowgate reads. An unknown `FLOWGATE_*` variable is refused, so
/// a misspelt override never silently does nothing.
pub const KNOWN_ENV_VARS: &[&str] = &[
    "FLOWGATE_MASTER_KEY",
    "FLOWGATE_ADMIN_API_KEY",
    "FLOWGATE_ENV",
    "FLOWGATE_LOG_LEVEL",
    "FLOWGATE_PORT",
    "FLOWGATE_INTERNAL_PORT",
    "FLOWGATE_DATABASE_URL",
    "FLOWGATE_REDIS_URL",
    "FLOWGATE_CONFIG",
    "FLOWGATE_DATA_DIR",
    "RATE_LIMIT_DEFAULT_RPM",
    "RATE_LIMIT_BURST_FACTOR",
    "RATE_LIMIT_WINDOW_SECONDS",
    "TLS_CERT_PATH",
    "TLS_KEY_PATH",
    "TLS_CA_PATH",
    "WEBHOOK_MAX_RETRIES",
    "WEBHOOK_TIMEOUT_SECONDS",
    "WEBHOOK_RETRY_BACKOFF_MS",
    "AUDIT_RETENTION_DAYS",
    "AUDIT_HASH_PROMPTS",
];

/// Admin keys that are refused because they appear in examples and tutorials (compared
/// case-insensitively, also with digits appended, e.g. `changeme123`).
const KNOWN_DEFAULT_KEYS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "admin",
    "password",
    "secret",
    "sk-admin",
    "sk-1234",
    "flowgate",
    "test",
    "example",
];
/// A long key made of very few distinct characters (`aaaa…`, `0101…`) is not random.
const MIN_DISTINCT_CHARS: usize = 10;
const MIN_ADMIN_KEY_LEN: usize = 32;
/// `server.busy_poll_us` when not configured: off, since polling spends a core while traffic
/// flows (docs/configuration.md).
const DEFAULT_BUSY_POLL_US: u64 = 0;

/// Builds the configuration from the file's text (if any) and a snapshot of the environment.
/// `force_development` is `serve --dev`.
pub fn from_sources(
    file_text: Option<&str>,
    env: &BTreeMap<String, String>,
    force_development: bool,
) -> Result<Config, ConfigError> {
    for name in env.keys() {
        if name.starts_with("FLOWGATE_") && !KNOWN_ENV_VARS.contains(&name.as_str()) {
            return Err(ConfigError::new(
                name,
                "unknown flowgate environment variable",
            ));
        }
    }
    let raw = match file_text {
        Some(text) => parse_file(text)?,
        None => RawFile::default(),
    };
    let vars = Env(env);
    let get = |name: &str| vars.get(name);

    let environment = if force_development {
        Environment::Development
    } else {
        match get("FLOWGATE_ENV").unwrap_or("production") {
            "development" => Environment::Development,
            "staging" => Environment::Staging,
            "production" => Environment::Production,
            other => {
                return Err(ConfigError::new(
                    "FLOWGATE_ENV",
                    format!("`{other}` is not one of development, staging, production"),
                ));
            }
        }
    };
    let log_level = match get("FLOWGATE_LOG_LEVEL").unwrap_or("info") {
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        other => {
            return Err(ConfigError::new(
                "FLOWGATE_LOG_LEVEL",
                format!("`{other}` is not one of debug, info, warn, error"),
            ));
        }
    };

    let server = server_config(&raw, &get)?;
    let data_dir = PathBuf::from(
        get("FLOWGATE_DATA_DIR")
            .or(raw.server.data_dir.as_deref())
            .unwrap_or("./data"),
    );
    let store = store_config(&raw, &get, &data_dir)?;

    let master_key = match get("FLOWGATE_MASTER_KEY") {
        Some(text) => Some(
            MasterKey::from_base64(text)
                .map_err(|err| ConfigError::new("FLOWGATE_MASTER_KEY", err.to_string()))?,
        ),
        None => None,
    };
    let admin_api_key = match get("FLOWGATE_ADMIN_API_KEY") {
        Some(key) => {
            check_admin_key(key)?;
            Some(Secret::new(key))
        }
        None => None,
    };
    if environment != Environment::Development {
        if master_key.is_none() {
            return Err(ConfigError::new(
                "FLOWGATE_MASTER_KEY",
                "required outside development (generate one with `flowgate gen-master-key`)",
            ));
        }
        if admin_api_key.is_none() {
            return Err(ConfigError::new(
                "FLOWGATE_ADMIN_API_KEY",
                "required outside development",
            ));
        }
    }

    let limits = LimitDefaults {
        requests_per_minute: parse_env_or(
            &get,
            "RATE_LIMIT_DEFAULT_RPM",
            raw.limits.default_rpm,
            1000,
        )?,
        burst_factor: parse_env_or(
            &get,
            "RATE_LIMIT_BURST_FACTOR",
            raw.limits.burst_factor,
            1.5,
        )?,
        window: Duration::from_secs(parse_env_or(
            &get,
            "RATE_LIMIT_WINDOW_SECONDS",
            raw.limits.window_seconds,
            60,
        )?),
        on_redis_down: match raw.limits.on_redis_down.as_deref().unwrap_or("local") {
            "local" => OnRedisDown::Local,
            "refuse" => OnRedisDown::Refuse,
            other => {
                return Err(ConfigError::new(
                    "limits.on_redis_down",
                    format!("`{other}` is not one of local, refuse"),
                ));
            }
        },
    };
    if limits.requests_per_minute == 0 {
        return Err(ConfigError::new(
            "RATE_LIMIT_DEFAULT_RPM",
            "must be at least 1",
        ));
    }
    if !(limits.burst_factor >= 1.0 && limits.burst_factor.is_finite()) {
        return Err(ConfigError::new(
            "RATE_LIMIT_BURST_FACTOR",
            "must be a number >= 1.0",
        ));
    }
    if limits.window.is_zero() {
        return Err(ConfigError::new(
            "RATE_LIMIT_WINDOW_SECONDS",
            "must be at least 1",
        ));
    }

    if get("TLS_CERT_PATH").is_some()
        || get("TLS_KEY_PATH").is_some()
        || get("TLS_CA_PATH").is_some()
    {
        // Refuse rather than silently serve plain HTTP when TLS was asked for.
        return Err(ConfigError::new(
            "TLS_CERT_PATH",
            "TLS termination is not available in this version; terminate TLS in front of flowgate",
        ));
    }
    let tls = match (get("TLS_CERT_PATH"), get("TLS_KEY_PATH")) {
        (Some(cert), Some(key)) => Some(TlsConfig {
            cert_path: cert.into(),
            key_path: key.into(),
            client_ca_path: get("TLS_CA_PATH").map(PathBuf::from),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::new(
                "TLS_KEY_PATH",
                "required with TLS_CERT_PATH",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "TLS_CERT_PATH",
                "required with TLS_KEY_PATH",
            ));
        }
    };
    let webhooks = WebhookDefaults {
        max_retries: parse_env_or(&get, "WEBHOOK_MAX_RETRIES", None, 3)?,
        timeout: Duration::from_secs(parse_env_or(&get, "WEBHOOK_TIMEOUT_SECONDS", None, 5)?),
        retry_backoff: Duration::from_millis(parse_env_or(
            &get,
            "WEBHOOK_RETRY_BACKOFF_MS",
            None,
            500,
        )?),
    };
    let audit = AuditConfig {
        retention_days: parse_env_or(&get, "AUDIT_RETENTION_DAYS", raw.audit.retention_days, 365)?,
        hash_prompts: parse_env_or(&get, "AUDIT_HASH_PROMPTS", raw.audit.hash_prompts, true)?,
        origin: match raw.audit.origin.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(origin) if origin.chars().all(|c| c.is_ascii_graphic() && c != '+') => {
                Some(origin.to_owned())
            }
            Some(_) => {
                return Err(ConfigError::new(
                    "audit.origin",
                    "must be printable ASCII without spaces or `+`",
                ));
            }
        },
        checkpoint_every_records: match raw.audit.checkpoint_every_records {
            Some(0) => {
                return Err(ConfigError::new(
                    "audit.checkpoint_every_records",
                    "must be at least 1",
                ));
            }
            value => value.unwrap_or(1000),
        },
        checkpoint_every_seconds: match raw.audit.checkpoint_every_seconds {
            Some(0) => {
                return Err(ConfigError::new(
                    "audit.checkpoint_every_seconds",
                    "must be at least 1",
                ));
            }
            value => value.unwrap_or(10),
        },
        on_full: match raw.audit.on_full.as_deref() {
            None | Some("refuse") => AuditOnFull::Refuse,
            Some("serve") => AuditOnFull::Serve,
            Some(other) => {
                return Err(ConfigError::new(
                    "audit.on_full",
                    format!("`{other}` is not `refuse` or `serve`"),
                ));
            }
        },
        queue_capacity: match raw.audit.queue_capacity {
            Some(0) => {
                return Err(ConfigError::new(
                    "audit.queue_capacity",
                    "must be at least 1",
                ));
            }
            value => value.unwrap_or(65_536),
        },
        durable_timeout: match raw.audit.durable_timeout_ms {
            Some(0) => {
                return Err(ConfigError::new(
                    "audit.durable_timeout_ms",
                    "must be at least 1",
                ));
            }
            value => Duration::from_millis(value.unwrap_or(2000)),
        },
        enabled: raw.audit.enabled.unwrap_or(true),
        spool_dir: raw
            .audit
            .spool_dir
            .as_deref()
            .map_or_else(|| data_dir.join("audit-spool"), PathBuf::from),
        spool_max_bytes: raw.audit.spool_max_bytes.unwrap_or(256 * 1024 * 1024),
        acknowledge: match raw.audit.acknowledge.as_deref() {
            None | Some("journal") => AuditAcknowledge::Journal,
            Some("store") => AuditAcknowledge::Store,
            Some(other) => {
                return Err(ConfigError::new(
                    "audit.acknowledge",
                    format!("`{other}` is not `journal` or `store`"),
                ));
            }
        },
        stream: crate::audit_stream::audit_stream_config(raw.audit.stream.as_ref())?,
    };

    let outbound = crate::outbound::outbound_config(&raw.outbound)?;
    let telemetry = crate::telemetry::telemetry_config(&raw.telemetry)?;

    let providers = raw
        .providers
        .iter()
        .enumerate()
        .map(|(index, provider)| provider_config(index, provider, env))
        .collect::<Result<Vec<_>, _>>()?;
    let models = model_configs(&raw, &providers)?;
    // Compiling proves every rule is usable (patterns, detectors, limits) before serving.
    if let Err(err) = flowgate_policy::Policy::compile(None, &raw.rules) {
        return Err(ConfigError::new("rules", err.to_string()));
    }
    let policy = crate::policy::policy_config(&raw.policy, raw.rules.len())?;

    Ok(Config {
        environment,
        log_level,
        server,
        store,
        data_dir,
        master_key,
        admin_api_key,
        redis_url: get("FLOWGATE_REDIS_URL").map(Secret::new),
        limits,
        tls,
        webhooks,
        audit,
        telemetry,
        outbound,
        providers,
        models,
        rules: raw.rules,
        policy,
    })
}

/// Environment lookup where an empty value counts as unset.
struct Env<'a>(&'a BTreeMap<String, String>);

impl<'a> Env<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

fn parse_file(text: &str) -> Result<RawFile, ConfigError> {
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|err| ConfigError::new("flowgate.toml", err.message().replace('\n', " ")))?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let key = if path == "." || path.is_empty() {
            "flowgate.toml".to_owned()
        } else {
            path
        };
        ConfigError::new(key, err.into_inner().message().replace('\n', " "))
    })
}

fn check_admin_key(key: &str) -> Result<(), ConfigError> {
    let lowered = key.to_ascii_lowercase();
    let stem = lowered.trim_end_matches(|c: char| c.is_ascii_digit());
    let distinct = key.chars().collect::<HashSet<_>>().len();
    if KNOWN_DEFAULT_KEYS.contains(&stem) || distinct < MIN_DISTINCT_CHARS {
        return Err(ConfigError::new(
            "FLOWGATE_ADMIN_API_KEY",
            "looks like a known default or is not random; use a long random value",
        ));
    }
    if key.len() < MIN_ADMIN_KEY_LEN {
        return Err(ConfigError::new(
            "FLOWGATE_ADMIN_API_KEY",
            format!("must be at least {MIN_ADMIN_KEY_LEN} characters"),
        ));
    }
    Ok(())
}

fn parse_env_or<'a, T: std::str::FromStr>(
    get: &dyn Fn(&str) -> Option<&'a str>,
    name: &str,
    file_value: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    match get(name) {
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(name, format!("invalid value `{text}`"))),
        None => Ok(file_value.unwrap_or(default)),
    }
}

fn parse_addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| ConfigError::new(key, format!("`{text}` is not an address like 0.0.0.0:8443")))
}

fn server_config<'a>(
    raw: &RawFile,
    get: &dyn Fn(&str) -> Option<&'a str>,
) -> Result<ServerConfig, ConfigError> {
    let mut public_addr = parse_addr(
        "server.listen",
        raw.server.listen.as_deref().unwrap_or("0.0.0.0:8443"),
    )?;
    let mut internal_addr = parse_addr(
        "server.internal_listen",
        raw.server
            .internal_listen
            .as_deref()
            .unwrap_or("127.0.0.1:8080"),
    )?;
    if get("FLOWGATE_PORT").is_some() {
        public_addr.set_port(parse_env_or(get, "FLOWGATE_PORT", None, 8443)?);
    }
    if get("FLOWGATE_INTERNAL_PORT").is_some() {
        internal_addr.set_port(parse_env_or(get, "FLOWGATE_INTERNAL_PORT", None, 8080)?);
    }
    let max_body_bytes = raw.server.max_body_bytes.unwrap_or(10 * 1024 * 1024);
    if max_body_bytes == 0 {
        return Err(ConfigError::new(
            "server.max_body_bytes",
            "must be at least 1",
        ));
    }
    let busy_poll_us = raw.server.busy_poll_us.unwrap_or(DEFAULT_BUSY_POLL_US);
    if busy_poll_us > 1_000_000 {
        return Err(ConfigError::new(
            "server.busy_poll_us",
            "must be at most 1000000 (one second)",
        ));
    }
    let busy_poll = Duration::from_micros(busy_poll_us);
    Ok(ServerConfig {
        public_addr,
        internal_addr,
        max_body_bytes: usize::try_from(max_body_bytes)
            .map_err(|_| ConfigError::new("server.max_body_bytes", "too large"))?,
        shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_seconds.unwrap_or(30)),
        busy_poll,
    })
}

fn store_config<'a>(
    raw: &RawFile,
    get: &dyn Fn(&str) -> Option<&'a str>,
    data_dir: &std::path::Path,
) -> Result<StoreConfig, ConfigError> {
    let (key, url) = match (get("FLOWGATE_DATABASE_URL"), raw.store.url.as_deref()) {
        (Some(url), _) => ("FLOWGATE_DATABASE_URL", url.to_owned()),
        (None, Some(url)) => ("store.url", url.to_owned()),
        (None, None) => (
            "store.url",
            format!("sqlite://{}/flowgate.db", data_dir.display()),
        ),
    };
    let backend = if url.starts_with("sqlite:") {
        StoreBackend::Sqlite
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        StoreBackend::Postgres
    } else {
        return Err(ConfigError::new(
            key,
            "must start with sqlite:// or postgres://",
        ));
    };
    let max_connections = raw.store.max_connections.unwrap_or(8);
    if max_connections == 0 {
        return Err(ConfigError::new(
            "store.max_connections",
            "must be at least 1",
        ));
    }
    Ok(StoreConfig {
        url: Secret::new(url),
        backend,
        migrate_on_start: raw.store.migrate_on_start.unwrap_or(true),
        max_connections,
        refresh_interval: Duration::from_millis(
            raw.store.refresh_interval_ms.unwrap_or(1000).max(50),
        ),
    })
}

fn provider_config(
    index: usize,
    raw: &RawProvider,
    env: &BTreeMap<String, String>,
) -> Result<ProviderConfig, ConfigError> {
    let key = |field: &str| format!("providers[{index}].{field}");
    if raw.name.trim().is_empty() {
        return Err(ConfigError::new(key("name"), "must not be empty"));
    }
    let kind = match raw.kind.as_str() {
        "openai" => ProviderKind::OpenAi,
        "anthropic" => ProviderKind::Anthropic,
        "gemini" => ProviderKind::Gemini,
        "ollama" => ProviderKind::Ollama,
        "mock" => ProviderKind::Mock,
        other => {
            return Err(ConfigError::new(
                key("kind"),
                format!("`{other}` is not one of openai, anthropic, gemini, ollama, mock"),
            ));
        }
    };
    let base_url = match (&raw.base_url, kind) {
        (Some(url), _) => {
            let trimmed = url.trim_end_matches('/');
            let uri: http::Uri = trimmed
                .parse()
                .map_err(|_| ConfigError::new(key("base_url"), format!("`{url}` is not a URL")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(ConfigError::new(
                    key("base_url"),
                    format!("`{url}` must be an http:// or https:// URL with a host"),
                ));
            }
            trimmed.to_owned()
        }
        (None, ProviderKind::Mock) => String::new(),
        (None, _) => return Err(ConfigError::new(key("base_url"), "required for this kind")),
    };
    let credential = match (raw.credential.as_deref(), &raw.api_key_env) {
        (None | Some("env"), _) => CredentialSource::Env,
        (Some("store"), None) => CredentialSource::Store,
        (Some("store"), Some(_)) => {
            return Err(ConfigError::new(
                key("credential"),
                "`store` takes the credential from the store: remove api_key_env",
            ));
        }
        (Some(other), _) => {
            return Err(ConfigError::new(
                key("credential"),
                format!("`{other}` is not one of env, store"),
            ));
        }
    };
    let api_key = match &raw.api_key_env {
        Some(variable) => match env.get(variable).filter(|value| !value.is_empty()) {
            Some(value) => Some(Secret::new(value.clone())),
            None => {
                return Err(ConfigError::new(
                    key("api_key_env"),
                    format!("environment variable {variable} is not set"),
                ));
            }
        },
        None => None,
    };
    let defaults = Timeouts::default();
    let millis = |value: Option<u64>, field: &str, default: Duration| match value {
        Some(0) => Err(ConfigError::new(key(field), "must be at least 1")),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Ok(default),
    };
    let timeouts = Timeouts {
        connect: millis(
            raw.connect_timeout_ms,
            "connect_timeout_ms",
            defaults.connect,
        )?,
        first_byte: millis(
            raw.first_byte_timeout_ms,
            "first_byte_timeout_ms",
            defaults.first_byte,
        )?,
        idle: millis(raw.idle_timeout_ms, "idle_timeout_ms", defaults.idle)?,
        total: millis(raw.total_timeout_ms, "total_timeout_ms", defaults.total)?,
    };
    let api_version = match (&raw.api_version, kind) {
        (None, _) => None,
        (Some(version), ProviderKind::OpenAi) if !version.is_empty() => Some(version.clone()),
        (Some(_), ProviderKind::OpenAi) => {
            return Err(ConfigError::new(key("api_version"), "must not be empty"));
        }
        (Some(_), _) => {
            return Err(ConfigError::new(
                key("api_version"),
                "only `openai` providers (Azure OpenAI) take an api_version",
            ));
        }
    };
    let retry_defaults = RetryPolicy::default();
    let retry = RetryPolicy {
        max_retries: raw
            .max_retries
            .unwrap_or(retry_defaults.max_retries)
            .min(10),
        backoff: millis(
            raw.retry_backoff_ms,
            "retry_backoff_ms",
            retry_defaults.backoff,
        )?,
    };
    let breaker_defaults = BreakerPolicy::default();
    let breaker = BreakerPolicy {
        failures: match raw.circuit_failures {
            Some(0) => {
                return Err(ConfigError::new(
                    key("circuit_failures"),
                    "must be at least 1",
                ));
            }
            Some(count) => count,
            None => breaker_defaults.failures,
        },
        cooldown: millis(
            raw.circuit_cooldown_ms,
            "circuit_cooldown_ms",
            breaker_defaults.cooldown,
        )?,
    };
    Ok(ProviderConfig {
        name: raw.name.clone(),
        kind,
        base_url,
        api_key,
        credential,
        timeouts,
        api_version,
        retry,
        breaker,
    })
}

fn model_configs(
    raw: &RawFile,
    providers: &[ProviderConfig],
) -> Result<Vec<ModelConfig>, ConfigError> {
    let mut provider_names = HashSet::new();
    for (index, provider) in providers.iter().enumerate() {
        if !provider_names.insert(provider.name.as_str()) {
            return Err(ConfigError::new(
                format!("providers[{index}].name"),
                format!("duplicate provider `{}`", provider.name),
            ));
        }
    }
    let mut model_names = HashSet::new();
    let mut models = Vec::with_capacity(raw.models.len());
    for (index, model) in raw.models.iter().enumerate() {
        if model.name.trim().is_empty() {
            return Err(ConfigError::new(
                format!("models[{index}].name"),
                "must not be empty",
            ));
        }
        if !model_names.insert(model.name.as_str()) {
            return Err(ConfigError::new(
                format!("models[{index}].name"),
                format!("duplicate model `{}`", model.name),
            ));
        }
        if model.routes.is_empty() {
            return Err(ConfigError::new(
                format!("models[{index}].routes"),
                "needs at least one route",
            ));
        }
        let weighted = model
            .routes
            .iter()
            .filter(|route| route.weight.is_some())
            .count();
        if weighted != 0 && weighted != model.routes.len() {
            return Err(ConfigError::new(
                format!("models[{index}].routes"),
                "give every route a weight, or none",
            ));
        }
        let mut routes = Vec::with_capacity(model.routes.len());
        for (route_index, route) in model.routes.iter().enumerate() {
            let key = format!("models[{index}].routes[{route_index}].provider");
            let provider = providers
                .iter()
                .position(|provider| provider.name == route.provider)
                .ok_or_else(|| {
                    ConfigError::new(key, format!("unknown provider `{}`", route.provider))
                })?;
            if route.weight == Some(0) {
                return Err(ConfigError::new(
                    format!("models[{index}].routes[{route_index}].weight"),
                    "must be at least 1",
                ));
            }
            routes.push(RouteConfig {
                provider,
                upstream_model: route.model.clone().unwrap_or_else(|| model.name.clone()),
                weight: route.weight,
            });
        }
        models.push(ModelConfig {
            name: model.name.clone(),
            routes,
        });
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "a-very-long-random-admin-key-0123456789";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn production_env(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let master = MasterKey::generate().to_base64();
        let mut map = env(&[("FLOWGATE_ADMIN_API_KEY", ADMIN)]);
        map.insert("FLOWGATE_MASTER_KEY".into(), master);
        map.extend(env(extra));
        map
    }

    fn error_of(file: Option<&str>, env: &BTreeMap<String, String>) -> ConfigError {
        match from_sources(file, env, false) {
            Ok(_) => panic!("expected a config error"),
            Err(err) => err,
        }
    }

    #[test]
    fn rules_and_routing_settings_are_validated() {
        let env = production_env(&[]);
        let file = r#"
[[providers]]
name = "azure"
kind = "openai"
base_url = "https://example.openai.azure.com"
api_version = "2024-10-21"
max_retries = 1
retry_backoff_ms = 50
circuit_failures = 3
circuit_cooldown_ms = 1000

[[rules]]
id = "no-secrets"
action = "block"
match = { keywords = ["project-x"] }
"#;
        let config = from_sources(Some(file), &env, false).unwrap_or_else(|err| panic!("{err:?}"));
        let provider = &config.providers[0];
        assert_eq!(provider.api_version.as_deref(), Some("2024-10-21"));
        assert_eq!(provider.retry.max_retries, 1);
        assert_eq!(provider.retry.backoff, Duration::from_millis(50));
        assert_eq!(provider.breaker.failures, 3);
        assert_eq!(config.rules.len(), 1);
        assert_eq!(config.rules[0].id, "no-secrets");

        let bad_regex = "[[rules]]\nid = 'r'\naction = 'block'\nmatch = { regex = '(' }\n";
        assert_eq!(error_of(Some(bad_regex), &env).key, "rules");
        let zero_failures =
            "[[providers]]\nname='a'\nkind='openai'\nbase_url='http://x'\ncircuit_failures=0\n";
        assert_eq!(
            error_of(Some(zero_failures), &env).key,
            "providers[0].circuit_failures"
        );
        let version_on_anthropic =
            "[[providers]]\nname='a'\nkind='anthropic'\nbase_url='http://x'\napi_version='1'\n";
        assert_eq!(
            error_of(Some(version_on_anthropic), &env).key,
            "providers[0].api_version"
        );
    }

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9443"
max_body_bytes = 2048
busy_poll_us = 250

[[providers]]
name = "local"
kind = "openai"
base_url = "http://127.0.0.1:9000/v1/"
api_key_env = "LOCAL_OPENAI_KEY"

[[models]]
name = "gpt-4o-mini"
routes = [ { provider = "local", model = "upstream-mini" } ]
"#;

    #[test]
    fn a_good_file_with_environment_overrides() {
        let config = from_sources(
            Some(GOOD),
            &production_env(&[("LOCAL_OPENAI_KEY", "sk-x"), ("FLOWGATE_PORT", "9555")]),
            false,
        )
        .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.environment, Environment::Production);
        assert_eq!(config.server.public_addr.to_string(), "127.0.0.1:9555");
        assert_eq!(config.server.max_body_bytes, 2048);
        assert_eq!(config.server.busy_poll, Duration::from_micros(250));
        assert_eq!(config.providers[0].base_url, "http://127.0.0.1:9000/v1");
        assert_eq!(
            config.providers[0].api_key.as_ref().map(Secret::expose),
            Some("sk-x")
        );
        assert_eq!(config.models[0].routes[0].upstream_model, "upstream-mini");
        assert_eq!(config.store.backend, StoreBackend::Sqlite);
        assert_eq!(config.limits.requests_per_minute, 1000);
        assert!(config.audit.hash_prompts);
    }

    #[test]
    fn each_bad_input_names_its_key_in_one_line() {
        /// (file text, extra environment, the key the error must name)
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            (Some("[server]\nlisten = \"x\"\n"), &[], "server.listen"),
            (Some("[server]\nlistne = \"x\"\n"), &[], "server.listne"),
            (Some("bogus = 1\n"), &[], "bogus"),
            (Some("[server\n"), &[], "flowgate.toml"),
            (
                Some("[server]\nbusy_poll_us = 1000001\n"),
                &[],
                "server.busy_poll_us",
            ),
            (
                Some("[[providers]]\nname='a'\nkind='closedai'\nbase_url='http://x'\n"),
                &[],
                "providers[0].kind",
            ),
            (
                Some("[[providers]]\nname='a'\nkind='openai'\nbase_url='ftp://x'\n"),
                &[],
                "providers[0].base_url",
            ),
            (
                Some(
                    "[[providers]]\nname='a'\nkind='openai'\nbase_url='http://x'\napi_key_env='NOPE_KEY'\n",
                ),
                &[],
                "providers[0].api_key_env",
            ),
            (
                Some("[[models]]\nname='m'\nroutes=[{provider='ghost'}]\n"),
                &[],
                "models[0].routes[0].provider",
            ),
            (None, &[("FLOWGATE_PORT", "eighty")], "FLOWGATE_PORT"),
            (None, &[("FLOWGATE_PROT", "1")], "FLOWGATE_PROT"),
            (None, &[("FLOWGATE_ENV", "prod")], "FLOWGATE_ENV"),
            (
                None,
                &[("FLOWGATE_DATABASE_URL", "mysql://x")],
                "FLOWGATE_DATABASE_URL",
            ),
            (
                None,
                &[("RATE_LIMIT_BURST_FACTOR", "0.5")],
                "RATE_LIMIT_BURST_FACTOR",
            ),
            (
                None,
                &[("AUDIT_HASH_PROMPTS", "maybe")],
                "AUDIT_HASH_PROMPTS",
            ),
        ];
        for (file, extra, key) in cases {
            let err = error_of(*file, &production_env(extra));
            assert_eq!(&err.key, key, "{err}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn store_credentials_are_validated() {
        let env = production_env(&[("SOME_KEY", "sk-env")]);
        let file = "[[providers]]\nname = 'vault'\nkind = 'openai'\nbase_url = 'http://127.0.0.1:9000/v1'\ncredential = 'store'\n\n[[providers]]\nname = 'plain'\nkind = 'openai'\nbase_url = 'http://127.0.0.1:9001/v1'\ncredential = 'env'\napi_key_env = 'SOME_KEY'\n";
        let config = from_sources(Some(file), &env, false).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.providers[0].credential, CredentialSource::Store);
        assert!(config.providers[0].api_key.is_none());
        assert_eq!(config.providers[1].credential, CredentialSource::Env);
        assert_eq!(
            config.providers[1].api_key.as_ref().map(Secret::expose),
            Some("sk-env")
        );

        let provider = "[[providers]]\nname='a'\nkind='openai'\nbase_url='http://x'\n";
        let cases = [
            (
                format!("{provider}credential='vault'\n"),
                "providers[0].credential",
                "not one of env, store",
            ),
            (
                format!("{provider}credential='store'\napi_key_env='SOME_KEY'\n"),
                "providers[0].credential",
                "remove api_key_env",
            ),
        ];
        for (file, key, words) in cases {
            let err = error_of(Some(&file), &env);
            assert_eq!(err.key, key, "{err}");
            assert!(err.to_string().contains(words), "{err}");
        }
    }

    #[test]
    fn production_requires_master_and_admin_keys() {
        assert_eq!(error_of(None, &env(&[])).key, "FLOWGATE_MASTER_KEY");
        let only_master = env(&[("FLOWGATE_MASTER_KEY", &MasterKey::generate().to_base64())]);
        assert_eq!(error_of(None, &only_master).key, "FLOWGATE_ADMIN_API_KEY");
        let weak = production_env(&[("FLOWGATE_ADMIN_API_KEY", "changeme")]);
        assert_eq!(error_of(None, &weak).key, "FLOWGATE_ADMIN_API_KEY");
        for bad in [
            "xK9#short-but-random",
            "ChangeMe123",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            let env = production_env(&[("FLOWGATE_ADMIN_API_KEY", bad)]);
            assert_eq!(error_of(None, &env).key, "FLOWGATE_ADMIN_API_KEY", "{bad}");
        }
    }

    #[test]
    fn development_needs_nothing() {
        let config = from_sources(None, &env(&[]), true).unwrap_or_else(|err| panic!("{err}"));
        assert!(config.is_development());
        assert!(config.master_key.is_none());
        assert!(config.store.url.expose().starts_with("sqlite://./data"));
    }

    #[test]
    fn audit_keys_have_defaults_and_are_validated() {
        let config =
            from_sources(None, &production_env(&[]), false).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.audit.origin, None);
        assert_eq!(config.audit.checkpoint_every_records, 1000);
        assert_eq!(config.audit.checkpoint_every_seconds, 10);
        assert_eq!(config.audit.on_full, AuditOnFull::Refuse);
        assert_eq!(config.audit.acknowledge, AuditAcknowledge::Journal);
        let file = "[audit]\norigin = \"eu-1.example/log\"\ncheckpoint_every_records = 5\ncheckpoint_every_seconds = 2\non_full = \"serve\"\nqueue_capacity = 10\nacknowledge = \"store\"\n";
        let config = from_sources(Some(file), &production_env(&[]), false)
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.audit.origin.as_deref(), Some("eu-1.example/log"));
        assert_eq!(config.audit.checkpoint_every_records, 5);
        assert_eq!(config.audit.on_full, AuditOnFull::Serve);
        assert_eq!(config.audit.queue_capacity, 10);
        assert_eq!(config.audit.acknowledge, AuditAcknowledge::Store);
        for (file, key) in [
            ("[audit]\non_full = \"drop\"\n", "audit.on_full"),
            ("[audit]\nacknowledge = \"disk\"\n", "audit.acknowledge"),
            (
                "[audit]\ncheckpoint_every_records = 0\n",
                "audit.checkpoint_every_records",
            ),
            (
                "[audit]\ncheckpoint_every_seconds = 0\n",
                "audit.checkpoint_every_seconds",
            ),
            ("[audit]\nqueue_capacity = 0\n", "audit.queue_capacity"),
            ("[audit]\norigin = \"two words\"\n", "audit.origin"),
            ("[audit]\nspool = 1\n", "audit.spool"),
        ] {
            assert_eq!(
                error_of(Some(file), &production_env(&[])).key,
                key,
                "{file}"
            );
        }
    }

    #[test]
    fn telemetry_tenant_label_budget_has_a_default_and_is_refused_when_misspelt() {
        let config =
            from_sources(None, &production_env(&[]), false).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.telemetry.max_tenant_labels, 100);
        let config = from_sources(
            Some("[telemetry]\nmax_tenant_labels = 7\n"),
            &production_env(&[]),
            false,
        )
        .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.telemetry.max_tenant_labels, 7);
        for (file, key) in [
            (
                "[telemetry]\nmax_tenant_label = 7\n",
                "telemetry.max_tenant_label",
            ),
            (
                "[telemetry]\nmax_tenant_labels = -1\n",
                "telemetry.max_tenant_labels",
            ),
        ] {
            assert_eq!(
                error_of(Some(file), &production_env(&[])).key,
                key,
                "{file}"
            );
        }
    }
}
