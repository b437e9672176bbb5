//! The file as written: serde structs mirroring `flowgate.toml`, every table closed with
//! `deny_unknown_fields` so a typo is refused instead of ignored. Nothing here is validated.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub audit: RawAudit,
    /// Policy rules applied to every tenant, after the tenant's preset.
    #[serde(default)]
    pub rules: Vec<flowgate_policy::Rule>,
    /// Where the global rules come from when shipped as a (signed) bundle.
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub outbound: RawOutbound,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<String>,
    pub internal_listen: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub shutdown_grace_seconds: Option<u64>,
    pub data_dir: Option<String>,
    pub busy_poll_us: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub url: Option<String>,
    pub migrate_on_start: Option<bool>,
    pub max_connections: Option<u32>,
    pub refresh_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub name: String,
    pub kind: String,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    /// `"env"` (the default: `api_key_env`, if any) or `"store"` (encrypted in the store).
    pub credential: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub total_timeout_ms: Option<u64>,
    /// Azure OpenAI: the `api-version` query value; switches to the deployment path.
    pub api_version: Option<String>,
    pub max_retries: Option<u32>,
    pub retry_backoff_ms: Option<u64>,
    pub circuit_failures: Option<u32>,
    pub circuit_cooldown_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub name: String,
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub provider: String,
    pub model: Option<String>,
    pub weight: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub default_rpm: Option<u32>,
    pub burst_factor: Option<f64>,
    pub window_seconds: Option<u64>,
    pub on_redis_down: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub bundle: Option<String>,
    pub require_signature: Option<bool>,
    pub bundle_public_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub retention_days: Option<u32>,
    pub hash_prompts: Option<bool>,
    pub origin: Option<String>,
    pub checkpoint_every_records: Option<u64>,
    pub checkpoint_every_seconds: Option<u64>,
    pub on_full: Option<String>,
    pub queue_capacity: Option<usize>,
    pub durable_timeout_ms: Option<u64>,
    pub enabled: Option<bool>,
    pub spool_dir: Option<String>,
    pub spool_max_bytes: Option<u64>,
    pub acknowledge: Option<String>,
    /// `[audit.stream]`: streaming to NATS JetStream or Kafka; absent means none.
    pub stream: Option<RawAuditStream>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuditStream {
    pub nats_url: Option<String>,
    pub kafka_brokers: Option<String>,
    pub kafka_topic: Option<String>,
    pub subject_prefix: Option<String>,
    pub stream: Option<String>,
    pub duplicate_window_seconds: Option<u64>,
    pub batch_size: Option<u64>,
    pub poll_interval_ms: Option<u64>,
    pub drain_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    pub max_tenant_labels: Option<usize>,
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
    #[serde(default)]
    pub otlp_headers: std::collections::BTreeMap<String, String>,
    pub sample_ratio: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutbound {
    #[serde(default)]
    pub allowed_networks: Vec<String>,
}
