//! Screening of streamed text (assistant deltas) as it flows.
//!
//! Owns [`StreamScreener`]: it buffers chunks, forwards the prefix that no future byte can
//! change, redacted, and holds back the rest. The bound: in the steady state it holds back
//! [`Policy::stream_holdback`] bytes (at least [`crate::BASE_STREAM_HOLDBACK`], at most
//! [`crate::MAX_STREAM_HOLDBACK`]); while a finding touches the end of the buffer (a PEM
//! block or JWT still arriving, a card number still growing) it holds back from that
//! finding's start, which is at most [`crate::MAX_OPEN_MATCH`] bytes back (a match still
//! growing past that is redacted up to the cut and split, so memory stays bounded). It also
//! keeps the same number of already-forwarded bytes as left context. Leaves out SSE parsing and the
//! ingress-format error event (the gateway's job).
//!
//! Matches of unbounded tenant regexes longer than the holdback may be missed in a stream
//! (the non-stream [`Policy::evaluate`] sees them).

use std::fmt;

use crate::finding::{Decision, Finding, redact_spans};
use crate::policy::{EvalContext, MAX_OPEN_MATCH, Policy, resolve};
use crate::rule::{Action, Phase};

/// Whether a stream may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    /// Keep streaming.
    Continue,
    /// A `block` rule matched: end the stream with an error event. See
    /// [`StreamScreener::findings`] for the rule.
    Blocked,
}

/// Screens one streamed text. Create one per response stream (per choice).
pub struct StreamScreener {
    policy: Policy,
    phase: Phase,
    /// Already-forwarded left context followed by pending (held back) text.
    buffer: String,
    /// Stream offset of `buffer[0]`.
    base: usize,
    /// Bytes of `buffer` already forwarded.
    emitted: usize,
    /// Findings settled so far, in stream offsets.
    findings: Vec<Finding>,
    decision: Decision,
    blocked: bool,
}

impl fmt::Debug for StreamScreener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the buffer: it is unscreened text.
        f.debug_struct("StreamScreener")
            .field("phase", &self.phase)
            .field("forwarded", &(self.base + self.emitted))
            .field("held_back", &self.held_back())
            .field("findings", &self.findings.len())
            .field("decision", &self.decision)
            .finish()
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

impl StreamScreener {
    /// A screener for text screened in `phase` (normally [`Phase::Response`]).
    #[must_use]
    pub fn new(policy: Policy, phase: Phase) -> Self {
        StreamScreener {
            policy,
            phase,
            buffer: String::new(),
            base: 0,
            emitted: 0,
            findings: Vec::new(),
            decision: Decision::Allow,
            blocked: false,
        }
    }

    /// Feeds the next chunk and appends to `out` the text that is safe to forward now
    /// (redacted). Returns [`StreamStatus::Blocked`] as soon as a `block` finding is settled;
    /// `out` then holds the text before the blocked span, and later calls forward nothing.
    pub fn push(&mut self, chunk: &str, out: &mut String) -> StreamStatus {
        if self.blocked {
            return StreamStatus::Blocked;
        }
        self.buffer.push_str(chunk);
        self.process(false, out)
    }

    /// Ends the stream: screens and forwards everything still held back.
    pub fn finish(&mut self, out: &mut String) -> StreamStatus {
        if self.blocked {
            return StreamStatus::Blocked;
        }
        self.process(true, out)
    }

    /// Findings settled so far (offsets are bytes of the whole stream).
    #[must_use]
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The decision so far.
    #[must_use]
    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// Bytes received but not yet forwarded.
    #[must_use]
    pub fn held_back(&self) -> usize {
        self.buffer.len() - self.emitted
    }

