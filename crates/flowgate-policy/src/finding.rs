//! What an evaluation returns: [`Decision`], [`Finding`], [`Evaluation`], the redaction of a
//! text from its findings, and [`RulesTestAnswer`] (the `POST /v1/rules/test` body of DESIGN
//! §1). Findings carry spans, never the matched text. Leaves out how findings are produced
//! (`crate::policy`).

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::detector::{Confidence, DetectorId};
use crate::rule::{Action, Phase};

/// The overall outcome for a text: the most severe action among the findings that survived
/// conflict resolution.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    /// Nothing to do (no findings, or only `allow` exceptions).
    #[default]
    Allow,
    /// Forward unchanged, record the findings.
    Flag,
    /// Forward the redacted text.
    Redact,
    /// Refuse.
    Block,
}

impl Decision {
    /// The decision an action leads to.
    #[must_use]
    pub fn from_action(action: Action) -> Decision {
        match action {
            Action::Allow => Decision::Allow,
            Action::Flag => Decision::Flag,
            Action::Redact => Decision::Redact,
            Action::Block => Decision::Block,
        }
    }

    /// The wire name (`ALLOW`, `FLAG`, `REDACT`, `BLOCK`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "ALLOW",
            Decision::Flag => "FLAG",
            Decision::Redact => "REDACT",
            Decision::Block => "BLOCK",
        }
    }
}

/// One rule matching one span. Holds no matched text, so it is safe to log, audit and send in
/// webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule that matched.
    #[serde(serialize_with = "serialize_arc_str")]
    pub rule_id: Arc<str>,
    /// What found it.
    pub detector: DetectorId,
    /// How sure the detector is.
    pub confidence: Confidence,
    /// The rule's action (after any preset downgrade).
    pub action: Action,
    /// The phase the text was screened in.
    pub phase: Phase,
    /// Start, in bytes of the original text (for streams: of the whole stream so far).
    pub start: usize,
    /// End (exclusive), in bytes of the original text. Equal to `start` for matches that have
    /// no span (model lists, prompt size).
    pub end: usize,
}

fn serialize_arc_str<S: serde::Serializer>(
    value: &Arc<str>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value)
}

impl Finding {
    /// The label written in place of a redacted span: the detector id for built-in
    /// detectors, the rule id for keyword and regex rules.
    #[must_use]
    pub fn redaction_label(&self) -> &str {
        if self.detector.is_built_in() {
            self.detector.as_str()
        } else {
            &self.rule_id
        }
    }

    /// Whether the span is removed from forwarded text (`redact`, and `block` so that a
    /// blocked value is never echoed either).
    #[must_use]
    pub fn hides_span(&self) -> bool {
        matches!(self.action, Action::Redact | Action::Block) && self.end > self.start
    }
}

/// The result of screening one text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evaluation {
    /// The most severe surviving action (`ALLOW` when nothing matched).
    pub decision: Decision,
    /// Surviving findings (including `allow` exceptions), ordered by start offset.
    pub findings: Vec<Finding>,
    /// How many findings `allow` exceptions suppressed.
    pub suppressed: usize,
}

impl Evaluation {
    /// Whether the text must be refused.
    #[must_use]
    pub fn is_blocked(&self) -> bool {
        self.decision == Decision::Block
    }

    /// The ids of rules with the given action, deduplicated, in finding order (for the 403
    /// error message and audit records).
    #[must_use]
    pub fn rule_ids(&self, action: Action) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for finding in self.findings.iter().filter(|f| f.action == action) {
            if !ids.contains(&&*finding.rule_id) {
                ids.push(&finding.rule_id);
            }
        }
        ids
    }

    /// `original` with every redacted (and blocked) span replaced by `[REDACTED:<label>]`.
    /// Borrows when nothing is replaced. `original` must be the text that was evaluated.
    #[must_use]
    pub fn redact<'t>(&self, original: &'t str) -> Cow<'t, str> {
        redact_spans(original, &self.findings, 0)
    }

    /// The `POST /v1/rules/test` answer for this evaluation of `original`.
    #[must_use]
    pub fn to_test_answer(&self, original: &str) -> RulesTestAnswer {
        RulesTestAnswer {
            decision: self.decision,
            findings: self.findings.iter().map(TestFinding::from).collect(),
            redacted_text: self.redact(original).into_owned(),
        }
    }
}

