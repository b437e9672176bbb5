//! `flowgate keys rotate [--tenant-id ID] [--revoke-after SECONDS] [--dry-run]`: the admin
//! API's rotation, straight against the store, for one tenant or all of them. Each tenant
//! gets a new key (printed once); its other live keys keep working until the deadline, then
//! answer 401. Running gateways pick the change up within their refresh interval, and each
//! rotation is queued as a `key.rotated` webhook event in the store's outbox (delivered by
//! any running gateway). `--dry-run` reads only: it prints what would happen.

use crate::ConfigArgs;
use crate::output;
use anyhow::bail;
use clap::Subcommand;
use flowgate_gateway::tenants;
use flowgate_gateway::webhooks::{self, Event};
use flowgate_store::{Store, Tenant};
use flowgate_types::{TenantId, now_millis};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue a new key per tenant (shown once) and schedule the old keys to stop working.
    Rotate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Rotate only this tenant (default: every tenant).
        #[arg(long)]
        tenant_id: Option<String>,
        /// How long the old keys keep working.
        #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
        revoke_after: u64,
        /// Print what would happen and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypt every stored secret (provider credentials, webhook secrets) under a new
    /// master key, in one transaction. Tenant API keys are digests under the master key: they
    /// stop working and must be reissued (see --invalidate-tenant-keys).
    RotateMaster(crate::commands::rotate_master::RotateMasterArgs),
}

pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::RotateMaster(args) => crate::commands::rotate_master::run(args).await,
        KeysCommand::Rotate {
            config,
            tenant_id,
            revoke_after,
            dry_run,
            json,
        } => {
            let config = crate::commands::load_config(&config)?;
            let store = flowgate_gateway::bootstrap::open_store(&config).await?;
            let targets = match tenant_id {
                Some(id) => match store.get_tenant(&TenantId::new(id.as_str())).await? {
                    Some(tenant) => vec![tenant],
                    None => bail!("tenant `{id}` does not exist"),
                },
                None => store.list_tenants().await?,
            };
            if dry_run {
                dry_run_report(store.as_ref(), &targets, revoke_after, json).await
            } else {
                let secrets = crate::commands::secrets(&config)?;
                let hasher = flowgate_gateway::bootstrap::key_hasher(&secrets.master_key);
                rotate_all(store.as_ref(), &hasher, &targets, revoke_after, json).await
            }
        }
    }
}

fn deadline_after(seconds: u64) -> i64 {
    let delay_ms = i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    now_millis().saturating_add(delay_ms)
}

async fn dry_run_report(
    store: &dyn Store,
    targets: &[Tenant],
    revoke_after: u64,
    json: bool,
) -> anyhow::Result<()> {
    let expire_at = deadline_after(revoke_after);
    let now = now_millis();
    let mut plans = Vec::with_capacity(targets.len());
    for tenant in targets {
        let live = store
            .list_keys(&tenant.id)
            .await?
            .iter()
            .filter(|key| key.is_live(now) && key.expires_at.is_none_or(|at| at > expire_at))
            .count();
        if !json {
            output::line(&format!(
                "would rotate tenant {} ({}): issue a new key; {live} old key(s) would stop working in {revoke_after} s",
                tenant.id, tenant.name
            ));
        }
        plans.push(json!({
            "tenant_id": tenant.id,
            "tenant_name": tenant.name,
            "old_keys": live,
            "old_keys_expire_at": expire_at,
        }));
    }
    if json {
        output::json(&json!({"dry_run": true, "rotations": plans}));
    } else if targets.is_empty() {
        output::line("no tenants: nothing to rotate");
    }
    Ok(())
}

async fn rotate_all(
    store: &dyn Store,
    hasher: &flowgate_types::KeyHasher,
    targets: &[Tenant],
    revoke_after: u64,
    json: bool,
) -> anyhow::Result<()> {
    let mut rotations = Vec::with_capacity(targets.len());
    let mut events = Vec::with_capacity(targets.len());
    for tenant in targets {
        let rotation = tenants::rotate(store, hasher, &tenant.id, revoke_after).await?;
        if !json {
            output::line(&format!(
                "rotated tenant {} ({}): new key {} {} (shown once); {} old key(s) stop working at {} (epoch ms)",
                tenant.id,
                tenant.name,
                rotation.new_key.id,
                rotation.new_key.api_key,
                rotation.old_keys,
                rotation.old_keys_expire_at
            ));
        }
        events.push(Event::key_rotated(
            tenant.id.clone(),
            rotation.new_key.id.clone(),
            rotation.old_keys,
            rotation.old_keys_expire_at,
        ));
        let mut value = serde_json::to_value(&rotation)?;
        value["tenant_id"] = json!(tenant.id);
        value["tenant_name"] = json!(tenant.name);
        rotations.push(value);
    }
    if let Some(outbox) = store.webhook_store()
        && let Err(err) = webhooks::enqueue(outbox.as_ref(), &events).await
    {
        // The keys are rotated; only the notification is lost, so say so and carry on.
        output::error_line(&format!(
            "keys rotated, but queueing the key.rotated webhook events failed: {err}"
        ));
    }
    if json {
        output::json(&json!({"dry_run": false, "rotations": rotations}));
    } else if targets.is_empty() {
        output::line("no tenants: nothing to rotate");
    }
    Ok(())
}
