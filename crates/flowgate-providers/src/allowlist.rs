//! The outbound address allowlist shared by every connection flowgate makes on an operator's
//! or tenant's behalf (webhook targets now, upstream base URLs later): which URLs and which
//! resolved addresses may be contacted, so a configured URL can not be used to reach the
//! cloud metadata service, link-local services or (in production) the gateway's own host.
//!
//! Rules, in order: an address inside an explicitly allowed network is accepted; the
//! unspecified, broadcast, multicast, link-local (169.254.0.0/16, fe80::/10) and cloud
//! metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200, 168.63.129.16) are
//! always refused, as are metadata host names (`metadata.google.internal`, …); loopback is
//! refused unless the policy allows it (development). IPv4-mapped, IPv4-compatible and NAT64
//! IPv6 forms are checked as the IPv4 address they carry. Host names are resolved and every
//! answer must pass (one bad answer refuses the name), and the checked addresses are the
//! ones connected to (see `OutboundClient`), so DNS rebinding between check and use does not
//! help. Leaves out configuration parsing (`[outbound] allowed_networks` becomes
//! `flowgate_config::IpNetwork`s, passed in by the caller).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub use flowgate_config::IpNetwork;

/// Why an address or URL is refused. The message names the address class, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefusal {
    #[error("{address} is a loopback address (allowed in development only)")]
    Loopback { address: IpAddr },
    #[error("{address} is a link-local address")]
    LinkLocal { address: IpAddr },
    #[error("{address} is a cloud metadata address")]
    Metadata { address: IpAddr },
    #[error("`{host}` is a cloud metadata host name")]
    MetadataHost { host: String },
    #[error("{address} is not a unicast address")]
    NotUnicast { address: IpAddr },
    #[error("cannot resolve `{host}`: {detail}")]
    Unresolvable { host: String, detail: String },
}

/// Why a URL is refused before any address is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("not an absolute http(s) URL")]
    Malformed,
    #[error("must use https (http is allowed in development only)")]
    HttpsRequired,
    #[error("must not carry credentials")]
    Credentials,
    #[error(transparent)]
    Address(#[from] AddressRefusal),
}

/// Metadata services reachable at addresses outside the link-local range.
const METADATA_ADDRESSES: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
];

/// Names that resolve to a metadata service inside cloud networks.
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// The IPv4 address an IPv6 address carries (mapped, compatible, NAT64), else itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let segments = v6.segments();
            let octets = v6.octets();
            let embedded = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
            // NAT64 well-known prefix 64:ff9b::/96.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return IpAddr::V4(embedded);
            }
            // Deprecated IPv4-compatible ::a.b.c.d (but not :: or ::1).
            if segments[..6] == [0; 6] && u32::from(embedded) > 1 {
                return IpAddr::V4(embedded);
            }
            ip
        }
    }
}

/// Which outbound addresses may be contacted.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow_loopback: bool,
    allowed_networks: Vec<IpNetwork>,
}

impl AddressPolicy {
    /// Production: loopback refused, nothing extra allowed.
    pub fn production() -> Self {
        Self::default()
    }

    /// Development: loopback allowed (local receivers and upstreams); the rest as production.
    pub fn development() -> Self {
        Self {
            allow_loopback: true,
            allowed_networks: Vec::new(),
        }
    }

    /// Adds networks that are accepted even when a built-in rule would refuse them (an
    /// operator's explicit choice, e.g. a webhook receiver on a link-local sidecar).
    pub fn with_allowed_networks(mut self, networks: impl IntoIterator<Item = IpNetwork>) -> Self {
        self.allowed_networks.extend(networks);
        self
    }

