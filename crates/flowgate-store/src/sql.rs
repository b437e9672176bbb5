//! `SqlStore`: the `Store` implementation for SQLite and PostgreSQL, one SQL text for both
//! through sqlx's `Any` driver (`$N` placeholders, BIGINT for integers and flags, TEXT for
//! ids, digests and JSON). Connection setup is the only backend-specific code: WAL and a busy
//! timeout for SQLite, an optional `search_path` for PostgreSQL (used by tests to isolate
//! themselves in a schema).

use crate::migrate::{self, MigrationReport};
use crate::model::*;
use crate::{Store, StoreError, StoredRule};
use async_trait::async_trait;
use flowgate_types::{KeyDigest, KeyId, TenantId};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://path` or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
    /// PostgreSQL only: the schema to use (created if missing).
    pub schema: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// The database file, for SQLite.
    sqlite_file: Option<PathBuf>,
}

impl SqlStore {
    /// Whether this store is SQLite (for the few statements whose best form differs).
    pub(crate) fn is_sqlite(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// The SQLite database file (the audit writer opens its own connection to it).
    pub(crate) fn sqlite_file(&self) -> Option<&Path> {
        self.sqlite_file.as_deref()
    }
}

/// Begins a transaction that writes. On SQLite it takes the write lock at once (`BEGIN
/// IMMEDIATE`): a deferred transaction that reads first and writes later cannot wait for a lock
/// another connection holds (the audit writer's, between its commits) and fails with
/// `SQLITE_BUSY` at its first write instead. PostgreSQL needs nothing of the kind.
pub(crate) async fn begin_write(
    pool: &AnyPool,
) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
    if pool.connect_options().database_url.scheme() == "sqlite" {
        pool.begin_with("BEGIN IMMEDIATE").await
    } else {
        pool.begin().await
    }
}

pub(crate) fn query_error(operation: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |source| match &source {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
            entity: operation,
            value: String::new(),
        },
        _ => StoreError::Query { operation, source },
    }
}

impl SqlStore {
    /// Connects (creating the SQLite file and its folder if needed). Does not migrate.
    pub async fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let mut sqlite_file = None;
        let (backend, url) = if let Some(path) = options.url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or(path);
            sqlite_file = Some(PathBuf::from(file));
            if let Some(parent) = std::path::Path::new(file).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|err| StoreError::Connect {
                    source: sqlx::Error::Io(err),
                })?;
            }
            let url = if options.url.contains('?') {
                options.url.clone()
            } else {
                format!("{}?mode=rwc", options.url)
            };
            (Backend::Sqlite, url)
        } else {
            (Backend::Postgres, options.url.clone())
        };
        if let (Backend::Postgres, Some(schema)) = (backend, &options.schema) {
            let bootstrap = AnyPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
                .map_err(|source| StoreError::Connect { source })?;
            bootstrap
                .execute(AssertSqlSafe(format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
                )))
                .await
                .map_err(|source| StoreError::Connect { source })?;
            bootstrap.close().await;
        }
        let schema = options.schema.clone();
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite {
                options.max_connections.clamp(1, 4)
            } else {
                options.max_connections
            })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |connection, _meta| {
                let schema = schema.clone();
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            connection
                                .execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;")
                                .await?;
                        }
                        Backend::Postgres => {
                            if let Some(schema) = schema {
                                connection
                                    .execute(AssertSqlSafe(format!("SET search_path TO \"{schema}\"")))
                                    .await?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| StoreError::Connect { source })?;
        Ok(Self {
            pool,
            backend,
            sqlite_file,
        })
    }
}

