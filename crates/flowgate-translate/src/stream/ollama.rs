//! Ollama `/api/chat` NDJSON stream decoding.
//!
//! Owns turning each JSON line (`message.content` pieces, whole `message.tool_calls`, the final
//! `done: true` line with `done_reason`, `prompt_eval_count` and `eval_count`, or an
//! `{"error": ...}` line) into IR events. Ollama sends no ids: the answer and its tool calls
//! are named from the fallback id.

use super::framing::LineSplitter;
use crate::apierror::ErrorKind;
use crate::error::TranslateError;
use crate::ir::StreamEvent;
use crate::ollama::{WireChunk, finish_from_wire};

#[derive(Debug)]
pub(super) struct Decoder {
    lines: LineSplitter,
    state: DecoderState,
}

#[derive(Debug)]
struct DecoderState {
    fallback_id: String,
    started: bool,
    done: bool,
    tools: u32,
}

impl Decoder {
    pub(super) fn new(fallback_id: &str) -> Self {
        Self {
            lines: LineSplitter::default(),
            state: DecoderState {
                fallback_id: fallback_id.to_owned(),
                started: false,
                done: false,
                tools: 0,
            },
        }
    }

    pub(super) fn feed(
        &mut self,
        chunk: &[u8],
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), TranslateError> {
        let state = &mut self.state;
        self.lines.feed(chunk, &mut |line| state.line(line, events))
    }

    pub(super) fn finish(&mut self, events: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        let state = &mut self.state;
        // A last line without its newline is parsed if it is complete JSON; a cut one means
        // the stream was truncated.
        let last = self.lines.finish(&mut |line| state.line(line, events));
        if let Err(TranslateError::Malformed { .. }) = last {
            return Err(TranslateError::Truncated);
        }
        last?;
        if state.done {
            Ok(())
        } else {
            Err(TranslateError::Truncated)
        }
    }
}

impl DecoderState {
    fn line(&mut self, line: &[u8], events: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        if self.done || line.trim_ascii().is_empty() {
            return Ok(());
        }
        let chunk: WireChunk =
            serde_json::from_slice(line).map_err(|source| TranslateError::Malformed {
                what: "Ollama stream line",
                source,
            })?;
        if let Some(message) = chunk.error {
            self.done = true;
            events.push(StreamEvent::Error {
                kind: ErrorKind::Api,
                message,
            });
            return Ok(());
        }
        if !self.started {
            self.started = true;
            events.push(StreamEvent::Start {
                id: self.fallback_id.clone(),
                model: chunk.model.clone().unwrap_or_default(),
                usage: None,
            });
        }
        let usage = chunk.usage();
        if let Some(message) = chunk.message {
            if !message.content.is_empty() {
                events.push(StreamEvent::TextDelta {
                    choice: 0,
                    text: message.content,
                });
            }
            for call in message.tool_calls.unwrap_or_default() {
                let index = self.tools;
                self.tools += 1;
                events.push(StreamEvent::ToolCallStart {
                    choice: 0,
                    index,
                    id: format!("call_{}_{index}", self.fallback_id),
                    name: call.function.name,
                });
                events.push(StreamEvent::ToolCallDelta {
                    choice: 0,
                    index,
                    arguments: call
                        .function
                        .arguments
                        .map_or_else(|| "{}".to_owned(), |args| args.get().to_owned()),
                });
            }
        }
        if chunk.done {
            self.done = true;
            events.push(StreamEvent::Finish {
                choice: 0,
                reason: finish_from_wire(chunk.done_reason.as_deref(), self.tools > 0),
                stop_sequence: None,
            });
            if let Some(usage) = usage {
                events.push(StreamEvent::Usage(usage));
            }
            events.push(StreamEvent::Done);
        }
        Ok(())
    }
}