    /// Whether `ip` may be contacted.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), AddressRefusal> {
        if self
            .allowed_networks
            .iter()
            .any(|network| network.contains(ip))
        {
            return Ok(());
        }
        let address = canonical(ip);
        if METADATA_ADDRESSES.contains(&address) {
            return Err(AddressRefusal::Metadata { address: ip });
        }
        let (loopback, link_local, not_unicast) = match address {
            IpAddr::V4(v4) => (
                v4.is_loopback(),
                v4.is_link_local(),
                v4.is_unspecified()
                    || v4.is_broadcast()
                    || v4.is_multicast()
                    || v4.octets()[0] == 0,
            ),
            IpAddr::V6(v6) => (
                v6.is_loopback(),
                v6.is_unicast_link_local(),
                v6.is_unspecified() || v6.is_multicast(),
            ),
        };
        if not_unicast {
            return Err(AddressRefusal::NotUnicast { address: ip });
        }
        if link_local {
            return Err(AddressRefusal::LinkLocal { address: ip });
        }
        if loopback && !self.allow_loopback {
            return Err(AddressRefusal::Loopback { address: ip });
        }
        Ok(())
    }

    /// Refuses metadata host names before any lookup.
    pub fn check_host_name(&self, host: &str) -> Result<(), AddressRefusal> {
        let normalised = host.trim_end_matches('.').to_ascii_lowercase();
        if METADATA_HOSTS.contains(&normalised.as_str()) {
            return Err(AddressRefusal::MetadataHost {
                host: host.to_owned(),
            });
        }
        Ok(())
    }

    /// Resolves `host` (an IP literal is taken as is) and checks every answer; returns the
    /// checked addresses with `port`. Gives up after `timeout`.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Vec<SocketAddr>, AddressRefusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check_ip(ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        self.check_host_name(bare)?;
        let unresolvable = |detail: String| AddressRefusal::Unresolvable {
            host: bare.to_owned(),
            detail,
        };
        let answers = tokio::time::timeout(timeout, tokio::net::lookup_host((bare, port)))
            .await
            .map_err(|_| unresolvable(format!("no answer within {timeout:?}")))?
            .map_err(|err| unresolvable(err.to_string()))?
            .collect::<Vec<_>>();
        if answers.is_empty() {
            return Err(unresolvable("no addresses".to_owned()));
        }
        for answer in &answers {
            self.check_ip(answer.ip())?;
        }
        Ok(answers)
    }
}

/// A parsed outbound URL: scheme checked, no credentials, host and port known.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundUrl {
    uri: http::Uri,
    host: String,
    port: u16,
}

impl fmt::Debug for OutboundUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths may carry tokens (some receivers put one there); show the origin only.
        write!(f, "OutboundUrl({}:{})", self.host, self.port)
    }
}

