//! In-process limiter: the backend without Redis, and the fallback while Redis is down.
//!
//! Owns the per-subject state (GCRA buckets for requests and tokens, the in-flight count) kept
//! in sharded maps, the atomic check-and-reserve across a tenant and its key, release on drop,
//! and eviction of idle subjects. Leaves out cluster-wide limits (see `redis`).
//!
//! Locking: a shard mutex is held only to find or insert a subject; the subject's own mutex is
//! held for the check-and-commit (a few dozen ns, never across an await). When a request has a
//! tenant and a key, the tenant is always locked first, so two admissions can never deadlock.
//! Holding both for the whole check makes the admission atomic: no interleaving can admit more
//! than the limits allow.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::admission::{
    Admission, AdmissionRequest, CONCURRENCY_RETRY_AFTER, LimitKind, LimitSnapshot, Permit,
    RateLimitHeaders, Rejection, Subject, SubjectKind,
};
use crate::clock::{Clock, saturating_ns};
use crate::gcra::{Bucket, Check, Rate};
use crate::spec::LimitSpec;

/// Tuning of the in-process limiter.
#[derive(Debug, Clone, Copy)]
pub struct LocalOptions {
    /// Number of shards per subject map (rounded up to a power of two). More shards means less
    /// contention on inserts; lookups of existing subjects hold a shard lock for a few ns.
    pub shards: usize,
    /// How often (at most) a shard forgets idle subjects, checked when a new subject is added.
    /// A subject is idle when nothing is in flight and both buckets are full again, so
    /// forgetting it changes no decision.
    pub idle_sweep_interval: Duration,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            shards: 64,
            idle_sweep_interval: Duration::from_secs(60),
        }
    }
}

/// In-process limiter. Cheap to clone (one `Arc`); clones share state.
#[derive(Clone)]
pub struct InProcessLimiter {
    shared: Arc<Shared>,
}

impl fmt::Debug for InProcessLimiter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("InProcessLimiter")
            .field("subjects", &self.subject_count())
            .finish_non_exhaustive()
    }
}

struct Shared {
    clock: Arc<dyn Clock>,
    tenants: SubjectMap,
    keys: SubjectMap,
    sweep_interval_ns: u64,
}

struct SubjectMap {
    shards: Box<[Shard]>,
    /// `shards.len() - 1`; the length is a power of two.
    mask: usize,
    /// Random per map so placement can not be predicted from ids.
    hasher: SeededHash,
}

/// Aligned to two cache lines so neighbouring shard locks do not share one.
#[repr(align(128))]
struct Shard(Mutex<ShardInner>);

struct ShardInner {
    subjects: HashMap<Box<str>, Arc<SubjectCell>, SeededHash>,
    last_sweep_ns: u64,
}

/// A seeded word-at-a-time multiplicative hash with a strong finaliser: a few ns for short
/// ids where SipHash takes tens. Ids are tenant and key ids issued by flowgate, not
/// attacker-chosen strings, so a keyed cryptographic hash buys nothing here; the random seed
/// still keeps placement unpredictable across processes.
#[derive(Clone, Copy)]
struct SeededHash(u64);

struct WordHasher(u64);

const HASH_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl BuildHasher for SeededHash {
    type Hasher = WordHasher;

    fn build_hasher(&self) -> WordHasher {
        WordHasher(self.0)
    }
}

impl WordHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(HASH_MULTIPLIER);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length tag keeps "a" and "a\0" apart.
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn finish(&self) -> u64 {
        // Murmur3's finaliser, so every output bit depends on every input byte.
        let mut hash = self.0;
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        hash ^ (hash >> 33)
    }
}

#[derive(Default)]
struct SubjectCell {
    state: Mutex<SubjectState>,
}

#[derive(Default)]
struct SubjectState {
    requests: Bucket,
    tokens: Bucket,
    /// The token rate of the latest admission; settlement re-uses it.
    token_rate: Option<Rate>,
    in_flight: u32,
}

