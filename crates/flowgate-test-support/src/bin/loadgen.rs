//! `flowgate-loadgen`: an open-loop HTTP/1.1 load generator for the overhead benchmark.
//!
//! Requests are scheduled at a fixed rate (`--rate`, spread over `--connections` keep-alive
//! connections). Two latencies are kept per request: from the moment it was sent (`p50_ms` …,
//! the service time both paths are compared on) and from its *scheduled* start
//! (`sched_p99_ms`, which also counts time a request waited for a free connection, so a server
//! that falls behind cannot hide it: no coordinated omission). The scheduled figure includes
//! the runtime timer's ~1 ms granularity, which is why it is not the headline. `--rate 0` runs
//! closed-loop (each connection sends its next request as soon as the previous answer
//! arrived). Prints one JSON object: achieved rate, errors, and percentiles in milliseconds.

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    /// Target URL (http:// only).
    #[arg(long)]
    url: String,
    /// Requests per second; 0 = closed loop.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up (requests sent but not measured).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    #[arg(long, default_value_t = 32)]
    connections: u64,
    /// JSON request body.
    #[arg(long)]
    body: String,
    /// Extra header, `name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

struct Shared {
    next: AtomicU64,
    errors: AtomicU64,
    non_2xx: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let uri: http::Uri = args.url.parse()?;
    let authority = uri
        .authority()
        .map(|a| a.to_string())
        .ok_or_else(|| anyhow::anyhow!("URL needs a host"))?;
    let mut headers = Vec::new();
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("bad header {header}"))?;
        headers.push((
            http::HeaderName::from_bytes(name.trim().as_bytes())?,
            http::HeaderValue::from_str(value.trim())?,
        ));
    }
    let body = Bytes::from(args.body.clone());
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        non_2xx: AtomicU64::new(0),
    });
    let total_secs = args.warmup + args.duration;
    let total_requests = if args.rate == 0 {
        u64::MAX
    } else {
        args.rate * total_secs
    };
    let warmup_requests = args.rate * args.warmup;
    let interval = if args.rate == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(1.0 / args.rate as f64)
    };
    let start = Instant::now() + Duration::from_millis(100);
    let deadline = start + Duration::from_secs(total_secs);
    let measure_from = start + Duration::from_secs(args.warmup);
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let shared = Arc::clone(&shared);
        let headers = headers.clone();
        let body = body.clone();
        let uri = uri.clone();
        let authority = authority.clone();
        let timeout = Duration::from_secs(args.timeout);
        let rate = args.rate;
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let mut scheduled_latencies: Vec<u32> = Vec::new();
            let mut sender = None;
            loop {
                let index = shared.next.fetch_add(1, Ordering::Relaxed);
                if index >= total_requests {
                    break;
                }
                let scheduled = if rate == 0 {
                    Instant::now()
                } else {
                    start + interval * u32::try_from(index).unwrap_or(u32::MAX)
                };
                if scheduled >= deadline || (rate == 0 && Instant::now() >= deadline) {
                    break;
                }
                if rate != 0 {
                    // A closed loop sends at once: even an elapsed deadline would wait for
                    // the timer's next ~1 ms tick.
                    tokio::time::sleep_until(scheduled.into()).await;
                }
                if sender.is_none() {
                    sender = connect(&authority).await;
                }
                let Some(connection) = sender.as_mut() else {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let mut builder = Request::builder()
                    .method(Method::POST)
                    .uri(uri.path())
                    .header("host", &authority)
                    .header("content-type", "application/json");
                for (name, value) in &headers {
                    builder = builder.header(name, value);
                }
                let Ok(request) = builder.body(Full::new(body.clone())) else {
                    break;
                };
                let sent = Instant::now();
                let outcome = tokio::time::timeout(timeout, async {
                    let response = connection.send_request(request).await?;
                    let status = response.status();
                    response.into_body().collect().await?;
                    Ok::<_, hyper::Error>(status)
                })
                .await;
                let finished = Instant::now();
                match outcome {
                    Ok(Ok(status)) => {
                        if !status.is_success() {
                            shared.non_2xx.fetch_add(1, Ordering::Relaxed);
                        }
                        let measured = if rate == 0 {
                            scheduled >= measure_from
                        } else {
                            index >= warmup_requests
                        };
                        if measured {
                            let micros = finished.duration_since(sent).as_micros();
                            latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                            let micros = finished.duration_since(scheduled).as_micros();
                            scheduled_latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                        }
                    }
                    _ => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        sender = None;
                    }
                }
            }
            (latencies, scheduled_latencies)
        }));
    }
    let mut latencies = Vec::new();
    let mut scheduled_latencies = Vec::new();
    for task in tasks {
        let (own, scheduled) = task.await?;
        latencies.extend(own);
        scheduled_latencies.extend(scheduled);
    }
    scheduled_latencies.sort_unstable();
    let sched_p99 = percentile_of(&scheduled_latencies, 99.0);
    let elapsed = args.duration as f64;
    latencies.sort_unstable();
    let percentile = |p: f64| percentile_of(&latencies, p);
    let errors = shared.errors.load(Ordering::Relaxed);
    let non_2xx = shared.non_2xx.load(Ordering::Relaxed);
    let report = serde_json::json!({
        "url": args.url,
        "target_rate": args.rate,
        "connections": args.connections,
        "requests": latencies.len(),
        "achieved_rate": latencies.len() as f64 / elapsed,
        "errors": errors,
        "non_2xx": non_2xx,
        "success_ratio": if latencies.is_empty() { 0.0 } else { (latencies.len() as f64 - non_2xx as f64) / (latencies.len() as f64 + errors as f64) },
        "p50_ms": percentile(50.0),
        "p90_ms": percentile(90.0),
        "p99_ms": percentile(99.0),
        "p999_ms": percentile(99.9),
        "max_ms": percentile(100.0),
        "sched_p99_ms": sched_p99,
    });
    #[expect(clippy::print_stdout, reason = "the report is this tool's output")]
    {
        println!("{report}");
    }
    Ok(())
}

/// The p-th percentile (nearest rank) of sorted microseconds, in milliseconds.
fn percentile_of(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

async fn connect(authority: &str) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(authority).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(sender)
}
