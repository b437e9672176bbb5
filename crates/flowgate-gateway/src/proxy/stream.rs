//! Streaming pass-through: forwards an upstream SSE body chunk by chunk as it arrives (no
//! buffering of the whole answer), notes the usage the upstream reports on the way, and turns
//! an upstream failure after the head was sent (reset, idle or total timeout) into a final
//! error event in the caller's dialect instead of a silent truncation or a hang. Dropping it
//! (client gone) drops the upstream body, which cancels the upstream call.

use crate::error::ApiError;
use crate::proxy::context::RequestContext;
use crate::proxy::usage::UsageSniffer;
use bytes::Bytes;
use flowgate_providers::UpstreamBody;
use flowgate_ratelimit::Admission;
use futures_util::Stream;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct PassThrough {
    upstream: UpstreamBody,
    context: RequestContext,
    sniffer: UsageSniffer,
    finished: bool,
    /// HTTP status already sent; the log line reports a mid-stream failure separately.
    status: u16,
    /// The request's limits admission, settled from the sniffed usage when the stream ends.
    admission: Option<Admission>,
}

impl PassThrough {
    pub fn new(
        upstream: UpstreamBody,
        context: RequestContext,
        status: u16,
        admission: Admission,
    ) -> Self {
        Self {
            upstream,
            context,
            sniffer: UsageSniffer::default(),
            finished: false,
            status,
            admission: Some(admission),
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
        self.context.usage = self.sniffer.usage();
        if let Some(admission) = self.admission.take() {
            let actual = self
                .context
                .usage
                .map_or(admission.reserved_tokens(), |usage| usage.total());
            admission.settle(actual);
        }
    }
}

impl std::fmt::Debug for PassThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassThrough")
            .field("request_id", &self.context.request_id)
            .finish()
    }
}

impl Stream for PassThrough {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.upstream).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                this.sniffer.feed(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(err))) => {
                let error = ApiError::from(err);
                let event = error_event(&error, this.context.format);
                tracing::warn!(request_id = %this.context.request_id, error = %error, "upstream stream failed");
                this.end(Some(error.code()));
                Poll::Ready(Some(Ok(event)))
            }
            Poll::Ready(None) => {
                this.end(None);
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for PassThrough {
    fn drop(&mut self) {
        if !self.finished {
            // The client went away mid-stream; the upstream call is cancelled with us.
            self.settle();
            self.context.log(499, Some("client_disconnected"));
        }
    }
}

/// The terminating error event of a stream, in the caller's dialect.
pub fn error_event(error: &ApiError, format: flowgate_types::ApiFormat) -> Bytes {
    let body = error.body(format);
    let mut event = Vec::with_capacity(body.len() + 24);
    if format == flowgate_types::ApiFormat::Anthropic {
        event.extend_from_slice(b"event: error\n");
    }
    event.extend_from_slice(b"data: ");
    event.extend_from_slice(&body);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}
