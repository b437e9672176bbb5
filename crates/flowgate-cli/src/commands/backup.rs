//! `flowgate backup --out FILE` and `flowgate restore FILE [--force]`.
//!
//! SQLite: the backup is a consistent online snapshot taken with `VACUUM INTO` (one read
//! transaction: safe while gateways are serving); the file is itself a SQLite database.
//! Restore copies it (again with `VACUUM INTO`, into a temporary file beside the target,
//! then renamed over it) and applies pending migrations. Stop the gateways first.
//!
//! PostgreSQL: the backup runs `pg_dump --format=custom --schema=S` (S: the schema the
//! store's tables live in, i.e. the connection's `current_schema()`, so a database holding
//! other schemas is left out), restore runs `pg_restore --clean --if-exists --no-owner`,
//! both with the configured URL (a password in it is handed over in `PGPASSWORD`, not on the
//! command line). Without the client tools on PATH the command explains the procedure.
//!
//! Audit records the node acknowledged but its store has not taken yet sit in the node's
//! journal for a few milliseconds (longer while the store is down or the gateway stopped with
//! some left). The backup copies the journal before the snapshot: for SQLite it stores the
//! copy into the snapshot (as a start replays the journal), so the backup holds every record
//! acknowledged before it began; a PostgreSQL dump cannot take it, so the backup first waits
//! (up to `JOURNAL_WAIT`) until the store holds what the copy holds, and says what the dump
//! lacks if it does not.
//!
//! Restore refuses a store that already holds flowgate data (an audit log, a tenant, a
//! webhook or a provider credential; a missing database file or schema is empty) unless
//! `--force`. Audit logs are restored byte for byte, so `flowgate audit verify` passes on the
//! restored store.

use crate::ConfigArgs;
use anyhow::{Context as _, bail};
use sqlx::{AnyPool, AssertSqlSafe, Executor as _, Row as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flowgate_gateway::audit::JournalCopy;
use flowgate_store::{Store as _, StoreOptions};

/// How long a PostgreSQL backup waits for the store to take what the node's journal holds.
const JOURNAL_WAIT: Duration = Duration::from_secs(10);

/// `sqlite://` path of a SQLite URL, `None` for PostgreSQL.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://")
        .map(|rest| PathBuf::from(rest.split('?').next().unwrap_or(rest)))
}

/// SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn pool(url: &str) -> anyhow::Result<AnyPool> {
    sqlx::any::install_default_drivers();
    let url = if url.starts_with("sqlite://") && !url.contains('?') {
        format!("{url}?mode=ro")
    } else {
        url.to_owned()
    };
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .with_context(|| "cannot connect to the store")
}

pub async fn backup(config: &ConfigArgs, out: &Path) -> anyhow::Result<()> {
    let config = super::load_config(config)?;
    let url = config.store.url.expose().to_owned();
    if out.exists() {
        bail!("{} exists; backup writes a new file", out.display());
    }
    // Before the snapshot: what the store may lack is in the journal until it is stored.
    let folder = tempfile::tempdir().context("cannot create a temporary folder")?;
    let journal =
        JournalCopy::take(&config.audit, folder.path()).context("cannot copy the audit journal")?;
    match sqlite_path(&url) {
        Some(path) => {
            if !path.exists() {
                bail!("no SQLite store at {}", path.display());
            }
            let pool = pool(&url).await?;
            pool.execute(AssertSqlSafe(format!(
                "VACUUM INTO {}",
                literal(&out.display().to_string())
            )))
            .await
            .context("VACUUM INTO")?;
            pool.close().await;
            if let Some(journal) = &journal {
                store_journal(journal, out).await?;
            }
            crate::output::line(&format!(
                "backed up {} to {} (SQLite snapshot{})",
                path.display(),
                out.display(),
                if journal.is_some() {
                    " with the audit journal's records"
                } else {
                    ""
                }
            ));
        }
        None => {
            if let Some(journal) = &journal {
                wait_for_store(&url, journal).await?;
            }
            let schema = postgres_schema(&url).await?;
            let mut command = postgres_tool("pg_dump", &url)?;
            command
                .args(["--format=custom", "--no-owner"])
                .arg(format!("--schema={schema}"))
                .arg("--file")
                .arg(out);
            run(command, "pg_dump")?;
            crate::output::line(&format!(
                "backed up schema {schema} to {} (pg_dump, custom format)",
                out.display()
            ));
        }
    }
    Ok(())
}

