//! Integration tests: concurrency (200 simultaneous admissions) in process and across two Redis
//! limiter instances sharing the real Redis on 127.0.0.1:6379, Redis settlement and expiry, and
//! outage handling against a closed port and against a throwaway `redis-server` that the test
//! starts and kills itself (the shared server on 6379 is never touched).
//!
//! Every test uses its own random key prefix, so tests run in parallel.

use std::hash::BuildHasher;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use flowgate_ratelimit::{
    Admission, AdmissionError, AdmissionRequest, Backend, InProcessLimiter, LimitKind, LimitSpec,
    LimitSpecConfig, Limiter, ManualClock, OnRedisDown, RedisLimiter, RedisLimiterConfig,
    RedisTime, Subject, SubjectKind,
};
use redis::AsyncCommands;

const SHARED_REDIS: &str = "redis://127.0.0.1:6379";
const START_NS: u64 = 1_700_000_000_000_000_000;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn spec(config: LimitSpecConfig) -> Result<LimitSpec, Box<dyn std::error::Error>> {
    Ok(LimitSpec::new(config)?)
}

fn rpm(requests: u64, burst_factor: f64) -> Result<LimitSpec, Box<dyn std::error::Error>> {
    spec(LimitSpecConfig {
        requests_per_window: Some(requests),
        burst_factor,
        ..LimitSpecConfig::default()
    })
}

fn tenant_only(id: &str, limits: &LimitSpec, reserve_tokens: u64) -> AdmissionRequest<'static> {
    // Leaked so requests can move into spawned tasks; a handful of bytes per test.
    let id: &'static str = Box::leak(id.to_owned().into_boxed_str());
    let limits: &'static LimitSpec = Box::leak(Box::new(*limits));
    AdmissionRequest {
        tenant: Subject { id, limits },
        key: None,
        reserve_tokens,
    }
}

fn unique_prefix(test: &str) -> String {
    let random = std::collections::hash_map::RandomState::new().hash_one(test);
    format!("fgtest:{test}:{}:{random:016x}:", std::process::id())
}

fn redis_config(url: &str, test: &str) -> RedisLimiterConfig {
    let mut config = RedisLimiterConfig::new(url);
    config.key_prefix = unique_prefix(test);
    config
}

// ---------------------------------------------------------------------------------------------
// In process

fn in_process_concurrent(burst_factor: f64) -> Result<usize, Box<dyn std::error::Error>> {
    let limiter = InProcessLimiter::new(ManualClock::new(START_NS));
    let request = tenant_only("tenant-concurrent", &rpm(50, burst_factor)?, 0);
    let barrier = Arc::new(Barrier::new(200));
    let admitted = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..200)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let limiter = &limiter;
                scope.spawn(move || {
                    barrier.wait();
                    limiter.admit(&request).ok()
                })
            })
            .collect();
        // Keep every admission alive until all threads are done, like in-flight requests.
        let results: Vec<Option<Admission>> = handles
            .into_iter()
            .map(|handle| handle.join().ok().flatten())
            .collect();
        results
            .iter()
            .filter(|admission| admission.is_some())
            .count()
    });
    Ok(admitted)
}

#[test]
fn in_process_200_simultaneous_requests_admit_exactly_the_burst() -> TestResult {
    assert_eq!(in_process_concurrent(1.0)?, 50);
    assert_eq!(in_process_concurrent(1.5)?, 75);
    Ok(())
}

#[test]
fn in_process_concurrency_limit_holds_under_contention() -> TestResult {
    let limiter = InProcessLimiter::new(ManualClock::new(START_NS));
    let limits = spec(LimitSpecConfig {
        max_concurrent: Some(8),
        tokens_per_window: Some(1_000_000),
        ..LimitSpecConfig::default()
    })?;
    let request = tenant_only("tenant-slots", &limits, 10);
    let peak = std::sync::atomic::AtomicUsize::new(0);
    let current = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..2_000 {
                    if let Ok(admission) = limiter.admit(&request) {
                        let now = current.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                        current.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = admission.settle(10);
                    }
                }
            });
        }
    });
    assert!(peak.into_inner() <= 8);
    // Every slot came back: eight can be held at once again, not nine.
    let held: Vec<_> = (0..8)
        .filter_map(|_| limiter.admit(&request).ok())
        .collect();
    assert_eq!(held.len(), 8);
    let ninth = limiter.admit(&request).err();
    assert_eq!(ninth.map(|r| r.limit), Some(LimitKind::Concurrency));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shared Redis

