//! The rule model, as written by operators in `flowgate.toml` (`[[rules]]`) and by tenants
//! through the admin API (JSON), and the built-in presets.
//!
//! Owns: [`Rule`], [`RuleMatch`], [`Action`], [`RulePhase`], [`Preset`] and the TOML entry
//! point [`parse_rules_toml`]. Validation that needs more than serde (exactly one match kind,
//! regex limits, duplicate ids) happens when rules are compiled (`crate::policy`). Leaves out
//! storage and the admin API.

use serde::{Deserialize, Serialize};

use crate::detector::{Confidence, DetectorId, DetectorSelector};
use crate::error::PolicyError;

/// What happens when a rule matches. Ordered by severity: `Allow < Flag < Redact < Block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// An explicit exception: suppresses lower-priority findings on the same span.
    Allow,
    /// Let the text through and record the finding (audit, webhooks).
    Flag,
    /// Replace the span with `[REDACTED:<label>]` before forwarding.
    Redact,
    /// Refuse the request (or end the stream).
    Block,
}

impl Action {
    /// The wire name (`allow`, `flag`, `redact`, `block`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Flag => "flag",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

/// Which side of the exchange a rule screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RulePhase {
    /// Prompts sent by the client.
    Request,
    /// Completions returned by the provider (including streams).
    Response,
    /// Both.
    #[default]
    Both,
}

impl RulePhase {
    /// Whether the rule applies to text screened in `phase`.
    #[must_use]
    pub fn covers(self, phase: Phase) -> bool {
        matches!(
            (self, phase),
            (RulePhase::Both, _)
                | (RulePhase::Request, Phase::Request)
                | (RulePhase::Response, Phase::Response)
        )
    }
}

/// The side of the exchange a text is screened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A prompt.
    Request,
    /// A completion.
    Response,
}

fn default_true() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// What a rule looks for. Exactly one of `detector`, `keywords`, `regex`, `model_allow`,
/// `model_deny` and `max_prompt_bytes` must be set; the other fields refine it.
///
/// TOML: `match = { detector = "secret.jwt" }`, `match = { keywords = ["project falcon"] }`,
/// `match = { regex = "(?i)ticket-[0-9]{6}" }`, `match = { model_deny = ["gpt-4o*"] }`,
/// `match = { max_prompt_bytes = 200000 }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    /// A built-in detector id (`credit_card`, `secret`, `secret.jwt`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<DetectorSelector>,
    /// Literal keywords or phrases (matched after normalisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Vec<String>>,
    /// A regular expression in the `regex` crate's syntax: linear time, no backreferences or
    /// look-around, size-limited when compiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Models this rule permits: any other model is a finding. `*` at the end is a prefix
    /// wildcard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_allow: Option<Vec<String>>,
    /// Models this rule forbids. `*` at the end is a prefix wildcard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_deny: Option<Vec<String>>,
    /// A prompt larger than this many bytes is a finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_bytes: Option<usize>,
    /// Keywords only: match case exactly (default: ASCII case-insensitive).
    #[serde(default, skip_serializing_if = "is_false")]
    pub case_sensitive: bool,
    /// Keywords only: require word boundaries at both ends (default: true).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub whole_word: bool,
    /// Detectors only: ignore hits below this confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<Confidence>,
}

impl RuleMatch {
    /// A match on a built-in detector.
    #[must_use]
    pub fn detector(selector: DetectorSelector) -> Self {
        RuleMatch {
            detector: Some(selector),
            whole_word: true,
            ..RuleMatch::default()
        }
    }

    /// A case-insensitive whole-word keyword match.
    #[must_use]
    pub fn keywords<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RuleMatch {
            keywords: Some(words.into_iter().map(Into::into).collect()),
            whole_word: true,
            ..RuleMatch::default()
        }
    }

    /// A regular-expression match.
    #[must_use]
    pub fn regex(pattern: impl Into<String>) -> Self {
        RuleMatch {
            regex: Some(pattern.into()),
            whole_word: true,
            ..RuleMatch::default()
        }
    }
}