    fn process(&mut self, last: bool, out: &mut String) -> StreamStatus {
        let len = self.buffer.len();
        let holdback = self.policy.stream_holdback();
        if !last && len - self.emitted <= holdback {
            return StreamStatus::Continue;
        }
        let context = EvalContext {
            phase: self.phase,
            model: None,
            prompt_bytes: None,
        };
        let evaluation = resolve(self.policy.collect(&self.buffer, &context));
        // Only the pending part matters. A finding that starts in forwarded text is one that
        // was longer than MAX_OPEN_MATCH (split on purpose) or an unbounded tenant regex that
        // grew: its pending part is still redacted.
        let emitted = self.emitted;
        let pending: Vec<Finding> = evaluation
            .findings
            .into_iter()
            .filter(|f| f.end > emitted && f.end > f.start)
            .map(|mut f| {
                f.start = f.start.max(emitted);
                f
            })
            .collect();

        let mut cut = if last {
            len
        } else {
            floor_char_boundary(&self.buffer, len - holdback).max(emitted)
        };
        if !last {
            // Never split a finding, and hold back any finding that may still grow, unless it
            // is already longer than MAX_OPEN_MATCH: then it is split (memory stays bounded).
            loop {
                let mut moved = false;
                for finding in &pending {
                    let bounded = len - finding.start <= MAX_OPEN_MATCH;
                    let open = finding.end >= len;
                    if bounded && finding.start < cut && (open || finding.end > cut) {
                        cut = finding.start;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }

        let settled: Vec<Finding> = pending
            .into_iter()
            .filter(|f| f.start < cut)
            .map(|mut f| {
                f.end = f.end.min(cut);
                f
            })
            .collect();
        if let Some(block_start) = settled
            .iter()
            .filter(|f| f.action == Action::Block)
            .map(|f| f.start)
            .min()
        {
            let (before, rest): (Vec<Finding>, Vec<Finding>) =
                settled.into_iter().partition(|f| f.start < block_start);
            out.push_str(&redact_spans(
                &self.buffer[emitted..block_start],
                &before,
                emitted,
            ));
            let blocking = rest
                .into_iter()
                .filter(|f| f.action == Action::Block && f.start == block_start);
            for finding in before.into_iter().chain(blocking.take(1)) {
                self.record(finding);
            }
            self.blocked = true;
            self.emitted = block_start;
            return StreamStatus::Blocked;
        }

        out.push_str(&redact_spans(&self.buffer[emitted..cut], &settled, emitted));
        for finding in settled {
            self.record(finding);
        }
        self.emitted = cut;

        // Keep `holdback` bytes of forwarded text as left context for the next round.
        let drop = floor_char_boundary(&self.buffer, self.emitted.saturating_sub(holdback));
        if drop > 0 {
            self.buffer.drain(..drop);
            self.base += drop;
            self.emitted -= drop;
        }
        StreamStatus::Continue
    }

    fn record(&mut self, mut finding: Finding) {
        finding.start += self.base;
        finding.end += self.base;
        self.decision = self.decision.max(Decision::from_action(finding.action));
        self.findings.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{Preset, Rule, RuleMatch};
    use proptest::prelude::*;

    fn policy() -> Policy {
        Policy::compile(Some(Preset::Default), &[]).unwrap()
    }

    fn screen(policy: &Policy, chunks: &[&str]) -> (String, StreamStatus, Vec<Finding>) {
        let mut screener = StreamScreener::new(policy.clone(), Phase::Response);
        let mut out = String::new();
        for chunk in chunks {
            let status = screener.push(chunk, &mut out);
            if status == StreamStatus::Blocked {
                return (out, status, screener.findings().to_vec());
            }
        }
        let status = screener.finish(&mut out);
        (out, status, screener.findings().to_vec())
    }

    const SECRETS: &[&str] = &[
        "4111 1111 1111 1111",
        "AKIAIOSFODNN7EXAMPLE",
        "DE89 3704 0044 0532 0130 00",
        "sk-proj-Ab3De5Fg7Hj9Kl1Mn3Pq5Rs7Tu9Vw1Xy3Za5Bc7De9",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ];

    #[test]
    fn secret_split_at_every_boundary_is_redacted() {
        let policy = policy();
        let filler = "The quick brown fox jumps over the lazy dog. ".repeat(8);
        for secret in SECRETS {
            let text = format!("{filler}value {secret} end. {filler}");
            let expected = policy.evaluate(&text, &EvalContext::response());
            assert_eq!(expected.findings.len(), 1, "{secret}");
            let expected_text = expected.redact(&text).into_owned();
            for split in 1..text.len() {
                let (out, status, findings) = screen(&policy, &[&text[..split], &text[split..]]);
                assert_eq!(status, StreamStatus::Continue);
                assert_eq!(out, expected_text, "split at {split}");
                assert_eq!(findings.len(), 1);
                assert_eq!(
                    (findings[0].start, findings[0].end),
                    (expected.findings[0].start, expected.findings[0].end)
                );
            }
        }
    }

    #[test]
    fn holdback_is_bounded_in_steady_state() {
        let policy = policy();
        let mut screener = StreamScreener::new(policy.clone(), Phase::Response);
        let mut out = String::new();
        for _ in 0..200 {
            screener.push("lorem ipsum dolor ", &mut out);
            assert!(screener.held_back() <= policy.stream_holdback() + 18);
        }
        assert!(out.len() > 3000);
    }

    #[test]
    fn open_pem_block_is_held_until_it_ends() {
        let policy = policy();
        let mut screener = StreamScreener::new(policy, Phase::Response);
        let mut out = String::new();
        screener.push("here: -----BEGIN PRIVATE KEY-----\n", &mut out);
        for _ in 0..40 {
            screener.push("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n", &mut out);
        }
        assert!(
            !out.contains("MIIE"),
            "key material leaked while the block was open"
        );
        screener.push("-----END PRIVATE KEY-----\nbye", &mut out);
        screener.finish(&mut out);
        assert_eq!(out, "here: [REDACTED:secret.private_key]\nbye");
    }

    #[test]
    fn block_stops_the_stream_before_the_span() {
        let rules = [Rule::new(
            "no-falcon",
            RuleMatch::keywords(["project falcon"]),
            Action::Block,
        )];
        let policy = Policy::compile(None, &rules).unwrap();
        let filler = "safe words ".repeat(40);
        let text = format!("{filler}about Project Falcon and more {filler}");
        for split in (1..text.len()).step_by(7) {
            let (out, status, findings) = screen(&policy, &[&text[..split], &text[split..]]);
            assert_eq!(status, StreamStatus::Blocked);
            assert_eq!(out, format!("{filler}about "));
            assert_eq!(findings.last().map(|f| &*f.rule_id), Some("no-falcon"));
        }
    }

    #[test]
    fn an_endless_match_is_split_not_buffered_forever() {
        let rules = [Rule::new("xs", RuleMatch::regex("x+"), Action::Redact)];
        let policy = Policy::compile(None, &rules).unwrap();
        let mut screener = StreamScreener::new(policy, Phase::Response);
        let mut out = String::new();
        let chunk = "x".repeat(100);
        for _ in 0..400 {
            screener.push(&chunk, &mut out);
            assert!(screener.held_back() <= MAX_OPEN_MATCH + 1024);
        }
        screener.finish(&mut out);
        assert!(
            !out.replace("[REDACTED:xs]", "").contains('x'),
            "raw match text was forwarded"
        );
        assert!(out.starts_with("[REDACTED:xs]"));
    }

    #[test]
    fn debug_does_not_print_buffered_text() {
        let mut screener = StreamScreener::new(policy(), Phase::Response);
        let mut out = String::new();
        screener.push("AKIAIOSFODNN7EXAMPLE", &mut out);
        let debug = format!("{screener:?}");
        assert!(!debug.contains("AKIA"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_chunking_matches_whole_text(
            words in proptest::collection::vec("[a-z]{1,8}", 60..160),
            secret_index in 0usize..5,
            position in 0usize..60,
            cuts in proptest::collection::vec(1usize..40, 1..200),
        ) {
            let policy = policy();
            let mut words = words;
            words.insert(position.min(words.len()), SECRETS[secret_index].to_owned());
            let text = words.join(" ");
            let expected = policy.evaluate(&text, &EvalContext::response());
            let expected_text = expected.redact(&text).into_owned();
            let mut chunks = Vec::new();
            let mut at = 0;
            for cut in cuts {
                if at >= text.len() { break; }
                let end = (at + cut).min(text.len());
                chunks.push(&text[at..end]);
                at = end;
            }
            if at < text.len() { chunks.push(&text[at..]); }
            let (out, _, findings) = screen(&policy, &chunks);
            prop_assert_eq!(out, expected_text);
            prop_assert_eq!(findings.len(), expected.findings.len());
        }
    }
}