impl SubjectState {
    fn is_idle(&self, now_ns: u64) -> bool {
        self.in_flight == 0 && self.requests.is_full(now_ns) && self.tokens.is_full(now_ns)
    }
}

/// Locks a mutex, ignoring poisoning: no code path panics while holding one of these locks,
/// and the protected state is valid after every single assignment anyway.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SubjectMap {
    fn new(shards: usize) -> Self {
        let count = shards.clamp(1, 1 << 16).next_power_of_two();
        let hasher =
            SeededHash(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64));
        Self {
            shards: (0..count)
                .map(|_| {
                    Shard(Mutex::new(ShardInner {
                        subjects: HashMap::with_hasher(hasher),
                        last_sweep_ns: 0,
                    }))
                })
                .collect(),
            mask: count - 1,
            hasher,
        }
    }

    fn shard(&self, id: &str) -> &Shard {
        // The map inside uses the top bits of the same hash; the shard takes low bits.
        // Truncating to usize is fine: only the low bits are used.
        &self.shards[(self.hasher.hash_one(id) as usize) & self.mask]
    }

    fn cell(&self, id: &str, now_ns: u64, sweep_interval_ns: u64) -> Arc<SubjectCell> {
        let mut inner = lock(&self.shard(id).0);
        if let Some(cell) = inner.subjects.get(id) {
            return Arc::clone(cell);
        }
        if now_ns.saturating_sub(inner.last_sweep_ns) >= sweep_interval_ns {
            inner.sweep(now_ns);
        }
        let cell = Arc::new(SubjectCell::default());
        inner.subjects.insert(id.into(), Arc::clone(&cell));
        cell
    }

    fn sweep(&self, now_ns: u64) {
        for shard in &self.shards {
            lock(&shard.0).sweep(now_ns);
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(&shard.0).subjects.len())
            .sum()
    }
}

impl ShardInner {
    fn sweep(&mut self, now_ns: u64) {
        self.last_sweep_ns = now_ns;
        self.subjects.retain(|_, cell| {
            // Held by an admission (strong count above one) or busy: keep. Nobody can take a
            // new reference meanwhile because the shard lock is held.
            if Arc::strong_count(cell) > 1 {
                return true;
            }
            match cell.state.try_lock() {
                Ok(state) => !state.is_idle(now_ns),
                Err(_) => true,
            }
        });
    }
}

impl InProcessLimiter {
    /// A limiter with default options.
    pub fn new(clock: impl Clock) -> Self {
        Self::with_options(clock, LocalOptions::default())
    }