/// Stores into the snapshot `file` what it lacks of the journal copy, then puts the file back
/// in rollback-journal mode (a single file, readable without its WAL).
async fn store_journal(journal: &JournalCopy, file: &Path) -> anyhow::Result<()> {
    let mut target = flowgate_store::SqliteAuditAppender::open(file)
        .context("cannot open the snapshot to add the audit journal")?;
    journal
        .store_into(&mut target)
        .context("cannot store the audit journal into the snapshot")?;
    drop(target);
    let pool = pool(&format!("sqlite://{}?mode=rw", file.display())).await?;
    let done = pool.execute("PRAGMA journal_mode=DELETE").await;
    pool.close().await;
    done.context("cannot take the snapshot out of WAL mode")?;
    Ok(())
}

/// Waits until the store holds every record of the journal copy (the running gateway stores
/// them within milliseconds), at most `JOURNAL_WAIT`; says what the dump lacks otherwise.
async fn wait_for_store(url: &str, journal: &JournalCopy) -> anyhow::Result<()> {
    let end = journal
        .end()
        .context("cannot read the audit journal copy")?;
    if end == 0 {
        return Ok(());
    }
    let store = flowgate_store::SqlStore::connect(&StoreOptions {
        url: url.to_owned(),
        max_connections: 1,
        schema: None,
    })
    .await
    .context("cannot connect to the store")?;
    let audit = store
        .audit_store()
        .context("the store keeps no audit log")?;
    let deadline = Instant::now() + JOURNAL_WAIT;
    let stored = loop {
        let stored = audit.audit_size(journal.origin()).await?;
        if stored >= end || Instant::now() >= deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    store.close().await;
    if stored < end {
        crate::output::warn(&format!(
            "the audit journal holds records {stored}..{end} of {} that the store has not taken (is the gateway stopped? it stores them at its next start): this dump lacks them",
            journal.origin()
        ));
    }
    Ok(())
}

pub async fn restore(config: &ConfigArgs, file: &Path, force: bool) -> anyhow::Result<()> {
    let config = super::load_config(config)?;
    let url = config.store.url.expose().to_owned();
    if !file.is_file() {
        bail!("no backup file at {}", file.display());
    }
    if let Some(what) = holds_data(&url).await?
        && !force
    {
        bail!("the store is not empty ({what}); restore replaces it only with --force");
    }
    match sqlite_path(&url) {
        Some(path) => restore_sqlite(file, &path).await?,
        None => {
            let mut command = postgres_tool("pg_restore", &url)?;
            command
                .args(["--clean", "--if-exists", "--no-owner", "--exit-on-error"])
                .arg("--dbname")
                .arg(without_password(&url).0)
                .arg(file);
            run(command, "pg_restore")?;
        }
    }
    // A backup of an older version gets this binary's migrations.
    let store = flowgate_store::SqlStore::connect(&flowgate_store::StoreOptions {
        url,
        max_connections: 1,
        schema: None,
    })
    .await?;
    let report = flowgate_store::Store::migrate(&store).await?;
    flowgate_store::Store::close(&store).await;
    crate::output::line(&format!(
        "restored {} (schema version {})",
        file.display(),
        report.current
    ));
    Ok(())
}

async fn restore_sqlite(file: &Path, target: &Path) -> anyhow::Result<()> {
    if let Some(parent) = target.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let staging = target.with_extension("restoring");
    let _ = std::fs::remove_file(&staging);
    // Opening the backup read-only and vacuuming it into place checks it is a SQLite
    // database and writes a clean copy (no WAL left behind).
    let source = pool(&format!("sqlite://{}?mode=ro", file.display())).await?;
    let copied = source
        .execute(AssertSqlSafe(format!(
            "VACUUM INTO {}",
            literal(&staging.display().to_string())
        )))
        .await;
    source.close().await;
    copied.with_context(|| format!("{} is not a readable SQLite backup", file.display()))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = target.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    std::fs::rename(&staging, target)
        .with_context(|| format!("cannot move the restored database to {}", target.display()))?;
    Ok(())
}

/// What makes the store non-empty, if anything. A database without flowgate's tables is
/// empty.
async fn holds_data(url: &str) -> anyhow::Result<Option<String>> {
    if let Some(path) = sqlite_path(url)
        && !path.exists()
    {
        return Ok(None);
    }
    let pool = pool(url).await?;
    let result = holds_data_in(&pool, sqlite_path(url).is_some()).await;
    pool.close().await;
    result
}

/// Tables whose rows make a store non-empty (keys and rules belong to tenants).
const DATA_TABLES: [(&str, &str); 4] = [
    ("audit_nodes", "audit log(s)"),
    ("tenants", "tenant(s)"),
    ("webhooks", "webhook(s)"),
    ("provider_credentials", "provider credential(s)"),
];

async fn holds_data_in(pool: &AnyPool, sqlite: bool) -> anyhow::Result<Option<String>> {
    for (table, what) in DATA_TABLES {
        let exists = if sqlite {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = $1"
        } else {
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1"
        };
        let tables: i64 = sqlx::query(exists)
            .bind(table)
            .fetch_one(pool)
            .await?
            .try_get("n")?;
        if tables == 0 {
            continue;
        }
        let rows: i64 = sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}")))
            .fetch_one(pool)
            .await?
            .try_get("n")?;
        if rows > 0 {
            return Ok(Some(format!("{rows} {what}")));
        }
    }
    Ok(None)
}

