//! The `[outbound]` section: explicit exceptions to the outbound address allowlist that every
//! connection to an operator-configured URL passes (webhooks now, upstream base URLs later;
//! the rules themselves live in `flowgate_providers::allowlist`). An operator who really means
//! to reach a link-local sidecar or, in production, a loopback receiver lists its network here.
//!
//! Owns `OutboundConfig` and `IpNetwork` (a CIDR network, parsed once here so nothing
//! downstream parses address strings).

use crate::ConfigError;
use crate::raw::RawOutbound;
use std::net::IpAddr;
use std::str::FromStr;

/// Validated `[outbound]` settings.
#[derive(Debug, Clone, Default)]
pub struct OutboundConfig {
    /// Networks accepted even where a built-in rule (loopback in production, link-local,
    /// cloud metadata) would refuse them.
    pub allowed_networks: Vec<IpNetwork>,
}

/// An IP network in CIDR form (`10.0.0.0/8`, `fd00::/8`; a bare address is a /32 or /128).
/// IPv4-mapped IPv6 addresses are treated as the IPv4 address they carry, on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix_len: u8,
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn prefix_match(network: &[u8], ip: &[u8], prefix_len: u8) -> bool {
    let full = usize::from(prefix_len / 8);
    if network[..full] != ip[..full] {
        return false;
    }
    let rest = prefix_len % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (network[full] & mask) == (ip[full] & mask)
}

impl IpNetwork {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, unmapped(ip)) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                prefix_match(&network.octets(), &ip.octets(), self.prefix_len)
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                prefix_match(&network.octets(), &ip.octets(), self.prefix_len)
            }
            _ => false,
        }
    }
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR network"))?;
        let address = unmapped(address);
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= max)
                .ok_or_else(|| format!("`{text}` has a prefix length outside 0..={max}"))?,
        };
        Ok(Self {
            address,
            prefix_len,
        })
    }
}

pub(crate) fn outbound_config(raw: &RawOutbound) -> Result<OutboundConfig, ConfigError> {
    let allowed_networks = raw
        .allowed_networks
        .iter()
        .map(|text| {
            text.parse()
                .map_err(|message| ConfigError::new("outbound.allowed_networks", message))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OutboundConfig { allowed_networks })
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
    fn networks_parse_and_match() {
        assert!(network("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!network("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(network("10.0.0.0/9").contains(ip("10.127.0.1")));
        assert!(!network("10.0.0.0/9").contains(ip("10.128.0.1")));
        assert!(network("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!network("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(network("fd00::/8").contains(ip("fd12::1")));
        assert!(network("::ffff:10.0.0.1").contains(ip("10.0.0.1")));
        assert!(network("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        for bad in ["", "10.0.0.0/33", "::/129", "nope/8", "10.0.0.0/x"] {
            assert!(bad.parse::<IpNetwork>().is_err(), "`{bad}` must not parse");
        }
    }

    #[test]
    fn the_section_is_validated_naming_the_key() {
        let config = outbound_config(&RawOutbound {
            allowed_networks: vec!["169.254.10.0/24".to_owned(), "fd00::1".to_owned()],
        })
        .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.allowed_networks.len(), 2);
        let err = outbound_config(&RawOutbound {
            allowed_networks: vec!["10.0.0.0/40".to_owned()],
        })
        .err()
        .map(|err| err.to_string())
        .unwrap_or_default();
        assert!(err.contains("outbound.allowed_networks"), "{err}");
        assert!(
            outbound_config(&RawOutbound::default())
                .unwrap_or_else(|err| panic!("{err}"))
                .allowed_networks
                .is_empty()
        );
    }
}