    /// A limiter with explicit options.
    pub fn with_options(clock: impl Clock, options: LocalOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                clock: Arc::new(clock),
                tenants: SubjectMap::new(options.shards),
                keys: SubjectMap::new(options.shards),
                sweep_interval_ns: saturating_ns(options.idle_sweep_interval),
            }),
        }
    }

    /// Admits or rejects one request, reserving its tokens and a concurrency slot for the
    /// tenant and the key together (all or nothing).
    pub fn admit(&self, request: &AdmissionRequest<'_>) -> Result<Admission, Rejection> {
        let shared = &*self.shared;
        let now_ns = shared.clock.now_ns();
        let tenant_cell = shared.subject_cell(&shared.tenants, request.tenant, now_ns);
        let key_cell = request
            .key
            .and_then(|key| shared.subject_cell(&shared.keys, key, now_ns));

        // Tenant first, then key: the one lock order used everywhere.
        let mut tenant_state = tenant_cell.as_deref().map(|cell| lock(&cell.state));
        let mut key_state = key_cell.as_deref().map(|cell| lock(&cell.state));

        let mut rejection: Option<Rejection> = None;
        let tenant_plan = tenant_state.as_deref_mut().map(|state| {
            plan(
                state,
                request.tenant.limits,
                SubjectKind::Tenant,
                now_ns,
                request.reserve_tokens,
                &mut rejection,
            )
        });
        let key_plan = match (key_state.as_deref_mut(), request.key) {
            (Some(state), Some(key)) => Some(plan(
                state,
                key.limits,
                SubjectKind::Key,
                now_ns,
                request.reserve_tokens,
                &mut rejection,
            )),
            _ => None,
        };

        let mut headers = RateLimitHeaders::default();
        if let Some(mut rejection) = rejection {
            for (state, plan) in [(&tenant_state, &tenant_plan), (&key_state, &key_plan)] {
                if let (Some(state), Some(plan)) = (state.as_deref(), plan) {
                    let (requests, tokens) = plan.current_snapshots(state, now_ns);
                    headers.merge(requests, tokens);
                }
            }
            rejection.headers = headers;
            return Err(rejection);
        }

        for (state, plan) in [
            (tenant_state.as_deref_mut(), &tenant_plan),
            (key_state.as_deref_mut(), &key_plan),
        ] {
            if let (Some(state), Some(plan)) = (state, plan) {
                let (requests, tokens) = plan.commit(state, now_ns);
                headers.merge(requests, tokens);
            }
        }
        drop(key_state);
        drop(tenant_state);

        Ok(Admission {
            headers,
            reserved_tokens: request.reserve_tokens,
            permit: Permit::Local(LocalPermit {
                tenant: tenant_cell.map(|cell| Held {
                    cell,
                    tokens_reserved: tenant_plan.is_some_and(|plan| plan.tokens.is_some()),
                }),
                key: key_cell.map(|cell| Held {
                    cell,
                    tokens_reserved: key_plan.is_some_and(|plan| plan.tokens.is_some()),
                }),
                reserved: request.reserve_tokens,
                admitted_at_ns: now_ns,
                finished: false,
            }),
        })
    }

    /// Forgets every idle subject now. Optional: shards also sweep themselves, at most once per
    /// `idle_sweep_interval`, when a new subject arrives.
    pub fn sweep_idle(&self) {
        let now_ns = self.shared.clock.now_ns();
        self.shared.tenants.sweep(now_ns);
        self.shared.keys.sweep(now_ns);
    }

    /// Number of tenants and keys with state (for tests and a gauge).
    pub fn subject_count(&self) -> usize {
        self.shared.tenants.len() + self.shared.keys.len()
    }
}

impl Shared {
    fn subject_cell(
        &self,
        map: &SubjectMap,
        subject: Subject<'_>,
        now_ns: u64,
    ) -> Option<Arc<SubjectCell>> {
        if subject.limits.is_unlimited() {
            return None;
        }
        Some(map.cell(subject.id, now_ns, self.sweep_interval_ns))
    }
}

/// What one subject's checks decided, before anything is written.
#[derive(Clone, Copy)]
struct Plan {
    requests: Option<(Rate, u128)>,
    tokens: Option<(Rate, u128)>,
}

pub(crate) fn request_rate(spec: &LimitSpec) -> Option<Rate> {
    Some(Rate {
        per_window: spec.requests_per_window()?,
        capacity: spec.request_burst()?,
        window_ns: spec.window_ns(),
    })
}

pub(crate) fn token_rate(spec: &LimitSpec) -> Option<Rate> {
    let per_window = spec.tokens_per_window()?;
    Some(Rate {
        per_window,
        capacity: per_window,
        window_ns: spec.window_ns(),
    })
}

