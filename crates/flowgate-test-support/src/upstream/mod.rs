//! `MockUpstream`: an axum server on 127.0.0.1:0 that speaks every provider wire format the
//! gateway calls (`WireFormat`): OpenAI `/v1/chat/completions` and `/v1/embeddings`, Azure
//! OpenAI `/openai/deployments/{deployment}/...`, Anthropic `/v1/messages`, Gemini
//! `/v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`, Ollama
//! `/api/chat`. Answers are deterministic functions of the request (`wire::reply_for`). A
//! queue of `Behaviour`s scripts the next answers (errors, stalls, slow or broken streams) in
//! whichever format the request is; with an empty queue it answers normally. It records every
//! request and counts streams the client abandoned. Request reading lives in `wire`, answer
//! rendering in `render`.

mod render;
pub mod wire;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use flowgate_providers::mock;
use futures_util::Stream;
use http::{HeaderMap, StatusCode};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_util_shim::CancelOnDrop;

use render::Rendered;
use wire::{Endpoint, route};
pub use wire::{MockReply, ReplyContent, WireFormat};

/// How the mock answers one request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// A normal answer in the request's format (JSON, or a stream when the request asks for
    /// one), with this delay between stream chunks.
    Normal { chunk_delay: Duration },
    /// This status and body, optionally with `Retry-After`.
    Status {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// Wait this long before sending the response head.
    StallBeforeHead(Duration),
    /// Send these raw stream chunks (SSE events, or NDJSON lines for Ollama) with a delay
    /// between them, with the format's stream content type.
    Chunks {
        chunks: Vec<String>,
        delay: Duration,
    },
    /// Send the first `after` chunks of a normal stream, then go silent forever.
    StallMidStream { after: usize },
    /// Send the first `after` chunks of a normal stream, then break the connection.
    ResetMidStream { after: usize },
    /// Send the first `after` chunks of a normal stream, then the format's in-stream error
    /// event (`WireFormat::stream_error_chunk` with this status and the message
    /// `MID_STREAM_ERROR_MESSAGE`), then end the stream.
    ErrorMidStream { after: usize, status: u16 },
}

/// The message of the error event `Behaviour::ErrorMidStream` sends.
pub const MID_STREAM_ERROR_MESSAGE: &str = "mock upstream failed mid-stream";

impl Behaviour {
    /// `status` with a body in `format`'s error shape (`WireFormat::error_body`) whose message
    /// is `error_message(status)`.
    pub fn error(format: WireFormat, status: u16) -> Self {
        Self::Status {
            status,
            body: format.error_body(status, &error_message(status)),
            retry_after: None,
        }
    }

    /// Like `error`, with a `Retry-After` header.
    pub fn error_with_retry_after(format: WireFormat, status: u16, retry_after: &str) -> Self {
        Self::Status {
            status,
            body: format.error_body(status, &error_message(status)),
            retry_after: Some(retry_after.to_owned()),
        }
    }
}

/// The message of the error bodies `Behaviour::error` builds.
pub fn error_message(status: u16) -> String {
    format!("mock upstream error {status}")
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The path with its query, if any (`/v1beta/models/m:streamGenerateContent?alt=sse`).
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `MockUpstream::report_cached_tokens` when the request arrived.
    cached_tokens: u64,
}

impl RecordedRequest {
    /// The path without its query.
    pub fn path_only(&self) -> &str {
        self.path
            .split_once('?')
            .map_or(&self.path, |(path, _)| path)
    }

    /// The value of query parameter `name` (`api-version`, `alt`).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        wire::query_param(&self.path, name)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The wire format the path is in (`None` for embeddings).
    pub fn format(&self) -> Option<WireFormat> {
        match route(self.path_only()) {
            Some((format, Endpoint::Chat)) => Some(format),
            _ => None,
        }
    }

    /// What the mock answered (or, when a `Behaviour` replaced the answer, would have
    /// answered) to this chat request: text or tool call, and the usage it reported. `None`
    /// for embeddings and for bodies the mock refused with a 400.
    pub fn reply(&self) -> Option<MockReply> {
        wire::reply_for(self.format()?, &self.path, &self.body)
            .ok()
            .map(|reply| reply.with_cached_tokens(self.cached_tokens))
    }
}

#[derive(Debug, Default)]
struct Shared {
    script: Mutex<VecDeque<Behaviour>>,
    requests: Mutex<Vec<RecordedRequest>>,
    abandoned_streams: AtomicUsize,
    completed_streams: AtomicUsize,
    cached_tokens: AtomicU64,
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
            .fallback(handle)
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

    /// The provider `base_url` for `format`: `http://ADDR/v1` (OpenAI, Anthropic),
    /// `http://ADDR/v1beta` (Gemini), `http://ADDR` (Azure OpenAI, Ollama).
    pub fn base_url_for(&self, format: WireFormat) -> String {
        format!("http://{}{}", self.addr, format.base_path())
    }

