//! `flowgate audit verify|export|proof|pubkey|stats|prune|prove-content|show-content`: offline work on the
//! audit log, straight against the store (or, for `verify --export`, against an export file
//! alone). Verification failures end the process with the exit codes of
//! `flowgate_audit::verify` (3 tampered, 4 unverifiable, 5 unknown key, 6 I/O);
//! `prove-content` exits 1 when the text does not match the record, `show-content` when the
//! record keeps no content or it does not open.

use crate::ConfigArgs;
use crate::output;
use anyhow::{Context as _, bail};
use clap::Subcommand;
use flowgate_audit::note::NoteVerifier;
use flowgate_audit::source::{AuditSource as _, anchor_at, verify_source, write_export};
use flowgate_audit::verify::{VerifiedState, VerifyError, VerifyOptions};
use flowgate_store::{AuditStore, OriginLog, SqlStore, StoreOptions};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the stored log (or an export file with --export and --pubkey).
    Verify {
        #[command(flatten)]
        config: ConfigArgs,
        /// Saved state from an earlier run: anti-rollback check, then only new records are
        /// read; the new state is written back.
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        /// Verify this export file instead of the store (needs --pubkey).
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// Accepted checkpoint keys (default: the node's own key from the store).
        #[arg(long, value_name = "KEY")]
        pubkey: Vec<String>,
        /// Log origin (default: the configured one, else the only one in the store).
        #[arg(long)]
        origin: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write records from..to with their checkpoints as JSON lines.
    Export {
        #[command(flatten)]
        config: ConfigArgs,
        /// First index (default: the first stored record).
        #[arg(long)]
        from: Option<u64>,
        /// End index, exclusive (default: the newest checkpoint's size).
        #[arg(long)]
        to: Option<u64>,
        /// Output file (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(long)]
        origin: Option<String>,
    },
    /// Print an inclusion proof bundle for one record.
    Proof {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        index: u64,
        #[arg(long)]
        origin: Option<String>,
    },
    /// Print the node's checkpoint verifier key.
    Pubkey {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        origin: Option<String>,
    },
    /// Print totals, decisions, models, tenants and top rules (JSON).
    Stats {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        origin: Option<String>,
    },
    /// Show whether a text is the prompt (or answer) a record's content hash commits to:
    /// the keyed hash under the record tenant's content key (derived from the master key)
    /// of the normalised text. The prompt text is every text part of the request's messages,
    /// in order, separated by a blank line; the answer text is the first choice's text.
    ProveContent {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        index: u64,
        /// The text to prove.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        text: Option<String>,
        /// A file holding the text to prove.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        #[arg(long)]
        origin: Option<String>,
    },
    /// Print the content a record keeps (`[audit] hash_prompts = false`): the normalised
    /// prompt of a request record or answer of a completion record, decrypted with the
    /// record tenant's data key (derived from the master key).
    ShowContent {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        index: u64,
        #[arg(long)]
        origin: Option<String>,
    },
    /// Delete whole periods of records older than DATE (YYYY-MM-DD, UTC), keeping the
    /// final signed checkpoint of the pruned period so the rest still verifies.
    Prune {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, value_name = "DATE")]
        before: String,
        #[arg(long)]
        origin: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

async fn prove_content(
    args: ConfigArgs,
    index: u64,
    text: Option<String>,
    file: Option<PathBuf>,
    origin: Option<String>,
) -> anyhow::Result<()> {
    let text = match (text, file) {
        (Some(text), _) => text,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        (None, None) => bail!("give the text with --text or --file"),
    };
    let (record, _, master_key) = record_at(&args, index, origin).await?;
    let content = flowgate_audit::content::ContentMasterKey::from_bytes(
        master_key.derive(flowgate_gateway::state::AUDIT_CONTENT_LABEL),
    );
    let tenant_key = content.tenant_key(&record.tenant_id);
    let matched = flowgate_audit::content::match_content(&text, &tenant_key, &record);
    output::json(&serde_json::json!({
        "index": index,
        "request_id": record.request_id,
        "tenant_id": record.tenant_id,
        "matches": matched.map(|found| match found {
            flowgate_audit::content::ContentMatch::Request => "request",
            flowgate_audit::content::ContentMatch::Response => "response",
        }),
    }));
    if matched.is_none() {
        return Err(VerifyExit {
            code: 1,
            message: format!("the text does not match record {index}"),
        }
        .into());
    }
    Ok(())
}

