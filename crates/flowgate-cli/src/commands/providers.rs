//! `flowgate providers list|set-credential`: the configured providers and their credentials
//! in the store. `set-credential` seals the credential under the master key
//! (`flowgate_gateway::credentials`) before it reaches the store; `list` shows whether a
//! provider has one, never the value. Gateways read stored credentials at start, so a change
//! takes effect when they restart.

use crate::ConfigArgs;
use crate::output;
use anyhow::{Context as _, bail};
use clap::Subcommand;
use flowgate_config::CredentialSource;
use serde_json::json;
use std::io::Read as _;

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// List the configured providers and whether the store holds a credential for each.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        json: bool,
    },
    /// Store a provider's credential, encrypted under the master key (for providers with
    /// `credential = "store"`; gateways pick it up when they restart).
    SetCredential {
        #[command(flatten)]
        config: ConfigArgs,
        /// The provider's configured name.
        name: String,
        /// Read the credential from this environment variable.
        #[arg(long, value_name = "VAR", required_unless_present = "stdin")]
        from_env: Option<String>,
        /// Read the credential from standard input (one trailing newline is dropped).
        #[arg(long, conflicts_with = "from_env")]
        stdin: bool,
    },
}

pub async fn run(command: ProvidersCommand) -> anyhow::Result<()> {
    match command {
        ProvidersCommand::List { config, json } => list(&config, json).await,
        ProvidersCommand::SetCredential {
            config,
            name,
            from_env,
            stdin,
        } => set_credential(&config, &name, from_env.as_deref(), stdin).await,
    }
}

async fn list(args: &ConfigArgs, json: bool) -> anyhow::Result<()> {
    let config = crate::commands::load_config(args)?;
    let store = flowgate_gateway::bootstrap::open_store(&config).await?;
    let stored = store.list_provider_credentials().await?;
    let mut rows = Vec::new();
    for provider in &config.providers {
        let source = match provider.credential {
            CredentialSource::Env => "env",
            CredentialSource::Store => "store",
        };
        let has_stored = stored.iter().any(|row| row.provider == provider.name);
        if !json {
            output::line(&format!(
                "{}\t{}\tcredential from {source}\tstored credential: {}",
                provider.name,
                provider.kind.as_str(),
                if has_stored { "yes" } else { "no" }
            ));
        }
        rows.push(json!({
            "name": provider.name,
            "kind": provider.kind.as_str(),
            "credential": source,
            "stored_credential": has_stored,
        }));
    }
    let orphans: Vec<&str> = stored
        .iter()
        .map(|row| row.provider.as_str())
        .filter(|name| config.providers.iter().all(|p| p.name != *name))
        .collect();
    if json {
        output::json(&json!({"providers": rows, "stored_not_configured": orphans}));
    } else {
        for name in &orphans {
            output::line(&format!("{name}\t(not configured)\tstored credential: yes"));
        }
    }
    Ok(())
}

async fn set_credential(
    args: &ConfigArgs,
    name: &str,
    from_env: Option<&str>,
    stdin: bool,
) -> anyhow::Result<()> {
    let config = crate::commands::load_config(args)?;
    let Some(provider) = config
        .providers
        .iter()
        .find(|provider| provider.name == name)
    else {
        let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "provider `{name}` is not configured (configured: {})",
            names.join(", ")
        );
    };
    let credential = match (from_env, stdin) {
        (Some(variable), _) => std::env::var(variable)
            .ok()
            .filter(|value| !value.is_empty())
            .with_context(|| format!("environment variable {variable} is not set"))?,
        (None, true) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the credential from standard input")?;
            let trimmed = text.strip_suffix('\n').unwrap_or(&text);
            trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned()
        }
        (None, false) => bail!("give --from-env VAR or --stdin"),
    };
    if credential.is_empty() {
        bail!("the credential is empty");
    }
    let secrets = crate::commands::secrets(&config)?;
    let store = flowgate_gateway::bootstrap::open_store(&config).await?;
    flowgate_gateway::credentials::store_credential(
        store.as_ref(),
        &secrets.master_key,
        name,
        &credential,
    )
    .await?;
    output::line(&format!(
        "stored the credential of provider `{name}` (encrypted under the master key); restart the gateways to use it"
    ));
    if provider.credential != CredentialSource::Store {
        output::line(&format!(
            "note: provider `{name}` is not configured with credential = \"store\", so gateways do not use the stored credential yet"
        ));
    }
    Ok(())
}
