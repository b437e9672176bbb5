//! `MockUpstream`: an axum server on 127.0.0.1:0 answering `/v1/chat/completions` and
//! `/v1/embeddings` like an OpenAI-compatible provider. A queue of `Behaviour`s scripts the
//! next answers (errors, stalls, slow or broken streams); with an empty queue it answers
//! normally. It records every request and counts streams the client abandoned.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flowgate_providers::mock::{self, MockAnswer};
use futures_util::Stream;
use http::{HeaderMap, StatusCode};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_util_shim::CancelOnDrop;

/// How the mock answers one request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// A normal answer (JSON, or an SSE stream when the request asks for one), with this delay
    /// between stream chunks.
    Normal { chunk_delay: Duration },
    /// This status and body, optionally with `Retry-After`.
    Status {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// Wait this long before sending the response head.
    StallBeforeHead(Duration),
    /// Send these raw SSE chunks with a delay between them.
    Chunks {
        chunks: Vec<String>,
        delay: Duration,
    },
    /// Send the first `after` chunks of a normal stream, then go silent forever.
    StallMidStream { after: usize },
    /// Send the first `after` chunks of a normal stream, then break the connection.
    ResetMidStream { after: usize },
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Debug, Default)]
struct Shared {
    script: Mutex<VecDeque<Behaviour>>,
    requests: Mutex<Vec<RecordedRequest>>,
    abandoned_streams: AtomicUsize,
    completed_streams: AtomicUsize,
}

#[derive(Debug)]
pub struct MockUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancelOnDrop,
}

mod tokio_util_shim {
    //! Stops the server task when the mock is dropped.
    #[derive(Debug)]
    pub struct CancelOnDrop(pub tokio::task::JoinHandle<()>);

    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
}

impl MockUpstream {
    pub async fn start() -> anyhow::Result<Self> {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .route("/v1/embeddings", post(handle))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            shared,
            stop: CancelOnDrop(task),
        })
    }

    /// The OpenAI base URL of this mock (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Scripts the next answer (answers are consumed in order).
    pub fn push(&self, behaviour: Behaviour) {
        if let Ok(mut script) = self.shared.script.lock() {
            script.push_back(behaviour);
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .map(|requests| requests.clone())
            .unwrap_or_default()
    }

    pub fn request_count(&self) -> usize {
        self.shared
            .requests
            .lock()
            .map(|requests| requests.len())
            .unwrap_or(0)
    }

    /// Streams whose client went away before the end.
    pub fn abandoned_streams(&self) -> usize {
        self.shared.abandoned_streams.load(Ordering::SeqCst)
    }

    pub fn completed_streams(&self) -> usize {
        self.shared.completed_streams.load(Ordering::SeqCst)
    }

    pub fn stop(self) {
        drop(self.stop);
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match http_body_util::BodyExt::collect(body).await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let path = parts.uri.path().to_owned();
    if let Ok(mut requests) = shared.requests.lock() {
        requests.push(RecordedRequest {
            path: path.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
    }
    let behaviour = shared
        .script
        .lock()
        .ok()
        .and_then(|mut script| script.pop_front())
        .unwrap_or(Behaviour::Normal {
            chunk_delay: Duration::ZERO,
        });
    let model = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| {
            value
                .get("model")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let normal = || -> Result<MockAnswer, String> {
        if path.ends_with("/embeddings") {
            mock::embeddings(&body, &model).map(MockAnswer::Json)
        } else {
            mock::chat(&body, &model, "req_upstream")
        }
    };
    match behaviour {
        Behaviour::Status {
            status,
            body,
            retry_after,
        } => {
            let mut response = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body,
            )
                .into_response();
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            if let Some(value) =
                retry_after.and_then(|value| http::HeaderValue::from_str(&value).ok())
            {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
            response
        }
        Behaviour::StallBeforeHead(delay) => {
            tokio::time::sleep(delay).await;
            answer(normal(), Duration::ZERO, None, &shared)
        }
        Behaviour::Normal { chunk_delay } => answer(normal(), chunk_delay, None, &shared),
        Behaviour::Chunks { chunks, delay } => sse(
            chunks.into_iter().map(Bytes::from).collect(),
            delay,
            None,
            &shared,
        ),
        Behaviour::StallMidStream { after } => {
            answer(normal(), CUT_DELAY, Some((after, Ending::Stall)), &shared)
        }
        Behaviour::ResetMidStream { after } => {
            answer(normal(), CUT_DELAY, Some((after, Ending::Reset)), &shared)
        }
    }
}

/// Chunk spacing of broken streams, so the head and first chunks are on the wire before the
/// failure.
const CUT_DELAY: Duration = Duration::from_millis(30);

#[derive(Debug, Clone, Copy)]
enum Ending {
    Stall,
    Reset,
}

fn answer(
    result: Result<MockAnswer, String>,
    delay: Duration,
    cut: Option<(usize, Ending)>,
    shared: &Arc<Shared>,
) -> Response {
    match result {
        Ok(MockAnswer::Json(json)) => {
            let mut response = Response::new(Body::from(json));
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
            response
        }
        Ok(MockAnswer::Stream(chunks)) => sse(chunks, delay, cut, shared),
        Err(message) => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}).to_string(),
        )
            .into_response(),
    }
}

fn sse(
    chunks: Vec<Bytes>,
    delay: Duration,
    cut: Option<(usize, Ending)>,
    shared: &Arc<Shared>,
) -> Response {
    let stream = ScriptedStream {
        chunks: chunks.into(),
        delay,
        cut,
        sent: 0,
        sleep: None,
        shared: Arc::clone(shared),
        finished: false,
    };
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

struct ScriptedStream {
    chunks: VecDeque<Bytes>,
    delay: Duration,
    cut: Option<(usize, Ending)>,
    sent: usize,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    shared: Arc<Shared>,
    finished: bool,
}

impl Stream for ScriptedStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.sent > 0 && !this.delay.is_zero() {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        if let Some((after, ending)) = this.cut
            && this.sent >= after
        {
            return match ending {
                Ending::Stall => Poll::Pending,
                Ending::Reset => {
                    this.finished = true;
                    Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "scripted reset",
                    ))))
                }
            };
        }
        match this.chunks.pop_front() {
            Some(chunk) => {
                this.sent += 1;
                Poll::Ready(Some(Ok(chunk)))
            }
            None => {
                if !this.finished {
                    this.finished = true;
                    this.shared.completed_streams.fetch_add(1, Ordering::SeqCst);
                }
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for ScriptedStream {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.abandoned_streams.fetch_add(1, Ordering::SeqCst);
        }
    }
}
