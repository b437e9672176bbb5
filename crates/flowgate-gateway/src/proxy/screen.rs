//! Policy screening: the tenant's compiled policy over the prompt (request phase) and the
//! answer (response phase). Every text part of every message is screened on its own (spans are
//! per part); model and prompt-size rules run once per request. A `block` refuses (403
//! `content_policy_violation` naming the rules), a `redact` rewrites the text in place so the
//! upstream (or the client) receives the redacted version, a `flag` only records. Streams are
//! screened by `stream::Converter::Screened` with one `StreamScreener` per choice.
//!
//! Findings carry rule ids, actions and counts only: never the matched text.

use crate::error::ApiError;
use crate::proxy::call::Call;
use flowgate_policy::{Action, Decision, EvalContext, Evaluation, Phase, Policy};
use flowgate_translate::ir::{Message, Part};
use flowgate_translate::{IrResponse, ir::Choice};
use std::sync::Arc;

/// One rule's findings in a request or answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHit {
    pub rule_id: Arc<str>,
    pub action: Action,
    pub count: u64,
}

/// What screening decided, over all texts of one phase (or both, once merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Screening {
    pub decision: Decision,
    pub hits: Vec<RuleHit>,
}

impl Screening {
    /// Folds one evaluation in: the most severe decision wins; hits are counted per rule.
    pub fn absorb(&mut self, evaluation: &Evaluation) {
        self.decision = self.decision.max(evaluation.decision);
        for finding in &evaluation.findings {
            self.add(&finding.rule_id, finding.action);
        }
    }

    pub fn add(&mut self, rule_id: &Arc<str>, action: Action) {
        match self
            .hits
            .iter_mut()
            .find(|hit| hit.rule_id == *rule_id && hit.action == action)
        {
            Some(hit) => hit.count += 1,
            None => self.hits.push(RuleHit {
                rule_id: Arc::clone(rule_id),
                action,
                count: 1,
            }),
        }
    }

    pub fn merge(&mut self, other: &Screening) {
        self.decision = self.decision.max(other.decision);
        for hit in &other.hits {
            for _ in 0..hit.count {
                self.add(&hit.rule_id, hit.action);
            }
        }
    }

    /// The 403 for a blocked text, naming the blocking rules.
    pub fn violation(&self, phase: Phase) -> ApiError {
        let mut rules: Vec<String> = Vec::new();
        for hit in self.hits.iter().filter(|hit| hit.action == Action::Block) {
            if !rules.iter().any(|rule| **rule == *hit.rule_id) {
                rules.push(hit.rule_id.to_string());
            }
        }
        let phase = match phase {
            Phase::Request => "request",
            Phase::Response => "response",
        };
        ApiError::PolicyViolation { phase, rules }
    }
}

/// Screens every text part of `messages`, redacting in place; returns whether a part changed.
fn screen_messages(
    policy: &Policy,
    messages: &mut [Message],
    context: &EvalContext<'_>,
    screening: &mut Screening,
) -> bool {
    let mut changed = false;
    for message in messages {
        for part in &mut message.parts {
            changed |= screen_part(policy, part, context, screening);
        }
    }
    changed
}

fn screen_part(
    policy: &Policy,
    part: &mut Part,
    context: &EvalContext<'_>,
    screening: &mut Screening,
) -> bool {
    match part {
        Part::Text { text, .. } => screen_text(policy, text, context, screening),
        Part::ToolResult(result) => {
            let mut changed = false;
            for inner in &mut result.content {
                changed |= screen_part(policy, inner, context, screening);
            }
            changed
        }
        Part::ToolCall(call) => screen_text(policy, &mut call.arguments, context, screening),
        _ => false,
    }
}

fn screen_text(
    policy: &Policy,
    text: &mut String,
    context: &EvalContext<'_>,
    screening: &mut Screening,
) -> bool {
    let evaluation = policy.evaluate(text, context);
    if evaluation.findings.is_empty() {
        return false;
    }
    screening.absorb(&evaluation);
    if evaluation.decision >= Decision::Redact {
        let redacted = evaluation.redact(text);
        if redacted != text.as_str() {
            *text = redacted.into_owned();
            return true;
        }
    }
    false
}

/// The rules on the request as a whole (model, prompt size), run once per request.
fn screen_metadata(policy: &Policy, call: &Call, prompt_bytes: usize) -> Screening {
    let mut screening = Screening::default();
    let metadata = EvalContext::request()
        .with_model(&call.client_model)
        .with_prompt_bytes(prompt_bytes);
    screening.absorb(&policy.evaluate_metadata(&metadata));
    screening
}

/// Request phase. Parses the prompt (once; routing reuses the parse), screens it, and on
/// `redact` marks the call so every route sends the redacted prompt.
pub fn screen_request(
    policy: &Policy,
    call: &mut Call,
    prompt_bytes: usize,
) -> Result<Screening, ApiError> {
    let mut screening = screen_metadata(policy, call, prompt_bytes);
    let context = EvalContext::request();
    let request = call.ir_mut()?;
    let changed = screen_messages(policy, &mut request.messages, &context, &mut screening);
    if changed {
        call.mark_rewritten();
    }
    Ok(screening)
}

/// Request phase of an embeddings call: every text input is screened (token-id inputs carry
/// no text); on `redact` the body every route is sent holds the redacted inputs.
pub fn screen_embeddings(
    policy: &Policy,
    call: &mut Call,
    prompt_bytes: usize,
) -> Result<Screening, ApiError> {
    let mut screening = screen_metadata(policy, call, prompt_bytes);
    let mut body = embeddings_body(&call.body)?;
    let context = EvalContext::request();
    let mut changed = false;
    for text in embedding_inputs(&mut body) {
        changed |= screen_text(policy, text, &context, &mut screening);
    }
    if changed {
        let rewritten = serde_json::to_vec(&body)
            .map_err(|err| ApiError::invalid(format!("request body: {err}")))?;
        call.body = rewritten.into();
    }
    Ok(screening)
}

/// An embeddings request body as JSON.
///
/// # Errors
/// `invalid_request_error` when it is not a JSON object.
pub fn embeddings_body(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| ApiError::invalid("the request body is not a JSON object"))
}

/// The text inputs of an embeddings request: `input` as a string or an array of strings.
pub fn embedding_inputs(body: &mut serde_json::Value) -> Vec<&mut String> {
    match body.get_mut("input") {
        Some(serde_json::Value::String(text)) => vec![text],
        Some(serde_json::Value::Array(items)) => items
            .iter_mut()
            .filter_map(|item| match item {
                serde_json::Value::String(text) => Some(text),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Response phase of a complete answer: screens (and redacts) every choice's text.
pub fn screen_answer(policy: &Policy, answer: &mut IrResponse) -> Screening {
    let mut screening = Screening::default();
    let context = EvalContext::response();
    for Choice { parts, .. } in &mut answer.choices {
        for part in parts {
            screen_part(policy, part, &context, &mut screening);
        }
    }
    screening
}

/// The answer text a response hash covers: the first choice's text parts, in order.
pub fn answer_text(answer: &IrResponse) -> String {
    let mut text = String::new();
    if let Some(choice) = answer.choices.first() {
        for part in &choice.parts {
            if let Part::Text {
                text: part_text, ..
            } = part
            {
                text.push_str(part_text);
            }
        }
    }
    text
}

/// Whether the policy screens answers at all (else streams need no decoding).
pub fn screens_answers(policy: &Policy) -> bool {
    policy.screens(Phase::Response)
}
