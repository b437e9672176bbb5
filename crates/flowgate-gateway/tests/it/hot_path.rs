//! The hot path makes no database query per request (issue 8).
//!
//! How it is counted: the gateway runs on a real SQLite store wrapped in `CountingStore`, a
//! test-side `Store` (and `AuditStore`) that delegates every method to the real store and
//! records each call: the method's name and the tokio task that made it. Every database query
//! the gateway makes goes through one of these methods (the `Store` trait is the only way the
//! gateway reaches its database), so counting calls counts queries, whatever the backend, and
//! without depending on server-side statistics shared with other tests.
//!
//! A burst of 200 proxied chat requests (20 at a time) is sent after a warm-up request.
//! - With the audit log disabled (`[audit] enabled = false`), the only store calls during the
//!   burst are the refresh task's polls of the change counter (`change_version`, every
//!   `store.refresh_interval_ms`, here 100 ms): at most one per interval, far fewer than the
//!   requests, and no call at all of any other method.
//! - With the audit log enabled, the same holds for the `Store` methods; the audit records
//!   reach the database only through the node's writer thread (`flowgate-audit`; this
//!   wrapper has no dedicated appender, so the thread drives `append_audit` on the runtime),
//!   group-committed: at most one `append_audit` per request (fewer when batches form), no
//!   audit read, and every audit-store call of the burst comes from that thread, never from a
//!   task, while the requests run on many connection tasks.
//!
//! Webhook storage (`Store::webhook_store`) is handed through uncounted: no webhook is
//! subscribed here, and its delivery worker is a background task of its own.

use flowgate_gateway::{Gateway, Secrets, bootstrap, tenants};
use flowgate_store::{
    AuditFilter, AuditNode, AuditRow, AuditStats, AuditStore, AuditWrite, KeyRecord,
    MigrationReport, NewKey, NewTenant, Reseal, Store, StoreError, StoreSnapshot, StoredCheckpoint,
    StoredCredential, StoredDataKey, StoredRule, Tenant, TenantPatch, WebhookStore,
};
use flowgate_test_support::gateway::config_for_upstream;
use flowgate_test_support::{MockUpstream, TestClient};
use flowgate_types::{KeyId, MasterKey, TenantId};
use http::StatusCode;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BURST: usize = 200;
const CONCURRENCY: usize = 20;
const REFRESH_MS: u64 = 100;

/// One recorded call: the method, and the task that made it.
/// Who made a store call: the tokio task, or else the OS thread (the audit writer thread).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Caller {
    Task(tokio::task::Id),
    Thread(Option<String>),
}

type Call = (&'static str, Caller);

#[derive(Debug, Default)]
struct Calls {
    store: Mutex<Vec<Call>>,
    audit: Mutex<Vec<Call>>,
}

impl Calls {
    fn record(list: &Mutex<Vec<Call>>, method: &'static str) {
        list.lock().unwrap_or_else(|err| panic!("{err}")).push((
            method,
            tokio::task::try_id().map_or_else(
                || Caller::Thread(std::thread::current().name().map(str::to_owned)),
                Caller::Task,
            ),
        ));
    }

    fn take(list: &Mutex<Vec<Call>>) -> Vec<Call> {
        std::mem::take(&mut *list.lock().unwrap_or_else(|err| panic!("{err}")))
    }
}

#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn Store>,
    audit: Arc<CountingAudit>,
    calls: Arc<Calls>,
}

#[derive(Debug)]
struct CountingAudit {
    inner: Arc<dyn AuditStore>,
    calls: Arc<Calls>,
}

impl CountingStore {
    fn hit(&self, method: &'static str) {
        Calls::record(&self.calls.store, method);
    }
}

impl CountingAudit {
    fn hit(&self, method: &'static str) {
        Calls::record(&self.calls.audit, method);
    }
}