/// Writes `text` with the hidden spans of `findings` (offsets relative to `base`) replaced.
pub(crate) fn redact_spans<'t>(text: &'t str, findings: &[Finding], base: usize) -> Cow<'t, str> {
    let mut spans: Vec<(usize, usize, &str)> = findings
        .iter()
        .filter(|f| f.hides_span())
        .filter_map(|f| {
            let start = f.start.checked_sub(base)?;
            let end = f.end.checked_sub(base)?.min(text.len());
            (start < end).then(|| (start, end, f.redaction_label()))
        })
        .collect();
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_by_key(|&(start, end, _)| (start, std::cmp::Reverse(end)));
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for (start, end, label) in spans {
        if end <= cursor {
            continue;
        }
        if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        if start < cursor {
            // Overlaps the previous redaction: extend it under the same label.
            cursor = end;
            continue;
        }
        out.push_str(&text[cursor..start]);
        out.push_str("[REDACTED:");
        out.push_str(label);
        out.push(']');
        cursor = end;
    }
    out.push_str(&text[cursor..]);
    Cow::Owned(out)
}

/// One finding in a [`RulesTestAnswer`] (DESIGN §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestFinding {
    /// The rule that matched.
    pub rule_id: String,
    /// Detector id (`credit_card`, `secret.jwt`, `keyword`, ...).
    pub detector: DetectorId,
    /// `validated` or `pattern`.
    pub confidence: Confidence,
    /// The rule's action.
    pub action: Action,
    /// Start, in bytes of the original text.
    pub start: usize,
    /// End (exclusive), in bytes of the original text.
    pub end: usize,
}

impl From<&Finding> for TestFinding {
    fn from(finding: &Finding) -> Self {
        TestFinding {
            rule_id: finding.rule_id.to_string(),
            detector: finding.detector,
            confidence: finding.confidence,
            action: finding.action,
            start: finding.start,
            end: finding.end,
        }
    }
}

/// The body of a `POST /v1/rules/test` answer:
/// `{"decision", "findings": [{"rule_id", "detector", "confidence", "action", "start", "end"}], "redacted_text"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesTestAnswer {
    /// `ALLOW`, `FLAG`, `REDACT` or `BLOCK`.
    pub decision: Decision,
    /// What matched, with byte offsets into the submitted text.
    pub findings: Vec<TestFinding>,
    /// The submitted text with redacted and blocked spans replaced.
    pub redacted_text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(action: Action, start: usize, end: usize) -> Finding {
        Finding {
            rule_id: Arc::from("r"),
            detector: DetectorId::CreditCard,
            confidence: Confidence::Validated,
            action,
            phase: Phase::Request,
            start,
            end,
        }
    }

    #[test]
    fn redaction_replaces_only_hidden_spans() {
        let text = "abc 1234 def 5678";
        let findings = vec![finding(Action::Redact, 4, 8), finding(Action::Flag, 13, 17)];
        assert_eq!(
            redact_spans(text, &findings, 0),
            "abc [REDACTED:credit_card] def 5678"
        );
        assert!(matches!(
            redact_spans(text, &findings[1..], 0),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn overlapping_spans_merge() {
        let text = "0123456789";
        let findings = vec![finding(Action::Redact, 2, 6), finding(Action::Block, 4, 8)];
        assert_eq!(
            redact_spans(text, &findings, 0),
            "01[REDACTED:credit_card]89"
        );
    }

    #[test]
    fn answer_serialises_in_design_shape() {
        let evaluation = Evaluation {
            decision: Decision::Redact,
            findings: vec![finding(Action::Redact, 0, 4)],
            suppressed: 0,
        };
        let answer = evaluation.to_test_answer("4111 x");
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "decision": "REDACT",
                "findings": [{"rule_id": "r", "detector": "credit_card", "confidence": "validated",
                              "action": "redact", "start": 0, "end": 4}],
                "redacted_text": "[REDACTED:credit_card] x"
            })
        );
        let back: RulesTestAnswer = serde_json::from_value(json).unwrap();
        assert_eq!(back, answer);
    }
}
