//! `flowgate tenants create|list|show|update|delete|erase-content`: the same operations as the
//! admin API (and erasing a tenant's kept audit content),
//! straight against the store (a running gateway picks the change up within its refresh
//! interval).

use crate::ConfigArgs;
use crate::output;
use anyhow::{Context as _, bail};
use clap::Subcommand;
use flowgate_gateway::tenants::{self, CreateTenant};
use flowgate_store::{Store, TenantPatch};
use flowgate_types::{TenantId, now_millis};
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its first API key (shown once).
    Create {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        name: String,
        /// default, strict or audit-only.
        #[arg(long)]
        rules_preset: Option<String>,
        #[arg(long)]
        max_requests_per_minute: Option<u32>,
        #[arg(long)]
        max_tokens_per_minute: Option<u64>,
        #[arg(long)]
        max_concurrent_requests: Option<u32>,
        /// Comma-separated model names (default: all models).
        #[arg(long, value_delimiter = ',')]
        allowed_models: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant and its keys (never the secrets).
    Show {
        #[command(flatten)]
        config: ConfigArgs,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a tenant's settings.
    Update {
        #[command(flatten)]
        config: ConfigArgs,
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        rules_preset: Option<String>,
        #[arg(long)]
        max_requests_per_minute: Option<u32>,
        #[arg(long)]
        max_tokens_per_minute: Option<u64>,
        #[arg(long)]
        max_concurrent_requests: Option<u32>,
        #[arg(long, value_delimiter = ',')]
        allowed_models: Option<Vec<String>>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a tenant and its keys (and its audit data key: its kept content is erased).
    Delete {
        #[command(flatten)]
        config: ConfigArgs,
        id: String,
    },
    /// Erase the audit content kept for a tenant (`[audit] hash_prompts = false`) by deleting
    /// its data key: the log keeps the ciphertext (and still verifies), nobody can open it.
    /// Later content is sealed under a new key.
    EraseContent {
        #[command(flatten)]
        config: ConfigArgs,
        id: String,
    },
}

async fn open(
    config_args: &ConfigArgs,
) -> anyhow::Result<(flowgate_config::Config, Arc<dyn Store>)> {
    let config = crate::commands::load_config(config_args)?;
    let store = flowgate_gateway::bootstrap::open_store(&config).await?;
    Ok((config, store))
}

pub async fn run(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create {
            config,
            name,
            rules_preset,
            max_requests_per_minute,
            max_tokens_per_minute,
            max_concurrent_requests,
            allowed_models,
            json,
        } => {
            let (config, store) = open(&config).await?;
            let secrets = crate::commands::secrets(&config)?;
            let hasher = flowgate_gateway::bootstrap::key_hasher(&secrets.master_key);
            let (tenant, key) = tenants::create(
                store.as_ref(),
                &hasher,
                CreateTenant {
                    name,
                    rules_preset,
                    max_requests_per_minute,
                    max_tokens_per_minute,
                    max_concurrent_requests,
                    allowed_models,
                },
            )
            .await?;
            if json {
                let mut value = serde_json::to_value(&tenant)?;
                value["api_key"] = json!(key.api_key);
                value["key_id"] = json!(key.id);
                output::json(&value);
            } else {
                output::line(&format!("created tenant {} ({})", tenant.name, tenant.id));
                output::line(&format!("api key (shown once): {}", key.api_key));
            }
        }
        TenantCommand::List { config, json } => {
            let (_, store) = open(&config).await?;
            let list = store.list_tenants().await?;
            if json {
                output::json(&serde_json::to_value(&list)?);
            } else if list.is_empty() {
                output::line("no tenants");
            } else {
                for tenant in list {
                    output::line(&format!(
                        "{}  {}  preset={}",
                        tenant.id, tenant.name, tenant.rules_preset
                    ));
                }
            }
        }
        TenantCommand::Show { config, id, json } => {
            let (_, store) = open(&config).await?;
            let id = TenantId::new(id);
            let Some(tenant) = store.get_tenant(&id).await? else {
                bail!("tenant {id} not found");
            };
            let keys: Vec<tenants::KeyView> = store
                .list_keys(&id)
                .await?
                .into_iter()
                .map(Into::into)
                .collect();
            let mut value = serde_json::to_value(&tenant)?;
            value["keys"] = serde_json::to_value(&keys)?;
            if json {
                output::json(&value);
            } else {
                output::line(&serde_json::to_string_pretty(&value)?);
            }
        }
        TenantCommand::Update {
            config,
            id,
            name,
            rules_preset,
            max_requests_per_minute,
            max_tokens_per_minute,
            max_concurrent_requests,
            allowed_models,
            json,
        } => {
            if let Some(name) = &name {
                tenants::validate_name(name)?;
            }
            if let Some(preset) = &rules_preset {
                tenants::validate_preset(preset)?;
            }
            let (_, store) = open(&config).await?;
            let patch = TenantPatch {
                name,
                rules_preset,
                max_requests_per_minute: max_requests_per_minute.map(Some),
                max_tokens_per_minute: max_tokens_per_minute.map(Some),
                max_concurrent_requests: max_concurrent_requests.map(Some),
                allowed_models,
            };
            let tenant = store
                .update_tenant(&TenantId::new(id.as_str()), &patch, now_millis())
                .await?
                .with_context(|| format!("tenant {id} not found"))?;
            if json {
                output::json(&serde_json::to_value(&tenant)?);
            } else {
                output::line(&format!("updated tenant {} ({})", tenant.name, tenant.id));
            }
        }
        TenantCommand::Delete { config, id } => {
            let (_, store) = open(&config).await?;
            if !store.delete_tenant(&TenantId::new(id.as_str())).await? {
                bail!("tenant {id} not found");
            }
            output::line(&format!("deleted tenant {id}"));
        }
        TenantCommand::EraseContent { config, id } => {
            let (_, store) = open(&config).await?;
            if store.erase_tenant_data_key(&id).await? {
                output::line(&format!("erased the audit content kept for tenant {id}"));
            } else {
                output::line(&format!("tenant {id} has no kept audit content"));
            }
        }
    }
    Ok(())
}
