//! flowgate-policy: the pure policy engine the gateway runs on every request and response.
//!
//! Owns the rule model ([`Rule`], presets), the built-in detectors (payment cards, IBANs,
//! e-mail, phone numbers, IP addresses, US SSNs, secrets, prompt injection, invisible text),
//! normalisation with an offset map, compilation of a tenant's rules into one [`Policy`]
//! program, evaluation into a [`Decision`] with [`Finding`]s and redacted text, stream
//! screening ([`StreamScreener`]) and signed policy bundles ([`bundle`]). It does no IO, no
//! async and no logging; the HTTP surfaces, storage and the CLI live in other crates.
//!
//! Findings, errors and `Debug` output never contain the matched text: only rule ids,
//! detector ids, confidences and byte spans.
//!
//! ```
//! use flowgate_policy::{Decision, EvalContext, Policy, Preset};
//!
//! let policy = Policy::compile(Some(Preset::Default), &[]).unwrap();
//! let text = "my card is 4111 1111 1111 1111";
//! let evaluation = policy.evaluate(text, &EvalContext::request());
//! assert_eq!(evaluation.decision, Decision::Redact);
//! assert_eq!(evaluation.redact(text), "my card is [REDACTED:credit_card]");
//! ```

pub mod bundle;
pub mod corpus;
mod detector;
mod detectors;
mod error;
mod finding;
mod normalize;
mod policy;
mod rule;
mod stream;

pub use detector::{Confidence, DetectorId, DetectorSelector, SecretKind, UnknownDetector};
pub use error::PolicyError;
pub use finding::{Decision, Evaluation, Finding, RulesTestAnswer, TestFinding};
pub use policy::{
    BASE_STREAM_HOLDBACK, CompileOptions, EvalContext, MAX_OPEN_MATCH, MAX_STREAM_HOLDBACK, Policy,
};
pub use rule::{Action, Phase, Preset, Rule, RuleMatch, RulePhase, parse_rules_toml};
pub use stream::{StreamScreener, StreamStatus};
