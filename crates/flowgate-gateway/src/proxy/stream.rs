//! Streaming answers: the upstream body goes to the client chunk by chunk as it arrives (no
//! buffering of the whole answer), either forwarded as is (same dialect; usage read on the way
//! and the gateway-requested usage chunk stripped) or transcoded event by event (another
//! dialect). An upstream failure after the head was sent (reset, idle or total timeout, or a
//! stream cut before its terminal event) becomes a final error event in the client's dialect,
//! never a silent truncation or a hang. Dropping the stream (client gone) drops the upstream
//! body, which cancels the upstream call.

use crate::error::ApiError;
use crate::proxy::context::RequestContext;
use crate::proxy::screen::Screening;
use crate::proxy::usage::to_usage;
use crate::state::TenantEntry;
use bytes::Bytes;
use flowgate_policy::{Phase, StreamScreener, StreamStatus};
use flowgate_providers::UpstreamBody;
use flowgate_ratelimit::Admission;
use flowgate_translate::passthrough::UsageSniffer;
use flowgate_translate::stream::{EncoderOptions, StreamDecoder, StreamEncoder, StreamTranscoder};
use flowgate_translate::{Ingress, StreamEvent, TranslateError, UpstreamKind};
use flowgate_types::ApiFormat;
use futures_util::Stream;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Why a stream could not go on.
#[derive(Debug)]
enum StreamFailure {
    Translate(TranslateError),
    /// A `block` rule matched the answer.
    Blocked,
}

impl From<TranslateError> for StreamFailure {
    fn from(error: TranslateError) -> Self {
        Self::Translate(error)
    }
}

/// Decoder, screeners and encoder of a stream whose answer the policy screens: text deltas
/// go through one `StreamScreener` per choice (holding back only what a match split across
/// chunks needs), everything else passes as decoded. The first choice's text as the upstream
/// sent it is kept for the completion record's content hash (as for complete answers).
#[derive(Debug)]
pub struct ScreenedStream {
    decoder: StreamDecoder,
    encoder: StreamEncoder,
    tenant: Arc<TenantEntry>,
    /// Whether the tenant's policy screens answers; if not, deltas pass at once (the stream
    /// is decoded only to keep the answer for the audit record).
    screen: bool,
    screeners: Vec<(u32, StreamScreener)>,
    events: Vec<StreamEvent>,
    text: String,
    answer: String,
}

impl ScreenedStream {
    pub fn new(
        kind: UpstreamKind,
        ingress: Ingress,
        options: EncoderOptions,
        tenant: Arc<TenantEntry>,
    ) -> Self {
        Self {
            decoder: StreamDecoder::new(kind, &options.id),
            encoder: StreamEncoder::new(ingress, options),
            screen: crate::proxy::screen::screens_answers(&tenant.policy),
            tenant,
            screeners: Vec::new(),
            events: Vec::with_capacity(8),
            text: String::new(),
            answer: String::new(),
        }
    }

    fn screener(&mut self, choice: u32) -> &mut StreamScreener {
        let position = match self
            .screeners
            .iter()
            .position(|(index, _)| *index == choice)
        {
            Some(position) => position,
            None => {
                let screener = StreamScreener::new(self.tenant.policy.clone(), Phase::Response);
                self.screeners.push((choice, screener));
                self.screeners.len() - 1
            }
        };
        &mut self.screeners[position].1
    }

    /// Flushes what choice's screener holds back, as a text delta.
    fn flush(&mut self, choice: u32, out: &mut Vec<u8>) -> Result<(), StreamFailure> {
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        let status = self.screener(choice).finish(&mut text);
        let result = self.emit_text(choice, status, &text, out);
        self.text = text;
        result
    }

    fn emit_text(
        &mut self,
        choice: u32,
        status: StreamStatus,
        text: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), StreamFailure> {
        if status == StreamStatus::Blocked {
            return Err(StreamFailure::Blocked);
        }
        if !text.is_empty() {
            let event = StreamEvent::TextDelta {
                choice,
                text: text.to_owned(),
            };
            self.encoder.encode(&event, out)?;
        }
        Ok(())
    }

