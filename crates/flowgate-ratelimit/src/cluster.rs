//! Cluster-wide limiter on Redis, with a fallback for when Redis is unreachable.
//!
//! Owns the Redis key layout, the two Lua scripts (`lua/admit.lua`: one atomic round trip per
//! admission for the tenant and the key together; `lua/settle.lua`: settlement or release), the
//! background task that sends settlements without blocking the request path, and the outage
//! handling: after one failed or timed-out call the limiter is marked down, requests go to the
//! in-process limiter ([`OnRedisDown::Local`]) or are refused ([`OnRedisDown::Refuse`]) without
//! touching Redis, and a single probe task reconnects every `probe_interval` until Redis
//! answers again. Leaves out Redis Cluster slot routing (keys of one tenant share a hash tag, so
//! it would work, but only a single endpoint is configured) and metric export.
//!
//! Key layout, with `{prefix}` from the config and the tenant id as hash tag:
//! `{prefix}{<tenant>}:t` (hash: `r` request TAT, `t` token TAT, in µs),
//! `{prefix}{<tenant>}:t:c` (sorted set of concurrency leases scored by expiry),
//! `{prefix}{<tenant>}:k:<key>` and `{prefix}{<tenant>}:k:<key>:c` for the key. Every key gets a
//! `PEXPIRE` at the moment its state becomes equal to a fresh one, so idle subjects cost nothing.
//!
//! Concurrency slots are leases: a replica that dies with requests in flight leaks their slots
//! only until `lease_ttl`. Times are integer microseconds; request intervals and token costs are
//! rounded up to whole microseconds, which can only make limits slightly stricter.
//!
//! Differences from the in-process limiter: usage is stored as time (the TAT), so after a limit
//! change the old usage is read under the new limit (a raised limit is fully available once the
//! old usage has drained, within one window), where the in-process limiter keeps the count of
//! used units. Settlements whose call fails are not retried (see `settle_worker`).

use std::collections::VecDeque;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::AdmissionError;
use crate::admission::{
    Admission, AdmissionRequest, CONCURRENCY_RETRY_AFTER, LimitKind, LimitSnapshot, Permit,
    RateLimitHeaders, Rejection, Subject, SubjectKind,
};
use crate::clock::Clock;
use crate::local::{InProcessLimiter, LocalOptions};
use crate::spec::LimitSpec;

/// What to do while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRedisDown {
    /// Keep serving under per-replica in-process limits (fail open to local limits). Default.
    #[default]
    Local,
    /// Refuse every request with [`RedisUnavailable`] (the gateway answers 503).
    Refuse,
}

/// Which clock the Redis scripts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisTime {
    /// The Redis server's `TIME`: one clock for every replica, immune to replica clock skew.
    #[default]
    Server,
    /// The limiter's injected [`Clock`] (tests drive it with a [`crate::ManualClock`]). All
    /// replicas must then have synchronised clocks.
    Client,
}

/// Settings of the Redis limiter.
#[derive(Clone)]
pub struct RedisLimiterConfig {
    /// `redis://host:port/db` (`FLOWGATE_REDIS_URL`). May carry a password: never logged.
    pub url: String,
    /// Prefix of every key, so several deployments or tests can share one Redis.
    pub key_prefix: String,
    /// Behaviour while Redis is unreachable (`limits.on_redis_down`).
    pub on_redis_down: OnRedisDown,
    /// Upper bound on one script call; past it the call counts as a failure and Redis is
    /// marked down. Keeps a dead or partitioned Redis from stalling requests.
    pub command_timeout: Duration,
    /// Upper bound on establishing a connection.
    pub connect_timeout: Duration,
    /// How often the probe task tries to reconnect while Redis is marked down.
    pub probe_interval: Duration,
    /// How long a concurrency slot survives without release (bounds leaks from crashed
    /// replicas; should exceed the longest request, streams included).
    pub lease_ttl: Duration,
    /// Which clock the scripts use.
    pub time: RedisTime,
    /// Options of the in-process fallback limiter.
    pub local: LocalOptions,
}

impl fmt::Debug for RedisLimiterConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RedisLimiterConfig")
            .field("url", &"<redacted>")
            .field("key_prefix", &self.key_prefix)
            .field("on_redis_down", &self.on_redis_down)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("probe_interval", &self.probe_interval)
            .field("lease_ttl", &self.lease_ttl)
            .field("time", &self.time)
            .field("local", &self.local)
            .finish()
    }
}