fn plan(
    state: &mut SubjectState,
    spec: &LimitSpec,
    subject: SubjectKind,
    now_ns: u64,
    reserve_tokens: u64,
    rejection: &mut Option<Rejection>,
) -> Plan {
    let mut refuse = |limit: LimitKind, retry_after: Option<Duration>| {
        let new = Rejection {
            subject,
            limit,
            retry_after,
            headers: RateLimitHeaders::default(),
        };
        *rejection = Some(match rejection.take() {
            Some(existing) => existing.worse(new),
            None => new,
        });
    };
    let mut decided = Plan {
        requests: None,
        tokens: None,
    };
    if let Some(rate) = request_rate(spec) {
        state.requests.align(rate, now_ns);
        match state.requests.check(rate, now_ns, 1) {
            Check::Allowed { new_tat } => decided.requests = Some((rate, new_tat)),
            Check::Wait { retry_after_ns } => {
                decided.requests = Some((rate, 0));
                refuse(
                    LimitKind::Requests,
                    Some(Duration::from_nanos(retry_after_ns)),
                );
            }
            Check::Never => {
                decided.requests = Some((rate, 0));
                refuse(LimitKind::Requests, None);
            }
        }
    }
    if let Some(rate) = token_rate(spec) {
        state.tokens.align(rate, now_ns);
        match state.tokens.check(rate, now_ns, reserve_tokens) {
            Check::Allowed { new_tat } => decided.tokens = Some((rate, new_tat)),
            Check::Wait { retry_after_ns } => {
                decided.tokens = Some((rate, 0));
                refuse(
                    LimitKind::Tokens,
                    Some(Duration::from_nanos(retry_after_ns)),
                );
            }
            Check::Never => {
                decided.tokens = Some((rate, 0));
                refuse(LimitKind::Tokens, None);
            }
        }
    }
    if let Some(max) = spec.max_concurrent()
        && state.in_flight >= max
    {
        refuse(LimitKind::Concurrency, Some(CONCURRENCY_RETRY_AFTER));
    }
    decided
}

fn snapshot(rate: Rate, now_ns: u64, tat: u128) -> LimitSnapshot {
    let snapshot = Bucket::snapshot_with(rate, now_ns, tat);
    LimitSnapshot {
        limit: rate.capacity,
        remaining: snapshot.remaining,
        reset: Duration::from_nanos(snapshot.reset_ns),
    }
}

impl Plan {
    /// Snapshots of the state as it is (used for a rejection, when nothing is written).
    fn current_snapshots(
        &self,
        state: &SubjectState,
        now_ns: u64,
    ) -> (Option<LimitSnapshot>, Option<LimitSnapshot>) {
        let requests = self.requests.map(|(rate, _)| {
            let current = state.requests.snapshot(rate, now_ns);
            LimitSnapshot {
                limit: rate.capacity,
                remaining: current.remaining,
                reset: Duration::from_nanos(current.reset_ns),
            }
        });
        let tokens = self.tokens.map(|(rate, _)| {
            let current = state.tokens.snapshot(rate, now_ns);
            LimitSnapshot {
                limit: rate.capacity,
                remaining: current.remaining,
                reset: Duration::from_nanos(current.reset_ns),
            }
        });
        (requests, tokens)
    }

    /// Writes an admission and returns the snapshots after it.
    fn commit(
        &self,
        state: &mut SubjectState,
        now_ns: u64,
    ) -> (Option<LimitSnapshot>, Option<LimitSnapshot>) {
        state.in_flight = state.in_flight.saturating_add(1);
        state.token_rate = self.tokens.map(|(rate, _)| rate);
        let requests = self.requests.map(|(rate, new_tat)| {
            state.requests.commit(new_tat);
            snapshot(rate, now_ns, new_tat)
        });
        let tokens = self.tokens.map(|(rate, new_tat)| {
            state.tokens.commit(new_tat);
            snapshot(rate, now_ns, new_tat)
        });
        (requests, tokens)
    }
}

struct Held {
    cell: Arc<SubjectCell>,
    /// Whether tokens were reserved for this subject (it had a token limit at admission).
    tokens_reserved: bool,
}

/// The in-process part of an [`Admission`].
pub(crate) struct LocalPermit {
    tenant: Option<Held>,
    key: Option<Held>,
    reserved: u64,
    /// Settlement is booked at admission time, as if the actual amount had been reserved
    /// then. This also saves a clock read per request.
    admitted_at_ns: u64,
    finished: bool,
}

