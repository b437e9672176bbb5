//! `AppState`: the one cloneable handle every handler gets, and the in-memory snapshot the
//! request path reads instead of the store. The snapshot (keys by digest, tenants, model
//! routes) is rebuilt from the store when its change counter moves and swapped atomically;
//! readers never lock and never query the database.

use crate::error::ApiError;
use crate::proxy::breaker::CircuitBreaker;
use arc_swap::ArcSwap;
use flowgate_audit::content::{ContentMasterKey, TenantContentKey};
use flowgate_audit::sealed::TenantDataKey;
use flowgate_config::{Config, LimitDefaults, OnRedisDown, RetryPolicy};
use flowgate_policy::{Policy, Preset};
use flowgate_providers::Upstream;
use flowgate_ratelimit::{
    InProcessLimiter, LimitSpec, LimitSpecConfig, LimitSpecError, Limiter, RedisLimiter,
    RedisLimiterConfig, SystemClock,
};
use flowgate_store::{KeyRecord, Store, StoreError, StoreSnapshot, StoredRule, Tenant};
use flowgate_types::{KeyDigest, KeyHasher, KeyId, MasterKey, RequestIdGenerator, now_millis};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Mutex;

/// Label of the master-key derivation for API-key digests.
pub const KEY_HASH_LABEL: &str = "api-key-digest";
/// Label of the master-key derivation for audit content hashes (`audit prove-content`).
pub const AUDIT_CONTENT_LABEL: &str = "audit-content";

/// A tenant as the request path needs it.
#[derive(Debug)]
pub struct TenantEntry {
    pub tenant: Tenant,
    /// `None` means every configured model.
    allowed_models: Option<HashSet<String>>,
    /// The tenant's limits (its own values, else the configured defaults), built once per
    /// snapshot so admission does no arithmetic on configuration.
    pub limits: LimitSpec,
    /// The tenant's compiled policy: its preset, then the configured `[[rules]]`, then the
    /// tenant's own rules (`/v1/rules`).
    pub policy: Policy,
    /// The tenant's key for audit content hashes (derived once per snapshot).
    pub content_key: TenantContentKey,
    /// The tenant's key for kept content, only when `[audit] hash_prompts = false`.
    pub data_key: Option<TenantDataKey>,
}

impl TenantEntry {
    pub fn may_use(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|allowed| allowed.contains(model))
    }
}

#[derive(Debug)]
struct KeyEntry {
    digest: KeyDigest,
    key_id: KeyId,
    expires_at: Option<i64>,
    /// The key's own limits, when it has any (built once per snapshot, like the tenant's).
    limits: Option<LimitSpec>,
    tenant: Arc<TenantEntry>,
}

/// The authenticated caller of a data-plane request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: Arc<TenantEntry>,
    pub key_id: KeyId,
    /// The key's own limits, checked beside the tenant's; `None` when the key has none.
    pub key_limits: Option<LimitSpec>,
}

/// Everything the request path reads, built from one store snapshot.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: i64,
    keys: HashMap<u64, Vec<KeyEntry>>,
    tenants: HashMap<String, Arc<TenantEntry>>,
}

/// Limits of one subject (tenant or key): per-minute figures scaled to the configured window,
/// with the configured burst factor. `None` means no limit of that kind.
fn scaled_limits(
    requests_per_minute: Option<u64>,
    tokens_per_minute: Option<u64>,
    max_concurrent: Option<u32>,
    defaults: &LimitDefaults,
) -> Result<LimitSpec, LimitSpecError> {
    let window_secs = defaults.window.as_secs().max(1);
    let per_window = |per_minute: u64| (per_minute.saturating_mul(window_secs) / 60).max(1);
    LimitSpec::new(LimitSpecConfig {
        requests_per_window: requests_per_minute.map(per_window),
        tokens_per_window: tokens_per_minute.map(per_window),
        max_concurrent,
        burst_factor: defaults.burst_factor,
        window: defaults.window,
    })
}

