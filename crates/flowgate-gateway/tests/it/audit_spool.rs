//! The audit spool (issue 5): the audit log on the real PostgreSQL, reached through a relay
//! the test cuts during load, acknowledging records once journaled (the default) or once
//! stored. While the store is unreachable every accepted record is written to the local spool
//! and acknowledged; when the store is back the spool is replayed in order
//! and the log verifies with nothing missing. A full spool refuses (`refuse`) or drops with a
//! gap marker (`serve`); records left in the spool at shutdown are replayed at the next start.

use crate::wait_until;
use flowgate_audit::record::{AuditRecord, RecordKind};
use flowgate_audit::source::verify_source;
use flowgate_audit::verify::VerifyOptions;
use flowgate_config::{AuditAcknowledge, AuditOnFull};
use flowgate_gateway::audit::{AuditError, AuditLog, AuditSettings, SpoolSettings};
use flowgate_store::{AuditFilter, AuditStore, SqlStore, Store as _, StoreOptions};
use flowgate_test_support::TcpRelay;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

fn postgres_url() -> String {
    std::env::var("FLOWGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// `(user@, host:port, /database…)` of the PostgreSQL URL.
fn url_parts() -> (String, String, String) {
    let url = postgres_url();
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url.as_str()));
    let (user, rest) = rest
        .split_once('@')
        .map_or(("", rest), |(user, rest)| (user, rest));
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let user = if user.is_empty() {
        format!("{scheme}://")
    } else {
        format!("{scheme}://{user}@")
    };
    (user, host, path.to_owned())
}

/// The PostgreSQL server's address.
fn postgres_addr() -> SocketAddr {
    let (_, host, _) = url_parts();
    std::net::ToSocketAddrs::to_socket_addrs(&host)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve {host}"))
}

