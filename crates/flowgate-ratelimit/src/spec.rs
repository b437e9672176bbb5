//! Validated limits for one subject (a tenant or an API key).
//!
//! Owns [`LimitSpec`], built once from raw numbers (config defaults such as
//! `RATE_LIMIT_DEFAULT_RPM`, `RATE_LIMIT_BURST_FACTOR`, `RATE_LIMIT_WINDOW_SECONDS`, or the admin
//! API overrides) and then reused on every request, so the hot path does no float math or
//! validation. Leaves out where the numbers come from (config and storage crates).

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use crate::clock::saturating_ns;

/// Largest accepted per-window request or token limit. Keeps every intermediate of the exact
/// integer arithmetic in `u128` and every Redis value exact in a Lua double.
pub const MAX_LIMIT: u64 = 1_000_000_000_000_000;
/// Largest accepted burst factor.
pub const MAX_BURST_FACTOR: f64 = 1_000.0;
/// Shortest accepted window.
pub const MIN_WINDOW: Duration = Duration::from_millis(1);
/// Longest accepted window (seven days).
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Raw, unvalidated limits; convert with [`LimitSpec::new`].
///
/// `None` means "no limit of this kind".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSpecConfig {
    /// Requests allowed per `window` at the steady rate.
    pub requests_per_window: Option<u64>,
    /// Tokens (prompt + completion) allowed per `window`.
    pub tokens_per_window: Option<u64>,
    /// Requests allowed in flight at once.
    pub max_concurrent: Option<u32>,
    /// Multiplier on `requests_per_window` giving how many requests may arrive at once after an
    /// idle period: burst = ceil(requests_per_window * burst_factor). At least 1.0.
    pub burst_factor: f64,
    /// Length of the rate window (a minute unless `RATE_LIMIT_WINDOW_SECONDS` says otherwise).
    pub window: Duration,
}

impl Default for LimitSpecConfig {
    fn default() -> Self {
        Self {
            requests_per_window: None,
            tokens_per_window: None,
            max_concurrent: None,
            burst_factor: 1.0,
            window: Duration::from_secs(60),
        }
    }
}

/// Why a [`LimitSpecConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitSpecError {
    /// A limit of zero would refuse everything; leave it unset for "unlimited" or disable the
    /// subject elsewhere.
    #[error("{field} must be at least 1 (leave it unset for no limit)")]
    Zero {
        /// Name of the offending field.
        field: &'static str,
    },
    /// A limit above [`MAX_LIMIT`].
    #[error("{field} = {value} is above the maximum of {max}")]
    TooLarge {
        /// Name of the offending field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// Burst factor not finite, below 1.0 or above [`MAX_BURST_FACTOR`].
    #[error("burst_factor = {value} must be between 1.0 and {MAX_BURST_FACTOR}")]
    BurstFactor {
        /// The value given.
        value: f64,
    },
    /// Window outside [`MIN_WINDOW`]..=[`MAX_WINDOW`].
    #[error("window = {window:?} must be between {MIN_WINDOW:?} and {MAX_WINDOW:?}")]
    Window {
        /// The value given.
        window: Duration,
    },
}

/// Validated limits for one subject, with the derived values the limiters need precomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSpec {
    requests_per_window: Option<NonZeroU64>,
    /// ceil(requests_per_window * burst_factor), at least `requests_per_window`.
    request_burst: u64,
    tokens_per_window: Option<NonZeroU64>,
    max_concurrent: Option<NonZeroU32>,
    /// Burst factor in millionths, kept for display and equality.
    burst_factor_micros: u64,
    window_ns: u64,
}

