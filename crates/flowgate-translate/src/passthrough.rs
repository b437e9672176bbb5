//! The same-dialect fast path: forward bodies and streams without re-encoding them.
//!
//! Owns `prepare_request` (rewrites only the top-level `model` and, for streamed OpenAI
//! requests, makes sure the upstream sends the final usage chunk; everything else is copied
//! byte for byte) and `UsageSniffer` (reads usage out of a pass-through stream: the OpenAI
//! final usage chunk, Anthropic `message_start` + `message_delta`; it parses only the events
//! that can carry usage and forwards chunks unchanged unless it must strip a usage chunk the
//! client did not ask for). Screening of pass-through text is not done here (use
//! `stream::StreamDecoder` + `StreamEncoder` for the same dialect instead).

use bytes::Bytes;
use serde::Deserialize;

use crate::anthropic::WireUsage as AnthropicWireUsage;
use crate::apierror::ErrorKind;
use crate::error::TranslateError;
use crate::ir::{Ingress, Usage};
use crate::openai::WireUsage as OpenAiWireUsage;
use crate::stream::framing::SseParser;

/// A request body ready to forward to an upstream of the same dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRequest {
    /// The rewritten body, or `None` when the original bytes can be forwarded unchanged.
    pub body: Option<Bytes>,
    /// The request asks for a stream.
    pub stream: bool,
    /// The client asked for usage in the stream. When false for a streamed OpenAI request, the
    /// body was changed to ask the upstream for it anyway, and the sniffer must strip it
    /// (`UsageSniffer::new(Ingress::OpenAi, true)`).
    pub client_wants_usage: bool,
}

/// Byte span of one top-level member's value.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

#[derive(Default)]
struct TopLevel {
    /// Position just after the opening `{`.
    open: usize,
    model: Option<Span>,
    stream: Option<Span>,
    stream_options: Option<Span>,
}

fn malformed(reason: &str) -> TranslateError {
    TranslateError::invalid("body", format!("not a JSON object: {reason}"))
}

fn skip_ws(body: &[u8], mut at: usize) -> usize {
    while at < body.len() && matches!(body[at], b' ' | b'\t' | b'\n' | b'\r') {
        at += 1;
    }
    at
}

/// Returns the position after the string starting at `at` (which holds `"`).
fn skip_string(body: &[u8], mut at: usize) -> Result<usize, TranslateError> {
    at += 1;
    while let Some(found) = body
        .get(at..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        at += found;
        if body[at] == b'"' {
            return Ok(at + 1);
        }
        at += 2;
    }
    Err(malformed("unterminated string"))
}

/// Returns the position after the value starting at `at`.
fn skip_value(body: &[u8], at: usize) -> Result<usize, TranslateError> {
    match body.get(at) {
        None => Err(malformed("missing value")),
        Some(b'"') => skip_string(body, at),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut position = at;
            while position < body.len() {
                // Jump to the next byte that matters: a quote or a bracket.
                match body[position..]
                    .iter()
                    .position(|byte| matches!(byte, b'"' | b'{' | b'[' | b'}' | b']'))
                {
                    Some(offset) => position += offset,
                    None => break,
                }
                match body[position] {
                    b'"' => {
                        position = skip_string(body, position)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(position + 1);
                        }
                    }
                    _ => {}
                }
                position += 1;
            }
            Err(malformed("unterminated container"))
        }
        Some(_) => {
            let mut position = at;
            while position < body.len()
                && !matches!(
                    body[position],
                    b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                )
            {
                position += 1;
            }
            Ok(position)
        }
    }
}

