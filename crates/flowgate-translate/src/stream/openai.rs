//! OpenAI Chat Completions streams: decoding upstream `data:` chunks and encoding client chunks.
//!
//! Owns the chunk shapes (`chat.completion.chunk`, the usage-only final chunk sent with
//! `stream_options.include_usage`, `data: [DONE]`, mid-stream `{"error":...}` objects). It
//! leaves usage bookkeeping and estimation to `StreamEncoder`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::EncoderOptions;
use super::framing::SseParser;
use crate::apierror::{ErrorKind, OpenAiErrorObject};
use crate::error::TranslateError;
use crate::ir::{StreamEvent, Usage};
use crate::openai::{OutUsage, WireUsage, finish_from_wire, finish_to_wire};
use crate::wire;

#[derive(Deserialize)]
struct Chunk<'a> {
    /// Borrowed: only the first chunk's id and model are kept.
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    delta: Option<ChunkDelta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChunkDelta {
    content: Option<String>,
    refusal: Option<String>,
    tool_calls: Option<Vec<ChunkToolCall>>,
}

#[derive(Deserialize)]
struct ChunkToolCall {
    index: Option<u32>,
    id: Option<String>,
    function: Option<ChunkFunction>,
}

#[derive(Deserialize)]
struct ChunkFunction {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Debug)]
pub(super) struct Decoder {
    sse: SseParser,
    state: DecoderState,
}

#[derive(Debug)]
struct DecoderState {
    fallback_id: String,
    started: bool,
    done: bool,
    /// (choice, tool index) pairs whose `ToolCallStart` was emitted.
    tools_started: Vec<(u32, u32)>,
    /// Choices seen, and whether each has finished.
    choices: Vec<(u32, bool)>,
}

impl Decoder {
    pub(super) fn new(fallback_id: &str) -> Self {
        Self {
            sse: SseParser::default(),
            state: DecoderState {
                fallback_id: fallback_id.to_owned(),
                started: false,
                done: false,
                tools_started: Vec::new(),
                choices: Vec::new(),
            },
        }
    }

    pub(super) fn feed(
        &mut self,
        chunk: &[u8],
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), TranslateError> {
        let state = &mut self.state;
        self.sse
            .feed(chunk, &mut |_, data| state.event(data, events))
    }

    pub(super) fn finish(&mut self, events: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        let state = &mut self.state;
        self.sse.finish();
        if state.done {
            return Ok(());
        }
        // Some compatible servers close the stream without `[DONE]`; accept that when every
        // choice has finished.
        if state.started
            && !state.choices.is_empty()
            && state.choices.iter().all(|(_, finished)| *finished)
        {
            state.done = true;
            events.push(StreamEvent::Done);
            return Ok(());
        }
        Err(TranslateError::Truncated)
    }
}

