//! Stream transcoding: upstream stream bytes -> IR events -> client stream bytes.
//!
//! Owns `StreamDecoder` (one per upstream kind: SSE for OpenAI, Anthropic and Gemini, NDJSON
//! for Ollama; fed chunks cut anywhere), `StreamEncoder` (IR events -> OpenAI `data:` chunks or
//! Anthropic named events, with usage, estimation fallback and terminating error events), and
//! `StreamTranscoder`, which joins the two. A gateway that screens assistant text runs the
//! decoder and the encoder itself and edits `StreamEvent::TextDelta`s in between. Timeouts,
//! keep-alive scheduling and client disconnects are the gateway's business.

mod anthropic;
pub(crate) mod framing;
mod gemini;
mod ollama;
mod openai;

use bytes::Bytes;

use crate::apierror::ErrorKind;
use crate::error::TranslateError;
use crate::ir::{Ingress, StreamEvent, UpstreamKind, Usage};

/// Decodes an upstream stream into IR events.
#[derive(Debug)]
pub struct StreamDecoder {
    inner: DecoderInner,
}

#[derive(Debug)]
enum DecoderInner {
    OpenAi(openai::Decoder),
    Anthropic(anthropic::Decoder),
    Gemini(gemini::Decoder),
    Ollama(ollama::Decoder),
}

impl StreamDecoder {
    /// A decoder for a stream from an upstream of `kind`. `fallback_id` names the answer (and,
    /// suffixed, its tool calls) when the upstream sends no id, which keeps output
    /// deterministic for a given input.
    pub fn new(kind: UpstreamKind, fallback_id: &str) -> Self {
        let inner = match kind {
            UpstreamKind::OpenAi => DecoderInner::OpenAi(openai::Decoder::new(fallback_id)),
            UpstreamKind::Anthropic => DecoderInner::Anthropic(anthropic::Decoder::default()),
            UpstreamKind::Gemini => DecoderInner::Gemini(gemini::Decoder::new(fallback_id)),
            UpstreamKind::Ollama => DecoderInner::Ollama(ollama::Decoder::new(fallback_id)),
        };
        Self { inner }
    }

    /// Decodes the events completed by `chunk` (which may end anywhere) into `events`.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), TranslateError> {
        match &mut self.inner {
            DecoderInner::OpenAi(decoder) => decoder.feed(chunk, events),
            DecoderInner::Anthropic(decoder) => decoder.feed(chunk, events),
            DecoderInner::Gemini(decoder) => decoder.feed(chunk, events),
            DecoderInner::Ollama(decoder) => decoder.feed(chunk, events),
        }
    }

    /// Ends the stream (upstream EOF). Emits `Done` when the stream had completed, and fails
    /// with `TranslateError::Truncated` when it stopped early.
    pub fn finish(&mut self, events: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        match &mut self.inner {
            DecoderInner::OpenAi(decoder) => decoder.finish(events),
            DecoderInner::Anthropic(decoder) => decoder.finish(events),
            DecoderInner::Gemini(decoder) => decoder.finish(events),
            DecoderInner::Ollama(decoder) => decoder.finish(events),
        }
    }
}

/// What the encoder needs to know about the client's request.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderOptions {
    /// The model name the client asked for, echoed in every event.
    pub model: String,
    /// Answer id used when the upstream sent none.
    pub id: String,
    /// Unix seconds for OpenAI's `created`.
    pub created: u64,
    /// The client asked for the final usage chunk (OpenAI `stream_options.include_usage`).
    /// Ignored for Anthropic clients, whose streams always carry usage.
    pub include_usage: bool,
    /// Estimated prompt tokens, used only if the upstream reports no usage at all
    /// (`estimate::estimate_request_tokens`).
    pub estimated_input_tokens: Option<u64>,
}

impl EncoderOptions {
    /// Options for streaming the answer to `request`: its model name, its `include_usage`, a
    /// generated id and the current time. Prompt tokens are not estimated here (that costs a
    /// tokenizer pass); set `estimated_input_tokens` only for upstreams known to report no
    /// usage.
    pub fn for_request(request: &crate::ir::IrRequest) -> Self {
        Self::new(request.model.clone(), request.include_usage)
    }

    /// Options for a client that asked for `model`, with a generated id and the current time.
    pub fn new(model: impl Into<String>, include_usage: bool) -> Self {
        Self {
            model: model.into(),
            id: crate::wire::generate_id("gen_"),
            created: crate::wire::unix_now(),
            include_usage,
            estimated_input_tokens: None,
        }
    }
}

/// How the client stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// Still running.
    Open,
    /// Ended normally.
    Completed,
    /// Ended with a terminating error event of this kind.
    Failed(ErrorKind),
}

/// Encodes IR events as the client dialect's stream.
#[derive(Debug)]
pub struct StreamEncoder {
    inner: EncoderInner,
    options: EncoderOptions,
    usage: Option<Usage>,
    /// Assistant text and tool arguments sent so far, kept for the estimation fallback.
    output_text: String,
    outcome: StreamOutcome,
}

#[derive(Debug)]
enum EncoderInner {
    OpenAi(openai::Encoder),
    Anthropic(anthropic::Encoder),
}

impl StreamEncoder {
    pub fn new(ingress: Ingress, options: EncoderOptions) -> Self {
        let inner = match ingress {
            Ingress::OpenAi => EncoderInner::OpenAi(openai::Encoder::default()),
            Ingress::Anthropic => EncoderInner::Anthropic(anthropic::Encoder::default()),
        };
        Self {
            inner,
            options,
            usage: None,
            output_text: String::new(),
            outcome: StreamOutcome::Open,
        }
    }

