//! Anthropic Messages streams: decoding upstream events and encoding client events.
//!
//! Owns the event sequence `message_start`, `ping`, `content_block_start` /
//! `content_block_delta` (`text_delta`, `input_json_delta`) / `content_block_stop`,
//! `message_delta` (stop reason + cumulative usage), `message_stop`, and `error`. The encoder
//! holds `message_delta` back until the upstream's final usage is known, so input tokens that
//! an OpenAI upstream reports only at the end still reach the client (in `message_delta`, whose
//! usage fields are cumulative). Extended-thinking blocks (`thinking_delta`,
//! `signature_delta`, `redacted_thinking`) pass through Anthropic-to-Anthropic.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::EncoderOptions;
use super::framing::SseParser;
use crate::anthropic::{
    OutUsage as AnthropicUsageOut, WireAnswerBlock, WireUsage, finish_from_wire, finish_to_wire,
    message_id,
};
use crate::apierror::{AnthropicErrorBody, AnthropicErrorObject, ErrorKind};
use crate::error::TranslateError;
use crate::ir::{FinishReason, StreamEvent, Usage};
use crate::wire;

#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    message: Option<WireStartMessage>,
    index: Option<u32>,
    content_block: Option<WireAnswerBlock>,
    #[serde(borrow)]
    delta: Option<WireDelta<'a>>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireStartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    text: Option<String>,
    partial_json: Option<String>,
    thinking: Option<String>,
    signature: Option<String>,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct Decoder {
    sse: SseParser,
    state: DecoderState,
}

#[derive(Debug, Default)]
struct DecoderState {
    started: bool,
    done: bool,
    usage: Usage,
    /// Tool-call index of each content block (`None` for text blocks).
    blocks: Vec<(u32, Option<u32>)>,
    tools: u32,
}

impl Decoder {
    pub(super) fn feed(
        &mut self,
        chunk: &[u8],
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), TranslateError> {
        let state = &mut self.state;
        self.sse
            .feed(chunk, &mut |_, data| state.event(data, events))
    }

    pub(super) fn finish(&mut self, _events: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        self.sse.finish();
        if self.state.done {
            Ok(())
        } else {
            Err(TranslateError::Truncated)
        }
    }
}