impl DecoderState {
    fn event(&mut self, data: &[u8], events: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        if self.done {
            return Ok(());
        }
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.done = true;
            events.push(StreamEvent::Done);
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let chunk: Chunk =
            serde_json::from_slice(data).map_err(|source| TranslateError::Malformed {
                what: "OpenAI stream chunk",
                source,
            })?;
        if let Some(error) = chunk.error {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream stream error")
                .to_owned();
            let kind = match error.get("type").and_then(Value::as_str) {
                Some("rate_limit_error" | "rate_limit_exceeded") => ErrorKind::RateLimit,
                Some("invalid_request_error") => ErrorKind::InvalidRequest,
                _ => ErrorKind::Api,
            };
            self.done = true;
            events.push(StreamEvent::Error { kind, message });
            return Ok(());
        }
        if !self.started {
            self.started = true;
            events.push(StreamEvent::Start {
                id: chunk
                    .id
                    .map_or_else(|| self.fallback_id.clone(), Cow::into_owned),
                model: chunk.model.map(Cow::into_owned).unwrap_or_default(),
                usage: None,
            });
        }
        for choice in chunk.choices {
            let index = choice.index;
            if !self.choices.iter().any(|(seen, _)| *seen == index) {
                self.choices.push((index, false));
            }
            if let Some(delta) = choice.delta {
                for text in [delta.content, delta.refusal].into_iter().flatten() {
                    if !text.is_empty() {
                        events.push(StreamEvent::TextDelta {
                            choice: index,
                            text,
                        });
                    }
                }
                for (position, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate()
                {
                    let tool_index = call.index.unwrap_or(position as u32);
                    let (name, arguments) = match call.function {
                        Some(function) => (function.name, function.arguments),
                        None => (None, None),
                    };
                    if !self.tools_started.contains(&(index, tool_index)) {
                        self.tools_started.push((index, tool_index));
                        events.push(StreamEvent::ToolCallStart {
                            choice: index,
                            index: tool_index,
                            id: call.id.unwrap_or_else(|| {
                                format!("call_{}_{tool_index}", self.fallback_id)
                            }),
                            name: name.unwrap_or_default(),
                        });
                    }
                    if let Some(arguments) = arguments.filter(|arguments| !arguments.is_empty()) {
                        events.push(StreamEvent::ToolCallDelta {
                            choice: index,
                            index: tool_index,
                            arguments,
                        });
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                if let Some(entry) = self.choices.iter_mut().find(|(seen, _)| *seen == index) {
                    entry.1 = true;
                }
                events.push(StreamEvent::Finish {
                    choice: index,
                    reason: finish_from_wire(&reason),
                    stop_sequence: None,
                });
            }
        }
        if let Some(usage) = chunk.usage {
            events.push(StreamEvent::Usage(usage.to_ir()));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding for OpenAI clients

#[derive(Serialize)]
struct OutChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [OutChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OutUsage>,
}

#[derive(Serialize)]
struct OutChoice<'a> {
    index: u32,
    delta: OutDelta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct OutDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[OutToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct OutToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: OutFunctionDelta<'a>,
}

#[derive(Serialize)]
struct OutFunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct OutError<'a> {
    error: OpenAiErrorObject<'a>,
}

#[derive(Debug, Default)]
pub(super) struct Encoder {
    /// The answer id (the upstream's, else the gateway's).
    id: Option<String>,
    /// Choices that were sent their `role` delta.
    roles_sent: Vec<u32>,
}

impl Encoder {
    pub(super) fn encode(
        &mut self,
        options: &EncoderOptions,
        event: &StreamEvent,
        usage: &Usage,
        out: &mut Vec<u8>,
    ) -> Result<(), TranslateError> {
        match event {
            StreamEvent::Start { id, .. } => {
                if self.id.is_none() && !id.is_empty() {
                    self.id = Some(id.clone());
                }
                self.delta(options, 0, OutDelta::default(), None, out)
            }
            StreamEvent::TextDelta { choice, text } => {
                if text.is_empty() && self.roles_sent.contains(choice) {
                    return Ok(());
                }
                let delta = OutDelta {
                    content: Some(text),
                    ..OutDelta::default()
                };
                self.delta(options, *choice, delta, None, out)
            }
            StreamEvent::ToolCallStart {
                choice,
                index,
                id,
                name,
            } => {
                let delta = OutDelta {
                    tool_calls: Some([OutToolCallDelta {
                        index: *index,
                        id: Some(id),
                        kind: Some("function"),
                        function: OutFunctionDelta {
                            name: Some(name),
                            arguments: "",
                        },
                    }]),
                    ..OutDelta::default()
                };
                self.delta(options, *choice, delta, None, out)
            }
            StreamEvent::ToolCallDelta {
                choice,
                index,
                arguments,
            } => {
                let delta = OutDelta {
                    tool_calls: Some([OutToolCallDelta {
                        index: *index,
                        id: None,
                        kind: None,
                        function: OutFunctionDelta {
                            name: None,
                            arguments,
                        },
                    }]),
                    ..OutDelta::default()
                };
                self.delta(options, *choice, delta, None, out)
            }
            StreamEvent::Finish { choice, reason, .. } => self.delta(
                options,
                *choice,
                OutDelta::default(),
                Some(finish_to_wire(*reason)),
                out,
            ),
            // Chat Completions has no field for thinking; OpenAI clients cannot ask for it.
            StreamEvent::Usage(_)
            | StreamEvent::ThinkingDelta { .. }
            | StreamEvent::ThinkingSignature { .. }
            | StreamEvent::RedactedThinking { .. } => Ok(()),
            StreamEvent::Done => {
                if self.roles_sent.is_empty() {
                    self.delta(options, 0, OutDelta::default(), None, out)?;
                }
                if options.include_usage {
                    let chunk = OutChunk {
                        id: self.id(options),
                        object: "chat.completion.chunk",
                        created: options.created,
                        model: &options.model,
                        choices: &[],
                        usage: Some(OutUsage::from_ir(usage)),
                    };
                    write_data(out, &chunk)?;
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                Ok(())
            }
            StreamEvent::Error { kind, message } => {
                let body = OutError {
                    error: OpenAiErrorObject {
                        message,
                        kind: kind.openai_type(),
                        param: None,
                        code: Some(kind.anthropic_type()),
                    },
                };
                write_data(out, &body)
            }
        }
    }

    fn id<'a>(&'a self, options: &'a EncoderOptions) -> &'a str {
        self.id.as_deref().unwrap_or(&options.id)
    }

    fn delta(
        &mut self,
        options: &EncoderOptions,
        choice: u32,
        mut delta: OutDelta<'_>,
        finish_reason: Option<&'static str>,
        out: &mut Vec<u8>,
    ) -> Result<(), TranslateError> {
        if !self.roles_sent.contains(&choice) {
            self.roles_sent.push(choice);
            delta.role = Some("assistant");
            if delta.content.is_none() && delta.tool_calls.is_none() {
                delta.content = Some("");
            }
        }
        let choices = [OutChoice {
            index: choice,
            delta,
            logprobs: None,
            finish_reason,
        }];
        let chunk = OutChunk {
            id: self.id(options),
            object: "chat.completion.chunk",
            created: options.created,
            model: &options.model,
            choices: &choices,
            usage: None,
        };
        write_data(out, &chunk)
    }
}

fn write_data<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), TranslateError> {
    out.extend_from_slice(b"data: ");
    wire::write_json(out, value, "OpenAI stream chunk")?;
    out.extend_from_slice(b"\n\n");
    Ok(())
}
