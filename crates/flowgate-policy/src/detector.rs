//! Detector identifiers and confidence levels.
//!
//! Owns the stable string ids of the built-in detectors (`credit_card`, `secret.jwt`, ...), the
//! ids reported for tenant-defined matches (`keyword`, `regex`, `model`, `max_prompt_bytes`),
//! the [`DetectorSelector`] a rule uses to pick one detector or a whole family (`secret`), and
//! [`Confidence`]. It leaves the scanning itself to `crate::detectors`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How sure a detector is that a span really is what it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// The span has the right shape, but the format has no checksum (or it was not checked).
    Pattern,
    /// The span passed a structural validator: a checksum (Luhn, mod-97, CRC32), a registry
    /// table (issuer ranges, IBAN country lengths, phone metadata) or a decoding check.
    Validated,
}

impl Confidence {
    /// The wire name (`pattern` or `validated`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Pattern => "pattern",
            Confidence::Validated => "validated",
        }
    }
}

/// The kinds of secret the `secret` detector family recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretKind {
    /// AWS access key ids (`AKIA…`, `ASIA…`).
    AwsAccessKey,
    /// GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` with their CRC32, `github_pat_`).
    GithubToken,
    /// OpenAI API keys (`sk-…`, `sk-proj-…`).
    Openai,
    /// Anthropic API keys (`sk-ant-…`).
    Anthropic,
    /// Slack tokens (`xoxb-…`) and incoming-webhook URLs.
    Slack,
    /// Stripe secret and restricted keys (`sk_live_…`, `rk_test_…`).
    Stripe,
    /// Google API keys (`AIza…`).
    GoogleApiKey,
    /// flowgate's own tenant keys (`fgk_` + 49 base62 characters).
    FlowgateKey,
    /// PEM private key blocks.
    PrivateKey,
    /// JSON Web Tokens whose header decodes to JSON with an `alg` member.
    Jwt,
    /// Passwords inside URLs and connection strings (`scheme://user:password@host`).
    ConnectionString,
    /// Keyword-anchored assignments of high-randomness values (`api_key = "…"`).
    Generic,
}

impl SecretKind {
    /// Every kind, in a stable order.
    pub const ALL: [SecretKind; 12] = [
        SecretKind::AwsAccessKey,
        SecretKind::GithubToken,
        SecretKind::Openai,
        SecretKind::Anthropic,
        SecretKind::Slack,
        SecretKind::Stripe,
        SecretKind::GoogleApiKey,
        SecretKind::FlowgateKey,
        SecretKind::PrivateKey,
        SecretKind::Jwt,
        SecretKind::ConnectionString,
        SecretKind::Generic,
    ];

    /// The sub-kind name used after `secret.`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::AwsAccessKey => "aws_access_key",
            SecretKind::GithubToken => "github_token",
            SecretKind::Openai => "openai",
            SecretKind::Anthropic => "anthropic",
            SecretKind::Slack => "slack",
            SecretKind::Stripe => "stripe",
            SecretKind::GoogleApiKey => "google_api_key",
            SecretKind::FlowgateKey => "flowgate_key",
            SecretKind::PrivateKey => "private_key",
            SecretKind::Jwt => "jwt",
            SecretKind::ConnectionString => "connection_string",
            SecretKind::Generic => "generic",
        }
    }
}

/// What produced a finding: a built-in detector or one of the tenant-defined match kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DetectorId {
    /// Payment card numbers (Luhn + issuer ranges and lengths).
    CreditCard,
    /// International bank account numbers (mod-97 + per-country length).
    Iban,
    /// E-mail addresses.
    Email,
    /// Phone numbers validated against libphonenumber metadata.
    Phone,
    /// IPv4 and IPv6 addresses.
    IpAddress,
    /// US social security numbers outside the never-issued ranges.
    UsSsn,
    /// Credentials; see [`SecretKind`].
    Secret(SecretKind),
    /// Prompt-injection and jailbreak phrases.
    PromptInjection,
    /// Invisible and bidirectional control characters.
    InvisibleText,
    /// A tenant keyword list.
    Keyword,
    /// A tenant regular expression.
    Regex,
    /// A model allow or deny list.
    Model,
    /// The maximum prompt size.
    MaxPromptBytes,
}

impl DetectorId {
    /// The built-in detectors a rule can name (secret sub-kinds excluded; see [`SecretKind`]).
    pub const BUILT_IN: [DetectorId; 8] = [
        DetectorId::CreditCard,
        DetectorId::Iban,
        DetectorId::Email,
        DetectorId::Phone,
        DetectorId::IpAddress,
        DetectorId::UsSsn,
        DetectorId::PromptInjection,
        DetectorId::InvisibleText,
    ];

