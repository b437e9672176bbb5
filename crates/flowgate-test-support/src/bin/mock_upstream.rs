//! `flowgate-mock-upstream`: a fast OpenAI-compatible upstream for benchmarks and the SDK
//! tests. Answers `/v1/chat/completions` with a fixed completion (or an SSE stream when the
//! body asks for `"stream": true`; a `get_weather` tool call, whole or streamed with its
//! arguments split across chunks, when the body declares `"tools"`) and `/v1/embeddings` with
//! a fixed vector, with no per-request parsing beyond spotting those flags, so the measured
//! cost is the gateway's.

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

const TOOL_CALL: &str = r#"{"id":"chatcmpl-tool","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_weather_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42}}"#;

fn tool_stream_body() -> Bytes {
    let head = "data: {\"id\":\"chatcmpl-tool\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,";
    let mut text = String::new();
    text.push_str(head);
    text.push_str("\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_weather_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n");
    for piece in ["{\\\"city\\\":", "\\\"Paris\\\"}"] {
        text.push_str(head);
        text.push_str(&format!("\"delta\":{{\"tool_calls\":[{{\"index\":0,\"function\":{{\"arguments\":\"{piece}\"}}}}]}},\"finish_reason\":null}}]}}\n\n"));
    }
    text.push_str(head);
    text.push_str("\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n");
    text.push_str("data: {\"id\":\"chatcmpl-tool\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":12,\"total_tokens\":42}}\n\n");
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
    let tools = contains(&body, b"\"tools\"");
    let (content_type, payload) = match (streaming, tools) {
        (true, false) => ("text/event-stream", stream_body()),
        (true, true) => ("text/event-stream", tool_stream_body()),
        (false, false) => (
            "application/json",
            Bytes::from_static(COMPLETION.as_bytes()),
        ),
        (false, true) => ("application/json", Bytes::from_static(TOOL_CALL.as_bytes())),
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