#[async_trait::async_trait]
impl Store for CountingStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.hit("ping");
        self.inner.ping().await
    }
    async fn close(&self) {
        self.hit("close");
        self.inner.close().await;
    }
    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.hit("migrate");
        self.inner.migrate().await
    }
    async fn create_tenant(
        &self,
        tenant: &NewTenant,
        first_key: &NewKey,
    ) -> Result<Tenant, StoreError> {
        self.hit("create_tenant");
        self.inner.create_tenant(tenant, first_key).await
    }
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        self.hit("get_tenant");
        self.inner.get_tenant(id).await
    }
    async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.hit("find_tenant_by_name");
        self.inner.find_tenant_by_name(name).await
    }
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.hit("list_tenants");
        self.inner.list_tenants().await
    }
    async fn update_tenant(
        &self,
        id: &TenantId,
        patch: &TenantPatch,
        now: i64,
    ) -> Result<Option<Tenant>, StoreError> {
        self.hit("update_tenant");
        self.inner.update_tenant(id, patch, now).await
    }
    async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        self.hit("delete_tenant");
        self.inner.delete_tenant(id).await
    }
    async fn create_key(&self, key: &NewKey) -> Result<KeyRecord, StoreError> {
        self.hit("create_key");
        self.inner.create_key(key).await
    }
    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<KeyRecord>, StoreError> {
        self.hit("list_keys");
        self.inner.list_keys(tenant).await
    }
    async fn revoke_key(
        &self,
        tenant: &TenantId,
        key: &KeyId,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.hit("revoke_key");
        self.inner.revoke_key(tenant, key, now).await
    }
    async fn expire_keys_except(
        &self,
        tenant: &TenantId,
        keep: &KeyId,
        expires_at: i64,
    ) -> Result<u64, StoreError> {
        self.hit("expire_keys_except");
        self.inner
            .expire_keys_except(tenant, keep, expires_at)
            .await
    }
    async fn list_rules(&self, tenant: &TenantId) -> Result<Vec<StoredRule>, StoreError> {
        self.hit("list_rules");
        self.inner.list_rules(tenant).await
    }
    async fn get_rule(
        &self,
        tenant: &TenantId,
        rule_id: &str,
    ) -> Result<Option<StoredRule>, StoreError> {
        self.hit("get_rule");
        self.inner.get_rule(tenant, rule_id).await
    }
    async fn create_rule(&self, rule: &StoredRule) -> Result<(), StoreError> {
        self.hit("create_rule");
        self.inner.create_rule(rule).await
    }
    async fn replace_rule(
        &self,
        tenant: &TenantId,
        rule_id: &str,
        rule: &str,
        now: i64,
    ) -> Result<Option<StoredRule>, StoreError> {
        self.hit("replace_rule");
        self.inner.replace_rule(tenant, rule_id, rule, now).await
    }
    async fn delete_rule(&self, tenant: &TenantId, rule_id: &str) -> Result<bool, StoreError> {
        self.hit("delete_rule");
        self.inner.delete_rule(tenant, rule_id).await
    }
    async fn list_provider_credentials(&self) -> Result<Vec<StoredCredential>, StoreError> {
        self.hit("list_provider_credentials");
        self.inner.list_provider_credentials().await
    }
    async fn set_provider_credential(
        &self,
        provider: &str,
        sealed: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.hit("set_provider_credential");
        self.inner
            .set_provider_credential(provider, sealed, now)
            .await
    }
    async fn delete_provider_credential(&self, provider: &str) -> Result<bool, StoreError> {
        self.hit("delete_provider_credential");
        self.inner.delete_provider_credential(provider).await
    }
    async fn reseal_secrets(
        &self,
        credentials: &[Reseal],
        webhook_secrets: &[Reseal],
        data_keys: &[Reseal],
        now: i64,
    ) -> Result<(), StoreError> {
        self.hit("reseal_secrets");
        self.inner
            .reseal_secrets(credentials, webhook_secrets, data_keys, now)
            .await
    }
    async fn list_tenant_data_keys(&self) -> Result<Vec<StoredDataKey>, StoreError> {
        self.hit("list_tenant_data_keys");
        self.inner.list_tenant_data_keys().await
    }
    async fn create_tenant_data_key(
        &self,
        tenant_id: &str,
        sealed: &str,
        now: i64,
    ) -> Result<String, StoreError> {
        self.hit("create_tenant_data_key");
        self.inner
            .create_tenant_data_key(tenant_id, sealed, now)
            .await
    }
    async fn erase_tenant_data_key(&self, tenant_id: &str) -> Result<bool, StoreError> {
        self.hit("erase_tenant_data_key");
        self.inner.erase_tenant_data_key(tenant_id).await
    }
    async fn change_version(&self) -> Result<i64, StoreError> {
        self.hit("change_version");
        self.inner.change_version().await
    }
    async fn load_snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        self.hit("load_snapshot");
        self.inner.load_snapshot().await
    }
    fn audit_store(&self) -> Option<Arc<dyn AuditStore>> {
        Some(Arc::clone(&self.audit) as Arc<dyn AuditStore>)
    }
    fn webhook_store(&self) -> Option<Arc<dyn WebhookStore>> {
        self.inner.webhook_store()
    }
}