impl RedisLimiterConfig {
    /// Defaults for a URL: prefix `flowgate:rl:`, fall back to local limits, 50 ms command
    /// timeout, 250 ms connect timeout, 1 s probe interval, 15 min leases, server time.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "flowgate:rl:".to_owned(),
            on_redis_down: OnRedisDown::Local,
            command_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(250),
            probe_interval: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(15 * 60),
            time: RedisTime::Server,
            local: LocalOptions::default(),
        }
    }
}

/// Redis is unreachable and the limiter is configured with [`OnRedisDown::Refuse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate-limit store unavailable (down for {down_for:?})")]
pub struct RedisUnavailable {
    /// How long Redis has been marked down.
    pub down_for: Duration,
}

/// The Redis limiter's configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum RedisConfigError {
    /// The URL could not be parsed (the URL itself is not repeated: it may hold a password).
    #[error("invalid Redis URL for the rate limiter")]
    InvalidUrl {
        /// The parser's complaint.
        #[source]
        source: redis::RedisError,
    },
    /// A duration setting is zero or otherwise out of range.
    #[error("rate limiter setting {field} {problem}")]
    InvalidSetting {
        /// Name of the setting.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl RedisLimiterConfig {
    fn validate(&self) -> Result<(), RedisConfigError> {
        let positive = [
            ("command_timeout", self.command_timeout),
            ("connect_timeout", self.connect_timeout),
            ("probe_interval", self.probe_interval),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(RedisConfigError::InvalidSetting {
                    field,
                    problem: "must be above zero",
                });
            }
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(RedisConfigError::InvalidSetting {
                field: "lease_ttl",
                problem: "must be at least one second (it should outlast the longest request)",
            });
        }
        Ok(())
    }
}

/// Why one script call did not produce a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallFailure {
    /// No answer within `command_timeout`.
    Timeout,
    /// Connection or server error.
    Redis,
    /// An answer of the wrong shape (a different script under the same SHA, or a bug).
    UnexpectedReply,
}

/// Health of the Redis backend, for metrics (`flowgate_ratelimit_*`) and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisHealth {
    /// Redis is marked down: requests use the fallback (or are refused).
    pub fallback_active: bool,
    /// How long it has been down, when it is.
    pub down_for: Option<Duration>,
    /// Times Redis went from up to down.
    pub outages_total: u64,
    /// Times Redis came back.
    pub recoveries_total: u64,
    /// Failed or timed-out script calls (and failed connection attempts).
    pub errors_total: u64,
    /// The part of `errors_total` that timed out: a slow rather than a dead Redis.
    pub timeouts_total: u64,
    /// Requests decided by the in-process fallback.
    pub fallback_admissions_total: u64,
    /// Requests refused because Redis was down ([`OnRedisDown::Refuse`]).
    pub refused_total: u64,
    /// Settlements given up: their call failed or timed out (Redis may or may not have applied
    /// it), or too many were waiting during an outage. Their leases expire after `lease_ttl`.
    pub dropped_settlements_total: u64,
    /// Settlements waiting for Redis to come back.
    pub deferred_settlements: u64,
}

#[derive(Default)]
struct Health {
    down: AtomicBool,
    down_since_ns: AtomicU64,
    outages_total: AtomicU64,
    recoveries_total: AtomicU64,
    errors_total: AtomicU64,
    timeouts_total: AtomicU64,
    fallback_admissions_total: AtomicU64,
    refused_total: AtomicU64,
    dropped_settlements_total: AtomicU64,
    deferred_settlements: AtomicU64,
}

impl Health {
    fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    fn record_call_failure(&self, failure: CallFailure, now_ns: u64) {
        if failure == CallFailure::Timeout {
            self.timeouts_total.fetch_add(1, Ordering::Relaxed);
        }
        self.record_failure(now_ns);
    }

