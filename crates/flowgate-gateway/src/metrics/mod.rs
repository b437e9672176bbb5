//! Prometheus metrics (DESIGN §8): the `Metrics` registry the request path records into, its
//! text exposition, and the two scrape routes (`GET /metrics` on the internal listener,
//! unauthenticated; `GET /v1/dashboard/metrics` on the public listener, admin key).
//!
//! Recording is cheap by construction: counters and histogram buckets are relaxed atomics,
//! labelled series are found through a lock-free `ArcSwap` table without allocating, and
//! label values are bounded. Model and provider labels come from the configuration (anything
//! else is `other`); at most `[telemetry] max_tenant_labels` tenants get their own label, the
//! rest share `other`. Values that are read rather than recorded (Redis fallback, audit log
//! size, process figures) are collected when scraped. Traces are not here.

mod exposition;
mod family;

use crate::error::ApiError;
use crate::proxy::auth::{AdminCaller, authenticate_admin};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use exposition::{Exposition, Kind, ProcessStats};
use family::{BuildLabelHasher, Family, Histogram, OTHER};
use flowgate_config::Config;
use flowgate_types::Usage;
use http::HeaderMap;
use http::header::{CONTENT_TYPE, HeaderValue};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Label value for something the request never got to (no tenant before authentication, no
/// provider before routing).
pub const NONE: &str = "none";

/// Most label combinations of `flowgate_requests_total` kept before the rest fold into one
/// all-`other` series (a guard behind the tenant budget, never reached in practice).
const MAX_REQUEST_SERIES: usize = 20_000;
/// Most `(rule_id, action)` and `(tenant, limit)` series kept before folding into `other`.
const MAX_SMALL_SERIES: usize = 2_000;

/// Every metric flowgate exports, in exposition order. Names follow
/// `flowgate_<thing>_<unit>[_total]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricName {
    RequestsTotal,
    RequestDuration,
    OverheadDuration,
    UpstreamDuration,
    UpstreamTtft,
    UpstreamAttemptsTotal,
    RetriesTotal,
    FallbacksTotal,
    TokensTotal,
    RuleViolationsTotal,
    RateLimitRejectionsTotal,
    WebhookDeliveriesTotal,
    ActiveRules,
    RedisFallbackActive,
    AuditLogSize,
    AuditSpoolBytes,
    AuditDroppedTotal,
    AuditStreamPublishedTotal,
    AuditStreamFailuresTotal,
    AuditStreamLag,
}

impl MetricName {
    fn as_str(self) -> &'static str {
        match self {
            Self::RequestsTotal => "flowgate_requests_total",
            Self::RequestDuration => "flowgate_request_duration_seconds",
            Self::OverheadDuration => "flowgate_overhead_duration_seconds",
            Self::UpstreamDuration => "flowgate_upstream_duration_seconds",
            Self::UpstreamTtft => "flowgate_upstream_ttft_seconds",
            Self::UpstreamAttemptsTotal => "flowgate_upstream_attempts_total",
            Self::RetriesTotal => "flowgate_retries_total",
            Self::FallbacksTotal => "flowgate_fallbacks_total",
            Self::TokensTotal => "flowgate_tokens_total",
            Self::RuleViolationsTotal => "flowgate_rule_violations_total",
            Self::RateLimitRejectionsTotal => "flowgate_ratelimit_rejections_total",
            Self::WebhookDeliveriesTotal => "flowgate_webhook_deliveries_total",
            Self::ActiveRules => "flowgate_active_rules",
            Self::RedisFallbackActive => "flowgate_redis_fallback_active",
            Self::AuditLogSize => "flowgate_audit_log_size",
            Self::AuditSpoolBytes => "flowgate_audit_spool_bytes",
            Self::AuditDroppedTotal => "flowgate_audit_dropped_total",
            Self::AuditStreamPublishedTotal => "flowgate_audit_stream_published_total",
            Self::AuditStreamFailuresTotal => "flowgate_audit_stream_failures_total",
            Self::AuditStreamLag => "flowgate_audit_stream_lag_records",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Self::RequestDuration
            | Self::OverheadDuration
            | Self::UpstreamDuration
            | Self::UpstreamTtft => Kind::Histogram,
            Self::ActiveRules
            | Self::RedisFallbackActive
            | Self::AuditLogSize
            | Self::AuditSpoolBytes
            | Self::AuditStreamLag => Kind::Gauge,
            _ => Kind::Counter,
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::RequestsTotal => {
                "Data-plane requests answered, by tenant, model, provider, decision and HTTP status."
            }
            Self::RequestDuration => {
                "Wall time of a data-plane request, from arrival to the end of the answer."
            }
            Self::OverheadDuration => {
                "The gateway's own time per request (wall time minus upstream wait); equals x-flowgate-overhead-ms."
            }
            Self::UpstreamDuration => "Duration of one upstream attempt, by provider.",
            Self::UpstreamTtft => "Time to the first streamed byte from the upstream, by provider.",
            Self::UpstreamAttemptsTotal => "Upstream attempts, by provider and outcome.",
            Self::RetriesTotal => {
                "Upstream retries (attempts after the first on the same route), by provider."
            }
            Self::FallbacksTotal => "Requests that moved on to a later route of their model.",
            Self::TokensTotal => {
                "Tokens reported by upstreams, by tenant, model and kind (input or output)."
            }
            Self::RuleViolationsTotal => {
                "Policy findings that triggered a rule, by rule id and action."
            }
            Self::RateLimitRejectionsTotal => {
                "Requests refused by admission, by tenant and the limit that refused them."
            }
            Self::WebhookDeliveriesTotal => "Webhook delivery attempts, by outcome.",
            Self::ActiveRules => "Policy rules currently compiled and enforced.",
            Self::RedisFallbackActive => {
                "1 while Redis is unreachable and limits fall back (or refuse), else 0."
            }
            Self::AuditLogSize => "Records in this node's audit log, by origin.",
            Self::AuditSpoolBytes => {
                "Bytes waiting in the local audit spool for the store to come back."
            }
            Self::AuditDroppedTotal => {
                "Audit records dropped because the queue was full (serve mode)."
            }
            Self::AuditStreamPublishedTotal => {
                "Audit messages acknowledged by the stream sink, by sink and kind (record or checkpoint)."
            }
            Self::AuditStreamFailuresTotal => {
                "Audit stream rounds that failed (sink or store error) and will be retried from the cursor."
            }
            Self::AuditStreamLag => {
                "Audit records stored but not yet acknowledged by the stream sink."
            }
        }
    }

    fn header(self, out: &mut Exposition) {
        out.header(self.as_str(), self.kind(), self.help());
    }
}