    /// The stable id, as written in rules and findings (`secret.jwt`, `credit_card`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorId::CreditCard => "credit_card",
            DetectorId::Iban => "iban",
            DetectorId::Email => "email",
            DetectorId::Phone => "phone",
            DetectorId::IpAddress => "ip_address",
            DetectorId::UsSsn => "us_ssn",
            DetectorId::Secret(kind) => match kind {
                SecretKind::AwsAccessKey => "secret.aws_access_key",
                SecretKind::GithubToken => "secret.github_token",
                SecretKind::Openai => "secret.openai",
                SecretKind::Anthropic => "secret.anthropic",
                SecretKind::Slack => "secret.slack",
                SecretKind::Stripe => "secret.stripe",
                SecretKind::GoogleApiKey => "secret.google_api_key",
                SecretKind::FlowgateKey => "secret.flowgate_key",
                SecretKind::PrivateKey => "secret.private_key",
                SecretKind::Jwt => "secret.jwt",
                SecretKind::ConnectionString => "secret.connection_string",
                SecretKind::Generic => "secret.generic",
            },
            DetectorId::PromptInjection => "prompt_injection",
            DetectorId::InvisibleText => "invisible_text",
            DetectorId::Keyword => "keyword",
            DetectorId::Regex => "regex",
            DetectorId::Model => "model",
            DetectorId::MaxPromptBytes => "max_prompt_bytes",
        }
    }

    /// Whether this is a built-in content detector (as opposed to a tenant-defined match).
    #[must_use]
    pub fn is_built_in(self) -> bool {
        !matches!(
            self,
            DetectorId::Keyword
                | DetectorId::Regex
                | DetectorId::Model
                | DetectorId::MaxPromptBytes
        )
    }
}

impl fmt::Display for DetectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DetectorId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DetectorId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        let all = DetectorId::BUILT_IN
            .into_iter()
            .chain(SecretKind::ALL.into_iter().map(DetectorId::Secret))
            .chain([
                DetectorId::Keyword,
                DetectorId::Regex,
                DetectorId::Model,
                DetectorId::MaxPromptBytes,
            ]);
        for id in all {
            if id.as_str() == name {
                return Ok(id);
            }
        }
        Err(serde::de::Error::custom(format!(
            "unknown detector id `{name}`"
        )))
    }
}

/// Which built-in detector(s) a rule matches: one detector, one secret kind, or every secret
/// kind (`secret`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DetectorSelector {
    /// Exactly this built-in detector (for `secret.*` ids, exactly this kind).
    One(DetectorId),
    /// Every [`SecretKind`].
    AnySecret,
}

impl DetectorSelector {
    /// Whether a hit of `detector` is selected.
    #[must_use]
    pub fn selects(self, detector: DetectorId) -> bool {
        match self {
            DetectorSelector::One(id) => id == detector,
            DetectorSelector::AnySecret => matches!(detector, DetectorId::Secret(_)),
        }
    }

    /// The id as written in rules (`secret` for every kind).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorSelector::One(id) => id.as_str(),
            DetectorSelector::AnySecret => "secret",
        }
    }
}

/// A detector id in a rule did not name a built-in detector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown built-in detector `{name}`")]
pub struct UnknownDetector {
    /// The id as written (detector ids are not secret).
    pub name: String,
}

impl FromStr for DetectorSelector {
    type Err = UnknownDetector;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name == "secret" {
            return Ok(DetectorSelector::AnySecret);
        }
        DetectorId::BUILT_IN
            .into_iter()
            .chain(SecretKind::ALL.into_iter().map(DetectorId::Secret))
            .find(|id| id.as_str() == name)
            .map(DetectorSelector::One)
            .ok_or_else(|| UnknownDetector {
                name: name.to_owned(),
            })
    }
}

impl fmt::Display for DetectorSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DetectorSelector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DetectorSelector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_round_trips_every_id() {
        for id in DetectorId::BUILT_IN
            .into_iter()
            .chain(SecretKind::ALL.into_iter().map(DetectorId::Secret))
        {
            let selector: DetectorSelector = id.as_str().parse().unwrap();
            assert_eq!(selector, DetectorSelector::One(id));
            assert!(selector.selects(id));
        }
        assert_eq!(
            "secret".parse::<DetectorSelector>().unwrap(),
            DetectorSelector::AnySecret
        );
        assert!("secret.nope".parse::<DetectorSelector>().is_err());
        assert!("keyword".parse::<DetectorSelector>().is_err());
    }

    #[test]
    fn any_secret_selects_only_secrets() {
        assert!(DetectorSelector::AnySecret.selects(DetectorId::Secret(SecretKind::Jwt)));
        assert!(!DetectorSelector::AnySecret.selects(DetectorId::CreditCard));
    }
}