/// One rule. Deserialises from a TOML `[[rules]]` table or an admin-API JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within a tenant's rules plus its preset: `[A-Za-z0-9._-]`, 1 to 64 characters.
    /// Reported in findings and in 403 errors.
    pub id: String,
    /// Free text for operators.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Higher wins when findings overlap (presets use 0).
    #[serde(default)]
    pub priority: i32,
    /// Which side of the exchange the rule screens (default: both).
    #[serde(default)]
    pub phase: RulePhase,
    /// What the rule looks for.
    #[serde(rename = "match")]
    pub matcher: RuleMatch,
    /// What happens on a match.
    pub action: Action,
}

impl Rule {
    /// A rule with priority 0 that screens both phases.
    #[must_use]
    pub fn new(id: impl Into<String>, matcher: RuleMatch, action: Action) -> Self {
        Rule {
            id: id.into(),
            description: String::new(),
            priority: 0,
            phase: RulePhase::Both,
            matcher,
            action,
        }
    }

    /// Sets the priority.
    #[must_use]
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the phase.
    #[must_use]
    pub fn with_phase(mut self, phase: RulePhase) -> Self {
        self.phase = phase;
        self
    }

    /// Sets the description.
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }
}

/// The shape of a rules file: `[[rules]]` tables and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<Rule>,
}

/// Parses a TOML document made of `[[rules]]` tables (for `flowgate rules check FILE`).
///
/// # Errors
/// [`PolicyError::Toml`] when the document is not valid TOML or a rule has unknown or
/// missing fields.
pub fn parse_rules_toml(document: &str) -> Result<Vec<Rule>, PolicyError> {
    toml::from_str::<RulesFile>(document)
        .map(|file| file.rules)
        .map_err(|source| PolicyError::Toml {
            message: source.to_string(),
        })
}

/// A built-in rule set a tenant starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Preset {
    /// Redacts payment data and secrets, flags contact data, injection phrases and invisible
    /// text.
    #[default]
    #[serde(rename = "default")]
    Default,
    /// Blocks payment data, secrets and injection phrases; redacts contact data and invisible
    /// text.
    #[serde(rename = "strict")]
    Strict,
    /// The `default` rules with every action (the tenant's own rules included) downgraded to
    /// `flag`: shadow mode for trying rules. `allow` exceptions stay `allow`.
    #[serde(rename = "audit-only")]
    AuditOnly,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 3] = [Preset::Default, Preset::Strict, Preset::AuditOnly];

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Default => "default",
            Preset::Strict => "strict",
            Preset::AuditOnly => "audit-only",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// One line for `GET /v1/rules/presets`.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            Preset::Default => {
                "redact cards, IBANs, SSNs and secrets; flag e-mail, phone, prompt injection and invisible text"
            }
            Preset::Strict => {
                "block cards, IBANs, SSNs, secrets and prompt injection; redact e-mail, phone, IP addresses and invisible text"
            }
            Preset::AuditOnly => {
                "the default rules, but every action is downgraded to flag (shadow mode)"
            }
        }
    }

    /// Whether every block/redact action (the tenant's rules included) becomes `flag`.
    #[must_use]
    pub fn downgrades_to_flag(self) -> bool {
        self == Preset::AuditOnly
    }

    /// The preset's rules (ids start with `builtin.`, priority 0).
    #[must_use]
    pub fn rules(self) -> Vec<Rule> {
        let rule = |detector: DetectorSelector, action: Action, phase: RulePhase| {
            Rule::new(
                format!("builtin.{}", detector.as_str()),
                RuleMatch::detector(detector),
                action,
            )
            .with_phase(phase)
            .with_description(format!("built-in {} detector", detector.as_str()))
        };
        let one = DetectorSelector::One;
        let mut rules = match self {
            Preset::Default | Preset::AuditOnly => vec![
                rule(one(DetectorId::CreditCard), Action::Redact, RulePhase::Both),
                rule(one(DetectorId::Iban), Action::Redact, RulePhase::Both),
                rule(one(DetectorId::UsSsn), Action::Redact, RulePhase::Both),
                rule(DetectorSelector::AnySecret, Action::Redact, RulePhase::Both),
                rule(one(DetectorId::Email), Action::Flag, RulePhase::Both),
                rule(one(DetectorId::Phone), Action::Flag, RulePhase::Both),
                rule(
                    one(DetectorId::PromptInjection),
                    Action::Flag,
                    RulePhase::Request,
                ),
                rule(
                    one(DetectorId::InvisibleText),
                    Action::Flag,
                    RulePhase::Both,
                ),
            ],
            Preset::Strict => vec![
                rule(one(DetectorId::CreditCard), Action::Block, RulePhase::Both),
                rule(one(DetectorId::Iban), Action::Block, RulePhase::Both),
                rule(one(DetectorId::UsSsn), Action::Block, RulePhase::Both),
                rule(DetectorSelector::AnySecret, Action::Block, RulePhase::Both),
                rule(one(DetectorId::Email), Action::Redact, RulePhase::Both),
                rule(one(DetectorId::Phone), Action::Redact, RulePhase::Both),
                rule(one(DetectorId::IpAddress), Action::Redact, RulePhase::Both),
                rule(
                    one(DetectorId::PromptInjection),
                    Action::Block,
                    RulePhase::Request,
                ),
                rule(
                    one(DetectorId::InvisibleText),
                    Action::Redact,
                    RulePhase::Both,
                ),
            ],
        };
        if self.downgrades_to_flag() {
            for rule in &mut rules {
                rule.action = downgrade(rule.action);
            }
        }
        rules
    }
}