    /// A `[[providers]]` section of the gateway configuration named `name` that calls this
    /// mock in `format` (`kind`, `base_url_for(format)`, and for Azure `api_version =
    /// AZURE_API_VERSION`), with the test harness's timeouts (first byte 2 s, idle 1 s,
    /// total 10 s) and no retries.
    pub fn provider_toml(&self, format: WireFormat, name: &str) -> String {
        let api_version = match format {
            WireFormat::AzureOpenAi => format!("api_version = \"{}\"\n", wire::AZURE_API_VERSION),
            _ => String::new(),
        };
        format!(
            "[[providers]]\nname = \"{name}\"\nkind = \"{kind}\"\nbase_url = \"{base_url}\"\n\
             {api_version}first_byte_timeout_ms = 2000\nidle_timeout_ms = 1000\n\
             total_timeout_ms = 10000\nmax_retries = 0\n",
            kind = format.config_kind(),
            base_url = self.base_url_for(format),
        )
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

    /// Makes later answers report `tokens` of their prompt as served from the provider's
    /// cache (`MockReply::cached_tokens`); 0 (the default) reports none.
    pub fn report_cached_tokens(&self, tokens: u64) {
        self.shared.cached_tokens.store(tokens, Ordering::SeqCst);
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .ok()
            .and_then(|requests| requests.last().cloned())
    }

    /// The reply to the last request (`RecordedRequest::reply`): what the mock answered, or
    /// would have answered had a `Behaviour` not replaced it.
    pub fn last_reply(&self) -> Option<MockReply> {
        self.last_request()?.reply()
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
    let Some((format, endpoint)) = route(parts.uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if parts.method != http::Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let body = match http_body_util::BodyExt::collect(body).await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let path = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_owned(),
        |value| value.as_str().to_owned(),
    );
    let cached_tokens = shared.cached_tokens.load(Ordering::SeqCst);
    if let Ok(mut requests) = shared.requests.lock() {
        requests.push(RecordedRequest {
            path: path.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
            cached_tokens,
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
    let normal = || -> Result<Rendered, String> {
        match endpoint {
            Endpoint::Embeddings => {
                let model = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|value| {
                        value
                            .get("model")
                            .and_then(|m| m.as_str())
                            .map(str::to_owned)
                    })
                    .or_else(|| wire::azure_deployment(&path).map(str::to_owned))
                    .unwrap_or_default();
                mock::embeddings(&body, &model).map(Rendered::Json)
            }
            Endpoint::Chat => render::chat(format, &path, &body, cached_tokens),
        }
    };
    let reply = Reply {
        format,
        shared: &shared,
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
            reply.answer(normal(), Duration::ZERO, None)
        }
        Behaviour::Normal { chunk_delay } => reply.answer(normal(), chunk_delay, None),
        Behaviour::Chunks { chunks, delay } => {
            reply.stream(chunks.into_iter().map(Bytes::from).collect(), delay, None)
        }
        Behaviour::StallMidStream { after } => {
            reply.answer(normal(), CUT_DELAY, Some((after, Ending::Stall)))
        }
        Behaviour::ResetMidStream { after } => {
            reply.answer(normal(), CUT_DELAY, Some((after, Ending::Reset)))
        }
        Behaviour::ErrorMidStream { after, status } => {
            let event = Bytes::from(format.stream_error_chunk(status, MID_STREAM_ERROR_MESSAGE));
            reply.answer(normal(), CUT_DELAY, Some((after, Ending::Error(event))))
        }
    }
}

/// Chunk spacing of broken streams, so the head and first chunks are on the wire before the
/// failure.
const CUT_DELAY: Duration = Duration::from_millis(30);

/// How a scripted stream stops early.
#[derive(Debug, Clone)]
enum Ending {
    Stall,
    Reset,
    /// Send this error event, then end.
    Error(Bytes),
}

/// Builds responses for one request of `format`.
struct Reply<'a> {
    format: WireFormat,
    shared: &'a Arc<Shared>,
}

impl Reply<'_> {
    fn answer(
        &self,
        result: Result<Rendered, String>,
        delay: Duration,
        cut: Option<(usize, Ending)>,
    ) -> Response {
        match result {
            Ok(Rendered::Json(json)) => {
                let mut response = Response::new(Body::from(json));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                response
            }
            Ok(Rendered::Stream(chunks)) => self.stream(chunks, delay, cut),
            Err(message) => {
                let mut response = (
                    StatusCode::BAD_REQUEST,
                    self.format.error_body(400, &message),
                )
                    .into_response();
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                response
            }
        }
    }

    fn stream(
        &self,
        chunks: Vec<Bytes>,
        delay: Duration,
        cut: Option<(usize, Ending)>,
    ) -> Response {
        let stream = ScriptedStream {
            chunks: chunks.into(),
            delay,
            cut,
            sent: 0,
            sleep: None,
            shared: Arc::clone(self.shared),
            finished: false,
        };
        let mut response = Response::new(Body::from_stream(stream));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(self.format.stream_content_type()),
        );
        response
    }
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
        if let Some((after, ending)) = &this.cut
            && this.sent >= *after
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
                Ending::Error(event) => {
                    // The error event is the last chunk; the stream then ends normally.
                    let event = event.clone();
                    this.chunks.clear();
                    this.cut = None;
                    this.sent += 1;
                    Poll::Ready(Some(Ok(event)))
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
