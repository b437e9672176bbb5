//! flowgate-ratelimit: admission control (rate limits, token quotas, concurrency) for tenants
//! and API keys, in process or cluster-wide through Redis.
//!
//! Owns the limit arithmetic, the two backends and the admission guard. Leaves out where limits
//! come from (config, admin API), HTTP (the gateway renders [`RateLimitHeaders`] and maps
//! [`AdmissionError`] to 429/503) and metrics export (the gateway reads
//! [`RedisLimiter::health`]).
//!
//! # Use from the gateway
//!
//! Build a [`LimitSpec`] per tenant and per key when their config is loaded (not per request),
//! build one [`Limiter`] at startup, then on every request:
//!
//! 1. [`Limiter::admit`] with an [`AdmissionRequest`] naming the tenant and key with their specs
//!    and the tokens to reserve (estimated prompt tokens + `max_tokens`).
//! 2. `Err(AdmissionError::Rejected(r))`: answer 429 with `Retry-After: r.retry_after` and
//!    `r.headers`. `Err(AdmissionError::Unavailable(_))`: answer 503 (Redis down in
//!    [`OnRedisDown::Refuse`] mode).
//! 3. `Ok(admission)`: add `admission.headers()` to the answer, keep `admission` alive for the
//!    whole request (including the stream), then [`Admission::settle`] it with the upstream's
//!    reported total tokens. If the request fails or the client goes away, just drop it: the
//!    concurrency slot and the whole reservation are released.
//!
//! ```
//! use std::time::Duration;
//! use flowgate_ratelimit::{
//!     AdmissionRequest, InProcessLimiter, LimitKind, LimitSpec, LimitSpecConfig, ManualClock,
//!     Subject,
//! };
//!
//! // Once, when the tenant's config is loaded.
//! let tenant_limits = LimitSpec::new(LimitSpecConfig {
//!     requests_per_window: Some(2),
//!     tokens_per_window: Some(10_000),
//!     max_concurrent: Some(8),
//!     burst_factor: 1.0,
//!     window: Duration::from_secs(60),
//! })?;
//! let limiter = InProcessLimiter::new(ManualClock::new(0));
//!
//! // Per request.
//! let request = AdmissionRequest {
//!     tenant: Subject { id: "tenant-1", limits: &tenant_limits },
//!     key: None,
//!     reserve_tokens: 1_500, // estimated prompt tokens + max_tokens
//! };
//! let admission = limiter.admit(&request).map_err(|rejection| rejection.to_string())?;
//! let tokens = admission.headers().tokens.map(|t| (t.limit, t.remaining));
//! assert_eq!(tokens, Some((10_000, 8_500)));
//! let requests = admission.headers().requests.map(|r| r.reset_display().to_string());
//! assert_eq!(requests.as_deref(), Some("30s")); // x-ratelimit-reset-requests
//! let settlement = admission.settle(600); // usage reported by the upstream
//! assert_eq!(settlement.refunded(), 900);
//!
//! let _second = limiter.admit(&request).map_err(|rejection| rejection.to_string())?;
//! let third = limiter.admit(&request).err().map(|r| (r.limit, r.retry_after));
//! assert_eq!(third, Some((LimitKind::Requests, Some(Duration::from_secs(30)))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics
//!
//! - Requests: GCRA with `requests_per_window` refilling evenly over `window`, and
//!   `ceil(requests_per_window * burst_factor)` allowed at once after an idle period.
//! - Tokens: GCRA in token units, `tokens_per_window` per `window`, capacity one window. A
//!   reservation above the capacity is refused with no `retry_after`. Usage above the
//!   reservation is charged (the bucket can go into debt, delaying later requests).
//! - Concurrency: requests holding an [`Admission`].
//! - The tenant's and the key's limits are checked and reserved together, atomically; a request
//!   is admitted only if every limit of both allows it.

mod admission;
mod clock;
mod cluster;
mod gcra;
mod local;
mod spec;

pub use admission::{
    Admission, AdmissionRequest, Backend, CONCURRENCY_RETRY_AFTER, LimitKind, LimitSnapshot,
    RateLimitHeaders, Rejection, ResetDisplay, Settlement, Subject, SubjectKind,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cluster::{
    OnRedisDown, RedisConfigError, RedisHealth, RedisLimiter, RedisLimiterConfig, RedisTime,
    RedisUnavailable,
};
pub use local::{InProcessLimiter, LocalOptions};
pub use spec::{
    LimitSpec, LimitSpecConfig, LimitSpecError, MAX_BURST_FACTOR, MAX_LIMIT, MAX_WINDOW, MIN_WINDOW,
};

/// Why [`Limiter::admit`] did not admit a request.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// A limit refused the request (HTTP 429).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Redis is unreachable and the limiter is configured to refuse (HTTP 503).
    #[error(transparent)]
    Unavailable(#[from] RedisUnavailable),
}

/// The limiter the gateway holds: in process, or cluster-wide through Redis.
#[derive(Debug, Clone)]
pub enum Limiter {
    /// Limits per process (no Redis configured).
    InProcess(InProcessLimiter),
    /// Limits shared by every replica through Redis.
    Redis(RedisLimiter),
}

impl Limiter {
    /// Admits or rejects one request; see the crate docs for what to do with the result.
    ///
    /// The in-process variant never awaits; the Redis variant does one round trip (bounded by
    /// [`RedisLimiterConfig::command_timeout`]) unless Redis is known to be down.
    pub async fn admit(&self, request: &AdmissionRequest<'_>) -> Result<Admission, AdmissionError> {
        match self {
            Self::InProcess(limiter) => Ok(limiter.admit(request)?),
            Self::Redis(limiter) => limiter.admit(request).await,
        }
    }

    /// Health of the Redis backend (`None` for the in-process limiter), for metrics.
    pub fn redis_health(&self) -> Option<RedisHealth> {
        match self {
            Self::InProcess(_) => None,
            Self::Redis(limiter) => Some(limiter.health()),
        }
    }

    /// Sends pending settlements and stops background tasks; call at graceful shutdown.
    pub async fn shutdown(&self) {
        if let Self::Redis(limiter) = self {
            limiter.shutdown().await;
        }
    }
}