fn scan_top_level(body: &[u8]) -> Result<TopLevel, TranslateError> {
    let mut at = skip_ws(body, 0);
    if body.get(at) != Some(&b'{') {
        return Err(malformed("expected `{`"));
    }
    at += 1;
    let mut found = TopLevel {
        open: at,
        ..TopLevel::default()
    };
    loop {
        at = skip_ws(body, at);
        match body.get(at) {
            Some(b'}') => return Ok(found),
            Some(b'"') => {}
            _ => return Err(malformed("expected a key")),
        }
        let key_end = skip_string(body, at)?;
        let key = &body[at + 1..key_end - 1];
        at = skip_ws(body, key_end);
        if body.get(at) != Some(&b':') {
            return Err(malformed("expected `:`"));
        }
        let start = skip_ws(body, at + 1);
        let end = skip_value(body, start)?;
        let span = Some(Span { start, end });
        match key {
            b"model" => found.model = span,
            b"stream" => found.stream = span,
            b"stream_options" => found.stream_options = span,
            _ => {}
        }
        at = skip_ws(body, end);
        match body.get(at) {
            Some(b',') => at += 1,
            Some(b'}') => return Ok(found),
            _ => return Err(malformed("expected `,` or `}`")),
        }
    }
}

#[derive(Deserialize)]
struct StreamOptionsProbe {
    include_usage: Option<bool>,
}