/// A tenant's limits: its own figures, else the configured default request rate.
fn tenant_limits(tenant: &Tenant, defaults: &LimitDefaults) -> LimitSpec {
    let rpm = u64::from(
        tenant
            .max_requests_per_minute
            .unwrap_or(defaults.requests_per_minute),
    );
    scaled_limits(
        Some(rpm),
        tenant.max_tokens_per_minute,
        tenant.max_concurrent_requests,
        defaults,
    )
    .unwrap_or_else(|err| {
        tracing::warn!(tenant_id = %tenant.id, error = %err, "tenant limits out of range; applying none");
        LimitSpec::unlimited()
    })
}

/// A key's own limits, `None` when it has none (no default applies to keys: only the kinds
/// set on the key limit it, beside its tenant's limits).
fn key_limits(key: &KeyRecord, defaults: &LimitDefaults) -> Option<LimitSpec> {
    let own = key.limits;
    if !own.any() {
        return None;
    }
    scaled_limits(
        own.max_requests_per_minute.map(u64::from),
        own.max_tokens_per_minute,
        own.max_concurrent_requests,
        defaults,
    )
    .inspect_err(|err| {
        tracing::warn!(key_id = %key.id, error = %err, "key limits out of range; applying the tenant's only");
    })
    .ok()
}

/// One compiled policy per preset (the configured rules follow each preset's own), shared by
/// every tenant on that preset. Compiled once at start: snapshots only hand out clones.
/// Tenants with their own rules get a policy of their own, compiled when a snapshot is built
/// (never on the request path) and reused by the next snapshot while their rules are unchanged.
#[derive(Debug)]
pub struct Policies {
    by_preset: HashMap<&'static str, Policy>,
    default: Policy,
    /// The configured rules, compiled again with each tenant's own rules.
    config_rules: Vec<flowgate_policy::Rule>,
    /// Tenant policies of the last snapshot, keyed by preset and rule texts.
    tenant_cache: std::sync::Mutex<HashMap<String, Policy>>,
}

/// The preset name of a tenant that wants no built-in rules (only configured and own rules).
pub const NO_PRESET: &str = "none";

impl Policies {
    pub fn compile(rules: &[flowgate_policy::Rule]) -> Result<Self, flowgate_policy::PolicyError> {
        let mut by_preset: HashMap<&'static str, Policy> = Preset::ALL
            .into_iter()
            .map(|preset| Ok((preset.as_str(), Policy::compile(Some(preset), rules)?)))
            .collect::<Result<_, flowgate_policy::PolicyError>>()?;
        by_preset.insert(NO_PRESET, Policy::compile(None, rules)?);
        let default = Policy::compile(Some(Preset::Default), rules)?;
        Ok(Self {
            by_preset,
            default,
            config_rules: rules.to_vec(),
            tenant_cache: std::sync::Mutex::default(),
        })
    }

    /// A tenant's own policy: its preset, the configured rules, then the tenant's rules (the
    /// admin API compiles a change this way before storing it).
    pub fn compile_for_tenant(
        &self,
        preset_name: &str,
        tenant_rules: &[flowgate_policy::Rule],
    ) -> Result<Policy, flowgate_policy::PolicyError> {
        let preset =
            (preset_name != NO_PRESET).then(|| Preset::from_name(preset_name).unwrap_or_default());
        let rules: Vec<flowgate_policy::Rule> = self
            .config_rules
            .iter()
            .chain(tenant_rules)
            .cloned()
            .collect();
        Policy::compile(preset, &rules)
    }