impl LocalPermit {
    /// Frees the concurrency slot and settles tokens: `None` gives the whole reservation back.
    pub(crate) fn finish(&mut self, actual_tokens: Option<u64>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let now_ns = self.admitted_at_ns;
        for held in [&self.tenant, &self.key].into_iter().flatten() {
            let mut state = lock(&held.cell.state);
            state.in_flight = state.in_flight.saturating_sub(1);
            if !held.tokens_reserved {
                continue;
            }
            let Some(rate) = state.token_rate else {
                continue;
            };
            state.tokens.align(rate, now_ns);
            let actual = actual_tokens.unwrap_or(0);
            if actual < self.reserved {
                state.tokens.refund(rate, now_ns, self.reserved - actual);
            } else if actual > self.reserved {
                state.tokens.charge(rate, now_ns, actual - self.reserved);
            }
        }
    }
}

impl Drop for LocalPermit {
    fn drop(&mut self) {
        self.finish(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{Backend, Settlement};
    use crate::clock::ManualClock;
    use crate::spec::LimitSpecConfig;

    const START_NS: u64 = 1_000_000_000_000;

    fn spec(config: LimitSpecConfig) -> LimitSpec {
        match LimitSpec::new(config) {
            Ok(spec) => spec,
            Err(error) => panic!("test spec refused: {error}"),
        }
    }

    fn rpm(requests: u64, burst_factor: f64) -> LimitSpec {
        spec(LimitSpecConfig {
            requests_per_window: Some(requests),
            burst_factor,
            ..LimitSpecConfig::default()
        })
    }

    fn tpm(tokens: u64) -> LimitSpec {
        spec(LimitSpecConfig {
            tokens_per_window: Some(tokens),
            ..LimitSpecConfig::default()
        })
    }

    fn concurrent(max: u32) -> LimitSpec {
        spec(LimitSpecConfig {
            max_concurrent: Some(max),
            ..LimitSpecConfig::default()
        })
    }

    fn setup() -> (InProcessLimiter, ManualClock) {
        let clock = ManualClock::new(START_NS);
        (InProcessLimiter::new(clock.clone()), clock)
    }

    fn tenant_request<'a>(limits: &'a LimitSpec, reserve_tokens: u64) -> AdmissionRequest<'a> {
        AdmissionRequest {
            tenant: Subject {
                id: "tenant-a",
                limits,
            },
            key: None,
            reserve_tokens,
        }
    }

    fn admit_count(
        limiter: &InProcessLimiter,
        request: &AdmissionRequest<'_>,
        attempts: usize,
    ) -> usize {
        (0..attempts)
            .filter(|_| limiter.admit(request).is_ok())
            .count()
    }

    #[test]
    fn burst_allows_ceil_of_rate_times_factor_then_rejects_with_exact_retry_after() {
        let (limiter, _clock) = setup();
        let limits = rpm(50, 1.5);
        let request = tenant_request(&limits, 0);
        assert_eq!(admit_count(&limiter, &request, 200), 75);
        let rejection = limiter.admit(&request).err();
        assert_eq!(
            rejection.map(|r| (r.subject, r.limit, r.retry_after)),
            Some((
                SubjectKind::Tenant,
                LimitKind::Requests,
                Some(Duration::from_millis(1_200))
            ))
        );
    }

    #[test]
    fn steady_rate_admits_one_request_per_interval() {
        let (limiter, clock) = setup();
        let limits = rpm(60, 1.0);
        let request = tenant_request(&limits, 0);
        assert_eq!(admit_count(&limiter, &request, 100), 60);
        for _ in 0..30 {
            clock.advance(Duration::from_millis(999));
            assert!(
                limiter.admit(&request).is_err(),
                "admitted before the interval"
            );
            clock.advance(Duration::from_millis(1));
            assert!(limiter.admit(&request).is_ok(), "refused at the interval");
            assert!(
                limiter.admit(&request).is_err(),
                "two admitted in one interval"
            );
        }
    }

