//! Runs the store conformance suite against SQLite (a temp file) and PostgreSQL (the real
//! server; `FLOWGATE_TEST_POSTGRES_URL`, default the local test database), each in isolation.

use flowgate_store::{SqlStore, StoreOptions, conformance};

fn postgres_url() -> String {
    std::env::var("FLOWGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

#[tokio::test]
async fn sqlite_conforms() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("tempdir: {err}"));
    let url = format!("sqlite://{}/nested/store.db", dir.path().display());
    let store = SqlStore::connect(&StoreOptions {
        url,
        max_connections: 4,
        schema: None,
    })
    .await
    .unwrap_or_else(|err| panic!("connect: {err}"));
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn postgres_conforms() {
    let schema = format!(
        "conformance_{}",
        flowgate_types::to_hex(&flowgate_types::random_bytes::<6>())
    );
    let store = SqlStore::connect(&StoreOptions {
        url: postgres_url(),
        max_connections: 4,
        schema: Some(schema),
    })
    .await
    .unwrap_or_else(|err| panic!("connect to PostgreSQL at {}: {err}", postgres_url()));
    conformance::run_all(&store).await;
}

/// Another connection (the gateway's audit writer has one of its own on SQLite) commits while
/// an admin change has read and not yet written: the change must wait for the lock and go
/// through, not fail with `SQLITE_BUSY` (a deferred transaction cannot upgrade past a commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_admin_changes_wait_for_a_writer_on_another_connection() {
    use flowgate_store::{Store, TenantPatch};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("tempdir: {err}"));
    let file = dir.path().join("store.db");
    let store = conformance::migrated_sqlite(&format!("sqlite://{}", file.display())).await;
    let hasher = flowgate_types::KeyHasher::new(&[7u8; 32]);
    let tenant = conformance::new_tenant("busy", 1);
    let (_, key) = conformance::new_key(&tenant.id, &hasher, 1);
    store
        .create_tenant(&tenant, &key)
        .await
        .unwrap_or_else(|err| panic!("create tenant: {err}"));

    // The other writer takes the lock and holds it while the change starts.
    let other = rusqlite::Connection::open(&file).unwrap_or_else(|err| panic!("open: {err}"));
    other
        .execute_batch(
            "BEGIN IMMEDIATE; UPDATE flowgate_state SET version = version + 1 WHERE id = 1;",
        )
        .unwrap_or_else(|err| panic!("lock: {err}"));
    let change = tokio::spawn({
        let store = store.clone();
        let id = tenant.id.clone();
        async move {
            let patch = TenantPatch {
                name: Some("renamed".to_owned()),
                ..TenantPatch::default()
            };
            store.update_tenant(&id, &patch, 2).await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    other
        .execute_batch("COMMIT")
        .unwrap_or_else(|err| panic!("commit: {err}"));

    let updated = change
        .await
        .unwrap_or_else(|err| panic!("join: {err}"))
        .unwrap_or_else(|err| panic!("the change failed instead of waiting: {err}"));
    assert_eq!(
        updated.map(|tenant| tenant.name).as_deref(),
        Some("renamed")
    );
}