    fn record_failure(&self, now_ns: u64) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::AcqRel) {
            self.down_since_ns.store(now_ns, Ordering::Release);
            self.outages_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record_recovery(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            self.recoveries_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn down_for(&self, now_ns: u64) -> Duration {
        Duration::from_nanos(now_ns.saturating_sub(self.down_since_ns.load(Ordering::Acquire)))
    }
}

/// Cluster-wide limiter. Cheap to clone; clones share the connection, fallback and tasks.
///
/// Must be created inside a Tokio runtime: it runs a settlement task and a probe task.
#[derive(Clone)]
pub struct RedisLimiter {
    shared: Arc<RedisShared>,
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RedisLimiter")
            .field("config", &self.shared.config)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

struct RedisShared {
    config: RedisLimiterConfig,
    client: Client,
    connection: Arc<ArcSwapOption<ConnectionManager>>,
    admit_script: Script,
    local: InProcessLimiter,
    clock: Arc<dyn Clock>,
    health: Arc<Health>,
    settlements: mpsc::UnboundedSender<Job>,
    /// Unique per limiter instance; with `lease_counter` it names concurrency leases.
    instance: u64,
    lease_counter: AtomicU64,
    stop: AtomicBool,
    wake_prober: Arc<Notify>,
    prober: Mutex<Option<JoinHandle<()>>>,
}

enum Job {
    Settle(SettleCall),
    Flush(oneshot::Sender<()>),
    /// Redis is back: send deferred settlements now.
    Retry,
}

struct SettleCall {
    keys: Box<SubjectKeys>,
    /// The admission's time in µs (settlement is booked then).
    admitted_at_us: u64,
    lease: String,
    /// Per subject: active, token time delta in µs.
    subjects: [(bool, i64); 2],
}

#[derive(Default)]
struct SubjectKeys {
    tenant_state: String,
    tenant_leases: String,
    key_state: String,
    key_leases: String,
}

/// Per-subject numbers sent to the admission script, derived from a [`LimitSpec`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ScriptLimits {
    active: bool,
    request_interval_us: u64,
    request_tolerance_us: u64,
    request_burst: u64,
    token_tolerance_us: u64,
    tokens_per_window: u64,
    token_cost_us: i64,
    max_concurrent: u32,
}

impl ScriptLimits {
    fn new(spec: &LimitSpec, reserve_tokens: u64) -> Self {
        if spec.is_unlimited() {
            return Self::default();
        }
        let window_us = spec.window_ns() / 1_000;
        let (request_interval_us, request_tolerance_us, request_burst) =
            match (spec.requests_per_window(), spec.request_burst()) {
                (Some(per_window), Some(burst)) => {
                    let interval = window_us.div_ceil(per_window).max(1);
                    (interval, interval.saturating_mul(burst), burst)
                }
                _ => (0, 0, 0),
            };
        let (token_tolerance_us, tokens_per_window, token_cost_us) = match spec.tokens_per_window()
        {
            Some(per_window) if reserve_tokens > per_window => (window_us, per_window, -1),
            Some(per_window) => (
                window_us,
                per_window,
                tokens_to_us_ceil(reserve_tokens, window_us, per_window),
            ),
            None => (0, 0, 0),
        };
        Self {
            active: true,
            request_interval_us,
            request_tolerance_us,
            request_burst,
            token_tolerance_us,
            tokens_per_window,
            token_cost_us,
            max_concurrent: spec.max_concurrent().unwrap_or(0),
        }
    }

    fn snapshots(
        &self,
        request_used_us: i64,
        token_used_us: i64,
    ) -> (Option<LimitSnapshot>, Option<LimitSnapshot>) {
        if !self.active {
            return (None, None);
        }
        let requests = (self.request_interval_us > 0).then(|| {
            let used = u64::try_from(request_used_us).unwrap_or(0);
            LimitSnapshot {
                limit: self.request_burst,
                remaining: self.request_tolerance_us.saturating_sub(used)
                    / self.request_interval_us,
                reset: Duration::from_micros(used),
            }
        });
        let tokens = (self.token_tolerance_us > 0).then(|| {
            let used = u64::try_from(token_used_us).unwrap_or(0);
            let left_us = self.token_tolerance_us.saturating_sub(used);
            let remaining = u128::from(left_us) * u128::from(self.tokens_per_window)
                / u128::from(self.token_tolerance_us);
            LimitSnapshot {
                limit: self.tokens_per_window,
                remaining: u64::try_from(remaining).unwrap_or(u64::MAX),
                reset: Duration::from_micros(used),
            }
        });
        (requests, tokens)
    }
}

/// Microseconds of window that `tokens` represent, rounded up (charges).
fn tokens_to_us_ceil(tokens: u64, window_us: u64, per_window: u64) -> i64 {
    let scaled = (u128::from(tokens) * u128::from(window_us)).div_ceil(u128::from(per_window));
    i64::try_from(scaled).unwrap_or(i64::MAX)
}

/// Microseconds of window that `tokens` represent, rounded down (refunds).
fn tokens_to_us_floor(tokens: u64, window_us: u64, per_window: u64) -> i64 {
    let scaled = u128::from(tokens) * u128::from(window_us) / u128::from(per_window);
    i64::try_from(scaled).unwrap_or(i64::MAX)
}

impl RedisLimiter {
    /// Creates the limiter and tries to connect once (bounded by `connect_timeout`). An
    /// unreachable Redis is not an error: the limiter starts in fallback mode and the probe task
    /// keeps trying. Only an unparsable URL or an unusable setting fails.
    pub async fn connect(
        config: RedisLimiterConfig,
        clock: impl Clock + Clone,
    ) -> Result<Self, RedisConfigError> {
        config.validate()?;
        let client = Client::open(config.url.as_str())
            .map_err(|source| RedisConfigError::InvalidUrl { source })?;
        let (settlements, receiver) = mpsc::unbounded_channel();
        let health = Arc::new(Health::default());
        let connection = Arc::new(ArcSwapOption::empty());
        let random = std::collections::hash_map::RandomState::new();
        let shared = Arc::new(RedisShared {
            local: InProcessLimiter::with_options(clock.clone(), config.local),
            clock: Arc::new(clock),
            client,
            connection: Arc::clone(&connection),
            admit_script: Script::new(include_str!("lua/admit.lua")),
            health: Arc::clone(&health),
            settlements,
            instance: random.hash_one((std::process::id(), config.key_prefix.as_str())),
            lease_counter: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            wake_prober: Arc::new(Notify::new()),
            prober: Mutex::new(None),
            config,
        });
        tokio::spawn(settle_worker(
            receiver,
            connection,
            Arc::clone(&health),
            Arc::clone(&shared.clock),
            shared.config.command_timeout,
        ));
        if !shared.reconnect().await {
            health.record_failure(shared.clock.now_ns());
        }
        let prober = tokio::spawn(probe_loop(
            Arc::downgrade(&shared),
            Arc::clone(&shared.wake_prober),
            shared.config.probe_interval,
        ));
        *shared.prober.lock().unwrap_or_else(PoisonError::into_inner) = Some(prober);
        Ok(Self { shared })
    }

    /// Admits or rejects one request across the cluster: one script call, or the fallback when
    /// Redis is marked down or this call fails.
    ///
    /// A request whose tenant and key have no limits at all never touches Redis.
    pub async fn admit(&self, request: &AdmissionRequest<'_>) -> Result<Admission, AdmissionError> {
        let shared = &self.shared;
        let unlimited = request.tenant.limits.is_unlimited()
            && request.key.is_none_or(|key| key.limits.is_unlimited());
        if unlimited {
            // Keeps no state and cannot be rejected.
            return Ok(shared.local.admit(request)?);
        }
        if !shared.health.is_down()
            && let Some(connection) = shared.connection.load_full()
        {
            match shared.admit_remote(&connection, request).await {
                Ok(decision) => return decision.map_err(AdmissionError::from),
                Err(failure) => shared
                    .health
                    .record_call_failure(failure, shared.clock.now_ns()),
            }
        }
        shared.fallback(request)
    }

    /// Current health and counters.
    pub fn health(&self) -> RedisHealth {
        let health = &self.shared.health;
        let fallback_active = health.is_down();
        RedisHealth {
            fallback_active,
            down_for: fallback_active.then(|| health.down_for(self.shared.clock.now_ns())),
            outages_total: health.outages_total.load(Ordering::Relaxed),
            recoveries_total: health.recoveries_total.load(Ordering::Relaxed),
            errors_total: health.errors_total.load(Ordering::Relaxed),
            timeouts_total: health.timeouts_total.load(Ordering::Relaxed),
            fallback_admissions_total: health.fallback_admissions_total.load(Ordering::Relaxed),
            refused_total: health.refused_total.load(Ordering::Relaxed),
            dropped_settlements_total: health.dropped_settlements_total.load(Ordering::Relaxed),
            deferred_settlements: health.deferred_settlements.load(Ordering::Relaxed),
        }
    }

    /// The in-process limiter used while Redis is down.
    pub fn fallback_limiter(&self) -> &InProcessLimiter {
        &self.shared.local
    }

    /// Waits until every settlement queued so far has been sent (or dropped because Redis is
    /// down). For graceful shutdown and tests.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.shared.settlements.send(Job::Flush(done)).is_ok() {
            // An error means the worker is gone, so nothing is pending either.
            let _ = wait.await;
        }
    }

    /// Flushes settlements and stops the probe task. The limiter keeps working afterwards but
    /// no longer recovers from an outage by itself.
    pub async fn shutdown(&self) {
        self.flush().await;
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake_prober.notify_one();
        let prober = self
            .shared
            .prober
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(prober) = prober {
            // A join error only means the task was cancelled with the runtime.
            let _ = prober.await;
        }
    }
}