/// What a request ended as, for `flowgate_requests_total{decision}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Answered with a non-error status.
    Allowed,
    /// Refused by the policy (`content_policy_violation`).
    Blocked,
    /// Refused by admission (`rate_limit_exceeded`).
    RateLimited,
    /// Any other failure: client error, upstream failure, internal error.
    Error,
}

impl Decision {
    /// Derived from the answer's status and error code.
    pub fn of(status: u16, error_code: Option<&str>) -> Self {
        match error_code {
            Some("content_policy_violation") => Self::Blocked,
            Some("rate_limit_exceeded") => Self::RateLimited,
            Some(_) => Self::Error,
            None if status >= 400 => Self::Error,
            None => Self::Allowed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Blocked => "blocked",
            Self::RateLimited => "rate_limited",
            Self::Error => "error",
        }
    }
}

/// How one upstream attempt ended, for `flowgate_upstream_attempts_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx head arrived.
    Success,
    /// 429 from the upstream.
    RateLimited,
    /// Another 4xx from the upstream.
    ClientError,
    /// 5xx from the upstream.
    ServerError,
    /// The connection could not be made.
    ConnectError,
    /// A connect, first-byte or total deadline passed.
    Timeout,
    /// Not sent: the provider's circuit breaker is open.
    CircuitOpen,
    /// Anything else (reset, protocol error).
    Error,
}

impl AttemptOutcome {
    const ALL: [Self; 8] = [
        Self::Success,
        Self::RateLimited,
        Self::ClientError,
        Self::ServerError,
        Self::ConnectError,
        Self::Timeout,
        Self::CircuitOpen,
        Self::Error,
    ];

    /// The outcome of an attempt that got a response head with this status.
    pub fn from_status(status: http::StatusCode) -> Self {
        match status.as_u16() {
            200..=299 => Self::Success,
            429 => Self::RateLimited,
            400..=499 => Self::ClientError,
            500..=599 => Self::ServerError,
            _ => Self::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::RateLimited => "rate_limited",
            Self::ClientError => "client_error",
            Self::ServerError => "server_error",
            Self::ConnectError => "connect_error",
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit_open",
            Self::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How one webhook delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// 2xx from the receiver.
    Delivered,
    /// Failed; another attempt is scheduled.
    Retried,
    /// Failed for good (retries exhausted or not retryable).
    Failed,
}

impl WebhookOutcome {
    const ALL: [Self; 3] = [Self::Delivered, Self::Retried, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retried => "retried",
            Self::Failed => "failed",
        }
    }
}

/// One finished data-plane request, as `RequestContext::log` reports it.
#[derive(Debug, Clone, Copy)]
pub struct RequestOutcome<'a> {
    pub tenant: Option<&'a str>,
    /// The model the client asked for (folded to `other` unless configured).
    pub model: Option<&'a str>,
    /// The provider that answered (or was tried last).
    pub provider: Option<&'a str>,
    pub status: u16,
    pub error_code: Option<&'a str>,
    pub usage: Option<Usage>,
    /// Arrival to the end of the answer.
    pub latency: Duration,
    /// The value sent in `x-flowgate-overhead-ms`.
    pub overhead: Duration,
}