impl OutboundUrl {
    /// Parses and checks the form of `text` (no address checks: see `AddressPolicy`).
    pub fn parse(text: &str, require_https: bool) -> Result<Self, UrlRefusal> {
        let uri: http::Uri = text.trim().parse().map_err(|_| UrlRefusal::Malformed)?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(UrlRefusal::Malformed),
        };
        if require_https && !https {
            return Err(UrlRefusal::HttpsRequired);
        }
        let authority = uri.authority().ok_or(UrlRefusal::Malformed)?;
        if authority.as_str().contains('@') {
            return Err(UrlRefusal::Credentials);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(UrlRefusal::Malformed);
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Self { uri, host, port })
    }

    pub fn uri(&self) -> &http::Uri {
        &self.uri
    }

    /// The host without IPv6 brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_https(&self) -> bool {
        self.uri.scheme_str() == Some("https")
    }

    /// Parses the URL and checks every address it resolves to.
    pub async fn check(
        text: &str,
        require_https: bool,
        policy: &AddressPolicy,
        timeout: Duration,
    ) -> Result<Self, UrlRefusal> {
        let url = Self::parse(text, require_https)?;
        policy.resolve(&url.host, url.port, timeout).await?;
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or_else(|err| panic!("test address {text}: {err}"))
    }

    fn network(text: &str) -> IpNetwork {
        text.parse()
            .unwrap_or_else(|err| panic!("test network {text}: {err}"))
    }

    #[test]
    fn production_refusals() {
        let policy = AddressPolicy::production();
        let cases: &[(&str, Option<&str>)] = &[
            ("93.184.216.34", None),
            ("10.1.2.3", None),
            ("192.168.1.10", None),
            ("2606:4700::1111", None),
            ("127.0.0.1", Some("loopback")),
            ("127.8.9.10", Some("loopback")),
            ("::1", Some("loopback")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("64:ff9b::7f00:1", Some("loopback")),
            ("169.254.169.254", Some("metadata")),
            ("::ffff:169.254.169.254", Some("metadata")),
            ("fd00:ec2::254", Some("metadata")),
            ("100.100.100.200", Some("metadata")),
            ("169.254.1.1", Some("link-local")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("0.0.0.0", Some("unicast")),
            ("0.1.2.3", Some("unicast")),
            ("::", Some("unicast")),
            ("255.255.255.255", Some("unicast")),
            ("224.0.0.1", Some("unicast")),
            ("ff02::1", Some("unicast")),
        ];
        for (address, refusal) in cases {
            let result = policy.check_ip(ip(address));
            match refusal {
                None => assert_eq!(result, Ok(()), "{address} must be allowed"),
                Some(word) => {
                    let message = result
                        .err()
                        .unwrap_or_else(|| panic!("{address} must be refused"))
                        .to_string();
                    assert!(message.contains(word), "{address}: {message}");
                }
            }
        }
    }

    #[test]
    fn development_allows_loopback_only() {
        let policy = AddressPolicy::development();
        assert_eq!(policy.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check_ip(ip("::1")), Ok(()));
        assert!(policy.check_ip(ip("169.254.169.254")).is_err());
        assert!(policy.check_ip(ip("fe80::1")).is_err());
        assert!(policy.check_ip(ip("0.0.0.0")).is_err());
    }

    #[test]
    fn allowed_networks_override_the_rules() {
        let policy = AddressPolicy::production()
            .with_allowed_networks([network("169.254.10.0/24"), network("127.0.0.1")]);
        assert_eq!(policy.check_ip(ip("169.254.10.7")), Ok(()));
        assert_eq!(policy.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check_ip(ip("::ffff:127.0.0.1")), Ok(()));
        assert!(policy.check_ip(ip("127.0.0.2")).is_err());
        assert!(policy.check_ip(ip("169.254.169.254")).is_err());
    }

    #[test]
    fn metadata_names_are_refused() {
        let policy = AddressPolicy::development();
        for host in [
            "metadata.google.internal",
            "METADATA.google.internal.",
            "instance-data",
        ] {
            assert!(
                matches!(
                    policy.check_host_name(host),
                    Err(AddressRefusal::MetadataHost { .. })
                ),
                "{host}"
            );
        }
        assert_eq!(policy.check_host_name("hooks.example.com"), Ok(()));
    }

    #[test]
    fn url_forms() {
        let parsed = OutboundUrl::parse("https://hooks.example.com/x?y=1", true)
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!((parsed.host(), parsed.port()), ("hooks.example.com", 443));
        let parsed =
            OutboundUrl::parse("http://[::1]:8080/x", false).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!((parsed.host(), parsed.port()), ("::1", 8080));
        assert!(!parsed.is_https());
        assert_eq!(
            OutboundUrl::parse("http://hooks.example.com/", true),
            Err(UrlRefusal::HttpsRequired)
        );
        assert_eq!(
            OutboundUrl::parse("https://user:pass@hooks.example.com/", true),
            Err(UrlRefusal::Credentials)
        );
        for bad in [
            "ftp://x/",
            "hooks.example.com/x",
            "/relative",
            "https:///x",
            "",
        ] {
            assert!(OutboundUrl::parse(bad, false).is_err(), "`{bad}`");
        }
        let debug = format!(
            "{:?}",
            OutboundUrl::parse("https://h.example/secret-token", true)
                .unwrap_or_else(|err| panic!("{err}"))
        );
        assert!(!debug.contains("secret-token"));
    }

    #[tokio::test]
    async fn resolution_checks_every_answer() {
        let timeout = Duration::from_secs(5);
        let production = AddressPolicy::production();
        assert!(matches!(
            production.resolve("localhost", 80, timeout).await,
            Err(AddressRefusal::Loopback { .. })
        ));
        assert!(matches!(
            production.resolve("[::1]", 80, timeout).await,
            Err(AddressRefusal::Loopback { .. })
        ));
        assert!(matches!(
            production
                .resolve("metadata.google.internal", 80, timeout)
                .await,
            Err(AddressRefusal::MetadataHost { .. })
        ));
        let development = AddressPolicy::development();
        let answers = development
            .resolve("localhost", 8080, timeout)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        assert!(
            answers
                .iter()
                .all(|answer| answer.ip().is_loopback() && answer.port() == 8080)
        );
        assert!(matches!(
            OutboundUrl::check(
                "http://169.254.169.254/latest/meta-data",
                false,
                &development,
                timeout
            )
            .await,
            Err(UrlRefusal::Address(AddressRefusal::Metadata { .. }))
        ));
        assert!(matches!(
            production.resolve("name.invalid", 80, timeout).await,
            Err(AddressRefusal::Unresolvable { .. })
        ));
    }
}