impl RedisShared {
    fn fallback(&self, request: &AdmissionRequest<'_>) -> Result<Admission, AdmissionError> {
        match self.config.on_redis_down {
            OnRedisDown::Local => {
                self.health
                    .fallback_admissions_total
                    .fetch_add(1, Ordering::Relaxed);
                Ok(self.local.admit(request)?)
            }
            OnRedisDown::Refuse => {
                self.health.refused_total.fetch_add(1, Ordering::Relaxed);
                Err(AdmissionError::Unavailable(RedisUnavailable {
                    down_for: self.health.down_for(self.clock.now_ns()),
                }))
            }
        }
    }

    fn now_us(&self) -> Option<u64> {
        match self.config.time {
            RedisTime::Server => None,
            RedisTime::Client => Some(self.clock.now_ns() / 1_000),
        }
    }

    fn keys(&self, tenant: Subject<'_>, key: Option<Subject<'_>>) -> Box<SubjectKeys> {
        let prefix = &self.config.key_prefix;
        let tenant_state = format!("{prefix}{{{}}}:t", tenant.id);
        let tenant_leases = format!("{tenant_state}:c");
        let (key_state, key_leases) = match key {
            Some(key) => {
                let state = format!("{prefix}{{{}}}:k:{}", tenant.id, key.id);
                let leases = format!("{state}:c");
                (state, leases)
            }
            // Unused by the scripts (the subject is inactive) but must share the hash tag.
            None => (tenant_state.clone(), tenant_leases.clone()),
        };
        Box::new(SubjectKeys {
            tenant_state,
            tenant_leases,
            key_state,
            key_leases,
        })
    }