/// The record at `index` of the node's log, the store it came from and the master key.
async fn record_at(
    args: &ConfigArgs,
    index: u64,
    origin: Option<String>,
) -> anyhow::Result<(
    flowgate_audit::record::AuditRecord,
    Arc<SqlStore>,
    flowgate_types::MasterKey,
)> {
    let config = super::load_config(args)?;
    let store = Arc::new(
        SqlStore::connect(&StoreOptions {
            url: config.store.url.expose().to_owned(),
            max_connections: 2,
            schema: None,
        })
        .await?,
    );
    let audit_store: Arc<dyn AuditStore> = store.clone();
    let origin = resolve_origin(&config, &audit_store, origin).await?;
    let secrets = super::secrets(&config)?;
    let entry = audit_store
        .audit_entries(&origin, index, 1)
        .await?
        .into_iter()
        .find(|entry| entry.index == index)
        .with_context(|| format!("no record {index} in the log {origin}"))?;
    let record = flowgate_audit::record::AuditRecord::parse(&entry.record)
        .with_context(|| format!("record {index} does not parse"))?;
    Ok((record, store, secrets.master_key))
}

async fn show_content(args: ConfigArgs, index: u64, origin: Option<String>) -> anyhow::Result<()> {
    let (record, store, master_key) = record_at(&args, index, origin).await?;
    let refuse = |message: String| VerifyExit { code: 1, message };
    let Some(sealed) = record.encrypted_content.as_deref() else {
        return Err(refuse(format!(
            "record {index} keeps no content (hash_prompts was on)"
        ))
        .into());
    };
    let key = flowgate_gateway::data_keys::find(store.as_ref(), &master_key, &record.tenant_id)
        .await?
        .ok_or_else(|| {
            refuse(format!(
                "record {index}: the data key of tenant {} was erased; its content is gone",
                record.tenant_id
            ))
        })?;
    let kind = record.kind.as_str();
    let text = key
        .open(&record.request_id, kind, sealed)
        .map_err(|err| refuse(format!("record {index}: {err}")))?;
    output::json(&serde_json::json!({
        "index": index,
        "request_id": record.request_id,
        "tenant_id": record.tenant_id,
        "kind": kind,
        "content": text,
    }));
    Ok(())
}

/// A verification failure: the process exits with `code` (the report is already printed).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct VerifyExit {
    pub code: i32,
    pub message: String,
}

async fn open(
    config: &ConfigArgs,
) -> anyhow::Result<(flowgate_config::Config, Arc<dyn AuditStore>)> {
    let config = super::load_config(config)?;
    let store = SqlStore::connect(&StoreOptions {
        url: config.store.url.expose().to_owned(),
        max_connections: 2,
        schema: None,
    })
    .await?;
    Ok((config, Arc::new(store)))
}

async fn resolve_origin(
    config: &flowgate_config::Config,
    store: &Arc<dyn AuditStore>,
    explicit: Option<String>,
) -> anyhow::Result<String> {
    if let Some(origin) = explicit.or_else(|| config.audit.origin.clone()) {
        return Ok(origin);
    }
    let origins = store.audit_origins().await?;
    match origins.as_slice() {
        [only] => Ok(only.clone()),
        [] => Ok(flowgate_gateway::audit::default_origin()),
        _ => bail!(
            "the store holds several audit logs ({}); pick one with --origin",
            origins.join(", ")
        ),
    }
}

async fn node_verifier(store: &Arc<dyn AuditStore>, origin: &str) -> anyhow::Result<NoteVerifier> {
    let node = store
        .audit_node(origin)
        .await?
        .with_context(|| format!("no audit log named {origin} in the store"))?;
    Ok(flowgate_audit::note::NoteSigner::parse(&node.signing_key)
        .context("the stored signing key does not parse")?
        .verifier())
}

fn parse_keys(keys: &[String]) -> anyhow::Result<Vec<NoteVerifier>> {
    keys.iter()
        .map(|key| {
            NoteVerifier::parse(key.trim()).with_context(|| format!("invalid verifier key {key}"))
        })
        .collect()
}

