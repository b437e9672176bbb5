//! Cost of one admission plus its settlement: in process (the per-request overhead without
//! Redis) and through the real Redis on 127.0.0.1:6379 (one script round trip each way).
//!
//! Run: `cargo bench -p flowgate-ratelimit --bench admission`. The Redis group is skipped when
//! Redis is not reachable.
//!
//! The in-process group reports the benchmark thread's CPU time (from
//! `/proc/thread-self/schedstat`, wall time where that file is missing), so figures stay
//! meaningful on a shared, overloaded machine (tick granularity: a few percent of noise); the Redis group reports wall time, since waiting
//! for the round trip is the cost being measured.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use flowgate_ratelimit::{
    AdmissionRequest, InProcessLimiter, LimitSpec, LimitSpecConfig, RedisLimiter,
    RedisLimiterConfig, Subject, SystemClock,
};

/// Limits high enough that every admission succeeds, with all three kinds active so the
/// benchmark pays for every check.
fn generous() -> LimitSpec {
    let config = LimitSpecConfig {
        requests_per_window: Some(1_000_000_000_000),
        tokens_per_window: Some(1_000_000_000_000_000),
        max_concurrent: Some(1_000_000),
        burst_factor: 1.5,
        window: Duration::from_secs(60),
    };
    LimitSpec::new(config).unwrap_or_else(|error| panic!("bench spec refused: {error}"))
}

/// CPU time consumed by the calling thread so far, if the kernel exposes it.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Runs `routine` `iterations` times and returns the CPU time it took (wall time as fallback).
fn cpu_timed(iterations: u64, mut routine: impl FnMut()) -> Duration {
    let cpu_start = thread_cpu_time();
    let wall_start = Instant::now();
    for _ in 0..iterations {
        routine();
    }
    match (cpu_start, thread_cpu_time()) {
        (Some(start), Some(end)) => end.saturating_sub(start),
        _ => wall_start.elapsed(),
    }
}

fn in_process(criterion: &mut Criterion) {
    let limiter = InProcessLimiter::new(SystemClock::new());
    let limits = generous();
    let tenant_ids: Vec<String> = (0..10_000).map(|n| format!("tenant-{n}")).collect();
    let key_ids: Vec<String> = (0..10_000).map(|n| format!("key-{n}")).collect();

    let mut group = criterion.benchmark_group("in_process");
    // The kernel updates a running thread's CPU time at scheduler ticks (every few ms), so each
    // sample must be long: equal samples of about 200 ms each.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(50)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("admit_settle_tenant_and_key", |bencher| {
        let request = AdmissionRequest {
            tenant: Subject {
                id: "tenant-bench",
                limits: &limits,
            },
            key: Some(Subject {
                id: "key-bench",
                limits: &limits,
            }),
            reserve_tokens: 1_200,
        };
        bencher.iter_custom(|iterations| {
            cpu_timed(iterations, || {
                if let Ok(admission) = limiter.admit(black_box(&request)) {
                    black_box(admission.settle(black_box(900)));
                }
            })
        });
    });
    group.bench_function("admit_settle_10k_tenants_round_robin", |bencher| {
        let mut next = 0usize;
        bencher.iter_custom(|iterations| {
            cpu_timed(iterations, || {
                next = (next + 1) % tenant_ids.len();
                let request = AdmissionRequest {
                    tenant: Subject {
                        id: &tenant_ids[next],
                        limits: &limits,
                    },
                    key: Some(Subject {
                        id: &key_ids[next],
                        limits: &limits,
                    }),
                    reserve_tokens: 1_200,
                };
                if let Ok(admission) = limiter.admit(black_box(&request)) {
                    black_box(admission.settle(black_box(900)));
                }
            })
        });
    });
    group.bench_function("admit_drop_tenant_only", |bencher| {
        let request = AdmissionRequest {
            tenant: Subject {
                id: "tenant-bench",
                limits: &limits,
            },
            key: None,
            reserve_tokens: 1_200,
        };
        bencher.iter_custom(|iterations| {
            cpu_timed(iterations, || {
                drop(black_box(limiter.admit(black_box(&request))))
            })
        });
    });
    let tight = LimitSpec::new(LimitSpecConfig {
        requests_per_window: Some(1),
        ..LimitSpecConfig::default()
    })
    .unwrap_or_else(|error| panic!("bench spec refused: {error}"));
    group.bench_function("reject_requests_limit", |bencher| {
        let request = AdmissionRequest {
            tenant: Subject {
                id: "tenant-tight",
                limits: &tight,
            },
            key: None,
            reserve_tokens: 0,
        };
        let _first = limiter.admit(&request);
        bencher.iter_custom(|iterations| {
            cpu_timed(iterations, || {
                black_box(limiter.admit(black_box(&request)).is_err());
            })
        });
    });
    group.finish();
}

fn redis(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("tokio runtime: {error}"));
    let mut config = RedisLimiterConfig::new("redis://127.0.0.1:6379");
    config.key_prefix = format!("fgbench:{}:", std::process::id());
    config.command_timeout = Duration::from_secs(1);
    let limiter = runtime
        .block_on(RedisLimiter::connect(config, SystemClock::new()))
        .unwrap_or_else(|error| panic!("redis limiter: {error}"));
    if limiter.health().fallback_active {
        // Nothing to measure without Redis; the in-process group still ran.
        return;
    }
    let limits = generous();
    let request = AdmissionRequest {
        tenant: Subject {
            id: "tenant-bench",
            limits: &limits,
        },
        key: Some(Subject {
            id: "key-bench",
            limits: &limits,
        }),
        reserve_tokens: 1_200,
    };
    let mut group = criterion.benchmark_group("redis");
    group.measurement_time(Duration::from_secs(10));
    // Baseline: a bare PING over the same kind of connection, so the script's own cost can be
    // told apart from the machine's round-trip latency.
    let ping_connection = runtime.block_on(async {
        let client = redis::Client::open("redis://127.0.0.1:6379").ok()?;
        redis::aio::ConnectionManager::new(client).await.ok()
    });
    if let Some(mut connection) = ping_connection {
        group.bench_function("ping_round_trip_baseline", |bencher| {
            bencher.iter(|| {
                runtime.block_on(async {
                    black_box(
                        redis::cmd("PING")
                            .query_async::<String>(&mut connection)
                            .await
                            .is_ok(),
                    )
                })
            });
        });
    }
    group.bench_function("admit_round_trip", |bencher| {
        bencher.iter(|| {
            let admission = runtime.block_on(limiter.admit(black_box(&request)));
            // Settlement is queued to the background task and not part of the admission.
            if let Ok(admission) = admission {
                black_box(admission.settle(900));
            }
        });
    });
    group.bench_function("admit_then_settle_flushed", |bencher| {
        bencher.iter(|| {
            runtime.block_on(async {
                if let Ok(admission) = limiter.admit(black_box(&request)).await {
                    black_box(admission.settle(900));
                }
                limiter.flush().await;
            });
        });
    });
    group.finish();
    runtime.block_on(limiter.shutdown());
}

criterion_group!(benches, in_process, redis);
criterion_main!(benches);