/// The schema the store's tables live in.
async fn postgres_schema(url: &str) -> anyhow::Result<String> {
    let pool = pool(url).await?;
    let schema: Option<String> = sqlx::query("SELECT CAST(current_schema() AS TEXT) AS s")
        .fetch_one(&pool)
        .await?
        .try_get("s")?;
    pool.close().await;
    schema.context("the connection has no current schema (check search_path)")
}

/// The URL without its password, and the password (percent-decoded), if any.
fn without_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return (url.to_owned(), None);
    };
    (
        format!("{scheme}://{user}@{host}{tail}"),
        Some(percent_decode(password)),
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(byte) = decoded {
            out.push(byte);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `pg_dump` / `pg_restore` with the URL's password in the environment, or an explanation
/// of the procedure when the tool is not on PATH.
fn postgres_tool(tool: &str, url: &str) -> anyhow::Result<Command> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if !found {
        bail!(
            "{tool} is not on PATH. Install the PostgreSQL client tools (the server's major \
             version or newer), or run the procedure by hand: backup: pg_dump --format=custom \
             --no-owner --schema=SCHEMA --file FILE \"$FLOWGATE_DATABASE_URL\"; restore (gateways \
             stopped): pg_restore --clean --if-exists --no-owner --exit-on-error --dbname \
             \"$FLOWGATE_DATABASE_URL\" FILE, then flowgate migrate"
        );
    }
    let (bare, password) = without_password(url);
    let mut command = Command::new(tool);
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    if tool == "pg_dump" {
        command.arg("--dbname").arg(bare);
    }
    Ok(command)
}

fn run(mut command: Command, tool: &str) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {tool}"))?;
    if !output.status.success() {
        bail!(
            "{tool} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_the_url() {
        assert_eq!(
            without_password("postgres://app:s%40cret@db:5432/flowgate?sslmode=require"),
            (
                "postgres://app@db:5432/flowgate?sslmode=require".to_owned(),
                Some("s@cret".to_owned())
            )
        );
        assert_eq!(
            without_password("postgres://root@127.0.0.1:5432/test"),
            ("postgres://root@127.0.0.1:5432/test".to_owned(), None)
        );
    }

    #[test]
    fn sqlite_literals_are_quoted() {
        assert_eq!(literal("/tmp/it's.db"), "'/tmp/it''s.db'");
        assert_eq!(
            sqlite_path("sqlite:///var/lib/flowgate/flowgate.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/flowgate/flowgate.db"))
        );
        assert_eq!(sqlite_path("postgres://x/y"), None);
    }
}
