//! `UpstreamBody`: an upstream answer's body as a stream of byte chunks, with the idle limit
//! (longest silence between chunks) and the total deadline enforced while it streams.
//! Dropping it drops the upstream connection's body, which cancels the upstream call.

use crate::{TimeoutPhase, UpstreamError};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body::Body as _;
use hyper::body::Incoming;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

#[derive(Debug)]
pub struct UpstreamBody {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Http {
        incoming: Incoming,
        provider: String,
        idle: Duration,
        deadline: Instant,
        total: Duration,
        timer: Pin<Box<Sleep>>,
        done: bool,
    },
    Chunks(VecDeque<Bytes>),
}

impl UpstreamBody {
    pub(crate) fn http(
        incoming: Incoming,
        provider: String,
        idle: Duration,
        deadline: Instant,
        total: Duration,
    ) -> Self {
        let first_wake = (Instant::now() + idle).min(deadline);
        Self {
            inner: Inner::Http {
                incoming,
                provider,
                idle,
                deadline,
                total,
                timer: Box::pin(tokio::time::sleep_until(first_wake)),
                done: false,
            },
        }
    }

    /// A body already in memory (the mock provider, tests).
    pub fn from_chunks(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        Self {
            inner: Inner::Chunks(chunks.into_iter().collect()),
        }
    }

    /// Reads the whole body, refusing more than `limit` bytes.
    pub async fn collect(mut self, limit: usize, provider: &str) -> Result<Bytes, UpstreamError> {
        use futures_util::StreamExt as _;
        let mut first: Option<Bytes> = None;
        let mut buffer = BytesMut::new();
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            let total = first.as_ref().map_or(0, Bytes::len) + buffer.len() + chunk.len();
            if total > limit {
                return Err(UpstreamError::TooLarge {
                    provider: provider.to_owned(),
                    limit,
                });
            }
            match &first {
                None if buffer.is_empty() => first = Some(chunk),
                _ => {
                    if let Some(head) = first.take() {
                        buffer.extend_from_slice(&head);
                    }
                    buffer.extend_from_slice(&chunk);
                }
            }
        }
        Ok(match first {
            Some(only) => only,
            None => buffer.freeze(),
        })
    }
}

impl Stream for UpstreamBody {
    type Item = Result<Bytes, UpstreamError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.get_mut().inner {
            Inner::Chunks(chunks) => Poll::Ready(chunks.pop_front().map(Ok)),
            Inner::Http {
                incoming,
                provider,
                idle,
                deadline,
                total,
                timer,
                done,
            } => loop {
                if *done {
                    return Poll::Ready(None);
                }
                match Pin::new(&mut *incoming).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        let Ok(data) = frame.into_data() else {
                            continue; // trailers carry nothing we forward
                        };
                        if data.is_empty() {
                            continue;
                        }
                        let next_wake = (Instant::now() + *idle).min(*deadline);
                        timer.as_mut().reset(next_wake);
                        return Poll::Ready(Some(Ok(data)));
                    }
                    Poll::Ready(Some(Err(err))) => {
                        *done = true;
                        return Poll::Ready(Some(Err(UpstreamError::Broken {
                            provider: provider.clone(),
                            source: Box::new(err),
                        })));
                    }
                    Poll::Ready(None) => {
                        *done = true;
                        return Poll::Ready(None);
                    }
                    Poll::Pending => {
                        ready!(timer.as_mut().poll(cx));
                        *done = true;
                        let (phase, limit) = if Instant::now() >= *deadline {
                            (TimeoutPhase::Total, *total)
                        } else {
                            (TimeoutPhase::Idle, *idle)
                        };
                        return Poll::Ready(Some(Err(UpstreamError::Timeout {
                            provider: provider.clone(),
                            phase,
                            limit,
                        })));
                    }
                }
            },
        }
    }
}