    /// The policies of the tenants that have rules of their own, by tenant id. A tenant whose
    /// stored rules no longer compile (the API refuses such rules, but the configured rules
    /// may have changed since) keeps its preset's shared policy, and the failure is logged.
    fn for_tenants(&self, tenants: &[Tenant], rules: &[StoredRule]) -> HashMap<String, Policy> {
        let mut by_tenant: HashMap<&str, Vec<&StoredRule>> = HashMap::new();
        for rule in rules {
            by_tenant
                .entry(rule.tenant_id.as_str())
                .or_default()
                .push(rule);
        }
        let mut cache = self
            .tenant_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut previous = std::mem::take(&mut *cache);
        let mut policies = HashMap::with_capacity(by_tenant.len());
        for tenant in tenants {
            let Some(own) = by_tenant.get(tenant.id.as_str()) else {
                continue;
            };
            // Stored rule texts are compact JSON (no raw newlines), so this key is unambiguous.
            let mut key = tenant.rules_preset.clone();
            for rule in own {
                key.push('\n');
                key.push_str(&rule.rule);
            }
            let compiled = match previous.remove(&key).or_else(|| cache.get(&key).cloned()) {
                Some(policy) => Ok(policy),
                None => own
                    .iter()
                    .map(|rule| serde_json::from_str(&rule.rule).map_err(|err| err.to_string()))
                    .collect::<Result<Vec<flowgate_policy::Rule>, String>>()
                    .and_then(|parsed| {
                        self.compile_for_tenant(&tenant.rules_preset, &parsed)
                            .map_err(|err| err.to_string())
                    }),
            };
            match compiled {
                Ok(policy) => {
                    cache.insert(key, policy.clone());
                    policies.insert(tenant.id.as_str().to_owned(), policy);
                }
                Err(error) => tracing::error!(
                    tenant_id = %tenant.id,
                    %error,
                    "the tenant's own rules do not compile; serving its preset without them"
                ),
            }
        }
        policies
    }

    /// The policy of a preset name (unknown names get `default`).
    pub fn for_preset(&self, name: &str) -> Policy {
        self.by_preset.get(name).unwrap_or(&self.default).clone()
    }
}

impl Snapshot {
    fn build(
        stored: StoreSnapshot,
        now: i64,
        defaults: &LimitDefaults,
        policies: &Policies,
        content: &ContentMasterKey,
        data_keys: &HashMap<String, TenantDataKey>,
    ) -> Self {
        let mut own_policies = policies.for_tenants(&stored.tenants, &stored.rules);
        let tenants: HashMap<String, Arc<TenantEntry>> = stored
            .tenants
            .into_iter()
            .map(|tenant| {
                let allowed_models = (!tenant.allowed_models.is_empty())
                    .then(|| tenant.allowed_models.iter().cloned().collect());
                let limits = tenant_limits(&tenant, defaults);
                let policy = own_policies
                    .remove(tenant.id.as_str())
                    .unwrap_or_else(|| policies.for_preset(&tenant.rules_preset));
                let content_key = content.tenant_key(tenant.id.as_str());
                let data_key = data_keys.get(tenant.id.as_str()).cloned();
                (
                    tenant.id.as_str().to_owned(),
                    Arc::new(TenantEntry {
                        tenant,
                        allowed_models,
                        limits,
                        policy,
                        content_key,
                        data_key,
                    }),
                )
            })
            .collect();
        let mut keys: HashMap<u64, Vec<KeyEntry>> = HashMap::with_capacity(stored.keys.len());
        for key in stored.keys {
            if !key.is_live(now) {
                continue;
            }
            let Some(tenant) = tenants.get(key.tenant_id.as_str()) else {
                continue;
            };
            let limits = key_limits(&key, defaults);
            keys.entry(key.digest.bucket()).or_default().push(KeyEntry {
                digest: key.digest,
                key_id: key.id,
                expires_at: key.expires_at,
                limits,
                tenant: Arc::clone(tenant),
            });
        }
        Self {
            version: stored.version,
            keys,
            tenants,
        }
    }

    /// O(1) lookup by digest bucket, then a constant-time comparison of the whole digest.
    pub fn authenticate(&self, digest: &KeyDigest, now: i64) -> Option<Principal> {
        self.keys.get(&digest.bucket())?.iter().find_map(|entry| {
            let live = entry.expires_at.is_none_or(|deadline| now < deadline);
            (entry.digest.ct_eq(digest) && live).then(|| Principal {
                tenant: Arc::clone(&entry.tenant),
                key_id: entry.key_id.clone(),
                key_limits: entry.limits,
            })
        })
    }

    pub fn tenant(&self, id: &str) -> Option<&Arc<TenantEntry>> {
        self.tenants.get(id)
    }
}