    /// Appends the bytes for `event` to `out`. Events after the end of the stream are ignored.
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) -> Result<(), TranslateError> {
        if self.outcome != StreamOutcome::Open {
            return Ok(());
        }
        match event {
            StreamEvent::Usage(usage) => {
                self.usage = Some(*usage);
                return Ok(());
            }
            StreamEvent::Start {
                usage: Some(usage), ..
            } if self.usage.is_none() => self.usage = Some(*usage),
            StreamEvent::TextDelta { text, .. } => self.output_text.push_str(text),
            StreamEvent::ToolCallStart { name, .. } => self.output_text.push_str(name),
            StreamEvent::ToolCallDelta { arguments, .. } => self.output_text.push_str(arguments),
            StreamEvent::Error { kind, .. } => self.outcome = StreamOutcome::Failed(*kind),
            StreamEvent::Done => {
                if self.usage.is_none() {
                    self.usage = Some(self.estimated_usage());
                }
                self.outcome = StreamOutcome::Completed;
            }
            _ => {}
        }
        let usage = self.usage.unwrap_or_default();
        match &mut self.inner {
            EncoderInner::OpenAi(encoder) => encoder.encode(&self.options, event, &usage, out),
            EncoderInner::Anthropic(encoder) => encoder.encode(&self.options, event, &usage, out),
        }
    }

    /// Ends the client stream with the dialect's terminating error event (Anthropic
    /// `event: error`; OpenAI a `data:` error object, without `[DONE]`), for mid-stream failures
    /// such as an upstream timeout or reset. Does nothing if the stream already ended.
    pub fn finish_with_error(&mut self, kind: ErrorKind, message: &str, out: &mut Vec<u8>) {
        let event = StreamEvent::Error {
            kind,
            message: message.to_owned(),
        };
        // Encoding an error event writes fixed-shape JSON of two strings; it cannot fail.
        let _ = self.encode(&event, out);
    }

    /// A keep-alive the gateway may send while the upstream is silent (Anthropic `ping`, an SSE
    /// comment for OpenAI clients).
    pub fn keepalive(&self, out: &mut Vec<u8>) {
        match self.inner {
            EncoderInner::OpenAi(_) => out.extend_from_slice(b": keep-alive\n\n"),
            EncoderInner::Anthropic(_) => {
                out.extend_from_slice(b"event: ping\ndata: {\"type\":\"ping\"}\n\n");
            }
        }
    }

    /// Usage as known so far: exact when the upstream reported it, estimated (and marked so)
    /// after `Done` when it reported nothing.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Usage for accounting when the stream failed before the upstream reported any: what was
    /// sent so far, estimated.
    pub fn usage_or_estimate(&self) -> Usage {
        self.usage.unwrap_or_else(|| self.estimated_usage())
    }

    pub fn outcome(&self) -> StreamOutcome {
        self.outcome
    }

    fn estimated_usage(&self) -> Usage {
        Usage {
            input_tokens: self.options.estimated_input_tokens.unwrap_or(0),
            output_tokens: crate::estimate::count_text_tokens(&self.output_text),
            cached_tokens: 0,
            cache_creation_tokens: 0,
            estimated: true,
        }
    }
}

/// Decoder and encoder joined: upstream bytes in, client bytes out.
#[derive(Debug)]
pub struct StreamTranscoder {
    decoder: StreamDecoder,
    encoder: StreamEncoder,
    events: Vec<StreamEvent>,
    /// Client bytes produced before a decoding error, sent ahead of the error event.
    pending: Vec<u8>,
}

impl StreamTranscoder {
    pub fn new(ingress: Ingress, kind: UpstreamKind, options: EncoderOptions) -> Self {
        let decoder = StreamDecoder::new(kind, &options.id);
        Self {
            decoder,
            encoder: StreamEncoder::new(ingress, options),
            events: Vec::with_capacity(8),
            pending: Vec::new(),
        }
    }

    /// Transcodes one upstream chunk. On error, bytes already produced are kept and sent by
    /// `finish_with_error`, which the gateway should call next.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, TranslateError> {
        let decoded = self.decoder.feed(chunk, &mut self.events);
        self.flush_events(decoded)
    }

    /// Ends the stream at upstream EOF. Fails with `Truncated` when the upstream stopped before
    /// its terminal event (the gateway then calls `finish_with_error`).
    pub fn finish(&mut self) -> Result<Bytes, TranslateError> {
        let decoded = self.decoder.finish(&mut self.events);
        self.flush_events(decoded)
    }

    /// The client's terminating error event, preceded by any bytes held back by a failed
    /// `feed`/`finish`.
    pub fn finish_with_error(&mut self, kind: ErrorKind, message: &str) -> Bytes {
        let mut out = std::mem::take(&mut self.pending);
        self.encoder.finish_with_error(kind, message, &mut out);
        Bytes::from(out)
    }

    /// Client bytes produced before a failed `feed`/`finish`, for a caller that writes its own
    /// terminating error event instead of `finish_with_error`'s.
    pub fn take_pending(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.pending))
    }

    /// The encoder half, for usage, outcome and keep-alives.
    pub fn encoder(&self) -> &StreamEncoder {
        &self.encoder
    }

    pub fn usage(&self) -> Option<Usage> {
        self.encoder.usage()
    }

    fn flush_events(
        &mut self,
        decoded: Result<(), TranslateError>,
    ) -> Result<Bytes, TranslateError> {
        let mut out = std::mem::take(&mut self.pending);
        let mut result = decoded;
        for event in self.events.drain(..) {
            if let Err(err) = self.encoder.encode(&event, &mut out) {
                result = Err(err);
                break;
            }
        }
        self.events.clear();
        match result {
            Ok(()) => Ok(Bytes::from(out)),
            Err(err) => {
                self.pending = out;
                Err(err)
            }
        }
    }
}