/// Shadow mode: `block` and `redact` become `flag`; `flag` and `allow` are unchanged.
pub(crate) fn downgrade(action: Action) -> Action {
    match action {
        Action::Block | Action::Redact => Action::Flag,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::SecretKind;

    #[test]
    fn toml_rules_parse() {
        let rules = parse_rules_toml(
            r#"
            [[rules]]
            id = "no-falcon"
            description = "codename"
            priority = 10
            phase = "request"
            action = "block"
            match = { keywords = ["project falcon"], case_sensitive = true }

            [[rules]]
            id = "jwt"
            action = "redact"
            [rules.match]
            detector = "secret.jwt"
            "#,
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].priority, 10);
        assert_eq!(rules[0].phase, RulePhase::Request);
        assert!(rules[0].matcher.case_sensitive);
        assert!(rules[0].matcher.whole_word);
        assert_eq!(
            rules[1].matcher.detector,
            Some(DetectorSelector::One(DetectorId::Secret(SecretKind::Jwt)))
        );
        assert_eq!(rules[1].phase, RulePhase::Both);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err =
            parse_rules_toml("[[rules]]\nid='a'\naction='block'\nmatch={regex='x'}\nbogus=1\n")
                .unwrap_err();
        assert!(matches!(err, PolicyError::Toml { .. }));
        let json = r#"{"id":"a","action":"flag","match":{"detector":"email","nope":true}}"#;
        assert!(serde_json::from_str::<Rule>(json).is_err());
        let json = r#"{"id":"a","action":"flag","match":{"detector":"secret.nope"}}"#;
        assert!(serde_json::from_str::<Rule>(json).is_err());
    }

    #[test]
    fn json_round_trip() {
        let rule = Rule::new("r1", RuleMatch::keywords(["x"]), Action::Flag).with_priority(3);
        let json = serde_json::to_string(&rule).unwrap();
        assert_eq!(
            json,
            r#"{"id":"r1","priority":3,"phase":"both","match":{"keywords":["x"]},"action":"flag"}"#
        );
        assert_eq!(serde_json::from_str::<Rule>(&json).unwrap(), rule);
    }

    #[test]
    fn audit_only_downgrades_everything_but_allow() {
        assert!(
            Preset::AuditOnly
                .rules()
                .iter()
                .all(|r| r.action == Action::Flag)
        );
        assert_eq!(downgrade(Action::Allow), Action::Allow);
        assert!(
            Preset::Strict
                .rules()
                .iter()
                .any(|r| r.action == Action::Block)
        );
        assert_eq!(Preset::from_name("audit-only"), Some(Preset::AuditOnly));
        assert_eq!(
            serde_json::to_string(&Preset::AuditOnly).unwrap(),
            "\"audit-only\""
        );
    }
}
