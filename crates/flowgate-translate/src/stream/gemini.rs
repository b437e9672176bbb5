//! Gemini `streamGenerateContent?alt=sse` decoding.
//!
//! Owns turning each SSE event (a complete `GenerateContentResponse` holding the next piece of
//! each candidate) into IR events. Function calls arrive whole, so each becomes a
//! `ToolCallStart` plus one `ToolCallDelta`. Gemini sends no terminal marker: the stream is
//! complete when every candidate has a `finishReason` and the connection closes, so `Done` (and
//! the last reported usage) is emitted by `finish`.

use super::framing::SseParser;
use crate::apierror::ErrorKind;
use crate::error::TranslateError;
use crate::gemini::{WireResponse, finish_from_wire};
use crate::ir::{StreamEvent, Usage};

#[derive(Debug)]
pub(super) struct Decoder {
    sse: SseParser,
    state: DecoderState,
}

#[derive(Debug)]
struct DecoderState {
    fallback_id: String,
    id: Option<String>,
    started: bool,
    failed: bool,
    /// Per candidate: (index, tool calls so far, finished).
    candidates: Vec<(u32, u32, bool)>,
    usage: Option<Usage>,
}

impl Decoder {
    pub(super) fn new(fallback_id: &str) -> Self {
        Self {
            sse: SseParser::default(),
            state: DecoderState {
                fallback_id: fallback_id.to_owned(),
                id: None,
                started: false,
                failed: false,
                candidates: Vec::new(),
                usage: None,
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
        if state.failed {
            return Ok(());
        }
        let complete = state.started
            && !state.candidates.is_empty()
            && state.candidates.iter().all(|(_, _, finished)| *finished);
        if !complete {
            return Err(TranslateError::Truncated);
        }
        if let Some(usage) = state.usage {
            events.push(StreamEvent::Usage(usage));
        }
        events.push(StreamEvent::Done);
        Ok(())
    }
}

impl DecoderState {
    fn event(&mut self, data: &[u8], events: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        if self.failed || data.trim_ascii().is_empty() {
            return Ok(());
        }
        let response: WireResponse =
            serde_json::from_slice(data).map_err(|source| TranslateError::Malformed {
                what: "Gemini stream event",
                source,
            })?;
        if let Some(error) = response.error {
            self.failed = true;
            let kind = match error.status.as_deref() {
                Some("RESOURCE_EXHAUSTED") => ErrorKind::RateLimit,
                Some("UNAVAILABLE") => ErrorKind::Overloaded,
                Some("DEADLINE_EXCEEDED") => ErrorKind::Timeout,
                Some("INVALID_ARGUMENT") => ErrorKind::InvalidRequest,
                _ => ErrorKind::Api,
            };
            events.push(StreamEvent::Error {
                kind,
                message: error
                    .message
                    .unwrap_or_else(|| "upstream stream error".to_owned()),
            });
            return Ok(());
        }
        if let Some(usage) = &response.usage_metadata {
            self.usage = Some(usage.to_ir());
        }
        if !self.started {
            self.started = true;
            let id = response
                .response_id
                .unwrap_or_else(|| self.fallback_id.clone());
            self.id = Some(id.clone());
            // Gemini reports the prompt size in every event, so input tokens are known up front.
            let usage = self.usage.map(|usage| Usage {
                output_tokens: 0,
                ..usage
            });
            events.push(StreamEvent::Start {
                id,
                model: response.model_version.unwrap_or_default(),
                usage,
            });
        }
        if response.candidates.is_empty()
            && response
                .prompt_feedback
                .is_some_and(|feedback| feedback.block_reason.is_some())
        {
            self.candidates.push((0, 0, true));
            events.push(StreamEvent::Finish {
                choice: 0,
                reason: crate::ir::FinishReason::ContentFilter,
                stop_sequence: None,
            });
            return Ok(());
        }
        for candidate in response.candidates {
            let choice = candidate.index;
            let position = match self
                .candidates
                .iter()
                .position(|(index, _, _)| *index == choice)
            {
                Some(position) => position,
                None => {
                    self.candidates.push((choice, 0, false));
                    self.candidates.len() - 1
                }
            };
            for part in candidate
                .content
                .map(|content| content.parts)
                .unwrap_or_default()
            {
                if part.thought {
                    continue;
                }
                if let Some(text) = part.text.filter(|text| !text.is_empty()) {
                    events.push(StreamEvent::TextDelta { choice, text });
                }
                if let Some(call) = part.function_call {
                    let index = self.candidates[position].1;
                    self.candidates[position].1 += 1;
                    let id = call.id.unwrap_or_else(|| {
                        let base = self.id.as_deref().unwrap_or(&self.fallback_id);
                        format!("call_{base}_{choice}_{index}")
                    });
                    events.push(StreamEvent::ToolCallStart {
                        choice,
                        index,
                        id,
                        name: call.name,
                    });
                    events.push(StreamEvent::ToolCallDelta {
                        choice,
                        index,
                        arguments: call
                            .args
                            .map_or_else(|| "{}".to_owned(), |args| args.get().to_owned()),
                    });
                }
            }
            if let Some(reason) = candidate.finish_reason {
                let (_, calls, finished) = &mut self.candidates[position];
                if !*finished {
                    *finished = true;
                    events.push(StreamEvent::Finish {
                        choice,
                        reason: finish_from_wire(&reason, *calls > 0),
                        stop_sequence: None,
                    });
                }
            }
        }
        Ok(())
    }
}
