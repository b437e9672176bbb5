//! Token estimation for upstreams that report no usage, and for Anthropic `count_tokens`.
//!
//! Owns the tiktoken-compatible tokenizer (OpenAI's `o200k_base`, or `cl100k_base` for
//! GPT-4/GPT-3.5 model names, via `tiktoken-rs`, whose vocabularies are embedded) and the
//! counting rules for requests and answers. Every number produced here is an ESTIMATE and is
//! marked `Usage::estimated`: Anthropic and Gemini have no public tokenizer, so for their models
//! the count is an approximation; exact usage always comes from the upstream when it reports it.
//!
//! The tokenizer is built lazily once per process (about 0.7 s in a debug build); call
//! `warm_up` at startup, off the async workers, so no request pays for it.

use std::sync::LazyLock;

use bytes::Bytes;
use tiktoken_rs::CoreBPE;

use crate::ir::{IrRequest, IrResponse, Part, Usage};

/// Tokens OpenAI adds per chat message (role and separators), per its published counting
/// recipe.
const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens that prime the assistant's reply.
const REPLY_PRIMING_TOKENS: u64 = 3;
/// Flat estimate for one image (a 512x512 high-detail tile plus base cost in OpenAI's scheme).
const TOKENS_PER_IMAGE: u64 = 765;

/// The vocabularies are embedded in the binary, so building cannot fail in practice; should
/// it ever, counting falls back to one token per four bytes (still marked as an estimate).
static O200K: LazyLock<Option<CoreBPE>> = LazyLock::new(|| tiktoken_rs::o200k_base().ok());
static CL100K: LazyLock<Option<CoreBPE>> = LazyLock::new(|| tiktoken_rs::cl100k_base().ok());

fn uses_cl100k(model: &str) -> bool {
    model.starts_with("gpt-4-") || model == "gpt-4" || model.starts_with("gpt-3.5")
}

/// Builds the default tokenizer now, so the first estimate does not pay for it.
pub fn warm_up() {
    LazyLock::force(&O200K);
}

fn count_with(tokenizer: &LazyLock<Option<CoreBPE>>, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match tokenizer.as_ref() {
        Some(tokenizer) => tokenizer.count_ordinary(text) as u64,
        None => text.len().div_ceil(4) as u64,
    }
}

/// Counts the tokens of `text` with `o200k_base`.
pub fn count_text_tokens(text: &str) -> u64 {
    count_with(&O200K, text)
}

fn count_for_model(model: &str, text: &str) -> u64 {
    if uses_cl100k(model) {
        count_with(&CL100K, text)
    } else {
        count_with(&O200K, text)
    }
}

fn count_parts(model: &str, parts: &[Part]) -> u64 {
    parts
        .iter()
        .map(|part| match part {
            Part::Text { text, .. } => count_for_model(model, text),
            Part::Image(_) => TOKENS_PER_IMAGE,
            Part::ToolCall(call) => {
                count_for_model(model, &call.name) + count_for_model(model, &call.arguments)
            }
            Part::ToolResult(result) => count_parts(model, &result.content),
            Part::Thinking { thinking, .. } => count_for_model(model, thinking),
            Part::RedactedThinking { .. } => 0,
        })
        .sum()
}

/// Estimated prompt tokens of a request: messages, tool definitions and reply priming.
pub fn estimate_request_tokens(request: &IrRequest) -> u64 {
    let model = request.model.as_str();
    let mut total = REPLY_PRIMING_TOKENS;
    for message in &request.messages {
        total += TOKENS_PER_MESSAGE + count_parts(model, &message.parts);
        if let Some(name) = &message.name {
            total += 1 + count_for_model(model, name);
        }
    }
    for tool in &request.tools {
        total += count_for_model(model, &tool.name);
        if let Some(description) = &tool.description {
            total += count_for_model(model, description);
        }
        if let Some(parameters) = &tool.parameters {
            total += count_for_model(model, parameters.get());
        }
    }
    total
}

/// Estimated output tokens of an answer (all choices).
pub fn estimate_response_tokens(model: &str, response: &IrResponse) -> u64 {
    response
        .choices
        .iter()
        .map(|choice| count_parts(model, &choice.parts))
        .sum()
}

/// Fills `response.usage` with an estimate when the upstream reported none.
pub fn fill_missing_usage(request: &IrRequest, response: &mut IrResponse) {
    if response.usage.is_none() {
        response.usage = Some(Usage {
            input_tokens: estimate_request_tokens(request),
            output_tokens: estimate_response_tokens(&request.model, response),
            cached_tokens: 0,
            cache_creation_tokens: 0,
            estimated: true,
        });
    }
}

/// Answer body of Anthropic's `POST /v1/messages/count_tokens`: `{"input_tokens": N}`, where N
/// is an estimate (see the module documentation).
pub fn count_tokens_body(request: &IrRequest) -> Bytes {
    Bytes::from(format!(
        "{{\"input_tokens\":{}}}",
        estimate_request_tokens(request)
    ))
}