/// Per-provider series, indexed like `Metrics::provider_labels`.
#[derive(Debug, Default)]
struct ProviderSeries {
    upstream: Histogram,
    ttft: Histogram,
    attempts: [AtomicU64; AttemptOutcome::ALL.len()],
    retries: AtomicU64,
}

/// Which tenants have a label of their own: the first `max` seen, in order.
#[derive(Debug)]
struct TenantLabels {
    max: usize,
    labelled: HashMap<Box<str>, Arc<str>>,
}

impl TenantLabels {
    fn fold(&mut self, tenant: &str) -> Arc<str> {
        if tenant == NONE {
            return Arc::from(NONE);
        }
        if let Some(label) = self.labelled.get(tenant) {
            return Arc::clone(label);
        }
        if self.labelled.len() < self.max {
            let label: Arc<str> = Arc::from(tenant);
            self.labelled.insert(Box::from(tenant), Arc::clone(&label));
            return label;
        }
        Arc::from(OTHER)
    }
}

/// Values read at scrape time from other parts of the gateway.
#[derive(Debug, Clone, Default)]
pub struct ScrapeGauges<'a> {
    /// This node's audit origin and its record count, when the store answered.
    pub audit_log: Option<(&'a str, u64)>,
    pub audit_dropped_total: u64,
    /// Bytes in the local audit spool.
    pub audit_spool_bytes: u64,
    pub redis_fallback_active: bool,
    /// The audit stream's figures, when `[audit.stream]` is configured.
    pub audit_stream: Option<AuditStreamGauges<'a>>,
}

/// The audit stream publisher's figures at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct AuditStreamGauges<'a> {
    /// The sink's name (`nats/<stream>`).
    pub sink: &'a str,
    pub records: u64,
    pub checkpoints: u64,
    pub failures: u64,
    pub lag: u64,
}

/// The registry. One per `AppState`; no globals, so several gateways in one test process
/// count separately.
pub struct Metrics {
    models: HashMap<Box<str>, usize, BuildLabelHasher>,
    /// Configured model names, then `other`.
    model_labels: Vec<Arc<str>>,
    providers: HashMap<Box<str>, usize, BuildLabelHasher>,
    /// Configured provider names, then `other`.
    provider_labels: Vec<Arc<str>>,
    tenants: Mutex<TenantLabels>,
    /// Labels tenant, model, provider, decision, status; values requests, input tokens,
    /// output tokens (tokens are exported per tenant and model by summing).
    requests: Family<5, 3>,
    request_duration: Histogram,
    overhead: Histogram,
    per_provider: Vec<ProviderSeries>,
    fallbacks: Vec<AtomicU64>,
    rule_violations: Family<2, 1>,
    ratelimit_rejections: Family<2, 1>,
    webhook_deliveries: [AtomicU64; WebhookOutcome::ALL.len()],
    active_rules: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("models", &self.model_labels.len())
            .field("providers", &self.provider_labels.len())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry labelled with the configured models and providers.
    pub fn new(config: &Config) -> Self {
        Self::with_labels(
            config.models.iter().map(|model| model.name.as_str()),
            config
                .providers
                .iter()
                .map(|provider| provider.name.as_str()),
            config.telemetry.max_tenant_labels,
        )
    }