    /// One script call; the caller counts failures.
    async fn admit_remote(
        self: &Arc<Self>,
        connection: &ConnectionManager,
        request: &AdmissionRequest<'_>,
    ) -> Result<Result<Admission, Rejection>, CallFailure> {
        let tenant = ScriptLimits::new(request.tenant.limits, request.reserve_tokens);
        let key = request.key.map_or_else(ScriptLimits::default, |key| {
            ScriptLimits::new(key.limits, request.reserve_tokens)
        });
        let keys = self.keys(request.tenant, request.key);
        let lease = format!(
            "{:016x}-{:x}",
            self.instance,
            self.lease_counter.fetch_add(1, Ordering::Relaxed)
        );
        let lease_ttl_us = u64::try_from(self.config.lease_ttl.as_micros()).unwrap_or(u64::MAX);

        let mut invocation = self.admit_script.prepare_invoke();
        invocation
            .key(&keys.tenant_state)
            .key(&keys.tenant_leases)
            .key(&keys.key_state)
            .key(&keys.key_leases);
        match self.now_us() {
            Some(now_us) => invocation.arg(now_us),
            None => invocation.arg(""),
        };
        invocation.arg(&lease).arg(lease_ttl_us);
        for limits in [&tenant, &key] {
            invocation
                .arg(if limits.active { "1" } else { "0" })
                .arg(limits.request_interval_us)
                .arg(limits.request_tolerance_us)
                .arg(limits.token_tolerance_us)
                .arg(limits.token_cost_us)
                .arg(limits.max_concurrent);
        }
        let mut connection = connection.clone();
        let call = invocation.invoke_async::<Vec<i64>>(&mut connection);
        let reply = match tokio::time::timeout(self.config.command_timeout, call).await {
            Ok(Ok(reply)) if reply.len() == 9 => reply,
            Ok(Ok(_)) => return Err(CallFailure::UnexpectedReply),
            Ok(Err(_)) => return Err(CallFailure::Redis),
            Err(_) => return Err(CallFailure::Timeout),
        };

        let mut headers = RateLimitHeaders::default();
        let (requests, tokens) = tenant.snapshots(reply[4], reply[5]);
        headers.merge(requests, tokens);
        let (requests, tokens) = key.snapshots(reply[6], reply[7]);
        headers.merge(requests, tokens);

        if reply[0] != 1 {
            let subject = if reply[1] == 1 {
                SubjectKind::Key
            } else {
                SubjectKind::Tenant
            };
            let retry_us = u64::try_from(reply[3]).ok();
            let (limit, retry_after) = match reply[2] {
                1 => (LimitKind::Requests, retry_us.map(Duration::from_micros)),
                2 => (LimitKind::Tokens, retry_us.map(Duration::from_micros)),
                4 => (LimitKind::Tokens, None),
                _ => (LimitKind::Concurrency, Some(CONCURRENCY_RETRY_AFTER)),
            };
            return Ok(Err(Rejection {
                subject,
                limit,
                retry_after,
                headers,
            }));
        }

        let token_params = |limits: &ScriptLimits| {
            (
                limits.active,
                limits.token_tolerance_us,
                limits.tokens_per_window,
            )
        };
        Ok(Ok(Admission {
            headers,
            reserved_tokens: request.reserve_tokens,
            permit: Permit::Redis(Box::new(RedisPermit {
                shared: Arc::clone(self),
                keys,
                lease,
                subjects: [token_params(&tenant), token_params(&key)],
                reserved: request.reserve_tokens,
                admitted_at_us: u64::try_from(reply[8]).unwrap_or(0),
                finished: false,
            })),
        }))
    }