async fn two_replicas_concurrent(
    test: &str,
    burst_factor: f64,
    time: RedisTime,
    window: Duration,
) -> Result<(usize, usize), Box<dyn std::error::Error>> {
    let clock = ManualClock::new(START_NS);
    let mut config = redis_config(SHARED_REDIS, test);
    config.time = time;
    // Generous: the test machine is shared and slow; a timeout would fall back to local limits.
    config.command_timeout = Duration::from_secs(5);
    let replicas = [
        RedisLimiter::connect(config.clone(), clock.clone()).await?,
        RedisLimiter::connect(config, clock.clone()).await?,
    ];
    let limits = spec(LimitSpecConfig {
        requests_per_window: Some(50),
        burst_factor,
        window,
        ..LimitSpecConfig::default()
    })?;
    let request = tenant_only("tenant-concurrent", &limits, 0);
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for index in 0..200 {
        let replica = replicas[index % 2].clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            replica.admit(&request).await
        }));
    }
    let mut admitted = Vec::new();
    let mut rejected = 0;
    for task in tasks {
        match task.await? {
            Ok(admission) => admitted.push(admission),
            Err(AdmissionError::Rejected(rejection)) => {
                assert_eq!(rejection.limit, LimitKind::Requests);
                rejected += 1;
            }
            Err(other) => return Err(other.into()),
        }
    }
    assert!(admitted.iter().all(|a| a.backend() == Backend::Redis));
    for replica in &replicas {
        assert!(!replica.health().fallback_active);
    }
    let count = admitted.len();
    drop(admitted);
    for replica in &replicas {
        replica.shutdown().await;
    }
    Ok((count, rejected))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_replicas_admit_exactly_50_of_200_in_total() -> TestResult {
    let (admitted, rejected) = two_replicas_concurrent(
        "replicas-1x",
        1.0,
        RedisTime::Client,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!((admitted, rejected), (50, 150));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_replicas_admit_exactly_75_of_200_with_burst_1_5() -> TestResult {
    let (admitted, rejected) = two_replicas_concurrent(
        "replicas-1.5x",
        1.5,
        RedisTime::Client,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!((admitted, rejected), (75, 125));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_replicas_on_server_time_admit_exactly_50() -> TestResult {
    // Server time really moves during the test; with 50 per hour the next request would only
    // be allowed 72 s later, so the count is still exact.
    let (admitted, _) = two_replicas_concurrent(
        "replicas-server-time",
        1.0,
        RedisTime::Server,
        Duration::from_secs(3_600),
    )
    .await?;
    assert_eq!(admitted, 50);
    Ok(())
}

async fn client_time_limiter(
    test: &str,
) -> Result<(RedisLimiter, ManualClock, String), Box<dyn std::error::Error>> {
    let clock = ManualClock::new(START_NS);
    let mut config = redis_config(SHARED_REDIS, test);
    config.time = RedisTime::Client;
    config.command_timeout = Duration::from_secs(5);
    let prefix = config.key_prefix.clone();
    Ok((
        RedisLimiter::connect(config, clock.clone()).await?,
        clock,
        prefix,
    ))
}

async fn admit(
    limiter: &RedisLimiter,
    request: &AdmissionRequest<'_>,
) -> Result<Admission, AdmissionError> {
    limiter.admit(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_steady_rate_and_refill_follow_the_injected_clock() -> TestResult {
    let (limiter, clock, _) = client_time_limiter("refill").await?;
    let request = tenant_only("tenant-a", &rpm(60, 1.0)?, 0);
    let mut held = Vec::new();
    for _ in 0..60 {
        held.push(admit(&limiter, &request).await?);
    }
    let rejection = admit(&limiter, &request).await.err();
    match rejection {
        Some(AdmissionError::Rejected(rejection)) => {
            assert_eq!(rejection.limit, LimitKind::Requests);
            assert_eq!(rejection.retry_after, Some(Duration::from_secs(1)));
            assert_eq!(rejection.headers.requests.map(|r| r.remaining), Some(0));
        }
        other => panic!("expected a requests rejection, got {other:?}"),
    }
    clock.advance(Duration::from_millis(999));
    assert!(admit(&limiter, &request).await.is_err());
    clock.advance(Duration::from_millis(1));
    let admitted = admit(&limiter, &request).await?;
    assert_eq!(admitted.headers().requests.map(|r| r.remaining), Some(0));
    clock.advance(Duration::from_secs(30));
    let mut refilled = 0;
    while admit(&limiter, &request).await.is_ok() {
        refilled += 1;
    }
    assert_eq!(refilled, 30);
    drop(held);
    limiter.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_token_reservations_are_settled_both_ways() -> TestResult {
    let (limiter, _clock, _) = client_time_limiter("tokens").await?;
    let limits = spec(LimitSpecConfig {
        tokens_per_window: Some(1_000),
        ..LimitSpecConfig::default()
    })?;
    let reserve = |tokens| tenant_only("tenant-a", &limits, tokens);

    // Over-estimate: 800 reserved, 150 used, 650 refunded.
    let first = admit(&limiter, &reserve(800)).await?;
    assert_eq!(first.headers().tokens.map(|t| t.remaining), Some(200));
    assert!(matches!(
        admit(&limiter, &reserve(300)).await,
        Err(AdmissionError::Rejected(r)) if r.limit == LimitKind::Tokens
    ));
    let settlement = first.settle(150);
    assert_eq!(settlement.refunded(), 650);
    limiter.flush().await;
    let second = admit(&limiter, &reserve(300)).await?;
    assert_eq!(second.headers().tokens.map(|t| t.remaining), Some(550));

    // Under-estimate: 300 reserved, 1 000 used: 150 + 1 000 = 1 150 of 1 000, in debt.
    let _ = second.settle(1_000);
    limiter.flush().await;
    match admit(&limiter, &reserve(0)).await {
        Err(AdmissionError::Rejected(rejection)) => {
            assert_eq!(rejection.limit, LimitKind::Tokens);
            // 150 tokens of debt at 1 000 per minute: 9 s.
            assert_eq!(rejection.retry_after, Some(Duration::from_secs(9)));
        }
        other => panic!("expected a token rejection, got {other:?}"),
    }

    // Never fits.
    match admit(&limiter, &reserve(1_001)).await {
        Err(AdmissionError::Rejected(rejection)) => assert_eq!(rejection.retry_after, None),
        other => panic!("expected a permanent rejection, got {other:?}"),
    }
    limiter.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_drop_releases_slot_and_reservation_and_keys_expire() -> TestResult {
    let (limiter, _clock, prefix) = client_time_limiter("release").await?;
    let tenant_limits = spec(LimitSpecConfig {
        requests_per_window: Some(600),
        tokens_per_window: Some(1_000),
        ..LimitSpecConfig::default()
    })?;
    let key_limits = spec(LimitSpecConfig {
        max_concurrent: Some(2),
        ..LimitSpecConfig::default()
    })?;
    let request = AdmissionRequest {
        tenant: Subject {
            id: "tenant-a",
            limits: &tenant_limits,
        },
        key: Some(Subject {
            id: "key-1",
            limits: &key_limits,
        }),
        reserve_tokens: 300,
    };
    let first = admit(&limiter, &request).await?;
    let second = admit(&limiter, &request).await?;
    match admit(&limiter, &request).await {
        Err(AdmissionError::Rejected(rejection)) => {
            assert_eq!(
                (rejection.subject, rejection.limit),
                (SubjectKind::Key, LimitKind::Concurrency)
            );
        }
        other => panic!("expected a concurrency rejection, got {other:?}"),
    }

    let mut redis = redis::Client::open(SHARED_REDIS)?
        .get_multiplexed_async_connection()
        .await?;
    let tenant_state = format!("{prefix}{{tenant-a}}:t");
    let key_leases = format!("{prefix}{{tenant-a}}:k:key-1:c");
    let state_ttl: i64 = redis.pttl(&tenant_state).await?;
    // TAT is 2 requests (0.2 s) and 600 tokens (36 s) ahead; kept one second longer.
    assert!((36_000..=37_000).contains(&state_ttl), "pttl {state_ttl}");
    let leases: i64 = redis.zcard(&key_leases).await?;
    assert_eq!(leases, 2);
    let lease_ttl: i64 = redis.pttl(&key_leases).await?;
    assert!(lease_ttl > 0 && lease_ttl <= 15 * 60 * 1_000 + 1_000);

    // The client disconnected: both admissions are dropped without settlement.
    drop(first);
    drop(second);
    limiter.flush().await;
    let leases: i64 = redis.zcard(&key_leases).await?;
    assert_eq!(leases, 0);
    let third = admit(&limiter, &request).await?;
    assert_eq!(third.headers().tokens.map(|t| t.remaining), Some(700));
    let _ = third.settle(0);
    limiter.flush().await;

    // With every token refunded, only the three requests (0.3 s at 600 per minute) keep the
    // state alive: the key expires one second after that, not after the token window.
    let ttl_after: i64 = redis.pttl(&tenant_state).await?;
    assert!((1..=1_300).contains(&ttl_after), "pttl {ttl_after}");
    // A subject whose state returns to fresh is deleted outright.
    let tokens_only = spec(LimitSpecConfig {
        tokens_per_window: Some(1_000),
        ..LimitSpecConfig::default()
    })?;
    let refunded = admit(&limiter, &tenant_only("tenant-b", &tokens_only, 500)).await?;
    let tenant_b_state = format!("{prefix}{{tenant-b}}:t");
    let exists: bool = redis.exists(&tenant_b_state).await?;
    assert!(exists);
    drop(refunded);
    limiter.flush().await;
    let exists: bool = redis.exists(&tenant_b_state).await?;
    assert!(!exists);
    limiter.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tenant_and_key_are_admitted_atomically() -> TestResult {
    let (limiter, _clock, _) = client_time_limiter("atomic").await?;
    let tenant_limits = rpm(3, 1.0)?;
    let key_limits = spec(LimitSpecConfig {
        max_concurrent: Some(1),
        ..LimitSpecConfig::default()
    })?;
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
    let held = admit(&limiter, &request).await?;
    for _ in 0..5 {
        assert!(admit(&limiter, &request).await.is_err());
    }
    drop(held);
    limiter.flush().await;
    // The five refused requests did not use the tenant's budget: two more fit.
    let second = admit(&limiter, &request).await?;
    drop(second);
    limiter.flush().await;
    let third = admit(&limiter, &request).await?;
    drop(third);
    limiter.flush().await;
    match admit(&limiter, &request).await {
        Err(AdmissionError::Rejected(rejection)) => {
            assert_eq!(
                (rejection.subject, rejection.limit),
                (SubjectKind::Tenant, LimitKind::Requests)
            );
        }
        other => panic!("expected the tenant's request limit, got {other:?}"),
    }
    limiter.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Outages

fn unreachable_config(mode: OnRedisDown) -> RedisLimiterConfig {
    let mut config = redis_config("redis://127.0.0.1:1", "unreachable");
    config.on_redis_down = mode;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_falls_back_to_local_limits_without_stalling() -> TestResult {
    let limiter = Limiter::Redis(
        RedisLimiter::connect(
            unreachable_config(OnRedisDown::Local),
            ManualClock::new(START_NS),
        )
        .await?,
    );
    let request = tenant_only("tenant-a", &rpm(5, 1.0)?, 0);
    let started = Instant::now();
    let mut admitted = Vec::new();
    for _ in 0..100 {
        match limiter.admit(&request).await {
            Ok(admission) => {
                assert_eq!(admission.backend(), Backend::Local);
                admitted.push(admission);
            }
            Err(AdmissionError::Rejected(rejection)) => {
                assert_eq!(rejection.limit, LimitKind::Requests);
            }
            Err(other) => return Err(other.into()),
        }
    }
    // Local limits still apply, and no request waited for Redis.
    assert_eq!(admitted.len(), 5);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let Limiter::Redis(redis) = &limiter else {
        unreachable!("constructed as Redis above");
    };
    let health = redis.health();
    assert!(health.fallback_active);
    assert_eq!(health.outages_total, 1);
    assert_eq!(health.fallback_admissions_total, 100);
    redis.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_requests_never_touch_redis_even_in_refuse_mode() -> TestResult {
    let limiter = RedisLimiter::connect(
        unreachable_config(OnRedisDown::Refuse),
        ManualClock::new(START_NS),
    )
    .await?;
    let unlimited = LimitSpec::unlimited();
    let admission = limiter
        .admit(&tenant_only("tenant-free", &unlimited, 1_000))
        .await?;
    assert_eq!(admission.headers().requests, None);
    assert_eq!(limiter.health().refused_total, 0);
    limiter.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_in_refuse_mode_answers_unavailable() -> TestResult {
    let limiter = RedisLimiter::connect(
        unreachable_config(OnRedisDown::Refuse),
        ManualClock::new(START_NS),
    )
    .await?;
    let request = tenant_only("tenant-a", &rpm(5, 1.0)?, 0);
    for _ in 0..3 {
        assert!(matches!(
            limiter.admit(&request).await,
            Err(AdmissionError::Unavailable(_))
        ));
    }
    assert_eq!(limiter.health().refused_total, 3);
    limiter.shutdown().await;
    Ok(())
}

/// A `redis-server` owned by one test, on its own port, killed on drop.
struct ThrowawayRedis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl ThrowawayRedis {
    fn free_port() -> Result<u16, Box<dyn std::error::Error>> {
        Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
    }

    fn start(port: u16, dir: &std::path::Path) -> Result<Self, Box<dyn std::error::Error>> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Self {
            child,
            port,
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("throwaway redis-server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(mut self) -> std::path::PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::take(&mut self.dir)
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_falls_back_then_recovers() -> TestResult {
    let dir = std::env::temp_dir().join(unique_prefix("throwaway").replace(':', "-"));
    std::fs::create_dir_all(&dir)?;
    let port = ThrowawayRedis::free_port()?;
    let server = ThrowawayRedis::start(port, &dir)?;
    let mut config = redis_config(&server.url(), "killed");
    config.probe_interval = Duration::from_millis(50);
    config.command_timeout = Duration::from_millis(500);
    let limiter = RedisLimiter::connect(config, ManualClock::new(START_NS)).await?;
    let limits = spec(LimitSpecConfig {
        max_concurrent: Some(1_000),
        ..LimitSpecConfig::default()
    })?;
    let request = tenant_only("tenant-a", &limits, 0);

    // Load: a task admitting and settling in a loop, recording which backend decided.
    let load = {
        let limiter = limiter.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let handle = tokio::spawn(async move {
            let mut by_backend = (0usize, 0usize, 0usize);
            while !stop_flag.load(std::sync::atomic::Ordering::Acquire) {
                match limiter.admit(&request).await {
                    Ok(admission) if admission.backend() == Backend::Redis => by_backend.0 += 1,
                    Ok(_) => by_backend.1 += 1,
                    Err(_) => by_backend.2 += 1,
                }
                tokio::task::yield_now().await;
            }
            by_backend
        });
        (stop, handle)
    };

    wait_for("admissions through Redis", || {
        limiter.health().errors_total == 0
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!limiter.health().fallback_active);

    let dir = server.kill();
    wait_for("fallback", || limiter.health().fallback_active).await?;
    let fallback_before = limiter.health().fallback_admissions_total;
    wait_for("local admissions", || {
        limiter.health().fallback_admissions_total > fallback_before + 10
    })
    .await?;

    let restarted = ThrowawayRedis::start(port, &dir)?;
    wait_for("recovery", || !limiter.health().fallback_active).await?;
    let recovered = limiter.admit(&request).await?;
    assert_eq!(recovered.backend(), Backend::Redis);
    drop(recovered);

    let (stop, handle) = load;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (through_redis, through_local, failed) = handle.await?;
    assert!(
        through_redis > 0 && through_local > 0,
        "{through_redis} {through_local}"
    );
    assert_eq!(failed, 0, "traffic must continue during the outage");
    let health = limiter.health();
    assert_eq!(health.outages_total, 1);
    assert_eq!(health.recoveries_total, 1);
    limiter.shutdown().await;
    drop(restarted);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_started_while_redis_is_down_connects_when_it_comes_up() -> TestResult {
    let dir = std::env::temp_dir().join(unique_prefix("late-start").replace(':', "-"));
    std::fs::create_dir_all(&dir)?;
    let port = ThrowawayRedis::free_port()?;
    let mut config = redis_config(&format!("redis://127.0.0.1:{port}"), "late-start");
    config.probe_interval = Duration::from_millis(50);
    let limiter = RedisLimiter::connect(config, ManualClock::new(START_NS)).await?;
    assert!(limiter.health().fallback_active);
    let request = tenant_only("tenant-a", &rpm(10, 1.0)?, 0);
    assert_eq!(limiter.admit(&request).await?.backend(), Backend::Local);

    let server = ThrowawayRedis::start(port, &dir)?;
    wait_for("recovery", || !limiter.health().fallback_active).await?;
    assert_eq!(limiter.admit(&request).await?.backend(), Backend::Redis);
    limiter.shutdown().await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_during_an_outage_are_sent_after_recovery() -> TestResult {
    let dir = std::env::temp_dir().join(unique_prefix("deferred").replace(':', "-"));
    std::fs::create_dir_all(&dir)?;
    let server = ThrowawayRedis::start(ThrowawayRedis::free_port()?, &dir)?;
    let mut config = redis_config(&server.url(), "deferred");
    config.probe_interval = Duration::from_millis(50);
    config.command_timeout = Duration::from_millis(200);
    let limiter = RedisLimiter::connect(config, ManualClock::new(START_NS)).await?;
    let one_at_a_time = spec(LimitSpecConfig {
        max_concurrent: Some(1),
        ..LimitSpecConfig::default()
    })?;
    let request = tenant_only("tenant-a", &one_at_a_time, 0);
    let held = limiter.admit(&request).await?;
    assert_eq!(held.backend(), Backend::Redis);

    // Redis stops answering (state intact) for a while: a request for another tenant times out
    // and marks it down.
    let mut admin = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1_500)
        .arg("ALL")
        .query_async(&mut admin)
        .await?;
    let probe = tenant_only("tenant-probe", &one_at_a_time, 0);
    let during = limiter.admit(&probe).await?;
    assert_eq!(during.backend(), Backend::Local);
    assert!(limiter.health().fallback_active);

    // The held request ends during the outage: its release is kept, not lost.
    drop(held);
    limiter.flush().await;
    assert_eq!(limiter.health().deferred_settlements, 1);

    wait_for("recovery", || !limiter.health().fallback_active).await?;
    wait_for("deferred settlement sent", || {
        limiter.health().deferred_settlements == 0
    })
    .await?;
    // The slot was released in Redis, so tenant-a can be admitted there again at once (without
    // the deferral its lease would block it for `lease_ttl`).
    let again = limiter.admit(&request).await?;
    assert_eq!(again.backend(), Backend::Redis);
    assert_eq!(limiter.health().dropped_settlements_total, 0);
    drop(again);
    drop(during);
    limiter.shutdown().await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