    #[test]
    fn idle_time_refills_up_to_the_burst_and_no_further() {
        let (limiter, clock) = setup();
        let limits = rpm(10, 1.0);
        let request = tenant_request(&limits, 0);
        assert_eq!(admit_count(&limiter, &request, 20), 10);
        clock.advance(Duration::from_secs(30));
        assert_eq!(admit_count(&limiter, &request, 20), 5);
        clock.advance(Duration::from_secs(3_600));
        assert_eq!(admit_count(&limiter, &request, 20), 10);
    }

    #[test]
    fn headers_report_limit_remaining_and_reset() {
        let (limiter, _clock) = setup();
        let limits = spec(LimitSpecConfig {
            requests_per_window: Some(10),
            tokens_per_window: Some(1_000),
            ..LimitSpecConfig::default()
        });
        let admission = limiter.admit(&tenant_request(&limits, 100));
        let headers = admission.as_ref().map(|a| *a.headers()).ok();
        assert_eq!(
            headers,
            Some(RateLimitHeaders {
                requests: Some(LimitSnapshot {
                    limit: 10,
                    remaining: 9,
                    reset: Duration::from_secs(6),
                }),
                tokens: Some(LimitSnapshot {
                    limit: 1_000,
                    remaining: 900,
                    reset: Duration::from_secs(6),
                }),
            })
        );
    }

    #[test]
    fn token_reservation_blocks_until_settlement_refunds_an_overestimate() {
        let (limiter, _clock) = setup();
        let limits = tpm(1_000);
        let first = limiter.admit(&tenant_request(&limits, 800));
        assert!(first.is_ok());
        let second = limiter.admit(&tenant_request(&limits, 300)).err();
        assert_eq!(second.map(|r| r.limit), Some(LimitKind::Tokens));

        // Only 150 of the 800 reserved were used: 650 come back, so 300 fit again.
        let settlement = first.map(|admission| admission.settle(150));
        assert_eq!(
            settlement.map(|s| (s.refunded(), s.charged())),
            Ok((650, 0))
        );
        let third = limiter.admit(&tenant_request(&limits, 300));
        assert_eq!(
            third
                .as_ref()
                .ok()
                .and_then(|a| a.headers().tokens)
                .map(|t| t.remaining),
            Some(550)
        );
    }

    #[test]
    fn settlement_charges_an_underestimate_and_delays_later_requests() {
        let (limiter, clock) = setup();
        let limits = tpm(600);
        let admission = limiter.admit(&tenant_request(&limits, 100));
        let settled = admission.map(|admission| admission.settle(700));
        assert_eq!(
            settled,
            Ok(Settlement {
                reserved: 100,
                actual: 700
            })
        );
        // 700 tokens used against 600 per minute: 100 tokens of debt, 10 s at 10 tokens/s.
        let blocked = limiter.admit(&tenant_request(&limits, 0)).err();
        assert_eq!(
            blocked.map(|r| (r.limit, r.retry_after)),
            Some((LimitKind::Tokens, Some(Duration::from_secs(10))))
        );
        clock.advance(Duration::from_secs(10));
        assert!(limiter.admit(&tenant_request(&limits, 0)).is_ok());
        let more = limiter.admit(&tenant_request(&limits, 11)).err();
        assert_eq!(
            more.map(|r| r.retry_after),
            Some(Some(Duration::from_millis(1_100)))
        );
    }

    #[test]
    fn settlement_is_booked_at_admission_time() {
        let (limiter, clock) = setup();
        let limits = tpm(600);
        let admission = limiter.admit(&tenant_request(&limits, 100));
        // A one-minute stream that used 700 tokens: booked at its start, they have refilled by
        // 600 at its end, leaving 100 used.
        clock.advance(Duration::from_secs(60));
        assert!(admission.map(|admission| admission.settle(700)).is_ok());
        let next = limiter.admit(&tenant_request(&limits, 0));
        assert_eq!(
            next.as_ref()
                .ok()
                .and_then(|a| a.headers().tokens)
                .map(|t| t.remaining),
            Some(500)
        );
    }