    /// Replaces the connection with a fresh one if Redis answers a PING in time.
    async fn reconnect(&self) -> bool {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.command_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(self.config.probe_interval);
        let budget = self.config.connect_timeout + self.config.command_timeout;
        let attempt = async {
            let mut connection =
                ConnectionManager::new_with_config(self.client.clone(), config).await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await?;
            Ok::<_, redis::RedisError>(connection)
        };
        match tokio::time::timeout(budget, attempt).await {
            Ok(Ok(connection)) => {
                self.connection.store(Some(Arc::new(connection)));
                true
            }
            _ => false,
        }
    }
}

/// Reconnects while Redis is marked down; idle (one timer tick per interval) otherwise.
///
/// Holds only a weak reference between ticks, so dropping the last limiter handle ends it.
async fn probe_loop(shared: Weak<RedisShared>, wake: Arc<Notify>, interval: Duration) {
    loop {
        // A wake-up only comes from `shutdown`; the stop flag is checked right after.
        let _ = tokio::time::timeout(interval, wake.notified()).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if shared.health.is_down() && shared.reconnect().await {
            shared.health.record_recovery();
            // Wake the settlement task so deferred settlements go out without waiting for
            // traffic; an error means it is gone and nothing is deferred.
            let _ = shared.settlements.send(Job::Retry);
        }
    }
}

/// Settlements kept while Redis is down, sent once it is back. Beyond this many they are
/// dropped: their leases expire after `lease_ttl` and their token reservations stay booked,
/// which errs on the strict side.
const MAX_DEFERRED_SETTLEMENTS: usize = 100_000;

/// Settlements sent concurrently over the multiplexed connection at a time.
const SETTLE_CHUNK: usize = 512;