fn report_failure(error: &VerifyError, json: bool) -> anyhow::Error {
    if json && let Ok(value) = serde_json::to_value(error.report()) {
        output::json(&value);
    }
    VerifyExit {
        code: error.exit_code(),
        message: format!("audit verification failed: {}", error.report().message),
    }
    .into()
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify {
            config,
            state,
            export,
            pubkey,
            origin,
            json,
        } => verify(config, state, export, pubkey, origin, json).await,
        AuditCommand::Export {
            config,
            from,
            to,
            out,
            origin,
        } => export(config, from, to, out, origin).await,
        AuditCommand::Proof {
            config,
            index,
            origin,
        } => {
            let (config, store) = open(&config).await?;
            let origin = resolve_origin(&config, &store, origin).await?;
            let verifier = node_verifier(&store, &origin).await?;
            let source = OriginLog::new(store, &origin);
            let bundle = flowgate_gateway::audit::inclusion_bundle(
                &source,
                std::slice::from_ref(&verifier),
                index,
            )
            .await?;
            output::json(&serde_json::json!({
                "verifier_key": verifier.to_string(),
                "bundle": serde_json::to_value(&bundle)?,
            }));
            Ok(())
        }
        AuditCommand::ProveContent {
            config,
            index,
            text,
            file,
            origin,
        } => prove_content(config, index, text, file, origin).await,
        AuditCommand::ShowContent {
            config,
            index,
            origin,
        } => show_content(config, index, origin).await,
        AuditCommand::Pubkey { config, origin } => {
            let (config, store) = open(&config).await?;
            let origin = resolve_origin(&config, &store, origin).await?;
            output::line(&node_verifier(&store, &origin).await?.to_string());
            Ok(())
        }
        AuditCommand::Stats { config, origin } => {
            let (config, store) = open(&config).await?;
            let origin = resolve_origin(&config, &store, origin).await?;
            let stats = store.audit_stats(&origin, None, None, None).await?;
            let size = store.audit_size(&origin).await?;
            let mut value = serde_json::to_value(&stats)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("origin".into(), origin.into());
                object.insert("size".into(), size.into());
            }
            output::json(&value);
            Ok(())
        }
        AuditCommand::Prune {
            config,
            before,
            origin,
            json,
        } => prune(config, &before, origin, json).await,
    }
}

