//! The start-up check of provider base URLs against the address allowlist (`allowlist`).
//!
//! Upstreams get their own policy: link-local, cloud-metadata, multicast and unspecified
//! addresses and metadata host names are refused, while loopback and private networks are
//! accepted (operators commonly run local upstreams such as Ollama or vLLM). Networks listed in
//! `[outbound] allowed_networks` (shared with webhooks) are accepted even when a rule would
//! refuse them. IP
//! literals are checked as they are; host names by name, then by resolving them (every
//! answer must pass). A name that does not resolve at start is not refused (DNS may come
//! later, and the call fails anyway); it is logged. Leaves out connect-time checks: provider
//! calls connect through the ordinary pooled client.

use std::time::Duration;

use flowgate_config::Config;

use crate::allowlist::{AddressPolicy, AddressRefusal, OutboundUrl, UrlRefusal};

/// How long one base-URL host may take to resolve at start.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A provider whose base URL the allowlist refuses; one line naming the config key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "providers[{index}].base_url: `{url}` is refused: {reason} (allow the network with [outbound] allowed_networks)"
)]
pub struct UpstreamRefusal {
    pub index: usize,
    pub url: String,
    pub reason: UrlRefusal,
}

/// The policy for upstream base URLs under `config`.
pub fn upstream_policy(config: &Config) -> AddressPolicy {
    AddressPolicy::development()
        .with_allowed_networks(config.outbound.allowed_networks.iter().copied())
}

/// Checks every provider's base URL (providers without one, `mock`, are skipped).
pub async fn check_upstreams(config: &Config) -> Result<(), UpstreamRefusal> {
    let policy = upstream_policy(config);
    for (index, provider) in config.providers.iter().enumerate() {
        if provider.base_url.is_empty() {
            continue;
        }
        let refuse = |reason: UrlRefusal| UpstreamRefusal {
            index,
            url: provider.base_url.clone(),
            reason,
        };
        let url = OutboundUrl::parse(&provider.base_url, false).map_err(refuse)?;
        match policy
            .resolve(url.host(), url.port(), RESOLVE_TIMEOUT)
            .await
        {
            Ok(_) => {}
            Err(AddressRefusal::Unresolvable { host, detail }) => {
                tracing::warn!(
                    provider = %provider.name,
                    host = %host,
                    detail = %detail,
                    "provider host does not resolve at start; its addresses were not checked"
                );
            }
            Err(refusal) => return Err(refuse(UrlRefusal::Address(refusal))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(base_urls: &[&str], allowed: &[&str]) -> Config {
        let mut file = String::new();
        if !allowed.is_empty() {
            let list: Vec<String> = allowed.iter().map(|entry| format!("'{entry}'")).collect();
            file.push_str(&format!(
                "[outbound]\nallowed_networks = [{}]\n",
                list.join(", ")
            ));
        }
        for (index, url) in base_urls.iter().enumerate() {
            file.push_str(&format!(
                "[[providers]]\nname = 'p{index}'\nkind = 'openai'\nbase_url = '{url}'\n"
            ));
        }
        flowgate_config::from_sources(Some(&file), &BTreeMap::new(), true)
            .unwrap_or_else(|err| panic!("config: {err}"))
    }

    async fn refusal(base_urls: &[&str], allowed: &[&str]) -> Option<String> {
        check_upstreams(&config(base_urls, allowed))
            .await
            .err()
            .map(|err| err.to_string())
    }

    #[tokio::test]
    async fn metadata_and_link_local_are_refused_by_name_and_address() {
        let cases = [
            ("http://169.254.169.254/v1", "cloud metadata address"),
            (
                "http://metadata.google.internal/",
                "cloud metadata host name",
            ),
            ("http://169.254.10.1:8080/v1", "link-local"),
            ("http://[fe80::1]:8080/v1", "link-local"),
            ("http://[::ffff:169.254.169.254]/v1", "metadata"),
            ("http://0.0.0.0:9000/v1", "not a unicast"),
        ];
        for (url, words) in cases {
            let message = refusal(&["http://127.0.0.1:9000/v1", url], &[])
                .await
                .unwrap_or_else(|| panic!("{url} must be refused"));
            assert!(
                message.starts_with("providers[1].base_url: `"),
                "{url}: {message}"
            );
            assert!(message.contains(words), "{url}: {message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[tokio::test]
    async fn loopback_private_and_localhost_are_accepted() {
        assert_eq!(
            refusal(
                &[
                    "http://127.0.0.1:9000/v1",
                    "http://[::1]:11434",
                    "http://10.1.2.3/v1",
                    "http://192.168.1.20:8000/v1",
                    "http://localhost:9000/v1",
                ],
                &[],
            )
            .await,
            None
        );
    }

    #[tokio::test]
    async fn configured_networks_override_the_address_rules() {
        assert_eq!(
            refusal(&["http://169.254.169.254/v1"], &["169.254.0.0/16"]).await,
            None
        );
        // An allowed network does not make another link-local address acceptable.
        assert!(
            refusal(&["http://169.254.169.254/v1"], &["169.254.10.0/24"])
                .await
                .is_some()
        );
        // Metadata host names are refused by name whatever the networks.
        assert!(
            refusal(&["http://metadata.google.internal/"], &["169.254.0.0/16"])
                .await
                .is_some()
        );
    }
}
