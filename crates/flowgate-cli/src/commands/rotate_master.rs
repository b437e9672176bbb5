//! `flowgate keys rotate-master --new-key KEY [--invalidate-tenant-keys] [--json]`.
//!
//! Re-encrypts every secret sealed under the master key (provider credentials, webhook
//! signing secrets) so that it opens under the new key, in one store transaction: all move
//! or none does. It then tells the operator what to change: `FLOWGATE_MASTER_KEY` on every
//! gateway, followed by a restart.
//!
//! Tenant API keys cannot be carried over: the store keeps only their HMAC digests under a
//! key derived from the master key, never the keys, so nothing can re-hash them. The command
//! therefore refuses while live tenant keys exist unless `--invalidate-tenant-keys` says the
//! operator accepts that they stop working (new ones are issued afterwards with `flowgate
//! keys rotate --revoke-after 0` under the new master key). The admin API key is configured,
//! not stored, and keeps working.

use crate::ConfigArgs;
use crate::output;
use anyhow::{Context as _, bail};
use clap::Args;
use flowgate_types::{MasterKey, now_millis};
use serde_json::json;

#[derive(Args)]
pub struct RotateMasterArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The new master key (base64 of 32 bytes, e.g. from `flowgate gen-master-key`).
    #[arg(long, value_name = "KEY")]
    new_key: String,
    /// Proceed although live tenant API keys exist: they stop authenticating once gateways
    /// run with the new master key, and must be reissued.
    #[arg(long)]
    invalidate_tenant_keys: bool,
    #[arg(long)]
    json: bool,
}

impl std::fmt::Debug for RotateMasterArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotateMasterArgs")
            .field("config", &self.config)
            .field("new_key", &"<secret>")
            .field("invalidate_tenant_keys", &self.invalidate_tenant_keys)
            .field("json", &self.json)
            .finish()
    }
}

pub async fn run(args: RotateMasterArgs) -> anyhow::Result<()> {
    let config = crate::commands::load_config(&args.config)?;
    let new_key = MasterKey::from_base64(&args.new_key).context("--new-key")?;
    let secrets = crate::commands::secrets(&config)?;
    if secrets.master_key.derive("rotation-check") == new_key.derive("rotation-check") {
        bail!("--new-key is the current master key: nothing to rotate");
    }
    let store = flowgate_gateway::bootstrap::open_store(&config).await?;
    let now = now_millis();
    let mut live_tenant_keys = 0usize;
    for tenant in store.list_tenants().await? {
        live_tenant_keys += store
            .list_keys(&tenant.id)
            .await?
            .iter()
            .filter(|key| key.is_live(now))
            .count();
    }
    if live_tenant_keys > 0 && !args.invalidate_tenant_keys {
        bail!(
            "{live_tenant_keys} live tenant API key(s) are stored as HMAC digests under the current master key and cannot be re-hashed (the keys themselves are not stored): they would stop working. Rerun with --invalidate-tenant-keys, then issue new keys with `flowgate keys rotate --revoke-after 0` under the new master key"
        );
    }
    let report =
        flowgate_gateway::credentials::rotate_master(store.as_ref(), &secrets.master_key, &new_key)
            .await?;
    if args.json {
        output::json(&json!({
            "provider_credentials": report.providers,
            "webhook_secrets": report.webhooks,
            "tenant_data_keys": report.data_keys,
            "tenant_keys_invalidated": live_tenant_keys,
            "operator_must": [
                "set FLOWGATE_MASTER_KEY to the --new-key value on every gateway and restart them",
                "issue new tenant API keys: flowgate keys rotate --revoke-after 0",
            ],
        }));
        return Ok(());
    }
    output::line(&format!(
        "re-encrypted {} provider credential(s) [{}], {} webhook secret(s) and {} tenant audit data key(s) under the new master key, in one transaction",
        report.providers.len(),
        report.providers.join(", "),
        report.webhooks.len(),
        report.data_keys.len()
    ));
    output::line(
        "now set FLOWGATE_MASTER_KEY to the --new-key value on every gateway (and in every CLI environment) and restart the gateways: the old master key no longer opens the stored secrets",
    );
    output::line(&format!(
        "tenant API keys: {live_tenant_keys} live key(s) were hashed under the old master key and stop working with the new one; issue new keys with `flowgate keys rotate --revoke-after 0` (run with the new FLOWGATE_MASTER_KEY)"
    ));
    output::line(
        "audit: records written before the rotation keep content hashes under the old master key; keep the old key to run `flowgate audit prove-content` on them",
    );
    Ok(())
}
