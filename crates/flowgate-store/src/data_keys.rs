//! Tenants' data keys for audit content kept in the log: one row per tenant holding the key
//! as the gateway sealed it under the master key (the store never sees it in clear).
//! Creating a key does not bump the change counter (replicas that miss it create theirs,
//! and the first stored one wins); erasing one does, so every replica forgets it.

use sqlx::{AnyPool, Row};

use crate::StoreError;
use crate::sql::{begin_write, query_error};

/// One tenant's sealed data key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredDataKey {
    pub tenant_id: String,
    /// The sealed key (opaque to the store).
    pub sealed: String,
}

impl std::fmt::Debug for StoredDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredDataKey")
            .field("tenant_id", &self.tenant_id)
            .field("sealed", &"<sealed>")
            .finish()
    }
}

pub(crate) async fn list(pool: &AnyPool) -> Result<Vec<StoredDataKey>, StoreError> {
    let error = query_error("list tenant data keys");
    sqlx::query("SELECT tenant_id, sealed FROM tenant_data_keys ORDER BY tenant_id")
        .fetch_all(pool)
        .await
        .map_err(&error)?
        .iter()
        .map(|row| {
            Ok(StoredDataKey {
                tenant_id: row.try_get("tenant_id").map_err(&error)?,
                sealed: row.try_get("sealed").map_err(&error)?,
            })
        })
        .collect()
}

/// Stores `sealed` as the tenant's key unless it has one; returns the stored key.
pub(crate) async fn create(
    pool: &AnyPool,
    tenant_id: &str,
    sealed: &str,
    now: i64,
) -> Result<String, StoreError> {
    let error = query_error("create tenant data key");
    let mut transaction = begin_write(pool).await.map_err(&error)?;
    sqlx::query(
        "INSERT INTO tenant_data_keys (tenant_id, sealed, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant_id)
    .bind(sealed)
    .bind(now)
    .execute(&mut *transaction)
    .await
    .map_err(&error)?;
    let stored: String = sqlx::query("SELECT sealed FROM tenant_data_keys WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_one(&mut *transaction)
        .await
        .and_then(|row| row.try_get("sealed"))
        .map_err(&error)?;
    transaction.commit().await.map_err(&error)?;
    Ok(stored)
}

pub(crate) async fn erase(pool: &AnyPool, tenant_id: &str) -> Result<bool, StoreError> {
    crate::sql::delete_bumping(
        pool,
        "erase tenant data key",
        "DELETE FROM tenant_data_keys WHERE tenant_id = $1",
        &[tenant_id],
    )
    .await
}
