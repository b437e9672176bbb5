//! Per-tenant policy rules: one row per (tenant, rule id) holding the rule as the JSON the
//! admin API accepted. The store neither parses nor validates the JSON (the gateway compiles
//! rules before it writes them, and again when it builds a snapshot); it only keeps them, in
//! creation order, and bumps the change counter on every mutation so replicas recompile.
//! Leaves out the rule model itself (`flowgate-policy`) and the API (`flowgate-gateway`).

use flowgate_types::TenantId;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::StoreError;
use crate::sql::{begin_write, commit_change, query_error};

/// One tenant rule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRule {
    pub tenant_id: TenantId,
    /// The rule's own id (unique within the tenant).
    pub rule_id: String,
    /// The rule as JSON (`flowgate_policy::Rule`), exactly as the gateway wrote it.
    pub rule: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const RULE_COLUMNS: &str =
    "SELECT tenant_id, rule_id, rule, created_at, updated_at FROM tenant_rules";

pub(crate) fn rule_from_row(row: &AnyRow) -> Result<StoredRule, StoreError> {
    let get_error = query_error("read rule");
    Ok(StoredRule {
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id").map_err(&get_error)?),
        rule_id: row.try_get("rule_id").map_err(&get_error)?,
        rule: row.try_get("rule").map_err(&get_error)?,
        created_at: row.try_get("created_at").map_err(&get_error)?,
        updated_at: row.try_get("updated_at").map_err(&get_error)?,
    })
}

/// Every stored rule, ordered by tenant then creation (for the snapshot).
pub(crate) async fn all_in(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
) -> Result<Vec<StoredRule>, StoreError> {
    sqlx::query(AssertSqlSafe(format!(
        "{RULE_COLUMNS} ORDER BY tenant_id, created_at, rule_id"
    )))
    .fetch_all(&mut **transaction)
    .await
    .map_err(query_error("load snapshot"))?
    .iter()
    .map(rule_from_row)
    .collect()
}

pub(crate) async fn list(pool: &AnyPool, tenant: &TenantId) -> Result<Vec<StoredRule>, StoreError> {
    sqlx::query(AssertSqlSafe(format!(
        "{RULE_COLUMNS} WHERE tenant_id = $1 ORDER BY created_at, rule_id"
    )))
    .bind(tenant.as_str())
    .fetch_all(pool)
    .await
    .map_err(query_error("list rules"))?
    .iter()
    .map(rule_from_row)
    .collect()
}

pub(crate) async fn get(
    pool: &AnyPool,
    tenant: &TenantId,
    rule_id: &str,
) -> Result<Option<StoredRule>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "{RULE_COLUMNS} WHERE tenant_id = $1 AND rule_id = $2"
    )))
    .bind(tenant.as_str())
    .bind(rule_id)
    .fetch_optional(pool)
    .await
    .map_err(query_error("get rule"))?;
    row.as_ref().map(rule_from_row).transpose()
}

pub(crate) async fn create(pool: &AnyPool, rule: &StoredRule) -> Result<(), StoreError> {
    let error = query_error("create rule");
    let mut transaction = begin_write(pool).await.map_err(&error)?;
    let tenant = sqlx::query("SELECT id FROM tenants WHERE id = $1")
        .bind(rule.tenant_id.as_str())
        .fetch_optional(&mut *transaction)
        .await
        .map_err(&error)?;
    if tenant.is_none() {
        return Err(StoreError::Corrupt {
            field: "tenant_rules.tenant_id",
            detail: format!("tenant {} does not exist", rule.tenant_id),
        });
    }
    let inserted = sqlx::query(
        "INSERT INTO tenant_rules (tenant_id, rule_id, rule, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(rule.tenant_id.as_str())
    .bind(&rule.rule_id)
    .bind(&rule.rule)
    .bind(rule.created_at)
    .bind(rule.updated_at)
    .execute(&mut *transaction)
    .await;
    if let Err(err) = inserted {
        return Err(match error(err) {
            StoreError::Conflict { .. } => StoreError::Conflict {
                entity: "rule",
                value: rule.rule_id.clone(),
            },
            other => other,
        });
    }
    commit_change(transaction, &error).await
}

pub(crate) async fn replace(
    pool: &AnyPool,
    tenant: &TenantId,
    rule_id: &str,
    rule: &str,
    now: i64,
) -> Result<Option<StoredRule>, StoreError> {
    let error = query_error("replace rule");
    let mut transaction = begin_write(pool).await.map_err(&error)?;
    let changed = sqlx::query(
        "UPDATE tenant_rules SET rule = $3, updated_at = $4 WHERE tenant_id = $1 AND rule_id = $2",
    )
    .bind(tenant.as_str())
    .bind(rule_id)
    .bind(rule)
    .bind(now)
    .execute(&mut *transaction)
    .await
    .map_err(&error)?
    .rows_affected();
    if changed == 0 {
        return Ok(None);
    }
    let row = sqlx::query(AssertSqlSafe(format!(
        "{RULE_COLUMNS} WHERE tenant_id = $1 AND rule_id = $2"
    )))
    .bind(tenant.as_str())
    .bind(rule_id)
    .fetch_one(&mut *transaction)
    .await
    .map_err(&error)?;
    let stored = rule_from_row(&row)?;
    commit_change(transaction, &error).await?;
    Ok(Some(stored))
}

pub(crate) async fn delete(
    pool: &AnyPool,
    tenant: &TenantId,
    rule_id: &str,
) -> Result<bool, StoreError> {
    crate::sql::delete_bumping(
        pool,
        "delete rule",
        "DELETE FROM tenant_rules WHERE tenant_id = $1 AND rule_id = $2",
        &[tenant.as_str(), rule_id],
    )
    .await
}