/// One route of a model: where to send it and under which upstream name.
#[derive(Debug)]
pub struct Route {
    pub upstream: Arc<Upstream>,
    pub upstream_model: String,
    pub weight: Option<u32>,
    pub retry: RetryPolicy,
    /// This route's own breaker (a deployment can fail for one model and not another).
    pub breaker: CircuitBreaker,
}

/// The routes of one client-visible model, in order.
#[derive(Debug)]
pub struct ModelRoutes {
    pub name: String,
    pub routes: Vec<Route>,
    /// Sum of the weights when every route has one (weighted choice of the first route).
    total_weight: Option<u64>,
}

impl ModelRoutes {
    /// The order to try routes in: configuration order; with weights, the first route is drawn
    /// by weight (`draw` in `0..u64::MAX`) and the rest follow in configuration order.
    pub fn order(&self, draw: u64) -> impl Iterator<Item = &Route> {
        let first = match self.total_weight {
            Some(total) if total > 0 => {
                let mut point = draw % total;
                self.routes
                    .iter()
                    .position(|route| {
                        let weight = u64::from(route.weight.unwrap_or(0));
                        if point < weight {
                            true
                        } else {
                            point -= weight;
                            false
                        }
                    })
                    .unwrap_or(0)
            }
            _ => 0,
        };
        std::iter::once(first)
            .chain((0..self.routes.len()).filter(move |index| *index != first))
            .filter_map(|index| self.routes.get(index))
    }
}

/// The model table, built once from configuration.
#[derive(Debug, Default)]
pub struct RouteTable {
    models: HashMap<String, Arc<ModelRoutes>>,
    /// Model names in configuration order, for `GET /v1/models`.
    order: Vec<String>,
}

impl RouteTable {
    pub fn from_config(config: &Config) -> Result<Self, flowgate_providers::UpstreamError> {
        let upstreams = config
            .providers
            .iter()
            .map(|provider| Upstream::new(provider).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let mut table = Self::default();
        for model in &config.models {
            let routes = model
                .routes
                .iter()
                .map(|route| {
                    let provider = config.provider(route);
                    Route {
                        upstream: Arc::clone(&upstreams[route.provider]),
                        upstream_model: route.upstream_model.clone(),
                        weight: route.weight,
                        retry: provider.retry,
                        breaker: CircuitBreaker::new(provider.breaker),
                    }
                })
                .collect::<Vec<Route>>();
            let total_weight = routes
                .iter()
                .map(|route| route.weight.map(u64::from))
                .sum::<Option<u64>>();
            table.order.push(model.name.clone());
            table.models.insert(
                model.name.clone(),
                Arc::new(ModelRoutes {
                    name: model.name.clone(),
                    routes,
                    total_weight,
                }),
            );
        }
        Ok(table)
    }

    pub fn get(&self, model: &str) -> Option<&Arc<ModelRoutes>> {
        self.models.get(model)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }
}

/// Shared state of one gateway process.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    snapshot: ArcSwap<Snapshot>,
    routes: RouteTable,
    key_hasher: KeyHasher,
    admin_digest: KeyDigest,
    request_ids: RequestIdGenerator,
    limiter: Limiter,
    /// Serialises reloads so two refreshes never race to install an older snapshot.
    reload: Mutex<()>,
    /// This node's audit writer.
    audit: crate::audit::AuditLog,
    /// Webhook event queue, outbox writer and delivery worker (`crate::webhooks`).
    webhooks: crate::webhooks::Webhooks,
    /// Publisher of this node's audit log to `[audit.stream]`, when configured.
    audit_stream: Option<crate::audit::sink::AuditStream>,
    policies: Policies,
    content_key: ContentMasterKey,
    /// Seals tenants' data keys, when audit content is kept (`hash_prompts = false`).
    data_keys: Option<flowgate_types::Envelope>,
    /// Prometheus metrics, recorded by the request path and rendered by `/metrics`.
    metrics: Arc<crate::metrics::Metrics>,
    /// Spans to the OTLP exporter when `[telemetry] otlp_endpoint` is set (`crate::trace`).
    tracer: crate::trace::Tracer,
    /// Keeps a runtime worker polling while requests are recent (`[server] busy_poll_us`).
    busy_poll: Arc<crate::busy_poll::BusyPoll>,
}