impl DecoderState {
    fn event(&mut self, data: &[u8], events: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        if self.done {
            return Ok(());
        }
        let event: WireEvent =
            serde_json::from_slice(data).map_err(|source| TranslateError::Malformed {
                what: "Anthropic stream event",
                source,
            })?;
        match event.kind.as_ref() {
            "message_start" => {
                let message = event.message.unwrap_or(WireStartMessage {
                    id: String::new(),
                    model: String::new(),
                    usage: None,
                });
                let mut reported = None;
                if let Some(usage) = message.usage {
                    usage.merge_into(&mut self.usage);
                    if usage.has_input() {
                        reported = Some(self.usage);
                    }
                }
                self.started = true;
                events.push(StreamEvent::Start {
                    id: message.id,
                    model: message.model,
                    usage: reported,
                });
            }
            "content_block_start" => {
                let index = event.index.unwrap_or(self.blocks.len() as u32);
                let Some(block) = event.content_block else {
                    return Ok(());
                };
                match block.kind.as_str() {
                    "text" => {
                        self.blocks.push((index, None));
                        if let Some(text) = block.text.filter(|text| !text.is_empty()) {
                            events.push(StreamEvent::TextDelta { choice: 0, text });
                        }
                    }
                    "tool_use" => {
                        let tool = self.tools;
                        self.tools += 1;
                        self.blocks.push((index, Some(tool)));
                        events.push(StreamEvent::ToolCallStart {
                            choice: 0,
                            index: tool,
                            id: block.id.unwrap_or_default(),
                            name: block.name.unwrap_or_default(),
                        });
                        if let Some(input) = block.input.filter(|input| !is_empty_object(input)) {
                            events.push(StreamEvent::ToolCallDelta {
                                choice: 0,
                                index: tool,
                                arguments: input.get().to_owned(),
                            });
                        }
                    }
                    "thinking" => {
                        self.blocks.push((index, None));
                        if let Some(text) = block.thinking.filter(|text| !text.is_empty()) {
                            events.push(StreamEvent::ThinkingDelta { choice: 0, text });
                        }
                    }
                    "redacted_thinking" => {
                        self.blocks.push((index, None));
                        events.push(StreamEvent::RedactedThinking {
                            choice: 0,
                            data: block.data.unwrap_or_default(),
                        });
                    }
                    other => {
                        return Err(TranslateError::unsupported(
                            "content_block",
                            format!("streamed block type `{other}` is not translated"),
                        ));
                    }
                }
            }
            "content_block_delta" => {
                let index = event.index.unwrap_or(0);
                let Some(delta) = event.delta else {
                    return Ok(());
                };
                let tool = self
                    .blocks
                    .iter()
                    .find(|(block, _)| *block == index)
                    .and_then(|(_, tool)| *tool);
                match (delta.kind.as_deref(), tool) {
                    (Some("text_delta"), _) => {
                        if let Some(text) = delta.text.filter(|text| !text.is_empty()) {
                            events.push(StreamEvent::TextDelta { choice: 0, text });
                        }
                    }
                    (Some("input_json_delta"), Some(tool)) => {
                        if let Some(arguments) = delta.partial_json.filter(|json| !json.is_empty())
                        {
                            events.push(StreamEvent::ToolCallDelta {
                                choice: 0,
                                index: tool,
                                arguments,
                            });
                        }
                    }
                    (Some("thinking_delta"), _) => {
                        if let Some(text) = delta.thinking.filter(|text| !text.is_empty()) {
                            events.push(StreamEvent::ThinkingDelta { choice: 0, text });
                        }
                    }
                    (Some("signature_delta"), _) => {
                        if let Some(signature) = delta.signature {
                            events.push(StreamEvent::ThinkingSignature {
                                choice: 0,
                                signature,
                            });
                        }
                    }
                    // Citations annotate text already sent; there is nothing to forward.
                    (Some("citations_delta"), _) => {}
                    (kind, _) => {
                        return Err(TranslateError::unsupported(
                            "content_block_delta",
                            format!("delta type `{}` is not translated", kind.unwrap_or("?")),
                        ));
                    }
                }
            }
            "message_delta" => {
                if let Some(usage) = event.usage {
                    usage.merge_into(&mut self.usage);
                }
                if let Some(delta) = event.delta
                    && let Some(reason) = delta.stop_reason
                {
                    events.push(StreamEvent::Finish {
                        choice: 0,
                        reason: finish_from_wire(&reason),
                        stop_sequence: delta.stop_sequence,
                    });
                }
                events.push(StreamEvent::Usage(self.usage));
            }
            "message_stop" => {
                self.done = true;
                events.push(StreamEvent::Done);
            }
            "error" => {
                let error = event.error.unwrap_or(WireError {
                    kind: None,
                    message: None,
                });
                let kind = match error.kind.as_deref() {
                    Some("overloaded_error") => ErrorKind::Overloaded,
                    Some("rate_limit_error") => ErrorKind::RateLimit,
                    Some("invalid_request_error") => ErrorKind::InvalidRequest,
                    Some("timeout_error") => ErrorKind::Timeout,
                    _ => ErrorKind::Api,
                };
                self.done = true;
                events.push(StreamEvent::Error {
                    kind,
                    message: error
                        .message
                        .unwrap_or_else(|| "upstream stream error".to_owned()),
                });
            }
            // `ping`, `content_block_stop` and event types added later carry nothing to forward.
            _ => {}
        }
        Ok(())
    }
}

fn is_empty_object(raw: &RawValue) -> bool {
    let text = raw.get();
    text.strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .is_some_and(|inner| inner.trim().is_empty())
}

// ---------------------------------------------------------------------------------------------
// Encoding for Anthropic clients

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: StartMessage<'a>,
}

#[derive(Serialize)]
struct StartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: AnthropicUsageOut,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: StartBlock<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock<'a> {
    Text {
        text: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: EmptyObject,
    },
    Thinking {
        thinking: &'static str,
    },
    RedactedThinking {
        data: &'a str,
    },
}

#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: DeltaBody<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DeltaBody<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct MessageDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta<'a>,
    usage: AnthropicUsageOut,
}