async fn verify(
    config: ConfigArgs,
    state: Option<PathBuf>,
    export: Option<PathBuf>,
    pubkey: Vec<String>,
    origin: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let saved: Option<VerifiedState> = match &state {
        Some(path) if path.exists() => Some(
            serde_json::from_slice(
                &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            )
            .with_context(|| format!("{} is not a saved verification state", path.display()))?,
        ),
        _ => None,
    };
    let report = if let Some(path) = export {
        if pubkey.is_empty() {
            bail!("--export needs --pubkey KEY");
        }
        let verifiers = parse_keys(&pubkey)?;
        let origin = match origin {
            Some(origin) => origin,
            None => verifiers
                .first()
                .map(|key| key.name().to_owned())
                .unwrap_or_default(),
        };
        let mut options = VerifyOptions::new(&origin, verifiers);
        options.saved = saved;
        let file = std::fs::File::open(&path)
            .map_err(|err| report_failure(&VerifyError::io(err), json))?;
        flowgate_audit::export::verify_export(std::io::BufReader::new(file), options)
            .map_err(|err| report_failure(&err, json))?
    } else {
        let (config, store) = open(&config)
            .await
            .map_err(|err| report_failure(&VerifyError::io(err.into_boxed_dyn_error()), json))?;
        let origin = resolve_origin(&config, &store, origin).await?;
        let verifiers = if pubkey.is_empty() {
            vec![node_verifier(&store, &origin).await?]
        } else {
            parse_keys(&pubkey)?
        };
        let source = OriginLog::new(store, &origin);
        let size = source
            .record_count()
            .await
            .map_err(|err| report_failure(&VerifyError::io(err), json))?;
        let mut options = VerifyOptions::new(&origin, verifiers);
        // Resuming trusts the saved frontier; a log now shorter than the saved state is
        // replayed in full so the rollback is reported.
        options.resume = saved.as_ref().is_some_and(|saved| saved.size <= size);
        options.saved = saved;
        verify_source(&source, options, 10_000)
            .await
            .map_err(|err| report_failure(&err, json))?
    };
    if let Some(path) = &state {
        std::fs::write(path, serde_json::to_vec_pretty(&report.state)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        output::json(&serde_json::to_value(&report)?);
    } else {
        output::line(&format!(
            "audit log {} verified: {} records ({} replayed), {} checkpoints checked, {} records after the last checkpoint",
            report.origin,
            report.size,
            report.records_verified,
            report.checkpoints_verified,
            report.uncovered_records
        ));
    }
    Ok(())
}

async fn export(
    config: ConfigArgs,
    from: Option<u64>,
    to: Option<u64>,
    out: Option<PathBuf>,
    origin: Option<String>,
) -> anyhow::Result<()> {
    let (config, store) = open(&config).await?;
    let origin = resolve_origin(&config, &store, origin).await?;
    let verifier = node_verifier(&store, &origin).await?;
    let checkpoints = store.audit_checkpoints(&origin).await?;
    let source = OriginLog::new(store, &origin);
    let first = source.read_anchor().await?.map_or(0, |anchor| anchor.size);
    let from = from.unwrap_or(first);
    let to = match to {
        Some(to) => to,
        None => checkpoints
            .last()
            .map_or(first, |checkpoint| checkpoint.size),
    };
    let verifiers = [verifier];
    match out {
        Some(path) => {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let writer = write_export(
                &source,
                &origin,
                &verifiers,
                from,
                to,
                std::io::BufWriter::new(file),
            )
            .await?;
            writer
                .into_inner()
                .map_err(|err| err.into_error())?
                .sync_all()?;
        }
        None => {
            let stdout = std::io::stdout();
            let writer = write_export(
                &source,
                &origin,
                &verifiers,
                from,
                to,
                std::io::BufWriter::new(stdout.lock()),
            )
            .await?;
            let mut stdout = writer.into_inner().map_err(|err| err.into_error())?;
            std::io::Write::flush(&mut stdout)?;
        }
    }
    Ok(())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `YYYY-MM-DD` (UTC midnight) to epoch milliseconds.
fn parse_date(text: &str) -> anyhow::Result<u64> {
    let parts: Vec<&str> = text.trim().split('-').collect();
    let [year, month, day] = parts.as_slice() else {
        bail!("`{text}` is not a date like 2026-01-31");
    };
    let (Ok(year), Ok(month), Ok(day)) = (
        year.parse::<i64>(),
        month.parse::<i64>(),
        day.parse::<i64>(),
    ) else {
        bail!("`{text}` is not a date like 2026-01-31");
    };
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        bail!("`{text}` is not a date like 2026-01-31");
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days)
        .map(|days| days * 86_400_000)
        .with_context(|| format!("`{text}` is before 1970"))
}

async fn prune(
    config: ConfigArgs,
    before: &str,
    origin: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let cutoff = parse_date(before)?;
    let (config, store) = open(&config).await?;
    let origin = resolve_origin(&config, &store, origin).await?;
    let verifier = node_verifier(&store, &origin).await?;
    let source = OriginLog::new(Arc::clone(&store), &origin);
    let current = source.read_anchor().await?.map_or(0, |anchor| anchor.size);
    // The newest checkpoint whose last record is older than the cutoff closes the period.
    let mut sizes: Vec<u64> = store
        .audit_checkpoints(&origin)
        .await?
        .into_iter()
        .filter(|checkpoint| {
            flowgate_audit::checkpoint::open(&checkpoint.note, std::slice::from_ref(&verifier))
                .is_ok()
        })
        .map(|checkpoint| checkpoint.size)
        .filter(|&size| size > current)
        .collect();
    sizes.sort_unstable();
    let mut chosen = None;
    for size in sizes.into_iter().rev() {
        let entries = store.audit_entries(&origin, size - 1, 1).await?;
        let time = entries
            .first()
            .filter(|entry| entry.index == size - 1)
            .and_then(|entry| flowgate_audit::record::AuditRecord::parse(&entry.record).ok())
            .map(|record| record.time_ms);
        if time.is_some_and(|time| time < cutoff) {
            chosen = Some(size);
            break;
        }
    }
    let Some(size) = chosen else {
        if json {
            output::json(&serde_json::json!({"origin": origin, "deleted": 0, "anchor": current}));
        } else {
            output::line("nothing to prune: no signed period ends before that date");
        }
        return Ok(());
    };
    let anchor = anchor_at(&source, size).await?;
    let deleted = store.prune_audit(&origin, &anchor).await?;
    if json {
        output::json(&serde_json::json!({"origin": origin, "deleted": deleted, "anchor": size}));
    } else {
        output::line(&format!(
            "pruned {deleted} records of {origin}; the log now starts at index {size}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_to_epoch_millis() {
        assert_eq!(parse_date("1970-01-01").ok(), Some(0));
        assert_eq!(parse_date("2000-03-01").ok(), Some(951_868_800_000));
        assert_eq!(parse_date("2026-11-21").ok(), Some(1_795_219_200_000));
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("yesterday").is_err());
    }
}
