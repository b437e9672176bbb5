//! `flowgate-mock-upstream`: a fast OpenAI-compatible upstream for benchmarks. Answers
//! `/v1/chat/completions` with a fixed completion (or an SSE stream when the body asks for
//! `"stream": true`) and `/v1/embeddings` with a fixed vector, with no per-request parsing
//! beyond spotting the stream flag, so the measured cost is the gateway's.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use axum::routing::post;
use clap::Parser;
use http::header::{CONTENT_TYPE, HeaderValue};
use http_body_util::BodyExt as _;
use std::net::SocketAddr;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Worker threads of the runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"The capital of France is Paris. It has been the country's political and cultural centre for centuries."},"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":21,"total_tokens":47}}"#;
const EMBEDDING: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3,0.4]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":4,"total_tokens":4}}"#;

fn stream_body() -> Bytes {
    let mut text = String::new();
    let words = ["The", " capital", " of", " France", " is", " Paris", "."];
    text.push_str("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n");
    for word in words {
        text.push_str(&format!("data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"finish_reason\":null}}]}}\n\n"));
    }
    text.push_str("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    text.push_str("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":26,\"completion_tokens\":7,\"total_tokens\":33}}\n\n");
    text.push_str("data: [DONE]\n\n");
    Bytes::from(text)
}

async fn chat(request: Request) -> Response {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let streaming = contains(&body, b"\"stream\":true") || contains(&body, b"\"stream\": true");
    let (content_type, payload) = if streaming {
        ("text/event-stream", stream_body())
    } else {
        (
            "application/json",
            Bytes::from_static(COMPLETION.as_bytes()),
        )
    };
    let mut response = Response::new(Body::from(payload));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

async fn embeddings(request: Request) -> Response {
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Body::from(EMBEDDING));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings));
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        use axum::serve::ListenerExt as _;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await?;
        Ok(())
    })
}
