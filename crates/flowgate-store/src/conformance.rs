//! The conformance suite: one behavioural test of the `Store` contract (tenant rules
//! included), run against every implementation (SQLite always; PostgreSQL in its own schema).
//! Lives in the library so any future backend's tests call the same function.

use crate::{
    AttemptOutcome, AuditAppender as _, AuditEntry, AuditFilter, AuditStore, AuditWrite,
    BlockingAppender, DeliveryStatus, KeyLimits, NewDelivery, NewKey, NewTenant, OriginLog,
    SinkCursor, Store, StoreError, StoredCheckpoint, StoredRule, TenantPatch, Webhook,
    WebhookStore,
};
use flowgate_audit::appender::LogAppender;
use flowgate_audit::checkpoint::CheckpointPolicy;
use flowgate_audit::note::NoteSigner;
use flowgate_audit::record::{AuditRecord, Decision, RecordKind, RuleFinding};
use flowgate_audit::source::{anchor_at, prove_inclusion, rebuild_appender_state, verify_source};
use flowgate_audit::verify::VerifyOptions;
use flowgate_types::{ApiKeySecret, KeyHasher, KeyId, TenantId};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

/// A migrated SQLite store at `url` (`sqlite://…`), for tests and benchmarks.
///
/// # Panics
/// When it cannot be opened or migrated (a test failure).
pub async fn migrated_sqlite(url: &str) -> crate::SqlStore {
    let store = crate::SqlStore::connect(&crate::StoreOptions {
        url: url.to_owned(),
        max_connections: 4,
        schema: None,
    })
    .await
    .unwrap_or_else(|err| panic!("connect {url}: {err}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|err| panic!("migrate {url}: {err}"));
    store
}

/// A tenant allowed `gpt-4o-mini`, 60 requests a minute.
pub fn new_tenant(name: &str, now: i64) -> NewTenant {
    NewTenant {
        id: TenantId::generate(),
        name: name.to_owned(),
        rules_preset: "default".to_owned(),
        max_requests_per_minute: Some(60),
        max_tokens_per_minute: None,
        max_concurrent_requests: None,
        allowed_models: vec!["gpt-4o-mini".to_owned()],
        created_at: now,
    }
}

/// A key for `tenant` without limits of its own, with its secret.
pub fn new_key(tenant: &TenantId, hasher: &KeyHasher, now: i64) -> (ApiKeySecret, NewKey) {
    let secret = ApiKeySecret::generate();
    let key = NewKey {
        id: KeyId::generate(),
        tenant_id: tenant.clone(),
        digest: hasher.digest(secret.expose()),
        prefix: secret.display_prefix(),
        created_at: now,
        limits: KeyLimits::default(),
    };
    (secret, key)
}

/// Runs the whole contract against a freshly migrated, empty store. Panics (test failure) on
/// the first violated expectation, naming it.
pub async fn run_all(store: &dyn Store) {
    let report = store
        .migrate()
        .await
        .unwrap_or_else(|err| panic!("migrate: {err}"));
    assert!(report.current >= 1, "schema version after migrate");
    let again = store
        .migrate()
        .await
        .unwrap_or_else(|err| panic!("re-migrate: {err}"));
    assert!(again.applied.is_empty(), "second migrate applies nothing");
    store
        .ping()
        .await
        .unwrap_or_else(|err| panic!("ping: {err}"));

    let hasher = KeyHasher::new(&[7u8; 32]);
    let v0 = store
        .change_version()
        .await
        .unwrap_or_else(|err| panic!("version: {err}"));

    // Create a tenant with its first key; the version moves.
    let tenant = new_tenant("acme", 1_000);
    let (secret, first_key) = new_key(&tenant.id, &hasher, 1_000);
    let created = store
        .create_tenant(&tenant, &first_key)
        .await
        .unwrap_or_else(|err| panic!("create tenant: {err}"));
    assert_eq!(created.name, "acme");
    let v1 = store
        .change_version()
        .await
        .unwrap_or_else(|err| panic!("version: {err}"));
    assert!(v1 > v0, "create bumps the change version");

    // Names are unique.
    let (_, other_key) = new_key(&tenant.id, &hasher, 1_000);
    match store
        .create_tenant(&new_tenant("acme", 1_001), &other_key)
        .await
    {
        Err(StoreError::Conflict {
            entity: "tenant", ..
        }) => {}
        other => panic!("duplicate tenant name must conflict, got {other:?}"),
    }

    // Reads.
    let fetched = store
        .get_tenant(&tenant.id)
        .await
        .unwrap_or_else(|err| panic!("get: {err}"));
    assert_eq!(fetched.as_ref(), Some(&created));
    let by_name = store
        .find_tenant_by_name("acme")
        .await
        .unwrap_or_else(|err| panic!("find: {err}"));
    assert_eq!(by_name.map(|t| t.id), Some(tenant.id.clone()));
    assert_eq!(
        store.get_tenant(&TenantId::generate()).await.ok().flatten(),
        None
    );
    assert_eq!(
        store.list_tenants().await.map(|list| list.len()).ok(),
        Some(1)
    );

    // The store holds the digest, never the secret.
    let keys = store
        .list_keys(&tenant.id)
        .await
        .unwrap_or_else(|err| panic!("keys: {err}"));
    assert_eq!(keys.len(), 1);
    assert!(keys[0].digest.ct_eq(&hasher.digest(secret.expose())));
    assert_ne!(keys[0].prefix, secret.expose());
    assert!(keys[0].is_live(2_000));

    // Patch: set, clear and keep fields.
    let patch = TenantPatch {
        max_requests_per_minute: Some(None),
        max_tokens_per_minute: Some(Some(5_000)),
        allowed_models: Some(vec![]),
        ..TenantPatch::default()
    };
    let updated = store
        .update_tenant(&tenant.id, &patch, 2_000)
        .await
        .unwrap_or_else(|err| panic!("update: {err}"))
        .unwrap_or_else(|| panic!("update: tenant vanished"));
    assert_eq!(updated.max_requests_per_minute, None);
    assert_eq!(updated.max_tokens_per_minute, Some(5_000));
    assert_eq!(updated.rules_preset, "default");
    assert!(updated.allowed_models.is_empty());
    assert_eq!(updated.updated_at, 2_000);
    assert!(
        store
            .update_tenant(&TenantId::generate(), &patch, 2_000)
            .await
            .ok()
            .flatten()
            .is_none(),
        "updating a missing tenant returns None"
    );

    // More keys, rotation (expire all but the new one), revocation.
    let (_, second) = new_key(&tenant.id, &hasher, 3_000);
    store
        .create_key(&second)
        .await
        .unwrap_or_else(|err| panic!("create key: {err}"));
    let expired = store
        .expire_keys_except(&tenant.id, &second.id, 10_000)
        .await
        .unwrap_or_else(|err| panic!("expire: {err}"));
    assert_eq!(expired, 1);
    let keys = store
        .list_keys(&tenant.id)
        .await
        .unwrap_or_else(|err| panic!("keys: {err}"));
    let first = keys
        .iter()
        .find(|key| key.id == first_key.id)
        .unwrap_or_else(|| panic!("first key"));
    assert!(
        first.is_live(9_999) && !first.is_live(10_000),
        "old key lives until the deadline"
    );
    assert!(
        store
            .revoke_key(&tenant.id, &second.id, 4_000)
            .await
            .unwrap_or(false)
    );
    assert!(
        !store
            .revoke_key(&TenantId::generate(), &first_key.id, 4_000)
            .await
            .unwrap_or(true)
    );

    // A snapshot sees everything at one version.
    let snapshot = store
        .load_snapshot()
        .await
        .unwrap_or_else(|err| panic!("snapshot: {err}"));
    assert_eq!(snapshot.tenants.len(), 1);
    assert_eq!(snapshot.keys.len(), 2);
    assert_eq!(
        snapshot.version,
        store.change_version().await.unwrap_or_default()
    );

    // Delete removes the tenant and its keys.
    assert!(store.delete_tenant(&tenant.id).await.unwrap_or(false));
    assert!(!store.delete_tenant(&tenant.id).await.unwrap_or(true));
    let snapshot = store
        .load_snapshot()
        .await
        .unwrap_or_else(|err| panic!("snapshot: {err}"));
    assert!(snapshot.tenants.is_empty() && snapshot.keys.is_empty());

    run_key_limits(store, &hasher).await;
    run_rules(store, &hasher).await;
    run_credentials(store).await;
    run_data_keys(store).await;

    if let Some(audit) = store.audit_store() {
        run_audit(audit).await;
    }
    if let Some(audit) = store.audit_store() {
        run_audit_sink_cursors(audit.as_ref()).await;
    }
    if let Some(webhooks) = store.webhook_store() {
        run_webhooks(webhooks.as_ref()).await;
    }
}

/// Per-key limits: stored with the key (each independently optional, tokens beyond 32 bits),
/// returned by `create_key`, `list_keys` and the snapshot; a key without limits reads back
/// with none.
async fn run_key_limits(store: &dyn Store, hasher: &KeyHasher) {
    let tenant = new_tenant("key-limits", 6_000);
    let (_, plain) = new_key(&tenant.id, hasher, 6_000);
    store
        .create_tenant(&tenant, &plain)
        .await
        .unwrap_or_else(|err| panic!("create tenant: {err}"));
    let limits = KeyLimits {
        max_requests_per_minute: Some(2),
        max_tokens_per_minute: Some(5_000_000_000),
        max_concurrent_requests: Some(3),
    };
    let (_, mut limited) = new_key(&tenant.id, hasher, 6_001);
    limited.limits = limits;
    let created = store
        .create_key(&limited)
        .await
        .unwrap_or_else(|err| panic!("create limited key: {err}"));
    assert_eq!(created.limits, limits, "create_key returns the limits");
    let (_, mut partial) = new_key(&tenant.id, hasher, 6_002);
    partial.limits.max_concurrent_requests = Some(1);
    store
        .create_key(&partial)
        .await
        .unwrap_or_else(|err| panic!("create partial key: {err}"));

    let listed = store
        .list_keys(&tenant.id)
        .await
        .unwrap_or_else(|err| panic!("keys: {err}"));
    let limits_of = |keys: &[crate::KeyRecord], id: &KeyId| {
        keys.iter()
            .find(|key| &key.id == id)
            .map(|key| key.limits)
            .unwrap_or_else(|| panic!("key {id} listed"))
    };
    assert_eq!(limits_of(&listed, &plain.id), KeyLimits::default());
    assert!(!limits_of(&listed, &plain.id).any());
    assert_eq!(limits_of(&listed, &limited.id), limits);
    assert_eq!(
        limits_of(&listed, &partial.id),
        KeyLimits {
            max_concurrent_requests: Some(1),
            ..KeyLimits::default()
        }
    );
    let snapshot = store
        .load_snapshot()
        .await
        .unwrap_or_else(|err| panic!("snapshot: {err}"));
    assert_eq!(
        limits_of(&snapshot.keys, &limited.id),
        limits,
        "the snapshot carries key limits"
    );
    assert!(store.delete_tenant(&tenant.id).await.unwrap_or(false));
}

/// The tenant data key contract: create stores the first key and returns the stored one to
/// later (racing) creates without bumping the change counter; erase deletes it, reports
/// whether a row existed and bumps the counter; `reseal_secrets` must cover every data key.
async fn run_data_keys(store: &dyn Store) {
    let version = || async {
        store
            .change_version()
            .await
            .unwrap_or_else(|err| panic!("version: {err}"))
    };
    let keys = || async {
        store
            .list_tenant_data_keys()
            .await
            .unwrap_or_else(|err| panic!("list data keys: {err}"))
            .into_iter()
            .map(|key| (key.tenant_id, key.sealed))
            .collect::<Vec<_>>()
    };
    assert!(keys().await.is_empty());
    let v0 = version().await;
    let first = store
        .create_tenant_data_key("tenant-b", "sealed-b1", 10)
        .await
        .unwrap_or_else(|err| panic!("create: {err}"));
    assert_eq!(first, "sealed-b1");
    let raced = store
        .create_tenant_data_key("tenant-b", "sealed-b2", 11)
        .await
        .unwrap_or_else(|err| panic!("create again: {err}"));
    assert_eq!(raced, "sealed-b1", "the first stored key wins");
    store
        .create_tenant_data_key("tenant-a", "sealed-a1", 12)
        .await
        .unwrap_or_else(|err| panic!("create: {err}"));
    assert_eq!(version().await, v0, "creating a data key does not bump");
    assert_eq!(
        keys().await,
        vec![
            ("tenant-a".to_owned(), "sealed-a1".to_owned()),
            ("tenant-b".to_owned(), "sealed-b1".to_owned()),
        ]
    );
    let credentials: Vec<crate::Reseal> = store
        .list_provider_credentials()
        .await
        .unwrap_or_else(|err| panic!("credentials: {err}"))
        .into_iter()
        .map(|row| crate::Reseal {
            id: row.provider,
            old_sealed: row.sealed.clone(),
            new_sealed: row.sealed,
        })
        .collect();
    let webhooks: Vec<crate::Reseal> = match store.webhook_store() {
        Some(webhooks) => webhooks
            .list_webhooks()
            .await
            .unwrap_or_else(|err| panic!("webhooks: {err}"))
            .into_iter()
            .map(|row| crate::Reseal {
                id: row.id,
                old_sealed: row.secret_sealed.clone(),
                new_sealed: row.secret_sealed,
            })
            .collect(),
        None => Vec::new(),
    };
    let reseal = |id: &str, old: &str, new: &str| crate::Reseal {
        id: id.to_owned(),
        old_sealed: old.to_owned(),
        new_sealed: new.to_owned(),
    };
    let left_out = store
        .reseal_secrets(
            &credentials,
            &webhooks,
            &[reseal("tenant-a", "sealed-a1", "new-a")],
            20,
        )
        .await;
    assert!(
        matches!(left_out, Err(StoreError::Conflict { .. })),
        "a data key left out: {left_out:?}"
    );
    store
        .reseal_secrets(
            &credentials,
            &webhooks,
            &[
                reseal("tenant-a", "sealed-a1", "new-a"),
                reseal("tenant-b", "sealed-b1", "new-b"),
            ],
            21,
        )
        .await
        .unwrap_or_else(|err| panic!("reseal: {err}"));
    assert_eq!(
        keys().await,
        vec![
            ("tenant-a".to_owned(), "new-a".to_owned()),
            ("tenant-b".to_owned(), "new-b".to_owned()),
        ]
    );
    let v1 = version().await;
    assert!(
        store
            .erase_tenant_data_key("tenant-a")
            .await
            .unwrap_or_else(|err| panic!("erase: {err}"))
    );
    assert!(version().await > v1, "erasing bumps the change counter");
    assert!(
        !store
            .erase_tenant_data_key("tenant-a")
            .await
            .unwrap_or_else(|err| panic!("erase again: {err}"))
    );
    assert_eq!(
        keys().await,
        vec![("tenant-b".to_owned(), "new-b".to_owned())]
    );
    // Leave the table empty for the suites that follow (rotation counts every row).
    assert!(
        store
            .erase_tenant_data_key("tenant-b")
            .await
            .unwrap_or_else(|err| panic!("erase: {err}"))
    );
}

/// The provider-credential contract: set inserts or replaces (sealed text kept verbatim),
/// list is ordered by provider, delete reports whether a row existed, every mutation bumps
/// the change counter; `reseal_secrets` replaces credentials and webhook secrets together
/// and changes nothing when a row moved underneath it or a row was left out.
async fn run_credentials(store: &dyn Store) {
    let version = || async {
        store
            .change_version()
            .await
            .unwrap_or_else(|err| panic!("version: {err}"))
    };
    let list = || async {
        store
            .list_provider_credentials()
            .await
            .unwrap_or_else(|err| panic!("list credentials: {err}"))
    };
    assert!(list().await.is_empty(), "no credentials at first");
    let v0 = version().await;
    for (provider, sealed, now) in [("openai", "sealed-a", 10), ("anthropic", "sealed-b", 11)] {
        store
            .set_provider_credential(provider, sealed, now)
            .await
            .unwrap_or_else(|err| panic!("set {provider}: {err}"));
    }
    let v1 = version().await;
    assert!(v1 > v0, "set bumps the change counter");
    let stored = list().await;
    let summary: Vec<(&str, &str, i64, i64)> = stored
        .iter()
        .map(|row| {
            (
                row.provider.as_str(),
                row.sealed.as_str(),
                row.created_at,
                row.updated_at,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("anthropic", "sealed-b", 11, 11),
            ("openai", "sealed-a", 10, 10)
        ]
    );
    assert!(
        !format!("{stored:?}").contains("sealed-a"),
        "Debug hides the value"
    );

    // Setting again replaces the value and keeps created_at.
    store
        .set_provider_credential("openai", "sealed-a2", 20)
        .await
        .unwrap_or_else(|err| panic!("replace: {err}"));
    let v2 = version().await;
    assert!(v2 > v1, "replace bumps the change counter");
    let openai = list()
        .await
        .into_iter()
        .find(|row| row.provider == "openai")
        .unwrap_or_else(|| panic!("openai credential kept"));
    assert_eq!(
        (openai.sealed.as_str(), openai.created_at, openai.updated_at),
        ("sealed-a2", 10, 20)
    );

    // Rotation covers webhook secrets in the same transaction.
    let webhooks = store.webhook_store();
    if let Some(webhooks) = &webhooks {
        webhooks
            .create_webhook(&Webhook {
                id: "wh_credentials".to_owned(),
                url: "https://example.com/hook".to_owned(),
                events: vec!["key.rotated".to_owned()],
                secret_sealed: "wh-old".to_owned(),
                created_at: 30,
                disabled: false,
            })
            .await
            .unwrap_or_else(|err| panic!("create webhook: {err}"));
    }
    let webhook_reseal: Vec<crate::Reseal> = if webhooks.is_some() {
        vec![crate::Reseal {
            id: "wh_credentials".to_owned(),
            old_sealed: "wh-old".to_owned(),
            new_sealed: "wh-new".to_owned(),
        }]
    } else {
        Vec::new()
    };
    let reseal = |id: &str, old: &str, new: &str| crate::Reseal {
        id: id.to_owned(),
        old_sealed: old.to_owned(),
        new_sealed: new.to_owned(),
    };
    let before = list().await;
    let refusals = [
        // A stale old value (the row changed since it was read).
        vec![
            reseal("openai", "sealed-a", "new-a"),
            reseal("anthropic", "sealed-b", "new-b"),
        ],
        // A row left out.
        vec![reseal("openai", "sealed-a2", "new-a")],
        // A row that does not exist.
        vec![
            reseal("openai", "sealed-a2", "new-a"),
            reseal("anthropic", "sealed-b", "new-b"),
            reseal("gemini", "x", "y"),
        ],
    ];
    for (index, attempt) in refusals.iter().enumerate() {
        let result = store
            .reseal_secrets(attempt, &webhook_reseal, &[], 40)
            .await;
        assert!(
            matches!(result, Err(StoreError::Conflict { .. })),
            "refusal {index}: {result:?}"
        );
        assert_eq!(list().await, before, "refusal {index} changed nothing");
    }
    if webhooks.is_some() {
        let missing_webhook = store
            .reseal_secrets(
                &[
                    reseal("openai", "sealed-a2", "new-a"),
                    reseal("anthropic", "sealed-b", "new-b"),
                ],
                &[],
                &[],
                40,
            )
            .await;
        assert!(
            matches!(missing_webhook, Err(StoreError::Conflict { .. })),
            "a webhook left out: {missing_webhook:?}"
        );
        assert_eq!(list().await, before, "nothing changed");
    }
    assert_eq!(version().await, v2, "refused rotations do not bump");
    store
        .reseal_secrets(
            &[
                reseal("openai", "sealed-a2", "new-a"),
                reseal("anthropic", "sealed-b", "new-b"),
            ],
            &webhook_reseal,
            &[],
            50,
        )
        .await
        .unwrap_or_else(|err| panic!("reseal: {err}"));
    assert!(version().await > v2, "rotation bumps the change counter");
    let after: Vec<(String, String, i64)> = list()
        .await
        .into_iter()
        .map(|row| (row.provider, row.sealed, row.updated_at))
        .collect();
    assert_eq!(
        after,
        vec![
            ("anthropic".to_owned(), "new-b".to_owned(), 50),
            ("openai".to_owned(), "new-a".to_owned(), 50),
        ]
    );
    if let Some(webhooks) = &webhooks {
        let webhook = webhooks
            .get_webhook("wh_credentials")
            .await
            .unwrap_or_else(|err| panic!("get webhook: {err}"))
            .unwrap_or_else(|| panic!("webhook kept"));
        assert_eq!(webhook.secret_sealed, "wh-new");
        assert!(
            webhooks
                .delete_webhook("wh_credentials")
                .await
                .unwrap_or(false)
        );
    }

    // Delete.
    let v3 = version().await;
    assert!(
        store
            .delete_provider_credential("openai")
            .await
            .unwrap_or_else(|err| panic!("delete: {err}"))
    );
    assert!(version().await > v3, "delete bumps the change counter");
    assert!(
        !store
            .delete_provider_credential("openai")
            .await
            .unwrap_or_else(|err| panic!("delete again: {err}"))
    );
    assert!(
        store
            .delete_provider_credential("anthropic")
            .await
            .unwrap_or(false)
    );
    assert!(list().await.is_empty());
}

fn stored_rule(tenant: &TenantId, rule_id: &str, json: &str, now: i64) -> StoredRule {
    StoredRule {
        tenant_id: tenant.clone(),
        rule_id: rule_id.to_owned(),
        rule: json.to_owned(),
        created_at: now,
        updated_at: now,
    }
}

/// The tenant-rules contract: rules are kept per tenant (the same rule id may exist in two
/// tenants), listed in creation order, refused when the id repeats within a tenant or the
/// tenant is missing, replaced and deleted by (tenant, id); every mutation bumps the change
/// counter; the snapshot carries them; deleting the tenant deletes its rules.
async fn run_rules(store: &dyn Store, hasher: &KeyHasher) {
    let version = || async {
        store
            .change_version()
            .await
            .unwrap_or_else(|err| panic!("version: {err}"))
    };
    let mut tenants = Vec::new();
    for name in ["rules-a", "rules-b"] {
        let tenant = new_tenant(name, 5_000);
        let (_, key) = new_key(&tenant.id, hasher, 5_000);
        store
            .create_tenant(&tenant, &key)
            .await
            .unwrap_or_else(|err| panic!("create tenant {name}: {err}"));
        tenants.push(tenant.id);
    }
    let (a, b) = (&tenants[0], &tenants[1]);
    let falcon = r#"{"id":"falcon","match":{"keywords":["falcon"]},"action":"block"}"#;
    let tickets = r#"{"id":"tickets","match":{"regex":"T-[0-9]+"},"action":"redact"}"#;

    let before = version().await;
    store
        .create_rule(&stored_rule(a, "tickets", tickets, 5_001))
        .await
        .unwrap_or_else(|err| panic!("create rule: {err}"));
    store
        .create_rule(&stored_rule(a, "falcon", falcon, 5_002))
        .await
        .unwrap_or_else(|err| panic!("create rule: {err}"));
    store
        .create_rule(&stored_rule(b, "falcon", falcon, 5_003))
        .await
        .unwrap_or_else(|err| panic!("the same id in another tenant: {err}"));
    assert!(
        version().await > before,
        "creating a rule bumps the version"
    );

    match store
        .create_rule(&stored_rule(a, "falcon", tickets, 5_004))
        .await
    {
        Err(StoreError::Conflict {
            entity: "rule",
            value,
        }) => assert_eq!(value, "falcon"),
        other => panic!("a repeated rule id must conflict, got {other:?}"),
    }
    assert!(
        store
            .create_rule(&stored_rule(&TenantId::generate(), "x", falcon, 5_004))
            .await
            .is_err(),
        "a rule of a missing tenant is refused"
    );

    let listed = store
        .list_rules(a)
        .await
        .unwrap_or_else(|err| panic!("list rules: {err}"));
    let ids: Vec<&str> = listed.iter().map(|rule| rule.rule_id.as_str()).collect();
    assert_eq!(ids, ["tickets", "falcon"], "creation order");
    assert_eq!(listed[0].rule, tickets, "the JSON comes back as written");
    assert_eq!(listed[0].created_at, 5_001);
    assert_eq!(
        store.list_rules(b).await.map(|rules| rules.len()).ok(),
        Some(1)
    );
    assert_eq!(
        store
            .get_rule(a, "falcon")
            .await
            .unwrap_or_else(|err| panic!("get rule: {err}")),
        Some(stored_rule(a, "falcon", falcon, 5_002))
    );
    assert_eq!(store.get_rule(a, "nope").await.ok().flatten(), None);

    // Replace changes one tenant's rule only, and keeps its creation time.
    let before = version().await;
    let replaced = store
        .replace_rule(a, "falcon", tickets, 6_000)
        .await
        .unwrap_or_else(|err| panic!("replace rule: {err}"))
        .unwrap_or_else(|| panic!("replace: rule vanished"));
    assert_eq!(replaced.rule, tickets);
    assert_eq!((replaced.created_at, replaced.updated_at), (5_002, 6_000));
    assert!(
        version().await > before,
        "replacing a rule bumps the version"
    );
    assert_eq!(
        store
            .get_rule(b, "falcon")
            .await
            .ok()
            .flatten()
            .map(|rule| rule.rule),
        Some(falcon.to_owned())
    );
    assert!(
        store
            .replace_rule(a, "nope", falcon, 6_000)
            .await
            .ok()
            .flatten()
            .is_none(),
        "replacing a missing rule returns None"
    );

    // The snapshot carries every tenant's rules at the same version.
    let snapshot = store
        .load_snapshot()
        .await
        .unwrap_or_else(|err| panic!("snapshot: {err}"));
    assert_eq!(snapshot.rules.len(), 3);
    assert_eq!(
        snapshot
            .rules
            .iter()
            .filter(|rule| &rule.tenant_id == a)
            .count(),
        2
    );
    assert_eq!(snapshot.version, version().await);

    let before = version().await;
    assert!(store.delete_rule(a, "tickets").await.unwrap_or(false));
    assert!(!store.delete_rule(a, "tickets").await.unwrap_or(true));
    assert!(
        version().await > before,
        "deleting a rule bumps the version"
    );
    assert_eq!(
        store.list_rules(a).await.map(|rules| rules.len()).ok(),
        Some(1)
    );

    // Deleting a tenant deletes its rules.
    for tenant in &tenants {
        assert!(store.delete_tenant(tenant).await.unwrap_or(false));
    }
    let snapshot = store
        .load_snapshot()
        .await
        .unwrap_or_else(|err| panic!("snapshot: {err}"));
    assert!(snapshot.rules.is_empty(), "rules go with their tenant");
}

fn new_delivery(id: &str, webhook_id: &str, due: i64) -> NewDelivery {
    NewDelivery {
        id: id.to_owned(),
        webhook_id: webhook_id.to_owned(),
        event: "key.rotated".to_owned(),
        payload: format!("{{\"id\":\"{id}\"}}"),
        next_attempt_at: due,
        created_at: due,
    }
}

/// The webhook contract: subscriptions round-trip (secret included, sealed as given), the
/// outbox hands each due row to exactly one claimer, attempts are recorded, and deleting a
/// webhook removes its deliveries.
pub async fn run_webhooks(store: &dyn WebhookStore) {
    assert!(
        store
            .list_webhooks()
            .await
            .unwrap_or_else(|err| panic!("list webhooks: {err}"))
            .is_empty(),
        "no webhooks in a fresh store"
    );
    let hook = Webhook {
        id: "wh_one".to_owned(),
        url: "https://hooks.example.com/flowgate".to_owned(),
        events: vec!["key.rotated".to_owned(), "request.blocked".to_owned()],
        secret_sealed: "sealed-secret".to_owned(),
        created_at: 5_000,
        disabled: false,
    };
    store
        .create_webhook(&hook)
        .await
        .unwrap_or_else(|err| panic!("create webhook: {err}"));
    assert!(
        matches!(
            store.create_webhook(&hook).await,
            Err(StoreError::Conflict { .. })
        ),
        "duplicate webhook id is a conflict"
    );
    let other = Webhook {
        id: "wh_two".to_owned(),
        url: "https://other.example.com/".to_owned(),
        events: vec!["audit.checkpoint".to_owned()],
        secret_sealed: "other".to_owned(),
        created_at: 6_000,
        disabled: true,
    };
    store
        .create_webhook(&other)
        .await
        .unwrap_or_else(|err| panic!("create webhook: {err}"));
    let listed = store
        .list_webhooks()
        .await
        .unwrap_or_else(|err| panic!("list webhooks: {err}"));
    assert_eq!(
        listed,
        vec![hook.clone(), other.clone()],
        "listed oldest first"
    );
    assert_eq!(
        store.get_webhook("wh_one").await.unwrap_or(None),
        Some(hook.clone())
    );
    assert_eq!(store.get_webhook("wh_none").await.unwrap_or(None), None);

    // Three rows: two due at 10_000, one due later.
    store
        .enqueue_deliveries(&[
            new_delivery("whd_a", "wh_one", 10_000),
            new_delivery("whd_b", "wh_one", 10_000),
            new_delivery("whd_c", "wh_one", 50_000),
        ])
        .await
        .unwrap_or_else(|err| panic!("enqueue: {err}"));
    store
        .enqueue_deliveries(&[])
        .await
        .unwrap_or_else(|err| panic!("enqueue nothing: {err}"));
    // A failing batch inserts nothing (all or none).
    assert!(
        store
            .enqueue_deliveries(&[
                new_delivery("whd_d", "wh_one", 10_000),
                new_delivery("whd_a", "wh_one", 10_000),
            ])
            .await
            .is_err(),
        "duplicate delivery id fails the batch"
    );
    let listed = store
        .list_deliveries("wh_one", 10)
        .await
        .unwrap_or_else(|err| panic!("list deliveries: {err}"));
    assert_eq!(listed.len(), 3, "the failed batch left nothing behind");
    assert!(
        listed
            .iter()
            .all(|delivery| delivery.status == DeliveryStatus::Pending
                && delivery.attempts == 0
                && delivery.last_error.is_none()
                && delivery.last_status.is_none())
    );
    assert_eq!(listed[0].id, "whd_c", "newest first");

    // Nothing is due before its time; due rows are claimed once.
    assert!(
        store
            .claim_due_deliveries(9_999, 20_000, 10)
            .await
            .unwrap_or_else(|err| panic!("claim: {err}"))
            .is_empty()
    );
    let claimed = store
        .claim_due_deliveries(10_000, 20_000, 1)
        .await
        .unwrap_or_else(|err| panic!("claim: {err}"));
    assert_eq!(claimed.len(), 1, "limit respected");
    assert_eq!(claimed[0].next_attempt_at, 20_000, "lease applied");
    assert_eq!(claimed[0].payload, "{\"id\":\"whd_a\"}");
    let rest = store
        .claim_due_deliveries(10_000, 20_000, 10)
        .await
        .unwrap_or_else(|err| panic!("claim: {err}"));
    assert_eq!(
        rest.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["whd_b"],
        "a claimed row is not handed out again while leased"
    );

    // A failed attempt reschedules; the lease expiry alone also makes a row due again.
    store
        .record_attempt(
            "whd_a",
            &AttemptOutcome {
                attempts: 1,
                status: DeliveryStatus::Pending,
                next_attempt_at: 12_000,
                last_error: Some("HTTP 500".to_owned()),
                last_status: Some(500),
                now: 10_500,
            },
        )
        .await
        .unwrap_or_else(|err| panic!("record: {err}"));
    let again = store
        .claim_due_deliveries(12_000, 30_000, 10)
        .await
        .unwrap_or_else(|err| panic!("claim: {err}"));
    assert_eq!(
        again.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["whd_a"]
    );
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_status, Some(500));
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 500"));
    let expired_lease = store
        .claim_due_deliveries(20_000, 40_000, 10)
        .await
        .unwrap_or_else(|err| panic!("claim: {err}"));
    assert_eq!(
        expired_lease
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        vec!["whd_b"],
        "an expired lease (crashed worker) makes the row due again"
    );

    // Final states are never claimed.
    for (id, status) in [
        ("whd_a", DeliveryStatus::Delivered),
        ("whd_b", DeliveryStatus::Failed),
    ] {
        store
            .record_attempt(
                id,
                &AttemptOutcome {
                    attempts: 2,
                    status,
                    next_attempt_at: 0,
                    last_error: None,
                    last_status: Some(200),
                    now: 31_000,
                },
            )
            .await
            .unwrap_or_else(|err| panic!("record: {err}"));
    }
    let due = store
        .claim_due_deliveries(100_000, 110_000, 10)
        .await
        .unwrap_or_else(|err| panic!("claim: {err}"));
    assert_eq!(
        due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["whd_c"]
    );
    let listed = store
        .list_deliveries("wh_one", 2)
        .await
        .unwrap_or_else(|err| panic!("list deliveries: {err}"));
    assert_eq!(listed.len(), 2, "limit respected");
    let all = store
        .list_deliveries("wh_one", 10)
        .await
        .unwrap_or_else(|err| panic!("list deliveries: {err}"));
    let status_of = |id: &str| {
        all.iter()
            .find(|delivery| delivery.id == id)
            .map(|delivery| (delivery.status, delivery.attempts, delivery.updated_at))
    };
    assert_eq!(
        status_of("whd_a"),
        Some((DeliveryStatus::Delivered, 2, 31_000))
    );
    assert_eq!(
        status_of("whd_b"),
        Some((DeliveryStatus::Failed, 2, 31_000))
    );
    assert!(
        store
            .list_deliveries("wh_two", 10)
            .await
            .unwrap_or_default()
            .is_empty()
    );

    // Delete removes the webhook and its outbox rows.
    assert!(store.delete_webhook("wh_one").await.unwrap_or(false));
    assert!(!store.delete_webhook("wh_one").await.unwrap_or(true));
    assert!(
        store
            .list_deliveries("wh_one", 10)
            .await
            .unwrap_or_else(|err| panic!("list deliveries: {err}"))
            .is_empty()
    );
    assert!(
        store
            .claim_due_deliveries(i64::MAX - 1, i64::MAX, 10)
            .await
            .unwrap_or_else(|err| panic!("claim: {err}"))
            .is_empty()
    );
    assert_eq!(
        store
            .list_webhooks()
            .await
            .unwrap_or_default()
            .iter()
            .map(|hook| hook.id.as_str())
            .collect::<Vec<_>>(),
        vec!["wh_two"]
    );
}

/// A record of the conformance log: tenant `t{i % 3}`, model `m{i % 2}`, every fifth
/// blocked by rule `r-block` (2 hits), every other one flagged by `r-flag`.
fn audit_record(i: u64) -> AuditRecord {
    let mut record = AuditRecord::gap(1_000 + i * 10, 0, "");
    record.kind = RecordKind::Completion;
    record.gap = None;
    record.request_id = format!("req-{i}");
    record.tenant_id = format!("t{}", i % 3);
    record.model = format!("m{}", i % 2);
    record.key_id = "k".into();
    record.route = "/v1/chat/completions".into();
    record.provider = "mock".into();
    record.http_status = Some(200);
    record.decision = if i.is_multiple_of(5) {
        Decision::Block
    } else {
        Decision::Allow
    };
    if i.is_multiple_of(5) {
        record.findings.push(RuleFinding {
            rule_id: "r-block".into(),
            action: "block".into(),
            count: 2,
        });
    }
    if i.is_multiple_of(2) {
        record.findings.push(RuleFinding {
            rule_id: "r-flag".into(),
            action: "flag".into(),
            count: 1,
        });
    }
    record
}

/// Appends `count` records through a real appender in batches of `batch`, storing what it
/// produces exactly like the gateway's writer.
async fn append_records(
    audit: &dyn AuditStore,
    appender: &mut LogAppender,
    start: u64,
    count: u64,
    batch: u64,
) {
    let mut i = start;
    while i < start + count {
        let end = (i + batch).min(start + count);
        let mut entries = Vec::new();
        let mut subtrees = Vec::new();
        let mut checkpoints = Vec::new();
        for n in i..end {
            let record = audit_record(n);
            let appended = appender.append(&record, 1_000 + n * 10);
            subtrees.extend(appended.subtrees);
            if let Some(checkpoint) = appended.checkpoint {
                checkpoints.push(StoredCheckpoint {
                    size: checkpoint.checkpoint.size,
                    note: checkpoint.note,
                });
            }
            entries.push(AuditEntry::new(
                appended.index,
                String::from_utf8(appended.canonical)
                    .unwrap_or_else(|err| panic!("canonical utf-8: {err}")),
                appended.leaf_hash,
                appended.time_ms,
                &record,
            ));
        }
        let state = serde_json::to_string(&appender.state()).ok();
        audit
            .append_audit(
                "conformance.example/log",
                AuditWrite {
                    entries: &entries,
                    subtrees: &subtrees,
                    checkpoints: &checkpoints,
                    state: state.as_deref(),
                },
            )
            .await
            .unwrap_or_else(|err| panic!("append audit batch at {i}: {err}"));
        i = end;
    }
}

/// The audit storage contract: node identity, atomic batches, reads for verification and
/// proofs, filters, stats and retention.
/// Where the log ends, as every appender of the store reads it (the one the gateway drives
/// through the async store, and the store's dedicated one when it has one): the next index,
/// the newest checkpoint, and the leaf of the last entry (what a replay compares before
/// skipping records as already stored).
async fn check_tails(audit: &Arc<dyn AuditStore>, origin: &'static str) {
    let size = audit.audit_size(origin).await.unwrap_or(0);
    let last_leaf = audit
        .audit_leaf_hashes(origin, size - 1, size)
        .await
        .unwrap_or_else(|err| panic!("leaf hashes: {err}"))
        .first()
        .copied();
    assert!(last_leaf.is_some());
    let newest = audit
        .audit_checkpoints(origin)
        .await
        .unwrap_or_default()
        .iter()
        .map(|checkpoint| checkpoint.size)
        .max();
    let runtime = tokio::runtime::Handle::current();
    let audit = Arc::clone(audit);
    let tails = tokio::task::spawn_blocking(move || {
        let mut through_store =
            BlockingAppender::new(Arc::clone(&audit), runtime, Duration::from_secs(10));
        let mut tails = vec![through_store.tail(origin)];
        let dedicated = audit
            .dedicated_appender()
            .unwrap_or_else(|err| panic!("dedicated appender: {err}"));
        if let Some(mut dedicated) = dedicated {
            tails.push(dedicated.tail(origin));
        }
        tails
    })
    .await
    .unwrap_or_else(|err| panic!("tail task: {err}"));
    for tail in tails {
        let tail = tail.unwrap_or_else(|err| panic!("tail: {err}"));
        assert_eq!(
            (tail.next_index, tail.checkpoint_size, tail.last_leaf),
            (size, newest, last_leaf)
        );
    }
}

pub async fn run_audit(audit: Arc<dyn AuditStore>) {
    let origin = "conformance.example/log";
    assert!(
        audit
            .audit_node(origin)
            .await
            .unwrap_or_else(|err| panic!("node: {err}"))
            .is_none()
    );
    let signer = NoteSigner::generate(origin).unwrap_or_else(|err| panic!("key: {err}"));
    let node = audit
        .create_audit_node(origin, &signer.to_private_key_string())
        .await
        .unwrap_or_else(|err| panic!("create node: {err}"));
    assert_eq!(node.signing_key, signer.to_private_key_string());
    let other = NoteSigner::generate(origin).unwrap_or_else(|err| panic!("key: {err}"));
    let again = audit
        .create_audit_node(origin, &other.to_private_key_string())
        .await
        .unwrap_or_else(|err| panic!("create node again: {err}"));
    assert_eq!(again.signing_key, node.signing_key, "first key wins");
    assert_eq!(
        audit.audit_origins().await.unwrap_or_default(),
        vec![origin.to_owned()]
    );
    assert_eq!(audit.audit_size(origin).await.unwrap_or(99), 0);

    let policy = CheckpointPolicy {
        every_records: NonZeroU64::new(100).unwrap_or(NonZeroU64::MIN),
        every_ms: NonZeroU64::new(u64::MAX).unwrap_or(NonZeroU64::MIN),
    };
    let mut appender = LogAppender::new(
        origin,
        NoteSigner::parse(&signer.to_private_key_string())
            .unwrap_or_else(|err| panic!("key: {err}")),
        policy,
        0,
    )
    .unwrap_or_else(|err| panic!("appender: {err}"));
    // 1,200 rows in batches of 700: more than one multi-row statement per batch.
    append_records(audit.as_ref(), &mut appender, 0, 1_200, 700).await;
    assert_eq!(audit.audit_size(origin).await.unwrap_or(0), 1_200);
    check_tails(&audit, origin).await;
    let checkpoints = audit.audit_checkpoints(origin).await.unwrap_or_default();
    assert_eq!(
        checkpoints.iter().map(|c| c.size).collect::<Vec<_>>(),
        (1..=12).map(|n| n * 100).collect::<Vec<_>>()
    );
    let node = audit.audit_node(origin).await.ok().flatten();
    assert!(
        node.as_ref().and_then(|node| node.state.as_ref()).is_some(),
        "state hint kept"
    );
    // A duplicate index is refused and the whole batch rolls back.
    let duplicate = audit
        .append_audit(
            origin,
            AuditWrite {
                entries: &[AuditEntry {
                    index: 5,
                    record: "{}".into(),
                    leaf_hash: [0; 32],
                    time_ms: 0,
                    kind: RecordKind::Request,
                    request_id: String::new(),
                    tenant_id: String::new(),
                    decision: Decision::Allow,
                    model: String::new(),
                    status: None,
                    findings: Vec::new(),
                }],
                subtrees: &[],
                checkpoints: &[StoredCheckpoint {
                    size: 9_999,
                    note: "x".into(),
                }],
                state: None,
            },
        )
        .await;
    assert!(duplicate.is_err(), "duplicate index must fail");
    assert_eq!(
        audit
            .audit_checkpoints(origin)
            .await
            .unwrap_or_default()
            .len(),
        12,
        "rolled back"
    );

    // The stored log verifies and rebuilds the appender exactly.
    let source = OriginLog::new(Arc::clone(&audit), origin);
    let report = verify_source(
        &source,
        VerifyOptions::new(origin, vec![signer.verifier()]),
        333,
    )
    .await
    .unwrap_or_else(|err| panic!("verify: {err}"));
    assert_eq!(report.size, 1_200);
    assert_eq!(report.checkpoints_verified, 12);
    let rebuilt = rebuild_appender_state(&source, &[signer.verifier()], None, 0)
        .await
        .unwrap_or_else(|err| panic!("rebuild: {err}"));
    assert_eq!(rebuilt.frontier, appender.state().frontier);
    assert_eq!(rebuilt.last_checkpoint_size, 1_200);
    // Cached subtrees (256-leaf) exist and proofs check against the checkpoint root.
    assert!(
        audit
            .audit_subtree(origin, 8, 0)
            .await
            .ok()
            .flatten()
            .is_some()
    );
    let proof = prove_inclusion(&source, 700, 1_200)
        .await
        .unwrap_or_else(|err| panic!("prove: {err}"));
    let leaf = audit
        .audit_leaf_hashes(origin, 700, 701)
        .await
        .unwrap_or_default();
    assert_eq!(leaf.len(), 1);
    assert!(
        flowgate_audit::merkle::verify_inclusion(700, 1_200, &leaf[0], &proof, &appender.root())
            .is_ok(),
        "inclusion proof verifies"
    );

    // Filters, newest first, cursor pagination.
    let list = |filter: AuditFilter| {
        let audit = Arc::clone(&audit);
        async move {
            audit
                .list_audit(origin, &filter)
                .await
                .unwrap_or_else(|err| panic!("list: {err}"))
        }
    };
    let blocked = list(AuditFilter {
        decision: Some("BLOCK".into()),
        limit: 1_000,
        ..AuditFilter::default()
    })
    .await;
    assert_eq!(blocked.len(), 240);
    assert!(blocked.windows(2).all(|pair| pair[0].index > pair[1].index));
    let page = list(AuditFilter {
        tenant_id: Some("t1".into()),
        model: Some("m0".into()),
        limit: 10,
        ..AuditFilter::default()
    })
    .await;
    assert_eq!(page.len(), 10);
    assert!(
        page.iter()
            .all(|row| row.index % 3 == 1 && row.index % 2 == 0)
    );
    let next = list(AuditFilter {
        tenant_id: Some("t1".into()),
        model: Some("m0".into()),
        limit: 10,
        before_index: page.last().map(|row| row.index),
        ..AuditFilter::default()
    })
    .await;
    assert!(next.first().map(|row| row.index) < page.last().map(|row| row.index));
    let by_rule = list(AuditFilter {
        rule_id: Some("r-block".into()),
        from_ms: Some(1_000),
        to_ms: Some(1_000 + 100 * 10),
        limit: 1_000,
        ..AuditFilter::default()
    })
    .await;
    assert_eq!(by_rule.len(), 20, "indices 0..100 divisible by 5");
    let one_request = list(AuditFilter {
        request_id: Some("req-7".into()),
        limit: 10,
        ..AuditFilter::default()
    })
    .await;
    assert_eq!(
        one_request.iter().map(|row| row.index).collect::<Vec<_>>(),
        vec![7],
        "request_id selects that request's records"
    );

    let stats = audit
        .audit_stats(origin, None, None, None)
        .await
        .unwrap_or_else(|err| panic!("stats: {err}"));
    assert_eq!((stats.records, stats.requests), (1_200, 1_200));
    assert_eq!(
        stats
            .top_triggered_rules
            .first()
            .map(|rule| (rule.rule_id.as_str(), rule.records)),
        Some(("r-flag", 600))
    );
    assert!(
        stats
            .top_triggered_rules
            .iter()
            .any(|rule| rule.rule_id == "r-block" && rule.hits == 480)
    );
    assert!(
        stats
            .by_decision
            .iter()
            .any(|count| count.name == "BLOCK" && count.count == 240)
    );
    assert_eq!(stats.by_tenant.len(), 3);
    let tenant_stats = audit
        .audit_stats(origin, Some("t0"), None, None)
        .await
        .unwrap_or_default();
    assert_eq!(tenant_stats.records, 400);

    // Retention at checkpoint 500: what remains still verifies from the anchor.
    let anchor = anchor_at(&source, 500)
        .await
        .unwrap_or_else(|err| panic!("anchor: {err}"));
    let deleted = audit
        .prune_audit(origin, &anchor)
        .await
        .unwrap_or_else(|err| panic!("prune: {err}"));
    assert_eq!(deleted, 500);
    assert_eq!(audit.audit_size(origin).await.unwrap_or(0), 1_200);
    assert_eq!(
        audit
            .audit_checkpoints(origin)
            .await
            .unwrap_or_default()
            .first()
            .map(|c| c.size),
        Some(500)
    );
    let report = verify_source(
        &source,
        VerifyOptions::new(origin, vec![signer.verifier()]),
        1_000,
    )
    .await
    .unwrap_or_else(|err| panic!("verify after prune: {err}"));
    assert_eq!(report.size, 1_200);
    assert_eq!(report.start_index, 500);
    // Proofs of kept records still reach across the pruned prefix.
    let proof = prove_inclusion(&source, 1_100, 1_200)
        .await
        .unwrap_or_else(|err| panic!("prove after prune: {err}"));
    let leaf = audit
        .audit_leaf_hashes(origin, 1_100, 1_101)
        .await
        .unwrap_or_default();
    assert!(
        flowgate_audit::merkle::verify_inclusion(1_100, 1_200, &leaf[0], &proof, &appender.root())
            .is_ok()
    );
    assert_eq!(
        audit
            .audit_leaf_hashes(origin, 0, 1_200)
            .await
            .unwrap_or_default()
            .len(),
        1_200
    );
}

/// Audit stream cursors: absent until saved, kept per (origin, sink), never moved backwards;
/// the bounded checkpoint read a sink tails with.
pub async fn run_audit_sink_cursors(audit: &dyn AuditStore) {
    let origin = "conformance.example/sink";
    let cursor = |next_index, checkpoint_size| SinkCursor {
        next_index,
        checkpoint_size,
    };
    let read = |sink: &'static str| async move {
        audit
            .audit_sink_cursor(origin, sink)
            .await
            .unwrap_or_else(|err| panic!("read cursor {sink}: {err}"))
    };
    assert_eq!(
        read("nats/A").await,
        None,
        "no cursor before the first save"
    );
    let save = |sink: &'static str, value: SinkCursor| async move {
        audit
            .save_audit_sink_cursor(origin, sink, value)
            .await
            .unwrap_or_else(|err| panic!("save cursor {sink}: {err}"));
    };
    save("nats/A", cursor(10, 0)).await;
    assert_eq!(read("nats/A").await, Some(cursor(10, 0)));
    save("nats/A", cursor(250, 200)).await;
    assert_eq!(read("nats/A").await, Some(cursor(250, 200)));
    // A stale save (a slow second publisher) moves nothing backwards, field by field.
    save("nats/A", cursor(100, 300)).await;
    assert_eq!(read("nats/A").await, Some(cursor(250, 300)));
    // Sinks and origins are independent.
    assert_eq!(read("kafka/B").await, None);
    save("kafka/B", cursor(1, 0)).await;
    assert_eq!(read("kafka/B").await, Some(cursor(1, 0)));
    assert_eq!(read("nats/A").await, Some(cursor(250, 300)));
    assert_eq!(
        audit
            .audit_sink_cursor("conformance.example/other", "nats/A")
            .await
            .unwrap_or_else(|err| panic!("read other origin: {err}")),
        None
    );

    // Checkpoints in (after, up_to], by size, bounded.
    let checkpoints: Vec<StoredCheckpoint> = [10u64, 20, 30, 40]
        .into_iter()
        .map(|size| StoredCheckpoint {
            size,
            note: format!("note {size}"),
        })
        .collect();
    audit
        .append_audit(
            origin,
            AuditWrite {
                entries: &[],
                subtrees: &[],
                checkpoints: &checkpoints,
                state: None,
            },
        )
        .await
        .unwrap_or_else(|err| panic!("append checkpoints: {err}"));
    let between = |after, up_to, limit| async move {
        audit
            .audit_checkpoints_between(origin, after, up_to, limit)
            .await
            .unwrap_or_else(|err| panic!("checkpoints between: {err}"))
            .into_iter()
            .map(|checkpoint| checkpoint.size)
            .collect::<Vec<_>>()
    };
    assert_eq!(between(0, 100, 10).await, vec![10, 20, 30, 40]);
    assert_eq!(between(10, 30, 10).await, vec![20, 30]);
    assert_eq!(between(0, 100, 2).await, vec![10, 20]);
    assert_eq!(between(40, 100, 10).await, Vec::<u64>::new());
    assert_eq!(
        audit
            .audit_checkpoints_between(origin, 0, 100, 10)
            .await
            .unwrap_or_default()
            .first()
            .map(|checkpoint| checkpoint.note.clone()),
        Some("note 10".to_owned())
    );
}