impl LimitSpec {
    /// Validates raw limits.
    pub fn new(config: LimitSpecConfig) -> Result<Self, LimitSpecError> {
        let requests_per_window = check_limit("requests_per_window", config.requests_per_window)?;
        let tokens_per_window = check_limit("tokens_per_window", config.tokens_per_window)?;
        let max_concurrent = match config.max_concurrent {
            None => None,
            Some(value) => Some(NonZeroU32::new(value).ok_or(LimitSpecError::Zero {
                field: "max_concurrent",
            })?),
        };
        let factor = config.burst_factor;
        if !factor.is_finite() || !(1.0..=MAX_BURST_FACTOR).contains(&factor) {
            return Err(LimitSpecError::BurstFactor { value: factor });
        }
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&config.window) {
            return Err(LimitSpecError::Window {
                window: config.window,
            });
        }
        // Rounding to millionths first makes 1.1 mean exactly 11/10, so a factor that prints as
        // a round number never gains an extra request from binary float error.
        // The factor is finite and within 1.0..=1000.0, so the product fits in u64 exactly.
        let burst_factor_micros = (factor * 1_000_000.0).round() as u64;
        let request_burst = requests_per_window.map_or(0, |rpw| {
            let scaled = u128::from(rpw.get()) * u128::from(burst_factor_micros);
            let burst = scaled.div_ceil(1_000_000);
            u64::try_from(burst).unwrap_or(u64::MAX).max(rpw.get())
        });
        Ok(Self {
            requests_per_window,
            request_burst,
            tokens_per_window,
            max_concurrent,
            burst_factor_micros,
            window_ns: saturating_ns(config.window),
        })
    }

    /// No limits at all (the subject is only tracked if another subject of the request is).
    pub fn unlimited() -> Self {
        Self {
            requests_per_window: None,
            request_burst: 0,
            tokens_per_window: None,
            max_concurrent: None,
            burst_factor_micros: 1_000_000,
            window_ns: 60_000_000_000,
        }
    }

    /// Requests per window at the steady rate.
    pub fn requests_per_window(&self) -> Option<u64> {
        self.requests_per_window.map(NonZeroU64::get)
    }

    /// Requests that may arrive at once: ceil(requests_per_window * burst_factor).
    pub fn request_burst(&self) -> Option<u64> {
        self.requests_per_window.map(|_| self.request_burst)
    }

    /// Tokens per window.
    pub fn tokens_per_window(&self) -> Option<u64> {
        self.tokens_per_window.map(NonZeroU64::get)
    }

    /// Requests in flight at once.
    pub fn max_concurrent(&self) -> Option<u32> {
        self.max_concurrent.map(NonZeroU32::get)
    }

    /// The burst factor as given (rounded to millionths).
    pub fn burst_factor(&self) -> f64 {
        // At most 1e9, so exactly representable.
        let micros = self.burst_factor_micros as f64;
        micros / 1_000_000.0
    }

    /// The rate window.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_ns)
    }

    pub(crate) fn window_ns(&self) -> u64 {
        self.window_ns
    }

    /// True when no limit of any kind is set, so the subject needs no state.
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_window.is_none()
            && self.tokens_per_window.is_none()
            && self.max_concurrent.is_none()
    }
}

fn check_limit(
    field: &'static str,
    value: Option<u64>,
) -> Result<Option<NonZeroU64>, LimitSpecError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value > MAX_LIMIT {
        return Err(LimitSpecError::TooLarge {
            field,
            value,
            max: MAX_LIMIT,
        });
    }
    NonZeroU64::new(value)
        .map(Some)
        .ok_or(LimitSpecError::Zero { field })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rpm: u64, factor: f64) -> Result<LimitSpec, LimitSpecError> {
        LimitSpec::new(LimitSpecConfig {
            requests_per_window: Some(rpm),
            burst_factor: factor,
            ..LimitSpecConfig::default()
        })
    }

    #[test]
    fn burst_is_ceil_of_rate_times_factor_without_float_error() {
        assert_eq!(spec(50, 1.0).map(|s| s.request_burst()), Ok(Some(50)));
        assert_eq!(spec(50, 1.5).map(|s| s.request_burst()), Ok(Some(75)));
        // 50 * 1.1 is 55.000000000000007 in binary floating point; the burst must still be 55.
        assert_eq!(spec(50, 1.1).map(|s| s.request_burst()), Ok(Some(55)));
        assert_eq!(spec(3, 1.5).map(|s| s.request_burst()), Ok(Some(5)));
        assert_eq!(spec(1, 1.0).map(|s| s.request_burst()), Ok(Some(1)));
    }

    #[test]
    fn invalid_values_are_refused_with_the_field_named() {
        assert_eq!(
            spec(0, 1.0),
            Err(LimitSpecError::Zero {
                field: "requests_per_window"
            })
        );
        assert_eq!(
            spec(10, 0.5),
            Err(LimitSpecError::BurstFactor { value: 0.5 })
        );
        assert!(matches!(
            spec(10, f64::NAN),
            Err(LimitSpecError::BurstFactor { .. })
        ));
        assert!(matches!(
            spec(MAX_LIMIT + 1, 1.0),
            Err(LimitSpecError::TooLarge { .. })
        ));
        let zero_window = LimitSpec::new(LimitSpecConfig {
            window: Duration::ZERO,
            ..LimitSpecConfig::default()
        });
        assert!(matches!(zero_window, Err(LimitSpecError::Window { .. })));
        let zero_concurrency = LimitSpec::new(LimitSpecConfig {
            max_concurrent: Some(0),
            ..LimitSpecConfig::default()
        });
        assert_eq!(
            zero_concurrency,
            Err(LimitSpecError::Zero {
                field: "max_concurrent"
            })
        );
    }

    #[test]
    fn unlimited_spec_reports_no_limits() {
        let unlimited = LimitSpec::unlimited();
        assert!(unlimited.is_unlimited());
        assert_eq!(unlimited.request_burst(), None);
        assert_eq!(LimitSpec::new(LimitSpecConfig::default()), Ok(unlimited));
    }
}
