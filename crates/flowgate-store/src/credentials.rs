//! Provider credentials: one row per configured provider holding the credential as the
//! gateway sealed it (an envelope under the master key, `flowgate_types::Envelope`); the
//! store never sees a credential in clear and does not parse the sealed text. Also the one
//! operation of a master-key rotation: every sealed secret of the database (provider
//! credentials, webhook signing secrets, tenant data keys) replaced in one transaction, all
//! or nothing.
//! Mutations bump the change counter like every other mutation.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::StoreError;
use crate::sql::{begin_write, commit_change, query_error};

/// One provider credential as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// The provider's configured `name`.
    pub provider: String,
    /// The sealed credential (opaque to the store).
    pub sealed: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("provider", &self.provider)
            .field("sealed", &"<sealed>")
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// One sealed value to replace during a master-key rotation: the row named `id` (provider
/// name or webhook id) must still hold `old_sealed`, and gets `new_sealed`.
#[derive(Clone, PartialEq, Eq)]
pub struct Reseal {
    pub id: String,
    pub old_sealed: String,
    pub new_sealed: String,
}

impl std::fmt::Debug for Reseal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reseal").field("id", &self.id).finish()
    }
}

fn credential_from_row(row: &AnyRow) -> Result<StoredCredential, StoreError> {
    let get_error = query_error("read provider credential");
    Ok(StoredCredential {
        provider: row.try_get("provider").map_err(&get_error)?,
        sealed: row.try_get("sealed").map_err(&get_error)?,
        created_at: row.try_get("created_at").map_err(&get_error)?,
        updated_at: row.try_get("updated_at").map_err(&get_error)?,
    })
}

pub(crate) async fn list(pool: &AnyPool) -> Result<Vec<StoredCredential>, StoreError> {
    sqlx::query(
        "SELECT provider, sealed, created_at, updated_at FROM provider_credentials ORDER BY provider",
    )
    .fetch_all(pool)
    .await
    .map_err(query_error("list provider credentials"))?
    .iter()
    .map(credential_from_row)
    .collect()
}

pub(crate) async fn set(
    pool: &AnyPool,
    provider: &str,
    sealed: &str,
    now: i64,
) -> Result<(), StoreError> {
    let error = query_error("set provider credential");
    let mut transaction = begin_write(pool).await.map_err(&error)?;
    sqlx::query(
        "INSERT INTO provider_credentials (provider, sealed, created_at, updated_at) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (provider) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
    )
    .bind(provider)
    .bind(sealed)
    .bind(now)
    .execute(&mut *transaction)
    .await
    .map_err(&error)?;
    commit_change(transaction, &error).await
}

pub(crate) async fn delete(pool: &AnyPool, provider: &str) -> Result<bool, StoreError> {
    crate::sql::delete_bumping(
        pool,
        "delete provider credential",
        "DELETE FROM provider_credentials WHERE provider = $1",
        &[provider],
    )
    .await
}

/// Replaces every sealed secret in one transaction. Refused (nothing changes) with
/// `Conflict` when a row no longer holds its `old_sealed` or when a table has rows the
/// caller did not re-encrypt (written concurrently under the old key).
pub(crate) async fn reseal_all(
    pool: &AnyPool,
    credentials: &[Reseal],
    webhook_secrets: &[Reseal],
    data_keys: &[Reseal],
    now: i64,
) -> Result<(), StoreError> {
    let error = query_error("re-encrypt secrets");
    let mut transaction = begin_write(pool).await.map_err(&error)?;
    let tables: [(&str, &str, &str, &[Reseal], bool); 3] = [
        (
            "provider_credentials",
            "provider",
            "sealed",
            credentials,
            true,
        ),
        ("webhooks", "id", "secret_sealed", webhook_secrets, false),
        ("tenant_data_keys", "tenant_id", "sealed", data_keys, false),
    ];
    for (table, key, column, rows, has_updated_at) in tables {
        let statement = if has_updated_at {
            format!(
                "UPDATE {table} SET {column} = $1, updated_at = $4 WHERE {key} = $2 AND {column} = $3"
            )
        } else {
            format!("UPDATE {table} SET {column} = $1 WHERE {key} = $2 AND {column} = $3")
        };
        for row in rows {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                .bind(&row.new_sealed)
                .bind(&row.id)
                .bind(&row.old_sealed);
            if has_updated_at {
                query = query.bind(now);
            }
            let changed = query
                .execute(&mut *transaction)
                .await
                .map_err(&error)?
                .rows_affected();
            if changed != 1 {
                return Err(StoreError::Conflict {
                    entity: "sealed secret (changed during rotation)",
                    value: format!("{table}.{}", row.id),
                });
            }
        }
        let total: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS total FROM {table}"
        )))
        .fetch_one(&mut *transaction)
        .await
        .and_then(|found| found.try_get("total"))
        .map_err(&error)?;
        if usize::try_from(total).ok() != Some(rows.len()) {
            return Err(StoreError::Conflict {
                entity: "sealed secret (not re-encrypted)",
                value: format!("{table}: {total} rows, {} re-encrypted", rows.len()),
            });
        }
    }
    commit_change(transaction, &error).await
}
