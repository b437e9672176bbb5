//! Command implementations, plus the configuration loading they share.

pub mod audit;
pub mod backup;
pub mod keys;
pub mod providers;
pub mod rotate_master;
pub mod rules;
pub mod serve;
pub mod tenants;

use crate::ConfigArgs;
use anyhow::{Context as _, bail};
use flowgate_config::Config;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Loads and validates the configuration: the file named by `--config`, else
/// `$FLOWGATE_CONFIG`, else `./flowgate.toml` if it exists; then the environment; then the
/// policy bundle named by `[policy] bundle` (verified, its rules replace `[[rules]]`).
pub fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let explicit = args.config.clone().or_else(|| {
        env.get("FLOWGATE_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let text = match &explicit {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?,
        ),
        None => {
            let default = PathBuf::from("flowgate.toml");
            if default.exists() {
                Some(std::fs::read_to_string(&default).context("cannot read ./flowgate.toml")?)
            } else {
                None
            }
        }
    };
    let mut config = flowgate_config::from_sources(text.as_deref(), &env, args.dev)?;
    if let Some(path) = config.policy.bundle.clone() {
        let document = std::fs::read(&path)
            .with_context(|| format!("policy.bundle: cannot read {}", path.display()))?;
        config.apply_policy_bundle(&document)?;
    }
    if config.is_development() {
        flowgate_gateway::bootstrap::add_development_mock(&mut config);
    }
    Ok(config)
}

/// Secrets for commands that touch key material: configured, or the development files.
pub fn secrets(config: &Config) -> anyhow::Result<flowgate_gateway::Secrets> {
    if config.is_development() {
        Ok(flowgate_gateway::bootstrap::development_secrets(config)?.0)
    } else {
        Ok(flowgate_gateway::bootstrap::configured_secrets(config)?)
    }
}

pub async fn config_check(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = load_config(args)?;
    flowgate_gateway::credentials::check_upstreams(&config).await?;
    crate::output::line(&format!(
        "configuration OK: {} provider(s), {} model(s), store {:?}, environment {:?}",
        config.providers.len(),
        config.models.len(),
        config.store.backend,
        config.environment
    ));
    Ok(())
}

pub async fn migrate(args: &ConfigArgs, json: bool) -> anyhow::Result<()> {
    use flowgate_store::Store as _;
    let config = load_config(args)?;
    let store = flowgate_store::SqlStore::connect(&flowgate_store::StoreOptions {
        url: config.store.url.expose().to_owned(),
        max_connections: 1,
        schema: None,
    })
    .await?;
    let report = store.migrate().await?;
    if json {
        crate::output::json(&serde_json::to_value(&report)?);
    } else if report.applied.is_empty() {
        crate::output::line(&format!(
            "schema is up to date (version {})",
            report.current
        ));
    } else {
        crate::output::line(&format!(
            "applied migrations {:?}; schema version {}",
            report.applied, report.current
        ));
    }
    Ok(())
}

/// A dependency-free HTTP/1.1 GET, so container images need no curl.
pub async fn healthcheck(url: Option<String>) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let url = url.unwrap_or_else(|| {
        let port = std::env::var("FLOWGATE_PORT").unwrap_or_else(|_| "8443".to_owned());
        format!("http://127.0.0.1:{port}/health")
    });
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("healthcheck supports http:// URLs only (got {url})");
    };
    let (authority, path) = rest.split_once('/').map_or((rest, "/"), |(a, p)| (a, p));
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let connect = tokio::net::TcpStream::connect(authority);
    let mut stream = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
        .await
        .context("timed out connecting")?
        .with_context(|| format!("cannot connect to {authority}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await
    .context("timed out reading the answer")??;
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!(
            "{url} answered {}",
            if status.is_empty() { "nothing" } else { status }
        );
    }
    crate::output::line(&format!("healthy: {url}"));
    Ok(())
}
