//! Time source injected into every limiter.
//!
//! Owns the [`Clock`] trait and its two implementations: [`SystemClock`] for production and
//! [`ManualClock`] for tests, which only moves when told to (tests never sleep). Leaves out
//! any notion of calendar time: limiters only need a nanosecond counter that never goes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A monotonic nanosecond counter.
///
/// The absolute value only matters to the Redis backend when it is configured to use client
/// time ([`crate::RedisTime::Client`]): there all replicas must agree, so [`SystemClock`] anchors
/// its counter at the Unix epoch. The in-process limiter only uses differences.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since an arbitrary fixed origin; never decreases.
    fn now_ns(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
}

/// Production clock: the monotonic [`Instant`] clock, offset so that it reads nanoseconds since
/// the Unix epoch at construction (wall-clock jumps afterwards do not move it).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    /// Instant taken at construction; elapsed time is measured from here.
    anchor: Instant,
    /// Unix time in nanoseconds at `anchor`.
    anchor_epoch_ns: u64,
}

impl SystemClock {
    /// Anchors a new clock at the current wall-clock time.
    pub fn new() -> Self {
        let anchor_epoch_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, saturating_ns);
        Self {
            anchor: Instant::now(),
            anchor_epoch_ns,
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        self.anchor_epoch_ns
            .saturating_add(saturating_ns(self.anchor.elapsed()))
    }
}

/// Test clock that only moves when [`ManualClock::advance`] or [`ManualClock::set_ns`] is called.
///
/// Cloning shares the same time, so a test can keep one handle and give another to a limiter.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now_ns: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `start_ns`.
    pub fn new(start_ns: u64) -> Self {
        Self {
            now_ns: Arc::new(AtomicU64::new(start_ns)),
        }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now_ns.fetch_add(saturating_ns(by), Ordering::SeqCst);
    }

    /// Sets the reading; moving backwards is ignored so the clock stays monotonic.
    pub fn set_ns(&self, now_ns: u64) {
        self.now_ns.fetch_max(now_ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }
}

/// Converts a duration to nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn saturating_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_never_backwards() {
        let clock = ManualClock::new(1_000);
        let shared = clock.clone();
        assert_eq!(shared.now_ns(), 1_000);
        clock.advance(Duration::from_micros(2));
        assert_eq!(shared.now_ns(), 3_000);
        clock.set_ns(10);
        assert_eq!(shared.now_ns(), 3_000);
        clock.set_ns(5_000);
        assert_eq!(shared.now_ns(), 5_000);
    }

    #[test]
    fn system_clock_is_epoch_anchored_and_monotonic() {
        let clock = SystemClock::new();
        let first = clock.now_ns();
        let second = clock.now_ns();
        assert!(second >= first);
        // Later than 2020-01-01 in nanoseconds.
        assert!(first > 1_577_836_800_000_000_000);
    }
}