    #[test]
    fn a_reservation_above_the_window_is_refused_for_good() {
        let (limiter, _clock) = setup();
        let limits = tpm(1_000);
        let rejection = limiter.admit(&tenant_request(&limits, 1_001)).err();
        assert_eq!(
            rejection.map(|r| (r.limit, r.retry_after)),
            Some((LimitKind::Tokens, None))
        );
    }

    #[test]
    fn dropping_an_admission_releases_its_slot_and_reservation() {
        let (limiter, _clock) = setup();
        let limits = spec(LimitSpecConfig {
            tokens_per_window: Some(1_000),
            max_concurrent: Some(2),
            ..LimitSpecConfig::default()
        });
        let request = tenant_request(&limits, 400);
        let first = limiter.admit(&request);
        let second = limiter.admit(&request);
        assert!(first.is_ok() && second.is_ok());
        let third = limiter.admit(&tenant_request(&limits, 0)).err();
        assert_eq!(
            third.map(|r| (r.limit, r.retry_after)),
            Some((LimitKind::Concurrency, Some(CONCURRENCY_RETRY_AFTER)))
        );

        // The upstream failed: the handler returns early and the admission is dropped.
        drop(first);
        let after_drop = limiter.admit(&request);
        assert_eq!(
            after_drop
                .as_ref()
                .ok()
                .and_then(|a| a.headers().tokens)
                .map(|t| t.remaining),
            Some(200)
        );
        assert_eq!(
            after_drop.as_ref().map(Admission::backend).ok(),
            Some(Backend::Local)
        );
    }

