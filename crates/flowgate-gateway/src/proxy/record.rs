//! The audit records of one request (DESIGN §4): a request-side record submitted once the
//! request is admitted and screened, made durable while the upstream call is in flight (its
//! index is the `x-flowgate-audit-index` header), and a completion record when the answer
//! ended (status, usage, latencies, the answer's findings). A request refused by policy gets
//! one record, made durable before the 403 is sent.
//!
//! Content is never stored in clear: `request_hash` / `response_hash` are HMAC-SHA-256 under
//! the tenant's content key (derived from the master key) of the normalised text: the text
//! parts of every message, in order, separated by a blank line (`flowgate audit
//! prove-content` recomputes it from a given text). With `[audit] hash_prompts = false` the
//! normalised text is also kept, sealed under the tenant's data key, in `encrypted_content`
//! (`flowgate audit show-content` opens it with the master key).

use crate::error::ApiError;
use crate::proxy::context::RequestContext;
use crate::proxy::screen::Screening;
use crate::state::TenantEntry;
use flowgate_audit::record::{AuditRecord, Decision, Latencies, RecordKind, RuleFinding, Usage};
use flowgate_translate::IrRequest;
use flowgate_translate::ir::Part;
use flowgate_types::RequestId;

/// The policy decision as the audit log names it.
fn decision(screening: &Screening) -> Decision {
    match screening.decision {
        flowgate_policy::Decision::Allow => Decision::Allow,
        flowgate_policy::Decision::Flag => Decision::Flag,
        flowgate_policy::Decision::Redact => Decision::Redact,
        flowgate_policy::Decision::Block => Decision::Block,
    }
}

fn findings(screening: &Screening) -> Vec<RuleFinding> {
    screening
        .hits
        .iter()
        .map(|hit| RuleFinding {
            rule_id: hit.rule_id.to_string(),
            action: hit.action.as_str().to_owned(),
            count: hit.count,
        })
        .collect()
}

/// The prompt text a request hash covers: every text part, in order, blank-line separated.
pub fn prompt_text(request: &IrRequest) -> String {
    let mut text = String::new();
    for message in &request.messages {
        for part in &message.parts {
            push_text(part, &mut text);
        }
    }
    text
}

/// The input text an embeddings request hash covers: its text inputs in order, separated
/// by a blank line.
///
/// # Errors
/// `invalid_request_error` when the body is not a JSON object.
pub fn embedding_text(body: &[u8]) -> Result<String, ApiError> {
    let mut body = crate::proxy::screen::embeddings_body(body)?;
    let inputs: Vec<&str> = crate::proxy::screen::embedding_inputs(&mut body)
        .into_iter()
        .map(|text| text.as_str())
        .collect();
    Ok(inputs.join("\n\n"))
}

fn push_text(part: &Part, text: &mut String) {
    match part {
        Part::Text {
            text: part_text, ..
        } => {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(part_text);
        }
        Part::ToolResult(result) => {
            for inner in &result.content {
                push_text(inner, text);
            }
        }
        _ => {}
    }
}

fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn base(context: &RequestContext, kind: RecordKind) -> AuditRecord {
    let text = |value: Option<&str>| value.unwrap_or_default().to_owned();
    AuditRecord {
        request_id: context.request_id.as_str().to_owned(),
        tenant_id: text(context.tenant_id.as_ref().map(|id| id.as_str())),
        key_id: text(context.key_id.as_ref().map(|id| id.as_str())),
        route: text(context.model.as_deref()),
        provider: text(context.provider()),
        model: text(context.model.as_deref()),
        stream: context.stream,
        decision: decision(&context.screening),
        findings: findings(&context.screening),
        ..AuditRecord::empty(
            kind,
            u64::try_from(flowgate_types::now_millis()).unwrap_or(0),
        )
    }
}

/// The request-side record (before the upstream answers). `status` is set for a request
/// that ends here (a policy block).
pub fn request_record(
    context: &RequestContext,
    content: Option<KeptContent>,
    status: Option<u16>,
) -> AuditRecord {
    let mut record = base(context, RecordKind::Request);
    if let Some(content) = content {
        record.request_hash = Some(content.hash);
        record.encrypted_content = content.sealed;
    }
    record.http_status = status;
    record
}

/// The completion record: how the request ended.
pub fn completion_record(context: &RequestContext, status: u16) -> AuditRecord {
    let mut record = base(context, RecordKind::Completion);
    if status >= 400 && record.decision != Decision::Block {
        record.decision = Decision::Error;
    }
    record.http_status = Some(status);
    if let Some(content) = &context.response_content {
        record.response_hash = Some(content.hash.clone());
        record.encrypted_content.clone_from(&content.sealed);
    }
    record.usage = context.usage.map(|usage| Usage {
        input: usage.input_tokens,
        output: usage.output_tokens,
        cached: usage.cached_tokens,
        estimated: usage.estimated,
    });
    record.latency = Latencies {
        total_us: Some(micros(context.started.elapsed())),
        upstream_us: Some(micros(context.upstream_time)),
        overhead_us: Some(micros(context.overhead())),
        ttft_us: context.first_token.map(micros),
    };
    record
}

/// What the audit log keeps of one content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptContent {
    /// Hex HMAC under the tenant's content key.
    pub hash: String,
    /// The text sealed under the tenant's data key (`hash_prompts = false` only).
    pub sealed: Option<String>,
}

/// The keyed hash of `text`, and its sealed form when the tenant's content is kept.
pub fn keep_content(
    tenant: &TenantEntry,
    request_id: &RequestId,
    kind: RecordKind,
    text: &str,
) -> KeptContent {
    let sealed = tenant.data_key.as_ref().and_then(|key| {
        key.seal(request_id.as_str(), kind.as_str(), text)
            .map_err(|err| tracing::error!(error = %err, "audit content not kept: no nonce"))
            .ok()
    });
    KeptContent {
        hash: tenant.content_key.hash_hex(text),
        sealed,
    }
}