fn tenant_from_row(row: &AnyRow) -> Result<Tenant, StoreError> {
    let get_error = query_error("read tenant");
    let allowed: String = row.try_get("allowed_models").map_err(&get_error)?;
    let allowed_models = serde_json::from_str(&allowed).map_err(|err| StoreError::Corrupt {
        field: "tenants.allowed_models",
        detail: err.to_string(),
    })?;
    let optional_u32 = |column: &str| -> Result<Option<u32>, StoreError> {
        let value: Option<i64> = row.try_get(column).map_err(&get_error)?;
        Ok(value.and_then(|value| u32::try_from(value).ok()))
    };
    let tokens: Option<i64> = row.try_get("max_tokens_per_minute").map_err(&get_error)?;
    Ok(Tenant {
        id: TenantId::new(row.try_get::<String, _>("id").map_err(&get_error)?),
        name: row.try_get("name").map_err(&get_error)?,
        rules_preset: row.try_get("rules_preset").map_err(&get_error)?,
        max_requests_per_minute: optional_u32("max_requests_per_minute")?,
        max_tokens_per_minute: tokens.and_then(|value| u64::try_from(value).ok()),
        max_concurrent_requests: optional_u32("max_concurrent_requests")?,
        allowed_models,
        created_at: row.try_get("created_at").map_err(&get_error)?,
        updated_at: row.try_get("updated_at").map_err(&get_error)?,
    })
}

fn key_from_row(row: &AnyRow) -> Result<KeyRecord, StoreError> {
    let get_error = query_error("read key");
    let digest: String = row.try_get("digest").map_err(&get_error)?;
    let optional = |column: &str| -> Result<Option<i64>, StoreError> {
        row.try_get(column).map_err(&get_error)
    };
    let limits = KeyLimits {
        max_requests_per_minute: optional("max_requests_per_minute")?
            .and_then(|value| u32::try_from(value).ok()),
        max_tokens_per_minute: optional("max_tokens_per_minute")?
            .and_then(|value| u64::try_from(value).ok()),
        max_concurrent_requests: optional("max_concurrent_requests")?
            .and_then(|value| u32::try_from(value).ok()),
    };
    Ok(KeyRecord {
        id: KeyId::new(row.try_get::<String, _>("id").map_err(&get_error)?),
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id").map_err(&get_error)?),
        digest: KeyDigest::from_hex(&digest).ok_or_else(|| StoreError::Corrupt {
            field: "api_keys.digest",
            detail: "not a 64-digit hex digest".into(),
        })?,
        prefix: row.try_get("prefix").map_err(&get_error)?,
        created_at: row.try_get("created_at").map_err(&get_error)?,
        expires_at: row.try_get("expires_at").map_err(&get_error)?,
        revoked_at: row.try_get("revoked_at").map_err(&get_error)?,
        limits,
    })
}

const TENANT_COLUMNS: &str = "SELECT id, name, rules_preset, max_requests_per_minute, max_tokens_per_minute, max_concurrent_requests, allowed_models, created_at, updated_at FROM tenants";
const KEY_COLUMNS: &str = "SELECT id, tenant_id, digest, prefix, created_at, expires_at, revoked_at, max_requests_per_minute, max_tokens_per_minute, max_concurrent_requests FROM api_keys";
const BUMP_VERSION: &str = "UPDATE flowgate_state SET version = version + 1 WHERE id = 1";

fn opt_i64<T: TryInto<i64>>(value: Option<T>) -> Option<i64> {
    value.and_then(|value| value.try_into().ok())
}