/// Prepares a same-dialect request: rewrites `model` to `upstream_model` when it differs and,
/// for streamed OpenAI requests, sets `stream_options.include_usage` so usage is exact.
/// Only those byte ranges change; the rest of the body is copied verbatim.
pub fn prepare_request(
    ingress: Ingress,
    body: &[u8],
    upstream_model: &str,
) -> Result<PreparedRequest, TranslateError> {
    let top = scan_top_level(body)?;
    let stream = top
        .stream
        .is_some_and(|span| &body[span.start..span.end] == b"true");
    // Edits as (start, end, replacement), applied in position order.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::with_capacity(2);
    if let Some(span) = top.model {
        let current: Result<&str, _> = serde_json::from_slice(&body[span.start..span.end]);
        if current.ok() != Some(upstream_model) {
            let replacement =
                serde_json::to_vec(upstream_model).map_err(|source| TranslateError::Malformed {
                    what: "model name",
                    source,
                })?;
            edits.push((span.start, span.end, replacement));
        }
    }
    let mut client_wants_usage = ingress == Ingress::Anthropic;
    if ingress == Ingress::OpenAi && stream {
        match top.stream_options {
            None => edits.push((
                top.open,
                top.open,
                br#""stream_options":{"include_usage":true},"#.to_vec(),
            )),
            Some(span) => {
                let raw = &body[span.start..span.end];
                let probe: Option<StreamOptionsProbe> = serde_json::from_slice(raw).ok();
                client_wants_usage =
                    probe.as_ref().and_then(|probe| probe.include_usage) == Some(true);
                if !client_wants_usage {
                    let mut options: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_slice(raw).unwrap_or_default();
                    options.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
                    let replacement = serde_json::to_vec(&options).map_err(|source| {
                        TranslateError::Malformed {
                            what: "stream_options",
                            source,
                        }
                    })?;
                    edits.push((span.start, span.end, replacement));
                }
            }
        }
    }
    if edits.is_empty() {
        return Ok(PreparedRequest {
            body: None,
            stream,
            client_wants_usage,
        });
    }
    edits.sort_by_key(|(start, _, _)| *start);
    let extra: usize = edits.iter().map(|(_, _, bytes)| bytes.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    let mut copied = 0;
    for (start, end, replacement) in edits {
        out.extend_from_slice(&body[copied..start]);
        out.extend_from_slice(&replacement);
        copied = end;
    }
    out.extend_from_slice(&body[copied..]);
    Ok(PreparedRequest {
        body: Some(Bytes::from(out)),
        stream,
        client_wants_usage,
    })
}

/// Rewrites only the top-level `model` of a JSON body; `None` when it already matches.
pub fn rewrite_model(body: &[u8], model: &str) -> Result<Option<Bytes>, TranslateError> {
    // The Anthropic dialect never injects stream options, so this is a pure model rewrite.
    Ok(prepare_request(Ingress::Anthropic, body, model)?.body)
}

#[derive(Deserialize)]
struct OpenAiUsageChunk {
    #[serde(default)]
    choices: Vec<serde::de::IgnoredAny>,
    usage: Option<OpenAiWireUsage>,
}

#[derive(Deserialize)]
struct AnthropicUsageEvent {
    message: Option<AnthropicStartMessage>,
    usage: Option<AnthropicWireUsage>,
}

#[derive(Deserialize)]
struct AnthropicStartMessage {
    usage: Option<AnthropicWireUsage>,
}

#[derive(Deserialize)]
struct OpenAiUsageAnswer {
    usage: Option<OpenAiWireUsage>,
}

#[derive(Deserialize)]
struct AnthropicUsageAnswer {
    usage: Option<AnthropicWireUsage>,
}

/// Usage of a complete same-dialect JSON answer, read without decoding its content: the
/// OpenAI `usage` object, or Anthropic's (cache reads and writes included in the input
/// tokens, as in the IR). `None` when the answer reports none or is not JSON.
pub fn usage_from_json(ingress: Ingress, body: &[u8]) -> Option<Usage> {
    match ingress {
        Ingress::OpenAi => serde_json::from_slice::<OpenAiUsageAnswer>(body)
            .ok()?
            .usage
            .map(|usage| usage.to_ir()),
        Ingress::Anthropic => {
            let reported = serde_json::from_slice::<AnthropicUsageAnswer>(body)
                .ok()?
                .usage?;
            let mut usage = Usage::default();
            reported.merge_into(&mut usage);
            Some(usage)
        }
    }
}

/// Reads usage out of a same-dialect stream while it is forwarded.
#[derive(Debug)]
pub struct UsageSniffer {
    ingress: Ingress,
    strip_usage_chunk: bool,
    sse: SseParser,
    /// Raw bytes of the event being assembled (strip mode only).
    raw_event: Vec<u8>,
    raw_line_start: usize,
    usage: Option<Usage>,
    completed: bool,
    failed: Option<ErrorKind>,
}

impl UsageSniffer {
    /// A sniffer for a stream in the `ingress` dialect. With `strip_usage_chunk`, the OpenAI
    /// usage-only chunk (requested by `prepare_request`, not by the client) is removed from the
    /// forwarded bytes.
    pub fn new(ingress: Ingress, strip_usage_chunk: bool) -> Self {
        Self {
            ingress,
            strip_usage_chunk: strip_usage_chunk && ingress == Ingress::OpenAi,
            sse: SseParser::default(),
            raw_event: Vec::new(),
            raw_line_start: 0,
            usage: None,
            completed: false,
            failed: None,
        }
    }

    /// Inspects a chunk and returns the bytes to forward: the chunk itself, unless a usage
    /// chunk must be stripped (then complete events are forwarded and a partial one is held).
    pub fn feed(&mut self, chunk: Bytes) -> Result<Bytes, TranslateError> {
        let Self {
            ingress,
            sse,
            usage,
            completed,
            failed,
            ..
        } = self;
        sse.feed(&chunk, &mut |name, data| {
            inspect(*ingress, name, data, usage, completed, failed);
            Ok(())
        })?;
        if !self.strip_usage_chunk {
            return Ok(chunk);
        }
        Ok(self.forward_without_usage_chunk(&chunk))
    }

    /// Flushes bytes held back in strip mode at end of stream.
    pub fn finish(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.raw_event))
    }

    /// Usage seen so far (exact, from the upstream).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// True once the terminal event (`[DONE]`, `message_stop`) went by.
    pub fn is_complete(&self) -> bool {
        self.completed
    }

    /// The error kind when the upstream sent an error event.
    pub fn failure(&self) -> Option<ErrorKind> {
        self.failed
    }

    /// Re-frames the chunk into whole events, dropping usage-only OpenAI chunks. A partial
    /// event at the end of the chunk is held until it completes.
    fn forward_without_usage_chunk(&mut self, mut chunk: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(chunk.len() + self.raw_event.len());
        while let Some(newline) = memchr::memchr(b'\n', chunk) {
            self.raw_event.extend_from_slice(&chunk[..=newline]);
            chunk = &chunk[newline + 1..];
            let line = &self.raw_event[self.raw_line_start..];
            if line == b"\n" || line == b"\r\n" {
                if !is_usage_only_event(&self.raw_event) {
                    out.extend_from_slice(&self.raw_event);
                }
                self.raw_event.clear();
                self.raw_line_start = 0;
            } else {
                self.raw_line_start = self.raw_event.len();
            }
        }
        self.raw_event.extend_from_slice(chunk);
        Bytes::from(out)
    }
}