    fn process(&mut self, out: &mut Vec<u8>) -> Result<(), StreamFailure> {
        let events = std::mem::take(&mut self.events);
        let mut result = Ok(());
        for event in &events {
            result = match event {
                StreamEvent::TextDelta { choice, text } => {
                    if *choice == 0 {
                        self.answer.push_str(text);
                    }
                    if !self.screen {
                        result = Ok(self.encoder.encode(event, out)?);
                        continue;
                    }
                    let mut screened = std::mem::take(&mut self.text);
                    screened.clear();
                    let status = self.screener(*choice).push(text, &mut screened);
                    let emitted = self.emit_text(*choice, status, &screened, out);
                    self.text = screened;
                    emitted
                }
                StreamEvent::Finish { choice, .. } => self
                    .flush(*choice, out)
                    .and_then(|()| Ok(self.encoder.encode(event, out)?)),
                StreamEvent::Done => {
                    let choices: Vec<u32> =
                        self.screeners.iter().map(|(index, _)| *index).collect();
                    choices
                        .into_iter()
                        .try_for_each(|choice| self.flush(choice, out))
                        .and_then(|()| Ok(self.encoder.encode(event, out)?))
                }
                other => Ok(self.encoder.encode(other, out)?),
            };
            if result.is_err() {
                break;
            }
        }
        let mut events = events;
        events.clear();
        self.events = events;
        result
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, (Bytes, StreamFailure)> {
        let mut out = Vec::new();
        let decoded = self.decoder.feed(chunk, &mut self.events);
        let processed = self.process(&mut out);
        match decoded.map_err(StreamFailure::from).and(processed) {
            Ok(()) => Ok(Bytes::from(out)),
            Err(failure) => Err((Bytes::from(out), failure)),
        }
    }

    fn finish(&mut self) -> Result<Bytes, (Bytes, StreamFailure)> {
        let mut out = Vec::new();
        let decoded = self.decoder.finish(&mut self.events);
        let processed = self.process(&mut out);
        match decoded.map_err(StreamFailure::from).and(processed) {
            Ok(()) => Ok(Bytes::from(out)),
            Err(failure) => Err((Bytes::from(out), failure)),
        }
    }

    /// What the screeners found so far.
    fn screening(&self) -> Screening {
        let mut screening = Screening::default();
        for (_, screener) in &self.screeners {
            screening.decision = screening.decision.max(screener.decision());
            for finding in screener.findings() {
                screening.add(&finding.rule_id, finding.action);
            }
        }
        screening
    }
}

/// How upstream stream bytes become client bytes.
#[derive(Debug)]
pub enum Converter {
    /// Same dialect: forwarded, usage sniffed.
    Native(UsageSniffer),
    /// Another dialect: decoded and re-encoded.
    Translated(Box<StreamTranscoder>),
    /// Decoded, screened by the policy, re-encoded (either dialect).
    Screened(Box<ScreenedStream>),
}

impl Converter {
    /// Client bytes for an upstream chunk; on failure, the bytes still owed before the error.
    fn feed(&mut self, chunk: Bytes) -> Result<Bytes, (Bytes, StreamFailure)> {
        match self {
            Self::Native(sniffer) => sniffer
                .feed(chunk)
                .map_err(|err| (Bytes::new(), err.into())),
            Self::Translated(transcoder) => transcoder
                .feed(&chunk)
                .map_err(|err| (Bytes::new(), err.into())),
            Self::Screened(screened) => screened.feed(&chunk),
        }
    }

    fn finish(&mut self) -> Result<Bytes, (Bytes, StreamFailure)> {
        match self {
            // An upstream error event already ended the stream for the client.
            Self::Native(sniffer) if !sniffer.is_complete() && sniffer.failure().is_none() => {
                Err((Bytes::new(), TranslateError::Truncated.into()))
            }
            Self::Native(sniffer) => Ok(sniffer.finish()),
            Self::Translated(transcoder) => transcoder
                .finish()
                .map_err(|err| (Bytes::new(), err.into())),
            Self::Screened(screened) => screened.finish(),
        }
    }

    /// The client's terminating error event (the same code and shape a non-streamed answer
    /// would carry), after any bytes a failed transcoding still owes.
    fn fail(&mut self, error: &ApiError, format: ApiFormat) -> Bytes {
        let event = error_event(error, format);
        let owed = match self {
            Self::Translated(transcoder) => transcoder.take_pending(),
            Self::Native(_) | Self::Screened(_) => Bytes::new(),
        };
        if owed.is_empty() {
            return event;
        }
        let mut out = Vec::with_capacity(owed.len() + event.len());
        out.extend_from_slice(&owed);
        out.extend_from_slice(&event);
        Bytes::from(out)
    }

    fn usage(&self) -> Option<flowgate_translate::Usage> {
        match self {
            Self::Native(sniffer) => sniffer.usage(),
            Self::Translated(transcoder) => transcoder.usage(),
            Self::Screened(screened) => screened.encoder.usage(),
        }
    }