impl AppState {
    /// Builds the state and loads the first snapshot. `admin_key` and `master_key` are the
    /// resolved secrets (generated ones in development).
    pub async fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        master_key: &MasterKey,
        admin_key: &str,
    ) -> Result<Self, StartError> {
        let config =
            crate::credentials::prepare_providers(config, store.as_ref(), master_key).await?;
        let routes = RouteTable::from_config(&config)
            .map_err(|err| StartError::Providers(err.to_string()))?;
        let key_hasher = KeyHasher::new(&master_key.derive(KEY_HASH_LABEL));
        let admin_digest = key_hasher.digest(admin_key);
        let stored = store.load_snapshot().await.map_err(StartError::Store)?;
        let audit_store = store.audit_store().ok_or(StartError::Audit(
            crate::audit::AuditStartError::Unsupported,
        ))?;
        let audit = crate::audit::AuditLog::start(
            audit_store,
            crate::audit::AuditSettings::from_config(&config.audit),
        )
        .await
        .map_err(StartError::Audit)?;
        let metrics = Arc::new(crate::metrics::Metrics::new(&config));
        let webhook_store = store
            .webhook_store()
            .ok_or_else(|| StartError::Webhooks("the store keeps no webhooks".to_owned()))?;
        let webhooks = crate::webhooks::Webhooks::new(
            webhook_store,
            crate::webhooks::WebhookSettings::from_config(&config),
            master_key,
            Arc::clone(&metrics),
        )
        .map_err(|err| StartError::Webhooks(err.to_string()))?;
        let checkpoint_events = webhooks.clone();
        audit.on_checkpoint(move |origin, size| {
            checkpoint_events.emit(crate::webhooks::Event::audit_checkpoint(
                origin.to_owned(),
                size,
            ));
        });
        let audit_stream = match &config.audit.stream {
            Some(stream) => Some(crate::audit::sink::AuditStream::new(
                crate::audit::sink::sink_for(stream)
                    .map_err(|err| StartError::AuditStream(err.to_string()))?,
                Arc::clone(audit.store()),
                audit.origin(),
                stream,
            )),
            None => None,
        };
        let limiter = build_limiter(&config).await?;
        let policies =
            Policies::compile(&config.rules).map_err(|err| StartError::Policy(err.to_string()))?;
        let content_key = ContentMasterKey::from_bytes(master_key.derive(AUDIT_CONTENT_LABEL));
        let data_key_envelope =
            (!config.audit.hash_prompts).then(|| crate::data_keys::envelope(master_key));
        let data_keys = match &data_key_envelope {
            Some(envelope) => crate::data_keys::load(&*store, envelope, &stored.tenants)
                .await
                .map_err(|err| StartError::DataKeys(err.to_string()))?,
            None => HashMap::new(),
        };
        // Last of the fallible steps: the exporter task is only spawned for a state that starts.
        let tracer = crate::trace::Tracer::start(&config.telemetry)
            .map_err(|err| StartError::Tracing(err.to_string()))?;
        let snapshot = Snapshot::build(
            stored,
            now_millis(),
            &config.limits,
            &policies,
            &content_key,
            &data_keys,
        );
        let busy_poll = crate::busy_poll::BusyPoll::new(config.server.busy_poll);
        let state = Self {
            inner: Arc::new(Inner {
                config,
                store,
                snapshot: ArcSwap::from_pointee(snapshot),
                routes,
                key_hasher,
                admin_digest,
                request_ids: RequestIdGenerator::new(),
                limiter,
                reload: Mutex::new(()),
                audit,
                webhooks,
                audit_stream,
                policies,
                content_key,
                data_keys: data_key_envelope,
                metrics,
                tracer,
                busy_poll,
            }),
        };
        Ok(state)
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.inner.snapshot.load()
    }

    /// This node's audit writer (`submit` records from the request path).
    pub fn audit(&self) -> &crate::audit::AuditLog {
        &self.inner.audit
    }

    /// This node's audit stream publisher (`[audit.stream]`), when configured.
    pub fn audit_stream(&self) -> Option<&crate::audit::sink::AuditStream> {
        self.inner.audit_stream.as_ref()
    }

    /// This node's webhooks: `webhooks().emit(Event::…)` from any path (never blocks).
    pub fn webhooks(&self) -> &crate::webhooks::Webhooks {
        &self.inner.webhooks
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    /// This node's tracer (a no-op without `otlp_endpoint`).
    pub fn tracer(&self) -> &crate::trace::Tracer {
        &self.inner.tracer
    }

    pub fn busy_poll(&self) -> &Arc<crate::busy_poll::BusyPoll> {
        &self.inner.busy_poll
    }

    pub fn routes(&self) -> &RouteTable {
        &self.inner.routes
    }

    pub fn key_hasher(&self) -> &KeyHasher {
        &self.inner.key_hasher
    }

    pub fn is_admin_key(&self, digest: &KeyDigest) -> bool {
        self.inner.admin_digest.ct_eq(digest)
    }

    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    /// The compiled presets and configured rules (the rules API compiles tenant rules with
    /// them before storing).
    pub fn policies(&self) -> &Policies {
        &self.inner.policies
    }

    pub fn next_request_id(&self) -> flowgate_types::RequestId {
        self.inner.request_ids.next_id()
    }

    /// Reloads the snapshot if the store's change counter moved (or unconditionally with
    /// `force`). Called by the refresh task and right after this node's own admin changes.
    pub async fn refresh(&self, force: bool) -> Result<bool, StoreError> {
        let _guard = self.inner.reload.lock().await;
        if !force {
            let version = self.inner.store.change_version().await?;
            if version == self.inner.snapshot.load().version {
                // Expiry deadlines still need applying; rebuild only when one has passed.
                return Ok(false);
            }
        }
        let stored = self.inner.store.load_snapshot().await?;
        let data_keys = match &self.inner.data_keys {
            Some(envelope) => crate::data_keys::load(&*self.inner.store, envelope, &stored.tenants)
                .await
                .map_err(|err| match err {
                    crate::data_keys::DataKeyError::Store(err) => err,
                    other => StoreError::Corrupt {
                        field: "tenant_data_keys.sealed",
                        detail: other.to_string(),
                    },
                })?,
            None => HashMap::new(),
        };
        self.inner.snapshot.store(Arc::new(Snapshot::build(
            stored,
            now_millis(),
            &self.inner.config.limits,
            &self.inner.policies,
            &self.inner.content_key,
            &data_keys,
        )));
        Ok(true)
    }

    /// Like `refresh(true)` but maps failure to an API error, for admin handlers.
    pub async fn refresh_after_change(&self) -> Result<(), ApiError> {
        self.refresh(true).await.map(|_| ()).map_err(ApiError::from)
    }
}

