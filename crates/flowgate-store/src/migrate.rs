//! Versioned schema migrations, embedded in the binary: one ordered list per backend, applied
//! each in its own transaction and recorded in `schema_migrations`. A store whose schema is
//! newer than the binary is refused rather than guessed at.

use crate::StoreError;
use crate::sql::begin_write;
use flowgate_types::now_millis;
use serde::Serialize;
use sqlx::{AnyPool, AssertSqlSafe, Row};

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "tenants_and_keys",
        sql: include_str!("../migrations/sqlite/0001_tenants_and_keys.sql"),
    },
    Migration {
        version: 2,
        name: "audit",
        sql: include_str!("../migrations/sqlite/0002_audit.sql"),
    },
    Migration {
        version: 3,
        name: "webhooks",
        sql: include_str!("../migrations/sqlite/0003_webhooks.sql"),
    },
    Migration {
        version: 4,
        name: "tenant_rules",
        sql: include_str!("../migrations/sqlite/0004_tenant_rules.sql"),
    },
    Migration {
        version: 5,
        name: "audit_request_index",
        sql: include_str!("../migrations/sqlite/0005_audit_request_index.sql"),
    },
    Migration {
        version: 6,
        name: "provider_credentials",
        sql: include_str!("../migrations/sqlite/0006_provider_credentials.sql"),
    },
    Migration {
        version: 7,
        name: "key_limits",
        sql: include_str!("../migrations/sqlite/0007_key_limits.sql"),
    },
    Migration {
        version: 8,
        name: "audit_sink_cursors",
        sql: include_str!("../migrations/sqlite/0008_audit_sink_cursors.sql"),
    },
    Migration {
        version: 9,
        name: "tenant_data_keys",
        sql: include_str!("../migrations/sqlite/0009_tenant_data_keys.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "tenants_and_keys",
        sql: include_str!("../migrations/postgres/0001_tenants_and_keys.sql"),
    },
    Migration {
        version: 2,
        name: "audit",
        sql: include_str!("../migrations/postgres/0002_audit.sql"),
    },
    Migration {
        version: 3,
        name: "webhooks",
        sql: include_str!("../migrations/postgres/0003_webhooks.sql"),
    },
    Migration {
        version: 4,
        name: "tenant_rules",
        sql: include_str!("../migrations/postgres/0004_tenant_rules.sql"),
    },
    Migration {
        version: 5,
        name: "audit_request_index",
        sql: include_str!("../migrations/postgres/0005_audit_request_index.sql"),
    },
    Migration {
        version: 6,
        name: "provider_credentials",
        sql: include_str!("../migrations/postgres/0006_provider_credentials.sql"),
    },
    Migration {
        version: 7,
        name: "key_limits",
        sql: include_str!("../migrations/postgres/0007_key_limits.sql"),
    },
    Migration {
        version: 8,
        name: "audit_sink_cursors",
        sql: include_str!("../migrations/postgres/0008_audit_sink_cursors.sql"),
    },
    Migration {
        version: 9,
        name: "tenant_data_keys",
        sql: include_str!("../migrations/postgres/0009_tenant_data_keys.sql"),
    },
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    /// Versions applied by this call, in order.
    pub applied: Vec<i64>,
    /// The schema version after this call.
    pub current: i64,
}

pub(crate) async fn run(
    pool: &AnyPool,
    migrations: &[Migration],
) -> Result<MigrationReport, StoreError> {
    let query_error = |source| StoreError::Query {
        operation: "schema_migrations",
        source,
    };
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await
    .map_err(query_error)?;
    let known = migrations.last().map_or(0, |migration| migration.version);
    let current: i64 =
        sqlx::query("SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations")
            .fetch_one(pool)
            .await
            .and_then(|row| row.try_get("version"))
            .map_err(query_error)?;
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    let mut applied = Vec::new();
    for migration in migrations
        .iter()
        .filter(|migration| migration.version > current)
    {
        let failed = |source| StoreError::Migration {
            version: migration.version,
            source,
        };
        let mut transaction = begin_write(pool).await.map_err(failed)?;
        sqlx::raw_sql(AssertSqlSafe(migration.sql))
            .execute(&mut *transaction)
            .await
            .map_err(failed)?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(migration.version)
        .bind(migration.name)
        .bind(now_millis())
        .execute(&mut *transaction)
        .await
        .map_err(failed)?;
        transaction.commit().await.map_err(failed)?;
        applied.push(migration.version);
    }
    Ok(MigrationReport {
        current: applied.last().copied().unwrap_or(current),
        applied,
    })
}