fn is_usage_only_event(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some(data) = text.lines().find_map(|line| line.strip_prefix("data:")) else {
        return false;
    };
    serde_json::from_str::<OpenAiUsageChunk>(data.trim())
        .is_ok_and(|chunk| chunk.choices.is_empty() && chunk.usage.is_some())
}

/// Looks at one event for usage, completion and failure.
fn inspect(
    ingress: Ingress,
    name: &str,
    data: &[u8],
    usage: &mut Option<Usage>,
    completed: &mut bool,
    failed: &mut Option<ErrorKind>,
) {
    match ingress {
        Ingress::OpenAi => {
            let data = data.trim_ascii();
            if data == b"[DONE]" {
                *completed = true;
                return;
            }
            if data.starts_with(b"{\"error\"") {
                *failed = Some(ErrorKind::Api);
                return;
            }
            if !has_usage_object(data) {
                return;
            }
            if let Ok(OpenAiUsageChunk {
                usage: Some(reported),
                ..
            }) = serde_json::from_slice::<OpenAiUsageChunk>(data)
            {
                *usage = Some(reported.to_ir());
            }
        }
        Ingress::Anthropic => match name {
            "message_start" | "message_delta" => {
                if let Ok(event) = serde_json::from_slice::<AnthropicUsageEvent>(data) {
                    let reported = event
                        .usage
                        .or(event.message.and_then(|message| message.usage));
                    if let Some(reported) = reported {
                        let mut merged = usage.unwrap_or_default();
                        reported.merge_into(&mut merged);
                        *usage = Some(merged);
                    }
                }
            }
            "message_stop" => *completed = true,
            "error" => *failed = Some(ErrorKind::Api),
            _ => {}
        },
    }
}

/// True when the chunk has `"usage"` followed by an object (not `null`).
fn has_usage_object(data: &[u8]) -> bool {
    let needle = b"\"usage\"";
    let mut from = 0;
    while let Some(found) = data[from..]
        .windows(needle.len())
        .position(|window| window == needle)
    {
        let mut at = from + found + needle.len();
        while at < data.len() && matches!(data[at], b' ' | b':' | b'\t' | b'\n' | b'\r') {
            at += 1;
        }
        if data.get(at) == Some(&b'{') {
            return true;
        }
        from = at;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_from_json_reads_both_dialects() {
        let openai = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        let usage = usage_from_json(Ingress::OpenAi, openai).unwrap_or_else(|| panic!("none"));
        assert_eq!(
            (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
            (12, 5, 4)
        );
        let anthropic = br#"{"type":"message","content":[],"usage":{"input_tokens":10,"output_tokens":7,"cache_read_input_tokens":3,"cache_creation_input_tokens":2}}"#;
        let usage =
            usage_from_json(Ingress::Anthropic, anthropic).unwrap_or_else(|| panic!("none"));
        assert_eq!(
            (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
            (15, 7, 3)
        );
        assert!(usage_from_json(Ingress::OpenAi, br#"{"choices":[]}"#).is_none());
        assert!(usage_from_json(Ingress::Anthropic, b"not json").is_none());
    }
}