fn models_json(models: &[String]) -> String {
    serde_json::to_string(models).unwrap_or_else(|_| "[]".to_owned())
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(query_error("ping"))?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        match self.backend {
            Backend::Sqlite => migrate::run(&self.pool, migrate::SQLITE).await,
            Backend::Postgres => migrate::run(&self.pool, migrate::POSTGRES).await,
        }
    }

    async fn create_tenant(
        &self,
        tenant: &NewTenant,
        first_key: &NewKey,
    ) -> Result<Tenant, StoreError> {
        let error = query_error("create tenant");
        let mut transaction = begin_write(&self.pool).await.map_err(&error)?;
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, name, rules_preset, max_requests_per_minute, max_tokens_per_minute, max_concurrent_requests, allowed_models, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(tenant.id.as_str())
        .bind(&tenant.name)
        .bind(&tenant.rules_preset)
        .bind(opt_i64(tenant.max_requests_per_minute))
        .bind(opt_i64(tenant.max_tokens_per_minute))
        .bind(opt_i64(tenant.max_concurrent_requests))
        .bind(models_json(&tenant.allowed_models))
        .bind(tenant.created_at)
        .execute(&mut *transaction)
        .await;
        if let Err(err) = inserted {
            return Err(match error(err) {
                StoreError::Conflict { .. } => StoreError::Conflict {
                    entity: "tenant",
                    value: tenant.name.clone(),
                },
                other => other,
            });
        }
        insert_key(&mut transaction, first_key).await?;
        commit_change(transaction, &error).await?;
        Ok(Tenant {
            id: tenant.id.clone(),
            name: tenant.name.clone(),
            rules_preset: tenant.rules_preset.clone(),
            max_requests_per_minute: tenant.max_requests_per_minute,
            max_tokens_per_minute: tenant.max_tokens_per_minute,
            max_concurrent_requests: tenant.max_concurrent_requests,
            allowed_models: tenant.allowed_models.clone(),
            created_at: tenant.created_at,
            updated_at: tenant.created_at,
        })
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("{TENANT_COLUMNS} WHERE id = $1")))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("get tenant"))?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("{TENANT_COLUMNS} WHERE name = $1")))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("find tenant"))?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{TENANT_COLUMNS} ORDER BY created_at, id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("list tenants"))?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn update_tenant(
        &self,
        id: &TenantId,
        patch: &TenantPatch,
        now: i64,
    ) -> Result<Option<Tenant>, StoreError> {
        let error = query_error("update tenant");
        let mut transaction = begin_write(&self.pool).await.map_err(&error)?;
        let row = sqlx::query(AssertSqlSafe(format!("{TENANT_COLUMNS} WHERE id = $1")))
            .bind(id.as_str())
            .fetch_optional(&mut *transaction)
            .await
            .map_err(&error)?;
        let Some(row) = row else { return Ok(None) };
        let mut tenant = tenant_from_row(&row)?;
        if let Some(name) = &patch.name {
            tenant.name.clone_from(name);
        }
        if let Some(preset) = &patch.rules_preset {
            tenant.rules_preset.clone_from(preset);
        }
        if let Some(value) = patch.max_requests_per_minute {
            tenant.max_requests_per_minute = value;
        }
        if let Some(value) = patch.max_tokens_per_minute {
            tenant.max_tokens_per_minute = value;
        }
        if let Some(value) = patch.max_concurrent_requests {
            tenant.max_concurrent_requests = value;
        }
        if let Some(models) = &patch.allowed_models {
            tenant.allowed_models.clone_from(models);
        }
        tenant.updated_at = now;
        let updated = sqlx::query(
            "UPDATE tenants SET name = $2, rules_preset = $3, max_requests_per_minute = $4, max_tokens_per_minute = $5, max_concurrent_requests = $6, allowed_models = $7, updated_at = $8 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(&tenant.name)
        .bind(&tenant.rules_preset)
        .bind(opt_i64(tenant.max_requests_per_minute))
        .bind(opt_i64(tenant.max_tokens_per_minute))
        .bind(opt_i64(tenant.max_concurrent_requests))
        .bind(models_json(&tenant.allowed_models))
        .bind(now)
        .execute(&mut *transaction)
        .await;
        if let Err(err) = updated {
            return Err(match error(err) {
                StoreError::Conflict { .. } => StoreError::Conflict {
                    entity: "tenant",
                    value: tenant.name.clone(),
                },
                other => other,
            });
        }
        commit_change(transaction, &error).await?;
        Ok(Some(tenant))
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        let error = query_error("delete tenant");
        let mut transaction = begin_write(&self.pool).await.map_err(&error)?;
        sqlx::query("DELETE FROM api_keys WHERE tenant_id = $1")
            .bind(id.as_str())
            .execute(&mut *transaction)
            .await
            .map_err(&error)?;
        sqlx::query("DELETE FROM tenant_rules WHERE tenant_id = $1")
            .bind(id.as_str())
            .execute(&mut *transaction)
            .await
            .map_err(&error)?;
        // The tenant's kept audit content goes with it (its data key is erased).
        sqlx::query("DELETE FROM tenant_data_keys WHERE tenant_id = $1")
            .bind(id.as_str())
            .execute(&mut *transaction)
            .await
            .map_err(&error)?;
        let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *transaction)
            .await
            .map_err(&error)?
            .rows_affected();
        commit_change(transaction, &error).await?;
        Ok(deleted > 0)
    }

    async fn create_key(&self, key: &NewKey) -> Result<KeyRecord, StoreError> {
        let error = query_error("create key");
        let mut transaction = begin_write(&self.pool).await.map_err(&error)?;
        let exists = sqlx::query("SELECT id FROM tenants WHERE id = $1")
            .bind(key.tenant_id.as_str())
            .fetch_optional(&mut *transaction)
            .await
            .map_err(&error)?;
        if exists.is_none() {
            return Err(StoreError::Corrupt {
                field: "api_keys.tenant_id",
                detail: format!("tenant {} does not exist", key.tenant_id),
            });
        }
        insert_key(&mut transaction, key).await?;
        commit_change(transaction, &error).await?;
        Ok(KeyRecord {
            id: key.id.clone(),
            tenant_id: key.tenant_id.clone(),
            digest: key.digest,
            prefix: key.prefix.clone(),
            created_at: key.created_at,
            expires_at: None,
            revoked_at: None,
            limits: key.limits,
        })
    }

    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{KEY_COLUMNS} WHERE tenant_id = $1 ORDER BY created_at, id"
        )))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("list keys"))?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(
        &self,
        tenant: &TenantId,
        key: &KeyId,
        now: i64,
    ) -> Result<bool, StoreError> {
        let error = query_error("revoke key");
        let mut transaction = begin_write(&self.pool).await.map_err(&error)?;
        let changed = sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL")
            .bind(tenant.as_str())
            .bind(key.as_str())
            .bind(now)
            .execute(&mut *transaction)
            .await
            .map_err(&error)?
            .rows_affected();
        commit_change(transaction, &error).await?;
        Ok(changed > 0)
    }

    async fn expire_keys_except(
        &self,
        tenant: &TenantId,
        keep: &KeyId,
        expires_at: i64,
    ) -> Result<u64, StoreError> {
        let error = query_error("expire keys");
        let mut transaction = begin_write(&self.pool).await.map_err(&error)?;
        let changed = sqlx::query(
            "UPDATE api_keys SET expires_at = $3 WHERE tenant_id = $1 AND id <> $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3)",
        )
        .bind(tenant.as_str())
        .bind(keep.as_str())
        .bind(expires_at)
        .execute(&mut *transaction)
        .await
        .map_err(&error)?
        .rows_affected();
        commit_change(transaction, &error).await?;
        Ok(changed)
    }

    async fn list_rules(&self, tenant: &TenantId) -> Result<Vec<StoredRule>, StoreError> {
        crate::rules::list(&self.pool, tenant).await
    }

    async fn get_rule(
        &self,
        tenant: &TenantId,
        rule_id: &str,
    ) -> Result<Option<StoredRule>, StoreError> {
        crate::rules::get(&self.pool, tenant, rule_id).await
    }

    async fn create_rule(&self, rule: &StoredRule) -> Result<(), StoreError> {
        crate::rules::create(&self.pool, rule).await
    }

    async fn replace_rule(
        &self,
        tenant: &TenantId,
        rule_id: &str,
        rule: &str,
        now: i64,
    ) -> Result<Option<StoredRule>, StoreError> {
        crate::rules::replace(&self.pool, tenant, rule_id, rule, now).await
    }

    async fn delete_rule(&self, tenant: &TenantId, rule_id: &str) -> Result<bool, StoreError> {
        crate::rules::delete(&self.pool, tenant, rule_id).await
    }

    async fn list_provider_credentials(&self) -> Result<Vec<crate::StoredCredential>, StoreError> {
        crate::credentials::list(&self.pool).await
    }

    async fn set_provider_credential(
        &self,
        provider: &str,
        sealed: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        crate::credentials::set(&self.pool, provider, sealed, now).await
    }

    async fn delete_provider_credential(&self, provider: &str) -> Result<bool, StoreError> {
        crate::credentials::delete(&self.pool, provider).await
    }

    async fn reseal_secrets(
        &self,
        credentials: &[crate::Reseal],
        webhook_secrets: &[crate::Reseal],
        data_keys: &[crate::Reseal],
        now: i64,
    ) -> Result<(), StoreError> {
        crate::credentials::reseal_all(&self.pool, credentials, webhook_secrets, data_keys, now)
            .await
    }

    async fn list_tenant_data_keys(&self) -> Result<Vec<crate::StoredDataKey>, StoreError> {
        crate::data_keys::list(&self.pool).await
    }

    async fn create_tenant_data_key(
        &self,
        tenant_id: &str,
        sealed: &str,
        now: i64,
    ) -> Result<String, StoreError> {
        crate::data_keys::create(&self.pool, tenant_id, sealed, now).await
    }

    async fn erase_tenant_data_key(&self, tenant_id: &str) -> Result<bool, StoreError> {
        crate::data_keys::erase(&self.pool, tenant_id).await
    }

    async fn change_version(&self) -> Result<i64, StoreError> {
        sqlx::query("SELECT version FROM flowgate_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get("version"))
            .map_err(query_error("change version"))
    }

    fn audit_store(&self) -> Option<std::sync::Arc<dyn crate::AuditStore>> {
        Some(std::sync::Arc::new(self.clone()))
    }

    fn webhook_store(&self) -> Option<std::sync::Arc<dyn crate::WebhookStore>> {
        Some(std::sync::Arc::new(self.clone()))
    }

    async fn load_snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        let error = query_error("load snapshot");
        let mut transaction = begin_write(&self.pool).await.map_err(&error)?;
        let version: i64 = sqlx::query("SELECT version FROM flowgate_state WHERE id = 1")
            .fetch_one(&mut *transaction)
            .await
            .and_then(|row| row.try_get("version"))
            .map_err(&error)?;
        let tenants = sqlx::query(TENANT_COLUMNS)
            .fetch_all(&mut *transaction)
            .await
            .map_err(&error)?
            .iter()
            .map(tenant_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let keys = sqlx::query(KEY_COLUMNS)
            .fetch_all(&mut *transaction)
            .await
            .map_err(&error)?
            .iter()
            .map(key_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let rules = crate::rules::all_in(&mut transaction).await?;
        transaction.commit().await.map_err(&error)?;
        Ok(StoreSnapshot {
            version,
            tenants,
            keys,
            rules,
        })
    }
}

/// Ends a mutating transaction: bumps the change counter that replicas poll, then commits, so
/// no change is ever visible without its version bump.
/// Runs one `DELETE` with `keys` bound in order, in a transaction that bumps the change
/// counter only when a row went. True when one did.
pub(crate) async fn delete_bumping(
    pool: &AnyPool,
    operation: &'static str,
    statement: &'static str,
    keys: &[&str],
) -> Result<bool, StoreError> {
    let error = query_error(operation);
    let mut transaction = begin_write(pool).await.map_err(&error)?;
    let mut query = sqlx::query(statement);
    for key in keys {
        query = query.bind(*key);
    }
    let deleted = query
        .execute(&mut *transaction)
        .await
        .map_err(&error)?
        .rows_affected();
    if deleted == 0 {
        return Ok(false);
    }
    commit_change(transaction, &error).await?;
    Ok(true)
}

pub(crate) async fn commit_change(
    mut transaction: sqlx::Transaction<'_, sqlx::Any>,
    error: &impl Fn(sqlx::Error) -> StoreError,
) -> Result<(), StoreError> {
    sqlx::query(BUMP_VERSION)
        .execute(&mut *transaction)
        .await
        .map_err(error)?;
    transaction.commit().await.map_err(error)
}

async fn insert_key(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    key: &NewKey,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO api_keys (id, tenant_id, digest, prefix, created_at, max_requests_per_minute, max_tokens_per_minute, max_concurrent_requests) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(key.id.as_str())
        .bind(key.tenant_id.as_str())
        .bind(key.digest.to_hex())
        .bind(&key.prefix)
        .bind(key.created_at)
        .bind(opt_i64(key.limits.max_requests_per_minute))
        .bind(opt_i64(key.limits.max_tokens_per_minute))
        .bind(opt_i64(key.limits.max_concurrent_requests))
        .execute(&mut **transaction)
        .await
        .map_err(query_error("insert key"))?;
    Ok(())
}