#[derive(Serialize)]
struct StopDelta<'a> {
    stop_reason: &'static str,
    stop_sequence: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text,
    Tool(u32),
    Thinking,
    Redacted,
}

#[derive(Debug, Default)]
pub(super) struct Encoder {
    started: bool,
    /// The open content block and its index.
    open: Option<(u32, OpenBlock)>,
    next_block: u32,
    /// Tool calls whose block was already closed (their arguments can no longer be extended).
    closed_tools: Vec<u32>,
    stop: Option<(FinishReason, Option<String>)>,
}

impl Encoder {
    pub(super) fn encode(
        &mut self,
        options: &EncoderOptions,
        event: &StreamEvent,
        usage: &Usage,
        out: &mut Vec<u8>,
    ) -> Result<(), TranslateError> {
        if let Some(choice) = choice_of(event).filter(|choice| *choice != 0) {
            return Err(TranslateError::unsupported(
                "choices",
                format!("an Anthropic stream carries one answer (got choice {choice})"),
            ));
        }
        match event {
            StreamEvent::Start {
                id,
                usage: start_usage,
                ..
            } => {
                self.start(options, id, start_usage.as_ref(), out)?;
            }
            StreamEvent::TextDelta { text, .. } => {
                if text.is_empty() {
                    return Ok(());
                }
                self.start(options, "", None, out)?;
                let index = self.open_block(OpenBlock::Text, StartBlock::Text { text: "" }, out)?;
                write_event(
                    out,
                    "content_block_delta",
                    &BlockDelta {
                        kind: "content_block_delta",
                        index,
                        delta: DeltaBody::Text { text },
                    },
                )?;
            }
            StreamEvent::ToolCallStart {
                index, id, name, ..
            } => {
                self.start(options, "", None, out)?;
                let block = StartBlock::ToolUse {
                    id,
                    name,
                    input: EmptyObject {},
                };
                self.open_block(OpenBlock::Tool(*index), block, out)?;
            }
            StreamEvent::ToolCallDelta {
                index, arguments, ..
            } => {
                if arguments.is_empty() {
                    return Ok(());
                }
                let block = match self.open {
                    Some((block, OpenBlock::Tool(open))) if open == *index => block,
                    _ if self.closed_tools.contains(index) => {
                        return Err(TranslateError::unsupported(
                            "tool_calls",
                            "interleaved tool-call argument deltas cannot be streamed as Anthropic blocks",
                        ));
                    }
                    _ => {
                        self.start(options, "", None, out)?;
                        let block = StartBlock::ToolUse {
                            id: "",
                            name: "",
                            input: EmptyObject {},
                        };
                        self.open_block(OpenBlock::Tool(*index), block, out)?
                    }
                };
                write_event(
                    out,
                    "content_block_delta",
                    &BlockDelta {
                        kind: "content_block_delta",
                        index: block,
                        delta: DeltaBody::InputJson {
                            partial_json: arguments,
                        },
                    },
                )?;
            }
            StreamEvent::ThinkingDelta { text, .. } => {
                if text.is_empty() {
                    return Ok(());
                }
                self.start(options, "", None, out)?;
                let start = StartBlock::Thinking { thinking: "" };
                let index = self.open_block(OpenBlock::Thinking, start, out)?;
                let delta = DeltaBody::Thinking { thinking: text };
                self.block_delta(index, delta, out)?;
            }
            StreamEvent::ThinkingSignature { signature, .. } => {
                self.start(options, "", None, out)?;
                let start = StartBlock::Thinking { thinking: "" };
                let index = self.open_block(OpenBlock::Thinking, start, out)?;
                self.block_delta(index, DeltaBody::Signature { signature }, out)?;
            }
            StreamEvent::RedactedThinking { data, .. } => {
                self.start(options, "", None, out)?;
                let start = StartBlock::RedactedThinking { data };
                self.open_block(OpenBlock::Redacted, start, out)?;
                self.close_block(out)?;
            }
            StreamEvent::Finish {
                reason,
                stop_sequence,
                ..
            } => {
                self.close_block(out)?;
                self.stop = Some((*reason, stop_sequence.clone()));
            }
            StreamEvent::Usage(_) => {}
            StreamEvent::Done => {
                self.start(options, "", None, out)?;
                self.close_block(out)?;
                let (reason, stop_sequence) =
                    self.stop.take().unwrap_or((FinishReason::Stop, None));
                write_event(
                    out,
                    "message_delta",
                    &MessageDelta {
                        kind: "message_delta",
                        delta: StopDelta {
                            stop_reason: finish_to_wire(reason),
                            stop_sequence: stop_sequence.as_deref(),
                        },
                        usage: AnthropicUsageOut::from_ir(usage),
                    },
                )?;
                out.extend_from_slice(
                    b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
                );
            }
            StreamEvent::Error { kind, message } => {
                write_event(
                    out,
                    "error",
                    &AnthropicErrorBody {
                        kind: "error",
                        error: AnthropicErrorObject {
                            kind: kind.anthropic_type(),
                            message,
                        },
                    },
                )?;
            }
        }
        Ok(())
    }

