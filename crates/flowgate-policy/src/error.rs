//! Errors raised when rules are parsed or compiled. Owns [`PolicyError`]; bundle errors live in
//! `crate::bundle`. No error ever carries screened text: only rule ids, limits and messages
//! about the rules themselves.

/// Why a set of rules could not become a [`crate::Policy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A rules document was not valid TOML, or a rule had unknown or missing fields.
    #[error("invalid rules document: {message}")]
    Toml {
        /// The parser's message (names the line and the field).
        message: String,
    },
    /// A rule id was empty, too long, or used characters outside `[A-Za-z0-9._-]`.
    #[error("invalid rule id `{id}`: use 1 to 64 characters from A-Z a-z 0-9 . _ -")]
    InvalidRuleId {
        /// The offending id.
        id: String,
    },
    /// Two rules (or a rule and a preset rule) share an id.
    #[error("duplicate rule id `{id}`")]
    DuplicateRuleId {
        /// The repeated id.
        id: String,
    },
    /// A rule's `match` sets none, or more than one, of the match kinds.
    #[error(
        "rule `{rule_id}`: `match` must set exactly one of detector, keywords, regex, model_allow, model_deny, max_prompt_bytes (found {found})"
    )]
    MatchKind {
        /// The rule.
        rule_id: String,
        /// How many kinds were set.
        found: usize,
    },
    /// A keyword list was empty or held an empty keyword.
    #[error("rule `{rule_id}`: keyword lists must be non-empty and hold no empty keyword")]
    EmptyKeyword {
        /// The rule.
        rule_id: String,
    },
    /// A keyword or regex exceeded the configured size.
    #[error("rule `{rule_id}`: {what} is {len} bytes, the limit is {max}")]
    TooLarge {
        /// The rule.
        rule_id: String,
        /// What was too large (`keyword`, `regex pattern`, `keyword list`).
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A regex did not compile, or its compiled program exceeded the size limits.
    #[error("rule `{rule_id}`: invalid regex: {message}")]
    Regex {
        /// The rule.
        rule_id: String,
        /// The regex compiler's message.
        message: String,
    },
    /// A regex can match the empty string, which would produce findings everywhere.
    #[error("rule `{rule_id}`: the regex matches the empty string")]
    RegexMatchesEmpty {
        /// The rule.
        rule_id: String,
    },
    /// The action makes no sense for this match kind (for example `redact` on a model list).
    #[error("rule `{rule_id}`: action `{action}` is not supported for {match_kind} matches")]
    UnsupportedAction {
        /// The rule.
        rule_id: String,
        /// The action given.
        action: &'static str,
        /// The match kind.
        match_kind: &'static str,
    },
    /// `min_confidence`, `case_sensitive` or `whole_word` was set on a match kind it does not
    /// apply to.
    #[error("rule `{rule_id}`: option `{option}` does not apply to {match_kind} matches")]
    MisplacedOption {
        /// The rule.
        rule_id: String,
        /// The option.
        option: &'static str,
        /// The match kind.
        match_kind: &'static str,
    },
    /// More rules than the compile options allow.
    #[error("{count} rules exceed the limit of {max}")]
    TooManyRules {
        /// Rules given (preset included).
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A phone region in the compile options is not an ISO 3166 code known to libphonenumber.
    #[error("unknown phone region `{region}`")]
    UnknownPhoneRegion {
        /// The region as given.
        region: String,
    },
    /// The keyword automaton could not be built (too many or too long keywords).
    #[error("keyword automaton: {message}")]
    Automaton {
        /// The builder's message.
        message: String,
    },
}
