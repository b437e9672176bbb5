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
