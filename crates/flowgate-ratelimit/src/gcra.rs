//! Exact GCRA arithmetic shared by the request and token limits of the in-process limiter.
//!
//! Owns [`Rate`] and [`Bucket`]: a bucket stores one "theoretical arrival time" (TAT) scaled by
//! the per-window limit, so every computation is exact integer arithmetic in `u128`, with no
//! float drift and no rounding that could admit one request too many. Requests are buckets of
//! unit cost; token quotas are buckets whose cost is the token count, which also gives
//! settlement (charge or refund the difference) for free. Leaves out locking, clocks and
//! subjects: callers pass `now` and hold whatever lock protects the bucket.
//!
//! Scaled time: with `S` = units per window and `W` = window in ns, one unit costs `W` in scaled
//! time and time advances `S` scaled ticks per ns, so exactly `S` units refill per window. A
//! request of cost `n` is allowed when `max(tat, now) + n*W - now <= capacity*W`.

/// Parameters of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// Units that refill per window; never zero.
    pub(crate) per_window: u64,
    /// Units that may be taken at once from a full bucket; at least 1.
    pub(crate) capacity: u64,
    /// Window length in ns; never zero.
    pub(crate) window_ns: u64,
}

/// Current state of a bucket as shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Units that could be taken now.
    pub(crate) remaining: u64,
    /// Nanoseconds until the bucket is full again.
    pub(crate) reset_ns: u64,
}

/// Outcome of [`Bucket::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Allowed; commit with [`Bucket::commit`].
    Allowed { new_tat: u128 },
    /// Not enough units now; exactly this many ns from now there will be.
    Wait { retry_after_ns: u64 },
    /// The cost is above the capacity: waiting never helps.
    Never,
}

/// One GCRA bucket. `Default` is a full bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Bucket {
    /// Theoretical arrival time in scaled ticks (ns * `scale`).
    tat: u128,
    /// The `per_window` that `tat` is scaled by; 0 while the bucket has never been used.
    scale: u64,
    /// The window `tat` was computed with.
    window_ns: u64,
}

impl Bucket {
    /// Re-expresses the state for `rate` when the subject's limit or window changed since the
    /// last use, keeping the units consumed (10 used of an old 10 per minute stay 10 used of a
    /// new 20 per minute), so raising a limit takes effect at once.
    pub(crate) fn align(&mut self, rate: Rate, now_ns: u64) {
        if self.scale == rate.per_window && self.window_ns == rate.window_ns {
            return;
        }
        let new_now = scaled_now(rate, now_ns);
        let used = if self.scale == 0 || self.window_ns == 0 {
            0
        } else {
            // Consumed units times the old window; re-expressed in the new window.
            let old_used = self
                .tat
                .saturating_sub(u128::from(now_ns) * u128::from(self.scale));
            old_used / u128::from(self.window_ns) * u128::from(rate.window_ns)
                + old_used % u128::from(self.window_ns) * u128::from(rate.window_ns)
                    / u128::from(self.window_ns)
        };
        self.tat = new_now.saturating_add(used);
        self.scale = rate.per_window;
        self.window_ns = rate.window_ns;
    }

    /// Whether `cost` units can be taken at `now_ns`. Call [`Bucket::align`] first.
    pub(crate) fn check(&self, rate: Rate, now_ns: u64, cost: u64) -> Check {
        if cost > rate.capacity {
            return Check::Never;
        }
        let now = scaled_now(rate, now_ns);
        let window = u128::from(rate.window_ns);
        let new_tat = self.tat.max(now).saturating_add(u128::from(cost) * window);
        let tolerance = u128::from(rate.capacity) * window;
        let used = new_tat - now;
        if used <= tolerance {
            Check::Allowed { new_tat }
        } else {
            Check::Wait {
                retry_after_ns: to_ns_ceil(used - tolerance, rate),
            }
        }
    }

    /// Applies an allowed check.
    pub(crate) fn commit(&mut self, new_tat: u128) {
        self.tat = new_tat;
    }

    /// Gives back `units` taken earlier (never fuller than full).
    pub(crate) fn refund(&mut self, rate: Rate, now_ns: u64, units: u64) {
        let now = scaled_now(rate, now_ns);
        let back = u128::from(units) * u128::from(rate.window_ns);
        self.tat = self.tat.saturating_sub(back).max(now);
    }

    /// Takes `units` unconditionally (usage reported above the reservation); the bucket may go
    /// into debt, which delays later admissions.
    pub(crate) fn charge(&mut self, rate: Rate, now_ns: u64, units: u64) {
        let now = scaled_now(rate, now_ns);
        let more = u128::from(units) * u128::from(rate.window_ns);
        self.tat = self.tat.max(now).saturating_add(more);
    }