/// Sends queued settlements, many at once over the multiplexed connection.
///
/// While Redis is marked down, settlements are deferred and sent after recovery. A settlement
/// whose call failed or timed out is not retried: Redis may have applied it, and applying a
/// refund twice would let a tenant overshoot.
async fn settle_worker(
    mut receiver: mpsc::UnboundedReceiver<Job>,
    connection: Arc<ArcSwapOption<ConnectionManager>>,
    health: Arc<Health>,
    clock: Arc<dyn Clock>,
    command_timeout: Duration,
) {
    let script = Script::new(include_str!("lua/settle.lua"));
    let mut batch = Vec::with_capacity(SETTLE_CHUNK);
    let mut flushed = Vec::new();
    let mut deferred: VecDeque<SettleCall> = VecDeque::new();
    while receiver.recv_many(&mut batch, SETTLE_CHUNK).await > 0 {
        for job in batch.drain(..) {
            match job {
                Job::Flush(done) => flushed.push(done),
                Job::Retry => {}
                Job::Settle(call) => deferred.push_back(call),
            }
        }
        let current = connection.load_full();
        match current {
            Some(connection) if !health.is_down() => {
                while !deferred.is_empty() && !health.is_down() {
                    let take = deferred.len().min(SETTLE_CHUNK);
                    let mut calls: FuturesUnordered<_> = deferred
                        .drain(..take)
                        .map(|call| {
                            let mut connection = ConnectionManager::clone(&connection);
                            let script = &script;
                            async move {
                                let invocation = settle_invocation(script, &call);
                                let sent = invocation.invoke_async::<i64>(&mut connection);
                                match tokio::time::timeout(command_timeout, sent).await {
                                    Ok(Ok(_)) => None,
                                    Ok(Err(_)) => Some(CallFailure::Redis),
                                    Err(_) => Some(CallFailure::Timeout),
                                }
                            }
                        })
                        .collect();
                    while let Some(outcome) = calls.next().await {
                        if let Some(failure) = outcome {
                            health
                                .dropped_settlements_total
                                .fetch_add(1, Ordering::Relaxed);
                            health.record_call_failure(failure, clock.now_ns());
                        }
                    }
                }
            }
            _ => {
                // Keep them (bounded) until the probe task reports recovery.
                let overflow = deferred.len().saturating_sub(MAX_DEFERRED_SETTLEMENTS);
                deferred.drain(..overflow);
                health
                    .dropped_settlements_total
                    .fetch_add(overflow as u64, Ordering::Relaxed);
            }
        }
        health
            .deferred_settlements
            .store(deferred.len() as u64, Ordering::Relaxed);
        for done in flushed.drain(..) {
            // The flusher may have given up waiting; nothing to do then.
            let _ = done.send(());
        }
    }
}

fn settle_invocation<'a>(script: &'a Script, call: &SettleCall) -> redis::ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    invocation
        .key(&call.keys.tenant_state)
        .key(&call.keys.tenant_leases)
        .key(&call.keys.key_state)
        .key(&call.keys.key_leases);
    invocation.arg(call.admitted_at_us).arg(&call.lease);
    for (active, delta_us) in call.subjects {
        invocation.arg(if active { "1" } else { "0" }).arg(delta_us);
    }
    invocation
}

/// The Redis part of an [`Admission`].
pub(crate) struct RedisPermit {
    shared: Arc<RedisShared>,
    keys: Box<SubjectKeys>,
    lease: String,
    /// Per subject: active, token window in µs (0: no token limit), tokens per window.
    subjects: [(bool, u64, u64); 2],
    reserved: u64,
    /// Time of admission as the script saw it; settlement is booked at that time, like the
    /// in-process limiter does.
    admitted_at_us: u64,
    finished: bool,
}