    /// A registry with these model and provider label values and tenant budget.
    pub fn with_labels<'a>(
        models: impl IntoIterator<Item = &'a str>,
        providers: impl IntoIterator<Item = &'a str>,
        max_tenant_labels: usize,
    ) -> Self {
        let (models, model_labels) = label_table(models);
        let (providers, provider_labels) = label_table(providers);
        Self {
            per_provider: provider_labels
                .iter()
                .map(|_| ProviderSeries::default())
                .collect(),
            fallbacks: model_labels.iter().map(|_| AtomicU64::new(0)).collect(),
            models,
            model_labels,
            providers,
            provider_labels,
            tenants: Mutex::new(TenantLabels {
                max: max_tenant_labels,
                labelled: HashMap::new(),
            }),
            requests: Family::new(MAX_REQUEST_SERIES),
            request_duration: Histogram::default(),
            overhead: Histogram::default(),
            rule_violations: Family::new(MAX_SMALL_SERIES),
            ratelimit_rejections: Family::new(MAX_SMALL_SERIES),
            webhook_deliveries: std::array::from_fn(|_| AtomicU64::new(0)),
            active_rules: AtomicU64::new(0),
        }
    }

    fn model_index(&self, model: &str) -> usize {
        self.models
            .get(model)
            .copied()
            .unwrap_or(self.model_labels.len() - 1)
    }

    fn provider_index(&self, provider: &str) -> usize {
        self.providers
            .get(provider)
            .copied()
            .unwrap_or(self.provider_labels.len() - 1)
    }

    fn fold_tenant(&self, tenant: &str) -> Arc<str> {
        self.tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .fold(tenant)
    }

    /// Records one finished data-plane request: `flowgate_requests_total`, the request and
    /// overhead histograms, tokens, and (for `rate_limit_exceeded`) nothing else: admission
    /// rejections are counted by [`Metrics::ratelimit_rejection`].
    pub fn request(&self, outcome: &RequestOutcome<'_>) {
        let model = outcome
            .model
            .map_or(NONE, |model| &*self.model_labels[self.model_index(model)]);
        let provider = outcome.provider.map_or(NONE, |provider| {
            &*self.provider_labels[self.provider_index(provider)]
        });
        let decision = Decision::of(outcome.status, outcome.error_code);
        let mut status_buffer = [0u8; 3];
        let status = status_label(outcome.status, &mut status_buffer);
        let usage = outcome.usage.unwrap_or_default();
        self.requests.add(
            [
                outcome.tenant.unwrap_or(NONE),
                model,
                provider,
                decision.as_str(),
                status,
            ],
            [1, usage.input_tokens, usage.output_tokens],
            |raw| {
                [
                    self.fold_tenant(raw[0]),
                    Arc::from(raw[1]),
                    Arc::from(raw[2]),
                    Arc::from(raw[3]),
                    Arc::from(raw[4]),
                ]
            },
        );
        self.request_duration.observe(outcome.latency);
        self.overhead.observe(outcome.overhead);
    }

    /// One upstream attempt (first try or retry) and how long it took, from sending the
    /// request to the response head or the failure.
    pub fn upstream_attempt(&self, provider: &str, outcome: AttemptOutcome, latency: Duration) {
        let series = &self.per_provider[self.provider_index(provider)];
        series.attempts[outcome.index()].fetch_add(1, Ordering::Relaxed);
        if outcome != AttemptOutcome::CircuitOpen {
            series.upstream.observe(latency);
        }
    }

    /// Time to the first byte of a streamed upstream answer.
    pub fn ttft(&self, provider: &str, latency: Duration) {
        self.per_provider[self.provider_index(provider)]
            .ttft
            .observe(latency);
    }

    /// A retry on the same route (counted in addition to its attempt).
    pub fn retry(&self, provider: &str) {
        self.per_provider[self.provider_index(provider)]
            .retries
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A request of `model` (the client's model name) moved on to a later route.
    pub fn fallback(&self, model: &str) {
        self.fallbacks[self.model_index(model)].fetch_add(1, Ordering::Relaxed);
    }

    /// A policy rule triggered with this action (`block`, `redact`, `flag`, ...).
    pub fn rule_violation(&self, rule_id: &str, action: &str) {
        self.rule_violations
            .add([rule_id, action], [1], |raw| raw.map(Arc::from));
    }

    /// Admission refused a request of `tenant`; `limit` names the limit (`requests`,
    /// `tokens`, `concurrency`).
    pub fn ratelimit_rejection(&self, tenant: &str, limit: &str) {
        self.ratelimit_rejections.add([tenant, limit], [1], |raw| {
            [self.fold_tenant(raw[0]), Arc::from(raw[1])]
        });
    }

    pub fn webhook_delivery(&self, outcome: WebhookOutcome) {
        self.webhook_deliveries[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Sets `flowgate_active_rules` (after a policy compile or reload).
    pub fn set_active_rules(&self, count: u64) {
        self.active_rules.store(count, Ordering::Relaxed);
    }

    /// The whole exposition: recorded metrics, the scrape-time gauges and process metrics.
    pub fn render(&self, gauges: &ScrapeGauges<'_>) -> String {
        let mut out = Exposition::with_capacity(16 * 1024);
        self.render_requests(&mut out);

        MetricName::RequestDuration.header(&mut out);
        out.histogram(
            MetricName::RequestDuration.as_str(),
            &[],
            &self.request_duration.snapshot(),
        );
        MetricName::OverheadDuration.header(&mut out);
        out.histogram(
            MetricName::OverheadDuration.as_str(),
            &[],
            &self.overhead.snapshot(),
        );
        self.render_providers(&mut out);

        MetricName::FallbacksTotal.header(&mut out);
        for (label, counter) in self.model_labels.iter().zip(&self.fallbacks) {
            out.sample(
                MetricName::FallbacksTotal.as_str(),
                &[("model", label)],
                counter.load(Ordering::Relaxed),
            );
        }
        for (name, family, label_names) in [
            (
                MetricName::RuleViolationsTotal,
                &self.rule_violations,
                ["rule_id", "action"],
            ),
            (
                MetricName::RateLimitRejectionsTotal,
                &self.ratelimit_rejections,
                ["tenant", "limit"],
            ),
        ] {
            name.header(&mut out);
            let mut series = family.series();
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            for series in series {
                out.sample(
                    name.as_str(),
                    &[
                        (label_names[0], &series.labels[0]),
                        (label_names[1], &series.labels[1]),
                    ],
                    series.values[0].load(Ordering::Relaxed),
                );
            }
        }
        MetricName::WebhookDeliveriesTotal.header(&mut out);
        for outcome in WebhookOutcome::ALL {
            out.sample(
                MetricName::WebhookDeliveriesTotal.as_str(),
                &[("outcome", outcome.as_str())],
                self.webhook_deliveries[outcome as usize].load(Ordering::Relaxed),
            );
        }
        MetricName::ActiveRules.header(&mut out);
        out.sample(
            MetricName::ActiveRules.as_str(),
            &[],
            self.active_rules.load(Ordering::Relaxed),
        );
        MetricName::RedisFallbackActive.header(&mut out);
        out.sample(
            MetricName::RedisFallbackActive.as_str(),
            &[],
            u8::from(gauges.redis_fallback_active),
        );
        if let Some((origin, size)) = gauges.audit_log {
            MetricName::AuditLogSize.header(&mut out);
            out.sample(
                MetricName::AuditLogSize.as_str(),
                &[("origin", origin)],
                size,
            );
        }
        MetricName::AuditSpoolBytes.header(&mut out);
        out.sample(
            MetricName::AuditSpoolBytes.as_str(),
            &[],
            gauges.audit_spool_bytes,
        );
        MetricName::AuditDroppedTotal.header(&mut out);
        out.sample(
            MetricName::AuditDroppedTotal.as_str(),
            &[],
            gauges.audit_dropped_total,
        );
        if let Some(stream) = &gauges.audit_stream {
            MetricName::AuditStreamPublishedTotal.header(&mut out);
            for (kind, value) in [
                ("record", stream.records),
                ("checkpoint", stream.checkpoints),
            ] {
                out.sample(
                    MetricName::AuditStreamPublishedTotal.as_str(),
                    &[("sink", stream.sink), ("kind", kind)],
                    value,
                );
            }
            MetricName::AuditStreamFailuresTotal.header(&mut out);
            out.sample(
                MetricName::AuditStreamFailuresTotal.as_str(),
                &[("sink", stream.sink)],
                stream.failures,
            );
            MetricName::AuditStreamLag.header(&mut out);
            out.sample(
                MetricName::AuditStreamLag.as_str(),
                &[("sink", stream.sink)],
                stream.lag,
            );
        }
        ProcessStats::read().write(&mut out);
        out.finish()
    }

    fn render_requests(&self, out: &mut Exposition) {
        let mut series = self.requests.series();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        MetricName::RequestsTotal.header(out);
        let mut tokens: BTreeMap<(Arc<str>, Arc<str>), [u64; 2]> = BTreeMap::new();
        for series in &series {
            let [tenant, model, provider, decision, status] = &series.labels;
            out.sample(
                MetricName::RequestsTotal.as_str(),
                &[
                    ("tenant", tenant),
                    ("model", model),
                    ("provider", provider),
                    ("decision", decision),
                    ("status", status),
                ],
                series.values[0].load(Ordering::Relaxed),
            );
            let input = series.values[1].load(Ordering::Relaxed);
            let output = series.values[2].load(Ordering::Relaxed);
            if input != 0 || output != 0 {
                let sums = tokens
                    .entry((Arc::clone(tenant), Arc::clone(model)))
                    .or_default();
                sums[0] += input;
                sums[1] += output;
            }
        }
        MetricName::TokensTotal.header(out);
        for ((tenant, model), [input, output]) in &tokens {
            for (kind, value) in [("input", input), ("output", output)] {
                out.sample(
                    MetricName::TokensTotal.as_str(),
                    &[("tenant", tenant), ("model", model), ("kind", kind)],
                    value,
                );
            }
        }
    }

    fn render_providers(&self, out: &mut Exposition) {
        let providers = || self.provider_labels.iter().zip(&self.per_provider);
        MetricName::UpstreamDuration.header(out);
        for (label, series) in providers() {
            out.histogram(
                MetricName::UpstreamDuration.as_str(),
                &[("provider", label)],
                &series.upstream.snapshot(),
            );
        }
        MetricName::UpstreamTtft.header(out);
        for (label, series) in providers() {
            out.histogram(
                MetricName::UpstreamTtft.as_str(),
                &[("provider", label)],
                &series.ttft.snapshot(),
            );
        }
        MetricName::UpstreamAttemptsTotal.header(out);
        for (label, series) in providers() {
            for outcome in AttemptOutcome::ALL {
                out.sample(
                    MetricName::UpstreamAttemptsTotal.as_str(),
                    &[("provider", label), ("outcome", outcome.as_str())],
                    series.attempts[outcome.index()].load(Ordering::Relaxed),
                );
            }
        }
        MetricName::RetriesTotal.header(out);
        for (label, series) in providers() {
            out.sample(
                MetricName::RetriesTotal.as_str(),
                &[("provider", label)],
                series.retries.load(Ordering::Relaxed),
            );
        }
    }
}

/// Names to label indexes, and the labels with `other` appended last.
fn label_table<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> (HashMap<Box<str>, usize, BuildLabelHasher>, Vec<Arc<str>>) {
    let mut index = HashMap::default();
    let mut labels: Vec<Arc<str>> = Vec::new();
    for name in names {
        if !index.contains_key(name) {
            index.insert(Box::from(name), labels.len());
            labels.push(Arc::from(name));
        }
    }
    labels.push(Arc::from(OTHER));
    (index, labels)
}

/// The status code as three ASCII digits in `buffer` (no allocation); out-of-range codes are
/// `other`.
fn status_label(status: u16, buffer: &mut [u8; 3]) -> &str {
    if !(100..=999).contains(&status) {
        return OTHER;
    }
    buffer[0] = b'0' + (status / 100) as u8;
    buffer[1] = b'0' + (status / 10 % 10) as u8;
    buffer[2] = b'0' + (status % 10) as u8;
    std::str::from_utf8(buffer).unwrap_or(OTHER)
}

/// `GET /metrics` for the internal listener.
pub fn internal_router() -> Router<AppState> {
    Router::new().route("/metrics", get(internal_metrics))
}

/// `GET /v1/dashboard/metrics` for the public listener (admin key).
pub fn admin_router() -> Router<AppState> {
    Router::new().route("/v1/dashboard/metrics", get(admin_metrics))
}

async fn internal_metrics(State(state): State<AppState>) -> Response {
    scrape(&state).await
}

async fn admin_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match authenticate_admin(&state, &headers) {
        Ok(AdminCaller::Admin) => scrape(&state).await,
        Ok(AdminCaller::Tenant(_)) => ApiError::AdminOnly.into_response(),
        Err(error) => error.into_response(),
    }
}

/// How long a scrape waits for the store's audit log size before leaving it out.
const AUDIT_SIZE_TIMEOUT: Duration = Duration::from_secs(2);

async fn scrape(state: &AppState) -> Response {
    let audit = state.audit();
    let origin = audit.origin();
    let audit_size = tokio::time::timeout(AUDIT_SIZE_TIMEOUT, audit.store().audit_size(origin))
        .await
        .ok()
        .and_then(Result::ok);
    let gauges = ScrapeGauges {
        audit_log: audit_size.map(|size| (origin, size)),
        audit_dropped_total: audit.dropped_total(),
        audit_spool_bytes: audit.spool().map_or(0, |(bytes, _)| bytes),
        redis_fallback_active: state
            .limiter()
            .redis_health()
            .is_some_and(|health| health.fallback_active),
        audit_stream: state.audit_stream().map(|stream| {
            let totals = stream.totals();
            AuditStreamGauges {
                sink: stream.sink_name(),
                records: totals.records,
                checkpoints: totals.checkpoints,
                failures: totals.failures,
                lag: totals.lag,
            }
        }),
    };
    let body = state.metrics().render(&gauges);
    let mut response = body.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(exposition::CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(max_tenants: usize) -> Metrics {
        Metrics::with_labels(
            ["gpt-4o-mini", "claude"],
            ["openai", "anthropic"],
            max_tenants,
        )
    }

    fn outcome<'a>(
        tenant: &'a str,
        status: u16,
        error_code: Option<&'a str>,
    ) -> RequestOutcome<'a> {
        RequestOutcome {
            tenant: Some(tenant),
            model: Some("gpt-4o-mini"),
            provider: Some("openai"),
            status,
            error_code,
            usage: None,
            latency: Duration::from_millis(3),
            overhead: Duration::from_micros(40),
        }
    }

    /// The sample lines of one metric, without headers.
    fn samples(text: &str, name: &str) -> Vec<String> {
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn decision_from_status_and_error_code() {
        for (status, code, expect) in [
            (200, None, Decision::Allowed),
            (403, Some("content_policy_violation"), Decision::Blocked),
            (429, Some("rate_limit_exceeded"), Decision::RateLimited),
            (404, Some("model_not_found"), Decision::Error),
            (502, Some("upstream_error"), Decision::Error),
            (400, None, Decision::Error),
            (499, Some("client_disconnected"), Decision::Error),
        ] {
            assert_eq!(Decision::of(status, code), expect, "{status} {code:?}");
        }
    }

    #[test]
    fn tenants_beyond_the_budget_fold_into_other() {
        let metrics = metrics(2);
        for tenant in ["t1", "t2", "t3", "t4", "t1"] {
            metrics.request(&outcome(tenant, 200, None));
        }
        metrics.ratelimit_rejection("t2", "requests");
        metrics.ratelimit_rejection("t9", "requests");
        let text = metrics.render(&ScrapeGauges::default());
        assert_eq!(
            samples(&text, "flowgate_requests_total"),
            [
                "flowgate_requests_total{tenant=\"other\",model=\"gpt-4o-mini\",provider=\"openai\",decision=\"allowed\",status=\"200\"} 2",
                "flowgate_requests_total{tenant=\"t1\",model=\"gpt-4o-mini\",provider=\"openai\",decision=\"allowed\",status=\"200\"} 2",
                "flowgate_requests_total{tenant=\"t2\",model=\"gpt-4o-mini\",provider=\"openai\",decision=\"allowed\",status=\"200\"} 1",
            ]
        );
        assert_eq!(
            samples(&text, "flowgate_ratelimit_rejections_total"),
            [
                "flowgate_ratelimit_rejections_total{tenant=\"other\",limit=\"requests\"} 1",
                "flowgate_ratelimit_rejections_total{tenant=\"t2\",limit=\"requests\"} 1",
            ]
        );
    }

    #[test]
    fn unknown_models_and_providers_are_other_and_missing_ones_none() {
        let metrics = metrics(10);
        metrics.request(&RequestOutcome {
            model: Some("made-up-model"),
            provider: None,
            ..outcome("t1", 404, Some("model_not_found"))
        });
        metrics.request(&RequestOutcome {
            tenant: None,
            model: None,
            provider: None,
            ..outcome("", 401, Some("invalid_api_key"))
        });
        metrics.fallback("made-up-model");
        metrics.retry("somewhere-else");
        let text = metrics.render(&ScrapeGauges::default());
        assert_eq!(
            samples(&text, "flowgate_requests_total"),
            [
                "flowgate_requests_total{tenant=\"none\",model=\"none\",provider=\"none\",decision=\"error\",status=\"401\"} 1",
                "flowgate_requests_total{tenant=\"t1\",model=\"other\",provider=\"none\",decision=\"error\",status=\"404\"} 1",
            ]
        );
        assert!(text.contains("\nflowgate_fallbacks_total{model=\"other\"} 1\n"));
        assert!(text.contains("\nflowgate_fallbacks_total{model=\"claude\"} 0\n"));
        assert!(text.contains("\nflowgate_retries_total{provider=\"other\"} 1\n"));
    }

    #[test]
    fn tokens_are_summed_per_tenant_and_model() {
        let metrics = metrics(10);
        let usage = Usage {
            input_tokens: 10,
            output_tokens: 3,
            ..Usage::default()
        };
        metrics.request(&RequestOutcome {
            usage: Some(usage),
            ..outcome("t1", 200, None)
        });
        metrics.request(&RequestOutcome {
            usage: Some(usage),
            provider: Some("anthropic"),
            ..outcome("t1", 200, None)
        });
        let text = metrics.render(&ScrapeGauges::default());
        assert_eq!(
            samples(&text, "flowgate_tokens_total"),
            [
                "flowgate_tokens_total{tenant=\"t1\",model=\"gpt-4o-mini\",kind=\"input\"} 20",
                "flowgate_tokens_total{tenant=\"t1\",model=\"gpt-4o-mini\",kind=\"output\"} 6",
            ]
        );
    }

    #[test]
    fn request_histograms_count_every_request_and_sum_the_overhead() {
        let metrics = metrics(10);
        metrics.request(&outcome("t1", 200, None));
        metrics.request(&outcome("t1", 502, Some("upstream_error")));
        let text = metrics.render(&ScrapeGauges::default());
        assert!(text.contains("\nflowgate_overhead_duration_seconds_count 2\n"));
        assert!(text.contains("\nflowgate_overhead_duration_seconds_sum 0.00008\n"));
        assert!(text.contains("\nflowgate_overhead_duration_seconds_bucket{le=\"0.00005\"} 2\n"));
        assert!(text.contains("\nflowgate_request_duration_seconds_count 2\n"));
        assert!(text.contains("\nflowgate_request_duration_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(text.contains("\nflowgate_request_duration_seconds_bucket{le=\"0.005\"} 2\n"));
    }

    #[test]
    fn upstream_series_rule_violations_webhooks_and_gauges() {
        let metrics = metrics(10);
        metrics.upstream_attempt(
            "openai",
            AttemptOutcome::ServerError,
            Duration::from_millis(2),
        );
        metrics.upstream_attempt("openai", AttemptOutcome::Success, Duration::from_millis(4));
        metrics.upstream_attempt("openai", AttemptOutcome::CircuitOpen, Duration::ZERO);
        metrics.retry("openai");
        metrics.ttft("anthropic", Duration::from_millis(120));
        metrics.fallback("claude");
        metrics.rule_violation("credit_card", "block");
        metrics.rule_violation("credit_card", "block");
        metrics.rule_violation("email", "redact");
        metrics.webhook_delivery(WebhookOutcome::Failed);
        metrics.set_active_rules(12);
        let text = metrics.render(&ScrapeGauges {
            audit_log: Some(("node-1", 77)),
            audit_dropped_total: 3,
            audit_spool_bytes: 4096,
            redis_fallback_active: true,
            ..ScrapeGauges::default()
        });
        for line in [
            "flowgate_upstream_attempts_total{provider=\"openai\",outcome=\"server_error\"} 1",
            "flowgate_upstream_attempts_total{provider=\"openai\",outcome=\"success\"} 1",
            "flowgate_upstream_attempts_total{provider=\"openai\",outcome=\"circuit_open\"} 1",
            "flowgate_upstream_attempts_total{provider=\"anthropic\",outcome=\"success\"} 0",
            "flowgate_upstream_duration_seconds_count{provider=\"openai\"} 2",
            "flowgate_upstream_duration_seconds_sum{provider=\"openai\"} 0.006",
            "flowgate_upstream_ttft_seconds_count{provider=\"anthropic\"} 1",
            "flowgate_upstream_ttft_seconds_bucket{provider=\"anthropic\",le=\"0.1\"} 0",
            "flowgate_upstream_ttft_seconds_bucket{provider=\"anthropic\",le=\"0.25\"} 1",
            "flowgate_retries_total{provider=\"openai\"} 1",
            "flowgate_fallbacks_total{model=\"claude\"} 1",
            "flowgate_rule_violations_total{rule_id=\"credit_card\",action=\"block\"} 2",
            "flowgate_rule_violations_total{rule_id=\"email\",action=\"redact\"} 1",
            "flowgate_webhook_deliveries_total{outcome=\"failed\"} 1",
            "flowgate_webhook_deliveries_total{outcome=\"delivered\"} 0",
            "flowgate_active_rules 12",
            "flowgate_redis_fallback_active 1",
            "flowgate_audit_log_size{origin=\"node-1\"} 77",
            "flowgate_audit_spool_bytes 4096",
            "flowgate_audit_dropped_total 3",
        ] {
            assert!(
                text.lines().any(|sample| sample == line),
                "missing `{line}` in\n{text}"
            );
        }
    }

    #[test]
    fn every_metric_has_help_and_type_once_and_samples_follow_their_header() {
        let metrics = metrics(10);
        metrics.request(&outcome("t1", 200, None));
        let text = metrics.render(&ScrapeGauges {
            audit_log: Some(("o", 1)),
            ..ScrapeGauges::default()
        });
        let mut declared: Vec<&str> = Vec::new();
        let mut current: Option<(&str, &str)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                assert!(!declared.contains(&name), "{name} declared twice");
                declared.push(name);
                current = Some((name, kind));
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (name, kind) = current.unwrap_or_else(|| panic!("sample before any TYPE: {line}"));
            let sample_name = line.split(['{', ' ']).next().unwrap_or("");
            let allowed = if kind == "histogram" {
                [
                    format!("{name}_bucket"),
                    format!("{name}_sum"),
                    format!("{name}_count"),
                ]
                .contains(&sample_name.to_owned())
            } else {
                sample_name == name
            };
            assert!(allowed, "`{line}` under TYPE {name} {kind}");
            let value = line.rsplit(' ').next().unwrap_or("");
            assert!(value.parse::<f64>().is_ok(), "value of `{line}`");
        }
        for name in [
            "flowgate_requests_total",
            "flowgate_request_duration_seconds",
            "flowgate_overhead_duration_seconds",
            "flowgate_upstream_duration_seconds",
            "flowgate_upstream_ttft_seconds",
            "flowgate_tokens_total",
            "flowgate_rule_violations_total",
            "flowgate_ratelimit_rejections_total",
            "flowgate_fallbacks_total",
            "flowgate_upstream_attempts_total",
            "flowgate_retries_total",
            "flowgate_audit_log_size",
            "flowgate_audit_spool_bytes",
            "flowgate_webhook_deliveries_total",
            "flowgate_active_rules",
            "flowgate_redis_fallback_active",
        ] {
            assert!(declared.contains(&name), "{name} missing");
        }
    }

    #[test]
    fn status_labels_are_three_digits() {
        let mut buffer = [0u8; 3];
        assert_eq!(status_label(200, &mut buffer), "200");
        assert_eq!(status_label(499, &mut buffer), "499");
        assert_eq!(status_label(42, &mut buffer), "other");
    }

    #[test]
    fn audit_stream_series_only_when_configured() {
        let metrics = metrics(10);
        let without = metrics.render(&ScrapeGauges::default());
        assert!(!without.contains("flowgate_audit_stream"), "{without}");
        let text = metrics.render(&ScrapeGauges {
            audit_stream: Some(AuditStreamGauges {
                sink: "nats/FLOWGATE_AUDIT",
                records: 120,
                checkpoints: 3,
                failures: 2,
                lag: 7,
            }),
            ..ScrapeGauges::default()
        });
        for line in [
            "flowgate_audit_stream_published_total{sink=\"nats/FLOWGATE_AUDIT\",kind=\"record\"} 120",
            "flowgate_audit_stream_published_total{sink=\"nats/FLOWGATE_AUDIT\",kind=\"checkpoint\"} 3",
            "flowgate_audit_stream_failures_total{sink=\"nats/FLOWGATE_AUDIT\"} 2",
            "flowgate_audit_stream_lag_records{sink=\"nats/FLOWGATE_AUDIT\"} 7",
            "# TYPE flowgate_audit_stream_lag_records gauge",
            "# TYPE flowgate_audit_stream_published_total counter",
        ] {
            assert!(
                text.lines().any(|sample| sample == line),
                "missing `{line}` in\n{text}"
            );
        }
    }
}