    fn start(
        &mut self,
        options: &EncoderOptions,
        upstream_id: &str,
        usage: Option<&Usage>,
        out: &mut Vec<u8>,
    ) -> Result<(), TranslateError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        let id = message_id(if upstream_id.is_empty() {
            &options.id
        } else {
            upstream_id
        });
        let usage = usage.copied().unwrap_or_default();
        write_event(
            out,
            "message_start",
            &MessageStart {
                kind: "message_start",
                message: StartMessage {
                    id: &id,
                    kind: "message",
                    role: "assistant",
                    model: &options.model,
                    content: [],
                    stop_reason: None,
                    stop_sequence: None,
                    usage: AnthropicUsageOut {
                        output_tokens: 0,
                        ..AnthropicUsageOut::from_ir(&usage)
                    },
                },
            },
        )?;
        out.extend_from_slice(b"event: ping\ndata: {\"type\":\"ping\"}\n\n");
        Ok(())
    }

    /// Opens a block of `kind` unless it is already the open one (tool and redacted blocks
    /// always open anew); returns its index.
    fn open_block(
        &mut self,
        kind: OpenBlock,
        content_block: StartBlock<'_>,
        out: &mut Vec<u8>,
    ) -> Result<u32, TranslateError> {
        let reusable = matches!(kind, OpenBlock::Text | OpenBlock::Thinking);
        if let Some((index, open)) = self.open
            && open == kind
            && reusable
        {
            return Ok(index);
        }
        self.close_block(out)?;
        let index = self.next_block;
        self.next_block += 1;
        write_event(
            out,
            "content_block_start",
            &BlockStart {
                kind: "content_block_start",
                index,
                content_block,
            },
        )?;
        self.open = Some((index, kind));
        Ok(index)
    }

    fn block_delta(
        &mut self,
        index: u32,
        delta: DeltaBody<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), TranslateError> {
        write_event(
            out,
            "content_block_delta",
            &BlockDelta {
                kind: "content_block_delta",
                index,
                delta,
            },
        )
    }

    fn close_block(&mut self, out: &mut Vec<u8>) -> Result<(), TranslateError> {
        if let Some((index, kind)) = self.open.take() {
            if let OpenBlock::Tool(tool) = kind {
                self.closed_tools.push(tool);
            }
            write_event(
                out,
                "content_block_stop",
                &BlockStop {
                    kind: "content_block_stop",
                    index,
                },
            )?;
        }
        Ok(())
    }
}

fn choice_of(event: &StreamEvent) -> Option<u32> {
    match event {
        StreamEvent::TextDelta { choice, .. }
        | StreamEvent::ToolCallStart { choice, .. }
        | StreamEvent::ToolCallDelta { choice, .. }
        | StreamEvent::ThinkingDelta { choice, .. }
        | StreamEvent::ThinkingSignature { choice, .. }
        | StreamEvent::RedactedThinking { choice, .. }
        | StreamEvent::Finish { choice, .. } => Some(*choice),
        _ => None,
    }
}

fn write_event<T: Serialize>(
    out: &mut Vec<u8>,
    name: &str,
    value: &T,
) -> Result<(), TranslateError> {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    wire::write_json(out, value, "Anthropic stream event")?;
    out.extend_from_slice(b"\n\n");
    Ok(())
}