impl RedisPermit {
    /// Queues the settlement (`Some(actual)`) or the release of everything (`None`).
    pub(crate) fn finish(&mut self, actual_tokens: Option<u64>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let actual = actual_tokens.unwrap_or(0);
        let reserved = self.reserved;
        let delta = |(active, window_us, per_window): (bool, u64, u64)| {
            if !active || window_us == 0 || per_window == 0 {
                return (active, 0);
            }
            let delta_us = if actual >= reserved {
                tokens_to_us_ceil(actual - reserved, window_us, per_window)
            } else {
                -tokens_to_us_floor(reserved - actual, window_us, per_window)
            };
            (active, delta_us)
        };
        let call = SettleCall {
            keys: std::mem::take(&mut self.keys),
            admitted_at_us: self.admitted_at_us,
            lease: std::mem::take(&mut self.lease),
            subjects: [delta(self.subjects[0]), delta(self.subjects[1])],
        };
        if self.shared.settlements.send(Job::Settle(call)).is_err() {
            self.shared
                .health
                .dropped_settlements_total
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for RedisPermit {
    fn drop(&mut self) {
        self.finish(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LimitSpecConfig;

    #[test]
    fn script_limits_round_intervals_up_and_flag_oversized_reservations() {
        let spec = LimitSpec::new(LimitSpecConfig {
            requests_per_window: Some(7),
            tokens_per_window: Some(1_000),
            max_concurrent: Some(3),
            burst_factor: 1.5,
            window: Duration::from_secs(60),
        });
        let Ok(spec) = spec else {
            panic!("valid spec refused: {spec:?}");
        };
        let limits = ScriptLimits::new(&spec, 10);
        assert!(limits.active);
        assert_eq!(limits.request_interval_us, 8_571_429);
        assert_eq!(limits.request_burst, 11);
        assert_eq!(limits.request_tolerance_us, 11 * 8_571_429);
        assert_eq!(limits.token_tolerance_us, 60_000_000);
        assert_eq!(limits.token_cost_us, 600_000);
        assert_eq!(limits.max_concurrent, 3);
        assert_eq!(ScriptLimits::new(&spec, 1_001).token_cost_us, -1);
        assert!(!ScriptLimits::new(&LimitSpec::unlimited(), 10).active);

        let (requests, tokens) = limits.snapshots(2 * 8_571_429, 600_000);
        assert_eq!(requests.map(|s| s.remaining), Some(9));
        assert_eq!(tokens.map(|s| s.remaining), Some(990));
        assert_eq!(tokens.map(|s| s.reset), Some(Duration::from_millis(600)));
    }

    #[test]
    fn unusable_settings_are_refused_by_name() {
        let mut config = RedisLimiterConfig::new("redis://127.0.0.1:6379");
        assert!(config.validate().is_ok());
        config.command_timeout = Duration::ZERO;
        assert!(matches!(
            config.validate(),
            Err(RedisConfigError::InvalidSetting {
                field: "command_timeout",
                ..
            })
        ));
        let mut config = RedisLimiterConfig::new("redis://127.0.0.1:6379");
        config.lease_ttl = Duration::from_millis(10);
        assert!(matches!(
            config.validate(),
            Err(RedisConfigError::InvalidSetting {
                field: "lease_ttl",
                ..
            })
        ));
        // The URL may carry a password: Debug must not show it.
        let secret = RedisLimiterConfig::new("redis://:hunter2@127.0.0.1:6379");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn the_limiter_types_can_cross_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RedisLimiter>();
        assert_send_sync::<crate::Limiter>();
        assert_send_sync::<Admission>();
        assert_send_sync::<crate::AdmissionError>();
    }

    proptest::proptest! {
        #[test]
        fn microsecond_rounding_never_favours_the_client(
            reserved in 0u64..10_000_000,
            actual in 0u64..10_000_000,
            per_window in 1u64..1_000_000_000,
            window_us in 1_000u64..604_800_000_000,
        ) {
            let exact = |tokens: u64| u128::from(tokens) * u128::from(window_us);
            let per = u128::from(per_window);
            // Charges are at least the exact amount, refunds at most.
            let charged = u128::try_from(tokens_to_us_ceil(actual, window_us, per_window)).unwrap_or(0);
            proptest::prop_assert!(charged * per >= exact(actual));
            let refunded = u128::try_from(tokens_to_us_floor(actual, window_us, per_window)).unwrap_or(u128::MAX);
            proptest::prop_assert!(refunded * per <= exact(actual));
            // Reserving and settling never books less than the actual usage.
            let booked = i128::from(tokens_to_us_ceil(reserved, window_us, per_window))
                + if actual >= reserved {
                    i128::from(tokens_to_us_ceil(actual - reserved, window_us, per_window))
                } else {
                    -i128::from(tokens_to_us_floor(reserved - actual, window_us, per_window))
                };
            proptest::prop_assert!(booked >= 0);
            proptest::prop_assert!(u128::try_from(booked).unwrap_or(0) * per >= exact(actual));
        }
    }

    #[test]
    fn token_conversions_charge_up_and_refund_down() {
        assert_eq!(tokens_to_us_ceil(1, 60_000_000, 7), 8_571_429);
        assert_eq!(tokens_to_us_floor(1, 60_000_000, 7), 8_571_428);
        assert_eq!(tokens_to_us_ceil(7, 60_000_000, 7), 60_000_000);
        assert_eq!(tokens_to_us_floor(7, 60_000_000, 7), 60_000_000);
    }
}