/// A fresh schema on the real server, reached through `relay`.
async fn store_via(relay: &TcpRelay, schema: &str) -> Arc<SqlStore> {
    let (user, _, path) = url_parts();
    let store = SqlStore::connect(&StoreOptions {
        url: format!("{user}{}{path}", relay.addr()),
        max_connections: 4,
        schema: Some(schema.to_owned()),
    })
    .await
    .unwrap_or_else(|err| panic!("connect through the relay: {err}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|err| panic!("migrate: {err}"));
    Arc::new(store)
}

fn schema(name: &str) -> String {
    format!(
        "spool_{name}_{}",
        flowgate_types::to_hex(&flowgate_types::random_bytes::<4>())
    )
}

fn record(i: u64) -> AuditRecord {
    let mut record = AuditRecord::gap(flowgate_types::now_millis().unsigned_abs(), 0, "");
    record.kind = RecordKind::Completion;
    record.gap = None;
    record.request_id = format!("req-{i:06}");
    record.tenant_id = "t1".into();
    record.model = "gpt-4o-mini".into();
    record.http_status = Some(200);
    record
}

fn settings(
    dir: &std::path::Path,
    origin: &str,
    on_full: AuditOnFull,
    max_bytes: u64,
    acknowledge: AuditAcknowledge,
) -> AuditSettings {
    AuditSettings {
        origin: origin.to_owned(),
        policy: flowgate_audit::checkpoint::CheckpointPolicy {
            every_records: NonZeroU64::new(50).unwrap_or(NonZeroU64::MIN),
            every_ms: NonZeroU64::new(1000).unwrap_or(NonZeroU64::MIN),
        },
        on_full,
        queue_capacity: 10_000,
        max_batch: 256,
        spool: Some(SpoolSettings {
            path: dir.join("spool").join("log.spool"),
            max_bytes,
            acknowledge,
        }),
    }
}

/// `refuse` mode with a 64 MiB spool.
fn refusing(dir: &std::path::Path, origin: &str, acknowledge: AuditAcknowledge) -> AuditSettings {
    settings(dir, origin, AuditOnFull::Refuse, 64 << 20, acknowledge)
}

/// Submits `range` at about `per_second` records/s from one task and waits for every
/// receipt: (request number, outcome) in submit order.
async fn load(
    log: &AuditLog,
    range: std::ops::Range<u64>,
    per_second: u64,
) -> Vec<(u64, Result<u64, AuditError>)> {
    let interval = Duration::from_micros(1_000_000 / per_second.max(1));
    let mut ticker = tokio::time::interval(interval);
    let mut pending = Vec::new();
    for i in range {
        ticker.tick().await;
        let log = log.clone();
        pending.push((
            i,
            tokio::spawn(async move {
                match log.submit(record(i)) {
                    Ok(receipt) => receipt.durable().await,
                    Err(error) => Err(error),
                }
            }),
        ));
    }
    let mut outcomes = Vec::new();
    for (i, handle) in pending {
        let outcome = tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .unwrap_or_else(|_| panic!("record {i} never settled"))
            .unwrap_or_else(|err| panic!("join: {err}"));
        outcomes.push((i, outcome));
    }
    outcomes
}

/// Every record stored in `origin`, in index order: (index, request id, kind).
async fn stored(store: &SqlStore, origin: &str) -> Vec<(u64, String, RecordKind)> {
    let rows = store
        .list_audit(
            origin,
            &AuditFilter {
                limit: 100_000,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap_or_else(|err| panic!("list: {err}"));
    let mut out: Vec<_> = rows
        .iter()
        .map(|row| {
            let record = AuditRecord::parse(row.record.as_bytes())
                .unwrap_or_else(|err| panic!("stored record: {err}"));
            (row.index, record.request_id, record.kind)
        })
        .collect();
    out.sort_by_key(|(index, _, _)| *index);
    out
}

async fn verify(log: &AuditLog, size: u64) {
    let report = verify_source(
        &log.source(),
        VerifyOptions::new(log.origin(), vec![log.verifier().clone()]),
        256,
    )
    .await
    .unwrap_or_else(|err| panic!("verify: {err}"));
    assert_eq!(report.size, size);
    assert_eq!(report.uncovered_records, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_during_load_spools_then_replays_in_order() {
    for acknowledge in [AuditAcknowledge::Journal, AuditAcknowledge::Store] {
        outage_during_load(acknowledge).await;
    }
}

async fn outage_during_load(acknowledge: AuditAcknowledge) {
    let relay = TcpRelay::start(postgres_addr())
        .await
        .unwrap_or_else(|err| panic!("relay: {err}"));
    let store = store_via(&relay, &schema("outage")).await;
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let origin = "test.example/spool";
    let log = AuditLog::start(store.clone(), refusing(dir.path(), origin, acknowledge))
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));

    // 1,500 records at ~1,000/s; the store is cut after 0.4 s and restored after 1.0 s.
    let loader = {
        let log = log.clone();
        tokio::spawn(async move { load(&log, 0..1500, 1000).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    relay.cut();
    wait_until("the spool to take records", Duration::from_secs(10), || {
        log.spool().is_some_and(|(bytes, _)| bytes > 0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    relay.restore();
    let outcomes = loader.await.unwrap_or_else(|err| panic!("load: {err}"));
    wait_until("the spool to drain", Duration::from_secs(20), || {
        log.spool().is_some_and(|(bytes, _)| bytes == 0)
    })
    .await;

    // Every submit was acknowledged with a distinct index, in submit order.
    let indices: Vec<u64> = outcomes
        .iter()
        .map(|(i, outcome)| outcome.unwrap_or_else(|err| panic!("record {i}: {err}")))
        .collect();
    let mut sorted = indices.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, (0..1500).collect::<Vec<_>>());

    log.shutdown().await;
    // Nothing missing, nothing twice, and each index holds the record it was acknowledged for.
    let rows = stored(&store, origin).await;
    assert_eq!(rows.len(), 1500, "stored records");
    for ((i, _), index) in outcomes.iter().zip(&indices) {
        let (stored_index, request_id, _) = &rows[usize::try_from(*index).unwrap_or(0)];
        assert_eq!(stored_index, index);
        assert_eq!(request_id, &format!("req-{i:06}"));
    }
    verify(&log, 1500).await;
    assert!(
        relay.connections() > 4,
        "the pool reconnected after the cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_or_drops_with_a_gap_marker() {
    for on_full in [AuditOnFull::Refuse, AuditOnFull::Serve] {
        let relay = TcpRelay::start(postgres_addr())
            .await
            .unwrap_or_else(|err| panic!("relay: {err}"));
        let store = store_via(&relay, &schema("full")).await;
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let origin = "test.example/full";
        // Room for a few dozen records only.
        let log = AuditLog::start(
            store.clone(),
            settings(
                dir.path(),
                origin,
                on_full,
                32 << 10,
                AuditAcknowledge::Journal,
            ),
        )
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
        let before = load(&log, 0..20, 2000).await;
        assert!(before.iter().all(|(_, outcome)| outcome.is_ok()));

        relay.cut();
        let during = load(&log, 20..400, 2000).await;
        let accepted = during.iter().filter(|(_, outcome)| outcome.is_ok()).count();
        let expected_error = match on_full {
            AuditOnFull::Refuse => AuditError::Full,
            AuditOnFull::Serve => AuditError::Dropped,
        };
        let refused = during
            .iter()
            .filter(|(_, outcome)| *outcome == Err(expected_error))
            .count();
        assert!(accepted > 0, "{on_full:?}: the spool took nothing");
        assert!(refused > 0, "{on_full:?}: a 32 KiB spool never filled");
        assert_eq!(
            accepted + refused,
            during.len(),
            "{on_full:?}: other errors"
        );
        assert!(log.is_full(), "{on_full:?}: the log says it is full");

        relay.restore();
        wait_until("the spool to drain", Duration::from_secs(20), || {
            log.spool().is_some_and(|(bytes, _)| bytes == 0)
        })
        .await;
        let after = load(&log, 400..410, 2000).await;
        assert!(after.iter().all(|(_, outcome)| outcome.is_ok()));
        log.shutdown().await;

        let rows = stored(&store, origin).await;
        let kept = 20 + accepted + 10;
        let gaps: Vec<_> = rows
            .iter()
            .filter(|(_, _, kind)| *kind == RecordKind::Gap)
            .collect();
        match on_full {
            AuditOnFull::Refuse => {
                assert!(gaps.is_empty(), "refused records leave no gap marker");
                assert_eq!(rows.len(), kept);
            }
            AuditOnFull::Serve => {
                let stats = store
                    .audit_stats(origin, None, None, None)
                    .await
                    .unwrap_or_else(|err| panic!("stats: {err}"));
                assert_eq!(
                    stats.lost_records, refused as u64,
                    "the gap markers count every drop"
                );
                assert_eq!(log.dropped_total(), refused as u64);
                assert_eq!(rows.len(), kept + gaps.len());
            }
        }
        verify(&log, rows.len() as u64).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_left_in_the_spool_are_replayed_at_the_next_start() {
    for acknowledge in [AuditAcknowledge::Journal, AuditAcknowledge::Store] {
        replayed_at_next_start(acknowledge).await;
    }
}

async fn replayed_at_next_start(acknowledge: AuditAcknowledge) {
    let relay = TcpRelay::start(postgres_addr())
        .await
        .unwrap_or_else(|err| panic!("relay: {err}"));
    let store = store_via(&relay, &schema("restart")).await;
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let origin = "test.example/restart";
    let log = AuditLog::start(store.clone(), refusing(dir.path(), origin, acknowledge))
        .await
        .unwrap_or_else(|err| panic!("start: {err}"));
    let mut acknowledged = load(&log, 0..10, 1000).await;
    relay.cut();
    acknowledged.extend(load(&log, 10..60, 1000).await);
    // The store is still down at shutdown: the records stay in the spool file.
    log.shutdown().await;
    tokio::time::timeout(Duration::from_secs(1), log.stored())
        .await
        .unwrap_or_else(|_| panic!("stored() waited after shutdown"));
    let spooled: u64 = std::fs::read_dir(dir.path().join("spool"))
        .unwrap_or_else(|err| panic!("spool folder: {err}"))
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|meta| meta.len())
        .sum();
    assert!(spooled > 0, "{acknowledge:?}: nothing left in the spool");

    // Starting while the store is down fails rather than numbering past missing records.
    let refused = AuditLog::start(store.clone(), refusing(dir.path(), origin, acknowledge)).await;
    assert!(refused.is_err(), "started with an unreplayable spool");

    relay.restore();
    let log = AuditLog::start(store.clone(), refusing(dir.path(), origin, acknowledge))
        .await
        .unwrap_or_else(|err| panic!("restart: {err}"));
    assert_eq!(log.spool(), Some((0, 64 << 20)));
    let next = load(&log, 60..61, 1000).await;
    assert!(matches!(next[0].1, Ok(index) if index >= 60), "{next:?}");
    acknowledged.extend(next);
    log.shutdown().await;
    // Every acknowledged record is stored at the index it was acknowledged with.
    let rows = stored(&store, origin).await;
    assert_eq!(rows.len(), 61);
    for (i, outcome) in &acknowledged {
        let index = outcome.unwrap_or_else(|err| panic!("record {i}: {err}"));
        let (stored_index, request_id, _) = &rows[usize::try_from(index).unwrap_or(0)];
        assert_eq!(*stored_index, index);
        assert_eq!(request_id, &format!("req-{i:06}"));
    }
    verify(&log, rows.len() as u64).await;
}