    fn screening(&self) -> Option<Screening> {
        match self {
            Self::Screened(screened) => Some(screened.screening()),
            _ => None,
        }
    }
}

pub struct ClientStream {
    upstream: UpstreamBody,
    converter: Converter,
    context: RequestContext,
    finished: bool,
    /// HTTP status already sent; the log line reports a mid-stream failure separately.
    status: u16,
    /// The request's limits admission, settled from the reported usage when the stream ends.
    admission: Option<Admission>,
    /// Set at the first upstream chunk (time to first token).
    first_chunk: bool,
}

impl ClientStream {
    pub fn new(
        upstream: UpstreamBody,
        converter: Converter,
        context: RequestContext,
        status: u16,
        admission: Admission,
    ) -> Self {
        Self {
            upstream,
            converter,
            context,
            finished: false,
            status,
            admission: Some(admission),
            first_chunk: true,
        }
    }

    fn end(&mut self, error_code: Option<&str>) {
        self.finished = true;
        self.settle();
        self.context.log(self.status, error_code);
    }

    /// Settles the reservation with the reported usage, or keeps the reservation as the charge
    /// when the upstream reported none (the tokens were spent either way).
    fn settle(&mut self) {
        self.context.usage = self.converter.usage().map(to_usage);
        if let Converter::Screened(screened) = &self.converter {
            self.context.response_content = Some(crate::proxy::record::keep_content(
                &screened.tenant,
                &self.context.request_id,
                flowgate_audit::record::RecordKind::Completion,
                &screened.answer,
            ));
        }
        if let Some(screening) = self.converter.screening() {
            self.context.screening.merge(&screening);
        }
        if let Some(admission) = self.admission.take() {
            let actual = self
                .context
                .usage
                .map_or(admission.reserved_tokens(), |usage| usage.total());
            admission.settle(actual);
        }
    }

    /// Bytes owed to the client, then the terminating error event for `failure`.
    fn fail_after(&mut self, owed: &[u8], failure: &StreamFailure) -> Bytes {
        let error = match failure {
            StreamFailure::Translate(err) => ApiError::UpstreamInvalid {
                provider: self.context.provider().unwrap_or_default().to_owned(),
                detail: err.to_string(),
            },
            StreamFailure::Blocked => self
                .converter
                .screening()
                .unwrap_or_default()
                .violation(Phase::Response),
        };
        let event = self.fail(&error);
        if owed.is_empty() {
            return event;
        }
        let mut out = Vec::with_capacity(owed.len() + event.len());
        out.extend_from_slice(owed);
        out.extend_from_slice(&event);
        Bytes::from(out)
    }

    fn fail(&mut self, error: &ApiError) -> Bytes {
        tracing::warn!(request_id = %self.context.request_id, error = %error, "upstream stream failed");
        let event = self.converter.fail(error, self.context.format);
        self.end(Some(error.code()));
        event
    }
}

impl std::fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStream")
            .field("request_id", &self.context.request_id)
            .finish()
    }
}

impl Stream for ClientStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.upstream).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if this.first_chunk {
                        this.first_chunk = false;
                        let ttft = this.context.started.elapsed();
                        this.context.first_token = Some(ttft);
                        if let Some(provider) = this.context.provider() {
                            this.context.metrics().ttft(provider, ttft);
                        }
                    }
                    match this.converter.feed(chunk) {
                        Ok(bytes) if bytes.is_empty() => continue,
                        Ok(bytes) => return Poll::Ready(Some(Ok(bytes))),
                        Err((owed, failure)) => {
                            return Poll::Ready(Some(Ok(this.fail_after(&owed, &failure))));
                        }
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    let error = ApiError::from(err);
                    return Poll::Ready(Some(Ok(this.fail(&error))));
                }
                Poll::Ready(None) => match this.converter.finish() {
                    Ok(bytes) => {
                        this.end(None);
                        if bytes.is_empty() {
                            return Poll::Ready(None);
                        }
                        return Poll::Ready(Some(Ok(bytes)));
                    }
                    Err((owed, failure)) => {
                        return Poll::Ready(Some(Ok(this.fail_after(&owed, &failure))));
                    }
                },
            }
        }
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        if !self.finished {
            // The client went away mid-stream; the upstream call is cancelled with us.
            self.settle();
            self.context.log(499, Some("client_disconnected"));
        }
    }
}

/// A stream's terminating error event in the caller's dialect (same-dialect streams).
pub fn error_event(error: &ApiError, format: ApiFormat) -> Bytes {
    let body = error.body(format);
    let mut event = Vec::with_capacity(body.len() + 24);
    if format == ApiFormat::Anthropic {
        event.extend_from_slice(b"event: error\n");
    }
    event.extend_from_slice(b"data: ");
    event.extend_from_slice(&body);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}
