//! Fuzzes rule parsing and compilation: arbitrary bytes as a JSON rule list and as a TOML
//! rules document, compiled on every preset, then evaluated. Nothing may panic, and a policy
//! that compiled must evaluate any text (its own source included) without panicking.
#![no_main]

use flowgate_policy::{EvalContext, Policy, Preset, Rule, parse_rules_toml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut candidates: Vec<Vec<Rule>> = Vec::new();
    if let Ok(rules) = serde_json::from_slice::<Vec<Rule>>(data) {
        candidates.push(rules);
    }
    if let Ok(rules) = parse_rules_toml(&text) {
        candidates.push(rules);
    }
    // Also treat the input as one tenant regex and one keyword.
    candidates.push(vec![Rule::new(
        "fuzz-regex",
        flowgate_policy::RuleMatch::regex(text.to_string()),
        flowgate_policy::Action::Redact,
    )]);
    candidates.push(vec![Rule::new(
        "fuzz-keyword",
        flowgate_policy::RuleMatch::keywords([text.to_string()]),
        flowgate_policy::Action::Block,
    )]);
    // One preset per input keeps the target fast (compiling the automata dominates a run).
    let preset = [None, Some(Preset::Default), Some(Preset::Strict), Some(Preset::AuditOnly)][data.len() % 4];
    for rules in candidates {
        {
            if let Ok(policy) = Policy::compile(preset, &rules) {
                let evaluation = policy.evaluate(&text, &EvalContext::request().with_model("gpt-4o").with_prompt_bytes(data.len()));
                let redacted = evaluation.redact(&text);
                assert!(evaluation.findings.iter().all(|f| f.start <= f.end && f.end <= text.len()));
                let _ = redacted.len();
            }
        }
    }
});