/// Cluster-wide limits through Redis when `FLOWGATE_REDIS_URL` is set, else in process.
async fn build_limiter(config: &Config) -> Result<Limiter, StartError> {
    let Some(url) = &config.redis_url else {
        return Ok(Limiter::InProcess(
            InProcessLimiter::new(SystemClock::new()),
        ));
    };
    let mut redis = RedisLimiterConfig::new(url.expose());
    redis.on_redis_down = match config.limits.on_redis_down {
        OnRedisDown::Local => flowgate_ratelimit::OnRedisDown::Local,
        OnRedisDown::Refuse => flowgate_ratelimit::OnRedisDown::Refuse,
    };
    RedisLimiter::connect(redis, SystemClock::new())
        .await
        .map(Limiter::Redis)
        .map_err(|err| StartError::Limiter(err.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("rate limiter setup failed: {0}")]
    Limiter(String),
    #[error("provider setup failed: {0}")]
    Providers(String),
    #[error("policy rules do not compile: {0}")]
    Policy(String),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Audit(crate::audit::AuditStartError),
    #[error("webhook setup failed: {0}")]
    Webhooks(String),
    #[error("audit stream setup failed: {0}")]
    AuditStream(String),
    #[error("audit data keys: {0}")]
    DataKeys(String),
    #[error("trace exporter setup failed: {0}")]
    Tracing(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
