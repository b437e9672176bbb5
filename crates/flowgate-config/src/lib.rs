//! Configuration: the `flowgate.toml` file plus the environment variables of DESIGN §2,
//! turned into one validated `Config` in a single step. Downstream code never sees raw
//! strings for addresses, durations, secrets or enums. Every refusal is one line naming the
//! key (`server.max_body_bytes: ...`, `FLOWGATE_PORT: ...`). Reading files and variables is
//! the caller's job: `Config::from_sources` takes the file text and an environment lookup, so
//! tests need neither the disk nor `set_var`.

mod audit_stream;
mod outbound;
mod policy;
mod raw;
mod telemetry;
mod validate;

use flowgate_types::MasterKey;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use audit_stream::{AuditSinkConfig, AuditStreamConfig};
pub use outbound::{IpNetwork, OutboundConfig};
pub use policy::PolicyConfig;
pub use telemetry::{OtlpConfig, TelemetryConfig};
pub use validate::{KNOWN_ENV_VARS, from_sources};

/// One line, naming the key that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Staging,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// A secret string whose `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The validated configuration of one gateway process.
#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub log_level: LogLevel,
    pub server: ServerConfig,
    pub store: StoreConfig,
    /// Where development mode keeps its generated keys and SQLite file.
    pub data_dir: PathBuf,
    /// `None` only in development, where `serve --dev` generates one.
    pub master_key: Option<MasterKey>,
    /// `None` only in development, where `serve --dev` generates one.
    pub admin_api_key: Option<Secret>,
    pub redis_url: Option<Secret>,
    pub limits: LimitDefaults,
    pub tls: Option<TlsConfig>,
    pub webhooks: WebhookDefaults,
    pub audit: AuditConfig,
    pub telemetry: TelemetryConfig,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    /// `[[rules]]`: policy rules for every tenant, compiled after the tenant's preset. When
    /// `policy.bundle` is set, the bundle's rules (see `Config::apply_policy_bundle`).
    pub rules: Vec<flowgate_policy::Rule>,
    /// `[policy]`: a (signed) rules bundle in place of `[[rules]]`.
    pub policy: PolicyConfig,
    /// `[outbound]`: exceptions to the outbound address allowlist (webhook targets).
    pub outbound: OutboundConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub public_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    /// Largest accepted request body; larger ones get 413 before being read.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests before cutting them.
    pub shutdown_grace: Duration,
    /// How long the gateway keeps polling for I/O without sleeping after a request arrives
    /// (zero: never).
    pub busy_poll: Duration,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: Secret,
    pub backend: StoreBackend,
    pub migrate_on_start: bool,
    pub max_connections: u32,
    /// How often a replica polls the store's change counter to refresh its caches.
    pub refresh_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct LimitDefaults {
    pub requests_per_minute: u32,
    pub burst_factor: f64,
    pub window: Duration,
    /// What admission does when Redis (cluster-wide limits) is unreachable.
    pub on_redis_down: OnRedisDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisDown {
    /// Fall back to in-process limits (per replica) and raise a metric.
    Local,
    /// Answer 503 until Redis is back.
    Refuse,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub client_ca_path: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct WebhookDefaults {
    pub max_retries: u32,
    pub timeout: Duration,
    pub retry_backoff: Duration,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub retention_days: u32,
    pub hash_prompts: bool,
    /// The node's log name; `None` means `flowgate-<hostname>`.
    pub origin: Option<String>,
    /// Publish a signed checkpoint after this many new records (at least 1).
    pub checkpoint_every_records: u64,
    /// ... or after this many seconds, if the log grew (at least 1).
    pub checkpoint_every_seconds: u64,
    /// What `submit` does when the write queue is full.
    pub on_full: AuditOnFull,
    /// Records the write queue holds before `on_full` applies (at least 1).
    pub queue_capacity: usize,
    /// Longest wait for a request's audit record to become durable; past it the request is
    /// refused (503) in `refuse` mode and served (the record stays queued) in `serve` mode.
    pub durable_timeout: Duration,
    /// `false` records nothing (benchmarks of the bare proxy; not for production).
    pub enabled: bool,
    /// Folder of the local spool that takes batches while the store is unreachable.
    pub spool_dir: PathBuf,
    /// Bytes the spool may hold before `on_full` applies; 0: no spool (batches wait in
    /// memory while the store is down, and every record is acknowledged by the store).
    pub spool_max_bytes: u64,
    /// When a record counts as durable (the request may be answered).
    pub acknowledge: AuditAcknowledge,
    /// `[audit.stream]`: publish records and checkpoints to NATS JetStream (or Kafka);
    /// `None`: no stream.
    pub stream: Option<AuditStreamConfig>,
}

/// Audit back-pressure mode when the write queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOnFull {
    /// Refuse the request (503): no answer without a record.
    Refuse,
    /// Keep serving; a gap marker records how many records were lost.
    Serve,
}

/// When the audit writer acknowledges a record (lets its request be answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAcknowledge {
    /// Once its batch is written to the node's local journal (the spool file): it survives a
    /// crash of the process (kill -9); the store receives the journal every few
    /// milliseconds, several batches in one transaction. The default.
    Journal,
    /// Once the store has committed its batch (the journal is used only while the store is
    /// unreachable, and is then synced to disk before acknowledging).
    Store,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    Gemini,
    Ollama,
    Mock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Ollama => "ollama",
            Self::Mock => "mock",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:9000/v1`; empty for `mock`.
    pub base_url: String,
    /// The upstream credential: from `api_key_env` at load time, or (for
    /// `CredentialSource::Store`) filled in by the gateway at start from the store.
    pub api_key: Option<Secret>,
    pub credential: CredentialSource,
    pub timeouts: Timeouts,
    /// Azure OpenAI `api-version`: calls go to `/openai/deployments/{model}/...` with an
    /// `api-key` header instead of `Authorization`.
    pub api_version: Option<String>,
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
}

/// Where a provider's credential comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CredentialSource {
    /// `api_key_env` (or no credential at all).
    #[default]
    Env,
    /// Encrypted in the store (`flowgate providers set-credential`), decrypted at start.
    Store,
}

/// Retries of one route before the next route is tried (connect errors, 429, 5xx, first-byte
/// timeouts; never after the client was sent a byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    /// First backoff; doubles per retry, with full jitter, capped at 8x.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            backoff: Duration::from_millis(100),
        }
    }
}

/// The circuit breaker of one provider: opens after `failures` consecutive failed attempts,
/// lets one probe through after `cooldown`, closes on its success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failures: u32,
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Per-provider time limits; every one is enforced by the upstream client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending the request to the response head.
    pub first_byte: Duration,
    /// Longest silence between two body chunks of a streamed answer.
    pub idle: Duration,
    /// Whole call, body included.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The name clients send.
    pub name: String,
    /// Tried in order (or by weight when every route has one).
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Index into `Config::providers`.
    pub provider: usize,
    /// The model name sent upstream.
    pub upstream_model: String,
    pub weight: Option<u32>,
}

impl Config {
    pub fn provider(&self, route: &RouteConfig) -> &ProviderConfig {
        &self.providers[route.provider]
    }

    pub fn is_development(&self) -> bool {
        self.environment == Environment::Development
    }
}
