//! The conformance suite: one behavioural test of the `Store` contract, run against every
//! implementation (SQLite always; PostgreSQL in its own schema). Lives in the library so any
//! future backend's tests call the same function.

use crate::{NewKey, NewTenant, Store, StoreError, TenantPatch};
use flowgate_types::{ApiKeySecret, KeyHasher, KeyId, TenantId};

fn new_tenant(name: &str, now: i64) -> NewTenant {
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

fn new_key(tenant: &TenantId, hasher: &KeyHasher, now: i64) -> (ApiKeySecret, NewKey) {
    let secret = ApiKeySecret::generate();
    let key = NewKey {
        id: KeyId::generate(),
        tenant_id: tenant.clone(),
        digest: hasher.digest(secret.expose()),
        prefix: secret.display_prefix(),
        created_at: now,
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
}