#[async_trait::async_trait]
impl AuditStore for CountingAudit {
    async fn audit_node(&self, origin: &str) -> Result<Option<AuditNode>, StoreError> {
        self.hit("audit_node");
        self.inner.audit_node(origin).await
    }
    async fn create_audit_node(
        &self,
        origin: &str,
        signing_key: &str,
    ) -> Result<AuditNode, StoreError> {
        self.hit("create_audit_node");
        self.inner.create_audit_node(origin, signing_key).await
    }
    async fn audit_origins(&self) -> Result<Vec<String>, StoreError> {
        self.hit("audit_origins");
        self.inner.audit_origins().await
    }
    async fn append_audit(&self, origin: &str, write: AuditWrite<'_>) -> Result<(), StoreError> {
        self.hit("append_audit");
        self.inner.append_audit(origin, write).await
    }
    async fn audit_size(&self, origin: &str) -> Result<u64, StoreError> {
        self.hit("audit_size");
        self.inner.audit_size(origin).await
    }
    async fn audit_entries(
        &self,
        origin: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<flowgate_audit::verify::StoredEntry>, StoreError> {
        self.hit("audit_entries");
        self.inner.audit_entries(origin, from, limit).await
    }
    async fn audit_leaf_hashes(
        &self,
        origin: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<flowgate_audit::merkle::Hash>, StoreError> {
        self.hit("audit_leaf_hashes");
        self.inner.audit_leaf_hashes(origin, start, end).await
    }
    async fn audit_subtree(
        &self,
        origin: &str,
        level: u8,
        index: u64,
    ) -> Result<Option<flowgate_audit::merkle::Hash>, StoreError> {
        self.hit("audit_subtree");
        self.inner.audit_subtree(origin, level, index).await
    }
    async fn audit_checkpoints(&self, origin: &str) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.hit("audit_checkpoints");
        self.inner.audit_checkpoints(origin).await
    }
    async fn list_audit(
        &self,
        origin: &str,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRow>, StoreError> {
        self.hit("list_audit");
        self.inner.list_audit(origin, filter).await
    }
    async fn audit_stats(
        &self,
        origin: &str,
        tenant_id: Option<&str>,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
    ) -> Result<AuditStats, StoreError> {
        self.hit("audit_stats");
        self.inner
            .audit_stats(origin, tenant_id, from_ms, to_ms)
            .await
    }
    async fn prune_audit(
        &self,
        origin: &str,
        anchor: &flowgate_audit::source::LogAnchor,
    ) -> Result<u64, StoreError> {
        self.hit("prune_audit");
        self.inner.prune_audit(origin, anchor).await
    }
    async fn audit_sink_cursor(
        &self,
        origin: &str,
        sink: &str,
    ) -> Result<Option<flowgate_store::SinkCursor>, StoreError> {
        self.hit("audit_sink_cursor");
        self.inner.audit_sink_cursor(origin, sink).await
    }
    async fn save_audit_sink_cursor(
        &self,
        origin: &str,
        sink: &str,
        cursor: flowgate_store::SinkCursor,
    ) -> Result<(), StoreError> {
        self.hit("save_audit_sink_cursor");
        self.inner
            .save_audit_sink_cursor(origin, sink, cursor)
            .await
    }
    async fn audit_checkpoints_between(
        &self,
        origin: &str,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.hit("audit_checkpoints_between");
        self.inner
            .audit_checkpoints_between(origin, after, up_to, limit)
            .await
    }
}

/// What the store saw during the burst, and how long the burst took.
struct BurstCalls {
    store: Vec<Call>,
    audit: Vec<Call>,
    elapsed: Duration,
}

async fn burst(audit_enabled: bool) -> BurstCalls {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    let data = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let master_key = MasterKey::generate();
    let admin_key = "fga_00112233445566778899aabbccddeeff00112233".to_owned();
    let env: BTreeMap<String, String> = [
        ("FLOWGATE_MASTER_KEY", master_key.to_base64()),
        ("FLOWGATE_ADMIN_API_KEY", admin_key.clone()),
        (
            "FLOWGATE_DATABASE_URL",
            format!("sqlite://{}/flowgate.db", data.path().display()),
        ),
        // The audit journal lives under the data directory: never the source tree.
        ("FLOWGATE_DATA_DIR", data.path().display().to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n\n\
         [store]\nrefresh_interval_ms = {REFRESH_MS}\n\n\
         [audit]\nenabled = {audit_enabled}\n\n{}",
        config_for_upstream(&upstream.base_url())
    );
    let config = Arc::new(
        flowgate_config::from_sources(Some(&text), &env, false)
            .unwrap_or_else(|err| panic!("config: {err}")),
    );
    let real = bootstrap::open_store(&config)
        .await
        .unwrap_or_else(|err| panic!("store: {err}"));
    let (_, key) = tenants::create(
        real.as_ref(),
        &bootstrap::key_hasher(&master_key),
        tenants::CreateTenant {
            name: "hot".to_owned(),
            rules_preset: None,
            max_requests_per_minute: Some(1_000_000),
            max_tokens_per_minute: None,
            max_concurrent_requests: None,
            allowed_models: Vec::new(),
        },
    )
    .await
    .unwrap_or_else(|err| panic!("tenant: {err}"));
    let calls = Arc::new(Calls::default());
    let audit_inner = real
        .audit_store()
        .unwrap_or_else(|| panic!("SqlStore keeps audit logs"));
    let store = Arc::new(CountingStore {
        inner: real,
        audit: Arc::new(CountingAudit {
            inner: audit_inner,
            calls: Arc::clone(&calls),
        }),
        calls: Arc::clone(&calls),
    });
    let secrets = Secrets {
        master_key,
        admin_api_key: admin_key,
    };
    let gateway = Gateway::start(Arc::clone(&config), store, &secrets)
        .await
        .unwrap_or_else(|err| panic!("gateway: {err}"));
    let url = format!("http://{}/v1/chat/completions", gateway.public_addr);
    let client = TestClient::new();
    let body = crate::chat_body(false);

    // Warm up (connections, the audit node), let start-up work settle, then count.
    let warm = client.post_json(&url, &key.api_key, &body).await;
    assert_eq!(warm.status, StatusCode::OK, "{}", warm.text());
    tokio::time::sleep(Duration::from_millis(3 * REFRESH_MS)).await;
    Calls::take(&calls.store);
    Calls::take(&calls.audit);

    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CONCURRENCY {
        let (client, url, key, body) = (
            client.clone(),
            url.clone(),
            key.api_key.clone(),
            body.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in (worker..BURST).step_by(CONCURRENCY) {
                statuses.push(client.post_json(&url, &key, &body).await.status);
            }
            statuses
        }));
    }
    let mut answered = 0;
    for worker in workers {
        let statuses = worker.await.unwrap_or_else(|err| panic!("{err}"));
        assert!(
            statuses.iter().all(|status| *status == StatusCode::OK),
            "{statuses:?}"
        );
        answered += statuses.len();
    }
    let elapsed = started.elapsed();
    let seen = BurstCalls {
        store: Calls::take(&calls.store),
        audit: Calls::take(&calls.audit),
        elapsed,
    };
    assert_eq!(answered, BURST);
    gateway.shutdown().await;
    seen
}

/// Store calls other than the refresh poll's, and whether the polls stay within one per
/// interval.
fn assert_only_polls(seen: &BurstCalls) {
    let others: Vec<_> = seen
        .store
        .iter()
        .filter(|(method, _)| *method != "change_version")
        .collect();
    assert!(
        others.is_empty(),
        "store calls during the burst: {others:?}"
    );
    let polls = seen.store.len();
    let bound = usize::try_from(seen.elapsed.as_millis() / u128::from(REFRESH_MS))
        .unwrap_or(usize::MAX)
        + 2;
    assert!(
        polls <= bound,
        "{polls} change-counter polls in {:?} (at most {bound})",
        seen.elapsed
    );
    assert!(polls < BURST / 4, "{polls} polls for {BURST} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_without_audit_queries_nothing_but_the_refresh_poll() {
    let seen = burst(false).await;
    assert_only_polls(&seen);
    assert!(
        seen.audit.is_empty(),
        "audit store calls with the audit log disabled: {:?}",
        seen.audit
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_with_audit_writes_only_from_the_writer_task() {
    let seen = burst(true).await;
    assert_only_polls(&seen);
    let appends = seen
        .audit
        .iter()
        .filter(|(method, _)| *method == "append_audit")
        .count();
    assert!(
        (1..=BURST).contains(&appends),
        "{appends} audit transactions for {BURST} requests"
    );
    let others: Vec<_> = seen
        .audit
        .iter()
        .filter(|(method, _)| *method != "append_audit")
        .collect();
    assert!(
        others.is_empty(),
        "audit reads during the burst: {others:?}"
    );
    let callers: HashSet<_> = seen
        .audit
        .iter()
        .map(|(_, caller)| caller.clone())
        .collect();
    assert_eq!(
        callers,
        HashSet::from([Caller::Thread(Some("flowgate-audit".to_owned()))]),
        "audit writes come only from the writer thread"
    );
}