    #[test]
    fn a_failing_handler_releases_through_the_error_path() {
        let (limiter, _clock) = setup();
        let limits = concurrent(1);
        let handler = |fail: bool| -> Result<Settlement, &'static str> {
            let admission = limiter
                .admit(&tenant_request(&limits, 0))
                .map_err(|_| "limited")?;
            if fail {
                return Err("upstream error");
            }
            Ok(admission.settle(0))
        };
        for _ in 0..5 {
            assert_eq!(handler(true), Err("upstream error"));
        }
        assert!(handler(false).is_ok());
    }

    #[test]
    fn cancelling_a_future_that_holds_an_admission_releases_it() {
        let (limiter, _clock) = setup();
        let limits = spec(LimitSpecConfig {
            tokens_per_window: Some(100),
            max_concurrent: Some(1),
            ..LimitSpecConfig::default()
        });
        let request = tenant_request(&limits, 100);
        let admission = limiter.admit(&request);
        let in_flight = async move {
            let _held = admission;
            std::future::pending::<()>().await;
        };
        // The client disconnects: the request future is dropped before it completes.
        drop(in_flight);
        assert!(limiter.admit(&request).is_ok());
    }

    #[test]
    fn tenant_and_key_are_reserved_together_or_not_at_all() {
        let (limiter, _clock) = setup();
        let tenant_limits = rpm(3, 1.0);
        let key_limits = concurrent(1);
        let request = AdmissionRequest {
            tenant: Subject {
                id: "tenant-a",
                limits: &tenant_limits,
            },
            key: Some(Subject {
                id: "key-1",
                limits: &key_limits,
            }),
            reserve_tokens: 0,
        };
        let held = limiter.admit(&request);
        assert!(held.is_ok());
        // The key is busy: these must not use up the tenant's requests.
        for _ in 0..5 {
            let rejection = limiter.admit(&request).err();
            assert_eq!(
                rejection.map(|r| (r.subject, r.limit)),
                Some((SubjectKind::Key, LimitKind::Concurrency))
            );
        }
        drop(held);
        assert!(limiter.admit(&request).is_ok());
        assert!(limiter.admit(&request).is_ok());
        let exhausted = limiter.admit(&request).err();
        assert_eq!(
            exhausted.map(|r| (r.subject, r.limit)),
            Some((SubjectKind::Tenant, LimitKind::Requests))
        );
    }

    #[test]
    fn the_longest_wait_is_reported_when_several_limits_refuse() {
        let (limiter, _clock) = setup();
        let limits = spec(LimitSpecConfig {
            requests_per_window: Some(1),
            tokens_per_window: Some(100),
            ..LimitSpecConfig::default()
        });
        assert!(limiter.admit(&tenant_request(&limits, 10)).is_ok());
        let rejection = limiter.admit(&tenant_request(&limits, 100)).err();
        assert_eq!(
            rejection.map(|r| (r.limit, r.retry_after)),
            Some((LimitKind::Requests, Some(Duration::from_secs(60))))
        );
    }

    #[test]
    fn idle_subjects_are_evicted_and_busy_ones_kept() {
        let clock = ManualClock::new(START_NS);
        let limiter = InProcessLimiter::with_options(
            clock.clone(),
            LocalOptions {
                shards: 1,
                idle_sweep_interval: Duration::from_secs(10),
            },
        );
        let limits = spec(LimitSpecConfig {
            requests_per_window: Some(60),
            max_concurrent: Some(10),
            ..LimitSpecConfig::default()
        });
        let ids: Vec<String> = (0..100).map(|n| format!("tenant-{n}")).collect();
        let mut held = Vec::new();
        for (index, id) in ids.iter().enumerate() {
            let admission = limiter.admit(&AdmissionRequest {
                tenant: Subject {
                    id,
                    limits: &limits,
                },
                key: None,
                reserve_tokens: 0,
            });
            if index < 3 {
                held.push(admission);
            }
        }
        assert_eq!(limiter.subject_count(), 100);
        // One request per tenant at 60/min is forgotten after one second.
        clock.advance(Duration::from_secs(11));
        // A new subject triggers the sweep of its shard (the only one).
        let newcomer = limiter.admit(&AdmissionRequest {
            tenant: Subject {
                id: "tenant-new",
                limits: &limits,
            },
            key: None,
            reserve_tokens: 0,
        });
        assert!(newcomer.is_ok());
        assert_eq!(limiter.subject_count(), 4);
        drop(held);
        drop(newcomer);
        clock.advance(Duration::from_secs(1));
        limiter.sweep_idle();
        assert_eq!(limiter.subject_count(), 0);
    }

    #[test]
    fn unlimited_subjects_keep_no_state() {
        let (limiter, _clock) = setup();
        let unlimited = LimitSpec::unlimited();
        let admission = limiter.admit(&tenant_request(&unlimited, 1_000_000));
        assert_eq!(
            admission.as_ref().map(|a| *a.headers()).ok(),
            Some(RateLimitHeaders::default())
        );
        assert_eq!(limiter.subject_count(), 0);
    }

    #[test]
    fn subject_hash_separates_near_identical_ids_and_spreads_shards() {
        let hasher = SeededHash(42);
        assert_ne!(hasher.hash_one("a"), hasher.hash_one("a\0"));
        assert_ne!(
            hasher.hash_one("tenant-12345678"),
            hasher.hash_one("tenant-12345679")
        );
        let map = SubjectMap::new(64);
        let mut per_shard = [0usize; 64];
        for n in 0..64_000 {
            let id = format!("tenant-{n}");
            let shard: *const Shard = map.shard(&id);
            let index = map
                .shards
                .iter()
                .position(|candidate| std::ptr::eq(candidate, shard))
                .unwrap_or(usize::MAX);
            per_shard[index] += 1;
        }
        // 1 000 expected per shard; a poor hash would leave shards empty or overloaded.
        assert!(
            per_shard.iter().all(|&count| (800..1_200).contains(&count)),
            "{per_shard:?}"
        );
    }

    #[test]
    fn changed_limits_apply_to_existing_state() {
        let (limiter, _clock) = setup();
        let small = rpm(2, 1.0);
        let large = rpm(4, 1.0);
        assert_eq!(admit_count(&limiter, &tenant_request(&small, 0), 10), 2);
        assert_eq!(admit_count(&limiter, &tenant_request(&large, 0), 10), 2);
    }
}
