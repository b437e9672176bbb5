//! The circuit breaker of one route: closed while calls succeed; open after `failures`
//! consecutive failed attempts, so requests go straight to the next route instead of waiting
//! on a dead deployment; after `cooldown`, one request is let through as a probe (half-open):
//! its success closes the circuit, its failure keeps it open for another cooldown.
//!
//! Lock-free: two atomics. The probe claims the half-open slot by moving the open timestamp
//! forward, so a probe that never reports (its client went away) only delays the next probe by
//! one cooldown.

use flowgate_config::BreakerPolicy;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Milliseconds since the first breaker was consulted, plus one (0 means "closed").
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

/// What the breaker says about sending a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: go ahead.
    Closed,
    /// Half-open: this request is the probe.
    Probe,
    /// Open: skip this route.
    Open,
}

/// The breaker's state, for health output and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    consecutive_failures: AtomicU32,
    /// `now_ms()` when the circuit opened (or the last probe started); 0 while closed.
    opened_at: AtomicU64,
}

impl CircuitBreaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            consecutive_failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
        }
    }

    fn cooldown_ms(&self) -> u64 {
        u64::try_from(self.policy.cooldown.as_millis()).unwrap_or(u64::MAX)
    }

    pub fn permit(&self) -> Permit {
        let opened = self.opened_at.load(Ordering::Acquire);
        if opened == 0 {
            return Permit::Closed;
        }
        let now = now_ms();
        if now.saturating_sub(opened) < self.cooldown_ms() {
            return Permit::Open;
        }
        // Claim the probe: only one caller moves the timestamp forward.
        match self
            .opened_at
            .compare_exchange(opened, now, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Permit::Probe,
            Err(_) => Permit::Open,
        }
    }

    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.opened_at.store(0, Ordering::Release);
    }

    /// Counts a failed attempt; returns true when this failure opened the circuit.
    pub fn record_failure(&self) -> bool {
        let failures = self
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if self.opened_at.load(Ordering::Acquire) != 0 {
            // A failed probe: stay open for another cooldown from now.
            self.opened_at.store(now_ms(), Ordering::Release);
            return false;
        }
        if failures >= self.policy.failures {
            return self
                .opened_at
                .compare_exchange(0, now_ms(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        }
        false
    }

    pub fn state(&self) -> BreakerState {
        match self.opened_at.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            opened if now_ms().saturating_sub(opened) >= self.cooldown_ms() => {
                BreakerState::HalfOpen
            }
            _ => BreakerState::Open,
        }
    }

    pub fn cooldown(&self) -> Duration {
        self.policy.cooldown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, cooldown_ms: u64) -> CircuitBreaker {
        CircuitBreaker::new(BreakerPolicy {
            failures,
            cooldown: Duration::from_millis(cooldown_ms),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let breaker = breaker(3, 60_000);
        assert!(!breaker.record_failure());
        assert!(!breaker.record_failure());
        breaker.record_success();
        assert!(!breaker.record_failure());
        assert!(!breaker.record_failure());
        assert_eq!(breaker.permit(), Permit::Closed);
        assert!(breaker.record_failure(), "third consecutive failure opens");
        assert_eq!(breaker.permit(), Permit::Open);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[tokio::test]
    async fn one_probe_after_cooldown_and_its_result_decides() {
        let breaker = breaker(1, 30);
        assert!(breaker.record_failure());
        assert_eq!(breaker.permit(), Permit::Open);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(breaker.permit(), Permit::Probe);
        assert_eq!(breaker.permit(), Permit::Open, "only one probe at a time");
        breaker.record_failure();
        assert_eq!(breaker.permit(), Permit::Open, "a failed probe re-opens");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(breaker.permit(), Permit::Probe);
        breaker.record_success();
        assert_eq!(breaker.permit(), Permit::Closed);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
