//! flowgate-translate: pure protocol translation between LLM API dialects.
//!
//! Owns the neutral intermediate representation (`ir`), the codecs of each dialect (OpenAI Chat
//! Completions, Anthropic Messages, Gemini `generateContent`, Ollama `/api/chat`), stream
//! transcoding (`stream`), the same-dialect fast path (`passthrough`), error bodies
//! (`apierror`) and token estimation (`estimate`). It does no IO, no async and no
//! configuration: the gateway owns URLs, headers, credentials, routing and timeouts, and calls
//! these functions with bodies and stream chunks.
//!
//! Typical non-streamed flow for an Anthropic client served by an OpenAI upstream:
//! `parse_request(Ingress::Anthropic, body)` -> `encode_request(UpstreamKind::OpenAi, &ir,
//! "gpt-4o")` -> (gateway calls upstream) -> `decode_response(UpstreamKind::OpenAi, answer)` ->
//! `encode_response(Ingress::Anthropic, &answer, "claude-alias")`. Streams use
//! `stream::StreamTranscoder` (or its two halves with a screener in between).
//!
//! How the gateway is expected to drive it:
//! - Same dialect (`UpstreamKind::is_native_for`): `passthrough::prepare_request` (rewrites
//!   `model`, asks OpenAI streams for usage), forward the bytes, and read usage with
//!   `passthrough::UsageSniffer` (strip mode when the client did not ask for usage).
//! - Other dialect, complete answer: `parse_request` -> `encode_request` -> upstream ->
//!   `decode_response` -> `estimate::fill_missing_usage` -> `encode_response`.
//! - Other dialect, stream: `stream::StreamTranscoder::new(ingress, kind, EncoderOptions {
//!   include_usage: request.include_usage, estimated_input_tokens, .. })`; `feed` every
//!   upstream chunk, `finish` at EOF; on an upstream timeout or reset, or when `feed`/`finish`
//!   fails, send `finish_with_error`. `usage()` afterwards is what to account.
//! - Upstream error status: `parse_upstream_error` then `error_body` in the client's dialect.
//! - `/v1/messages/count_tokens`: `parse_request(Ingress::Anthropic, ..)` then
//!   `estimate::count_tokens_body` (an estimate).
//! - At startup: `estimate::warm_up` on a blocking thread (builds the tokenizer once).
//!
//! Deliberate omissions (documented, not silent drops of content): hints with no effect on the
//! answer's content are not carried to dialects without them: OpenAI image `detail`, tool
//! `strict`, `metadata`, `store`/`service_tier`-style fields, and `user` for Gemini and Ollama;
//! Anthropic `cache_control` for non-Anthropic upstreams (they cache automatically) and
//! `citations` annotations of earlier answers. Everything else that cannot be expressed is
//! refused with `TranslateError::Unsupported`.
//!
//! Reshaping that keeps content: system/developer messages are hoisted into the single system
//! field of Anthropic and Gemini (in order); consecutive tool results are merged into one user
//! turn for Anthropic and Gemini; a failed tool result is prefixed with
//! `TOOL_ERROR_PREFIX` for OpenAI and Ollama (no `is_error` flag there); OpenAI `stop` with a
//! matched stop sequence is reported to Anthropic clients as `end_turn` (OpenAI, Gemini and
//! Ollama do not say which sequence matched); Anthropic requests get `DEFAULT_MAX_TOKENS` when
//! the client set no limit.

mod anthropic;
pub mod apierror;
mod error;
pub mod estimate;
mod gemini;
pub mod ir;
mod ollama;
mod openai;
pub mod passthrough;
pub mod stream;
mod wire;

use bytes::Bytes;

pub use anthropic::DEFAULT_MAX_TOKENS;
pub use apierror::{
    ErrorKind, UpstreamError, error_body, error_body_for_kind, parse_upstream_error,
};
pub use error::TranslateError;
pub use ir::{Ingress, IrRequest, IrResponse, StreamEvent, UpstreamKind, Usage};
pub use openai::TOOL_ERROR_PREFIX;

/// Parses a client request body of the `ingress` dialect into the IR.
///
/// Fields the translator does not know, and content it cannot represent (audio, files, legacy
/// function calling, server tools), are refused with `TranslateError::Unsupported`.
pub fn parse_request(ingress: Ingress, body: &[u8]) -> Result<IrRequest, TranslateError> {
    match ingress {
        Ingress::OpenAi => openai::parse_request(body),
        Ingress::Anthropic => anthropic::parse_request(body),
    }
}

/// Encodes the IR as a request body for an upstream of `kind`, asking for `upstream_model`.
///
/// Gemini carries the model in the URL, not the body, so `upstream_model` is unused there.
/// Streamed requests always ask the upstream for usage (OpenAI `stream_options.include_usage`).
/// Anything the upstream cannot express is refused with `TranslateError::Unsupported`.
pub fn encode_request(
    kind: UpstreamKind,
    request: &IrRequest,
    upstream_model: &str,
) -> Result<Bytes, TranslateError> {
    match kind {
        UpstreamKind::OpenAi => openai::encode_request(request, upstream_model),
        UpstreamKind::Anthropic => anthropic::encode_request(request, upstream_model),
        UpstreamKind::Gemini => gemini::encode_request(request),
        UpstreamKind::Ollama => ollama::encode_request(request, upstream_model),
    }
}

/// Decodes a complete (non-streamed) upstream answer of `kind`.
///
/// `IrResponse::usage` is `None` when the upstream reported none; see
/// `estimate::fill_missing_usage`.
pub fn decode_response(kind: UpstreamKind, body: &[u8]) -> Result<IrResponse, TranslateError> {
    match kind {
        UpstreamKind::OpenAi => openai::decode_response(body),
        UpstreamKind::Anthropic => anthropic::decode_response(body),
        UpstreamKind::Gemini => gemini::decode_response(body),
        UpstreamKind::Ollama => ollama::decode_response(body),
    }
}

/// Encodes an IR answer for a client of `ingress` that asked for `model` (the client-facing
/// model name is echoed, not the upstream's).
pub fn encode_response(
    ingress: Ingress,
    response: &IrResponse,
    model: &str,
) -> Result<Bytes, TranslateError> {
    match ingress {
        Ingress::OpenAi => openai::encode_response(response, model),
        Ingress::Anthropic => anthropic::encode_response(response, model),
    }
}