    /// Remaining units and time to full as of `now_ns`, as if `tat` were the state.
    pub(crate) fn snapshot_with(rate: Rate, now_ns: u64, tat: u128) -> Snapshot {
        let now = scaled_now(rate, now_ns);
        let used = tat.saturating_sub(now);
        let tolerance = u128::from(rate.capacity) * u128::from(rate.window_ns);
        let remaining = div(tolerance.saturating_sub(used), u128::from(rate.window_ns));
        Snapshot {
            remaining: u64::try_from(remaining).unwrap_or(u64::MAX),
            reset_ns: to_ns_ceil(used, rate),
        }
    }

    /// Remaining units and time to full as of `now_ns`.
    pub(crate) fn snapshot(&self, rate: Rate, now_ns: u64) -> Snapshot {
        Self::snapshot_with(rate, now_ns, self.tat)
    }

    /// True when the bucket is full at `now_ns`, so forgetting it loses nothing.
    pub(crate) fn is_full(&self, now_ns: u64) -> bool {
        self.scale == 0 || self.tat <= u128::from(now_ns) * u128::from(self.scale)
    }
}

fn scaled_now(rate: Rate, now_ns: u64) -> u128 {
    u128::from(now_ns) * u128::from(rate.per_window)
}

fn to_ns_ceil(scaled: u128, rate: Rate) -> u64 {
    let per_window = u128::from(rate.per_window);
    let quotient = div(scaled, per_window);
    let rounded = if quotient * per_window == scaled {
        quotient
    } else {
        quotient + 1
    };
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

/// Division that takes the much cheaper 64-bit path when both operands fit, which is the
/// common case (usage within a window); `divisor` is never zero here.
fn div(dividend: u128, divisor: u128) -> u128 {
    match (u64::try_from(dividend), u64::try_from(divisor)) {
        (Ok(dividend), Ok(divisor)) if divisor != 0 => u128::from(dividend / divisor),
        _ => dividend.checked_div(divisor).unwrap_or(u128::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MINUTE_NS: u64 = 60_000_000_000;

    fn take(bucket: &mut Bucket, rate: Rate, now_ns: u64, cost: u64) -> Check {
        bucket.align(rate, now_ns);
        let check = bucket.check(rate, now_ns, cost);
        if let Check::Allowed { new_tat } = check {
            bucket.commit(new_tat);
        }
        check
    }

    fn effective(bucket: &Bucket, now_ns: u64) -> u128 {
        bucket
            .tat
            .max(u128::from(now_ns) * u128::from(bucket.scale))
    }

    #[test]
    fn fifty_per_minute_allows_fifty_then_one_every_1200_ms() {
        let rate = Rate {
            per_window: 50,
            capacity: 50,
            window_ns: MINUTE_NS,
        };
        let mut bucket = Bucket::default();
        let start = 7 * MINUTE_NS;
        for _ in 0..50 {
            assert!(matches!(
                take(&mut bucket, rate, start, 1),
                Check::Allowed { .. }
            ));
        }
        assert_eq!(
            take(&mut bucket, rate, start, 1),
            Check::Wait {
                retry_after_ns: 1_200_000_000
            }
        );
        assert!(matches!(
            take(&mut bucket, rate, start + 1_199_999_999, 1),
            Check::Wait { retry_after_ns: 1 }
        ));
        assert!(matches!(
            take(&mut bucket, rate, start + 1_200_000_000, 1),
            Check::Allowed { .. }
        ));
    }

    #[test]
    fn cost_above_capacity_is_never_allowed() {
        let rate = Rate {
            per_window: 100,
            capacity: 100,
            window_ns: MINUTE_NS,
        };
        assert_eq!(Bucket::default().check(rate, 0, 101), Check::Never);
    }

    #[test]
    fn changing_the_limit_keeps_the_tat_in_nanoseconds() {
        let slow = Rate {
            per_window: 10,
            capacity: 10,
            window_ns: MINUTE_NS,
        };
        let fast = Rate {
            per_window: 20,
            capacity: 20,
            window_ns: MINUTE_NS,
        };
        let mut bucket = Bucket::default();
        for _ in 0..10 {
            take(&mut bucket, slow, 0, 1);
        }
        // Ten of ten used; after doubling the limit ten of twenty are used, which refill at
        // 3 s each.
        bucket.align(fast, 0);
        assert_eq!(bucket.snapshot(fast, 0).remaining, 10);
        assert_eq!(bucket.snapshot(fast, 0).reset_ns, MINUTE_NS / 2);
        // Halving the window doubles the rate again: 10 of 20 per 30 s, 1.5 s each.
        let faster = Rate {
            window_ns: MINUTE_NS / 2,
            ..fast
        };
        bucket.align(faster, 0);
        assert_eq!(bucket.snapshot(faster, 0).remaining, 10);
        assert_eq!(bucket.snapshot(faster, 0).reset_ns, MINUTE_NS / 4);
    }

    fn rates() -> impl Strategy<Value = Rate> {
        (1u64..2_000, 1u64..4_000, 1u64..=MINUTE_NS * 60).prop_map(
            |(per_window, extra, window_ns)| Rate {
                per_window,
                capacity: per_window + extra % (per_window + 1),
                window_ns,
            },
        )
    }

    proptest! {
        #[test]
        fn a_full_bucket_allows_exactly_capacity_at_one_instant(rate in rates(), now in 0u64..1u64 << 62) {
            let mut bucket = Bucket::default();
            let mut allowed = 0u64;
            while let Check::Allowed { .. } = take(&mut bucket, rate, now, 1) {
                allowed += 1;
                prop_assert!(allowed <= rate.capacity);
            }
            prop_assert_eq!(allowed, rate.capacity);
            prop_assert_eq!(bucket.snapshot(rate, now).remaining, 0);
        }

        #[test]
        fn retry_after_is_exact(rate in rates(), cost_seed in 1u64..10_000, now in 0u64..1u64 << 62) {
            let cost = 1 + cost_seed % rate.capacity;
            let mut bucket = Bucket::default();
            bucket.align(rate, now);
            // Drain the bucket, then ask for `cost` more.
            bucket.charge(rate, now, rate.capacity);
            match bucket.check(rate, now, cost) {
                Check::Wait { retry_after_ns } => {
                    prop_assert!(retry_after_ns > 0);
                    let too_early = bucket.check(rate, now + retry_after_ns - 1, cost);
                    prop_assert!(matches!(too_early, Check::Wait { .. }), "{too_early:?}");
                    let on_time = bucket.check(rate, now + retry_after_ns, cost);
                    prop_assert!(matches!(on_time, Check::Allowed { .. }), "{on_time:?}");
                }
                other => prop_assert!(false, "expected a wait, got {other:?}"),
            }
        }

        #[test]
        fn a_full_window_refills_exactly_per_window_units(rate in rates(), now in 0u64..1u64 << 60) {
            let mut bucket = Bucket::default();
            bucket.align(rate, now);
            bucket.charge(rate, now, rate.capacity);
            let later = now + rate.window_ns;
            let refilled = bucket.snapshot(rate, later).remaining;
            prop_assert_eq!(refilled, rate.per_window.min(rate.capacity));
        }

        #[test]
        fn settling_equals_reserving_the_actual_amount(
            rate in rates(),
            pre_used in 0u64..4_000,
            reserved_seed in 0u64..4_000,
            actual in 0u64..20_000,
            now in 0u64..1u64 << 60,
            settle_after in prop_oneof![Just(0u64), 0u64..MINUTE_NS],
        ) {
            let reserved = reserved_seed % (rate.capacity + 1);
            let mut base = Bucket::default();
            base.align(rate, now);
            base.charge(rate, now, pre_used % (rate.capacity + 1));

            let mut settled = base;
            let mut direct = base;
            if let Check::Allowed { new_tat } = settled.check(rate, now, reserved) {
                settled.commit(new_tat);
                if actual < reserved {
                    settled.refund(rate, now + settle_after, reserved - actual);
                } else {
                    settled.charge(rate, now + settle_after, actual - reserved);
                }
                direct.charge(rate, now, actual);
                let at = now + settle_after;
                // Settled at admission time it is exactly the same; settled later it may charge
                // the overrun against a bucket that refilled meanwhile, never less.
                if settle_after == 0 {
                    prop_assert_eq!(effective(&settled, at), effective(&direct, at));
                } else {
                    prop_assert!(effective(&settled, at) >= effective(&direct, at));
                }
            }
        }

        #[test]
        fn refunding_a_whole_reservation_restores_the_state(
            rate in rates(),
            pre_used in 0u64..4_000,
            reserved_seed in 0u64..4_000,
            now in 0u64..1u64 << 60,
        ) {
            let reserved = reserved_seed % (rate.capacity + 1);
            let mut bucket = Bucket::default();
            bucket.align(rate, now);
            bucket.charge(rate, now, pre_used % (rate.capacity + 1));
            let before = bucket.snapshot(rate, now);
            if let Check::Allowed { new_tat } = bucket.check(rate, now, reserved) {
                bucket.commit(new_tat);
                prop_assert_eq!(bucket.snapshot(rate, now).remaining, before.remaining - reserved);
                bucket.refund(rate, now, reserved);
                prop_assert_eq!(bucket.snapshot(rate, now), before);
            }
        }
    }
}
