//! Criterion benchmarks of the translation path: a typical ~2 KiB request and a typical
//! answer, OpenAI -> Anthropic and back, and a 200-chunk stream transcoded both ways.
//!
//! Run: `cargo bench -p flowgate-translate --bench translate`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowgate_translate::ir::{Ingress, UpstreamKind};
use flowgate_translate::stream::{EncoderOptions, StreamTranscoder};
use flowgate_translate::{decode_response, encode_request, encode_response, parse_request};

fn openai_request() -> Vec<u8> {
    let filler = "Please review the following paragraph for tone and clarity. ".repeat(25);
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a careful assistant that answers concisely."},
            {"role": "user", "content": filler},
            {"role": "assistant", "content": "Sure. Which aspects matter most to you?"},
            {"role": "user", "content": "Clarity first, then tone. Also check the weather in Paris."}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}],
        "temperature": 0.7,
        "max_tokens": 512,
        "stream": false
    }))
    .expect("static JSON")
}

fn anthropic_request() -> Vec<u8> {
    let filler = "Please review the following paragraph for tone and clarity. ".repeat(25);
    serde_json::to_vec(&serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "system": "You are a careful assistant that answers concisely.",
        "messages": [
            {"role": "user", "content": filler},
            {"role": "assistant", "content": "Sure. Which aspects matter most to you?"},
            {"role": "user", "content": "Clarity first, then tone. Also check the weather in Paris."}
        ],
        "tools": [{"name": "get_weather", "description": "Current weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        "temperature": 0.7
    }))
    .expect("static JSON")
}

fn anthropic_answer() -> Vec<u8> {
    let text = "The paragraph reads clearly; consider shortening the second sentence. ".repeat(6);
    serde_json::to_vec(&serde_json::json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 812, "output_tokens": 96, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    }))
    .expect("static JSON")
}

fn openai_answer() -> Vec<u8> {
    let text = "The paragraph reads clearly; consider shortening the second sentence. ".repeat(6);
    serde_json::to_vec(&serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1731000000, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 812, "completion_tokens": 96, "total_tokens": 908}
    }))
    .expect("static JSON")
}

fn openai_stream(chunks: usize) -> Vec<u8> {
    let mut out = String::new();
    out.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n");
    for index in 0..chunks {
        out.push_str(&format!("data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{index}\"}},\"finish_reason\":null}}]}}\n\n"));
    }
    out.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    out.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":812,\"completion_tokens\":200,\"total_tokens\":1012}}\n\ndata: [DONE]\n\n");
    out.into_bytes()
}

fn anthropic_stream(chunks: usize) -> Vec<u8> {
    let mut out = String::new();
    out.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":812,\"output_tokens\":1}}}\n\n");
    out.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for index in 0..chunks {
        out.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" word{index}\"}}}}\n\n"));
    }
    out.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":200}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    out.into_bytes()
}

fn options() -> EncoderOptions {
    EncoderOptions {
        model: "client-model".to_owned(),
        id: "gw-1".to_owned(),
        created: 1_731_000_000,
        include_usage: true,
        estimated_input_tokens: None,
    }
}

/// Feeds the stream in network-sized pieces (events split across chunk boundaries).
fn transcode(ingress: Ingress, kind: UpstreamKind, stream: &[u8]) -> usize {
    let mut transcoder = StreamTranscoder::new(ingress, kind, options());
    let mut produced = 0;
    for chunk in stream.chunks(1400) {
        produced += transcoder.feed(chunk).map_or(0, |bytes| bytes.len());
    }
    produced + transcoder.finish().map_or(0, |bytes| bytes.len())
}

fn requests(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("request");
    let openai = openai_request();
    let anthropic = anthropic_request();
    group.throughput(Throughput::Bytes(openai.len() as u64));
    group.bench_function("openai_to_anthropic", |bencher| {
        bencher.iter(|| {
            let request = parse_request(Ingress::OpenAi, black_box(&openai)).expect("parse");
            encode_request(UpstreamKind::Anthropic, &request, "claude-sonnet-4-5").expect("encode")
        });
    });
    group.bench_function("anthropic_to_openai", |bencher| {
        bencher.iter(|| {
            let request = parse_request(Ingress::Anthropic, black_box(&anthropic)).expect("parse");
            encode_request(UpstreamKind::OpenAi, &request, "gpt-4o").expect("encode")
        });
    });
    group.bench_function("passthrough_model_rewrite", |bencher| {
        bencher.iter(|| {
            flowgate_translate::passthrough::rewrite_model(black_box(&openai), "gpt-4o-2024-08-06")
                .expect("scan")
        });
    });
    group.finish();
}

fn responses(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("response");
    let anthropic = anthropic_answer();
    let openai = openai_answer();
    group.bench_function("anthropic_to_openai", |bencher| {
        bencher.iter(|| {
            let answer =
                decode_response(UpstreamKind::Anthropic, black_box(&anthropic)).expect("decode");
            encode_response(Ingress::OpenAi, &answer, "client-model").expect("encode")
        });
    });
    group.bench_function("openai_to_anthropic", |bencher| {
        bencher.iter(|| {
            let answer = decode_response(UpstreamKind::OpenAi, black_box(&openai)).expect("decode");
            encode_response(Ingress::Anthropic, &answer, "client-model").expect("encode")
        });
    });
    group.finish();
}

fn streams(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("stream_200_chunks");
    let openai = openai_stream(200);
    let anthropic = anthropic_stream(200);
    group.throughput(Throughput::Elements(200));
    group.bench_function("openai_upstream_to_anthropic_client", |bencher| {
        bencher.iter(|| transcode(Ingress::Anthropic, UpstreamKind::OpenAi, black_box(&openai)));
    });
    group.bench_function("anthropic_upstream_to_openai_client", |bencher| {
        bencher.iter(|| {
            transcode(
                Ingress::OpenAi,
                UpstreamKind::Anthropic,
                black_box(&anthropic),
            )
        });
    });
    group.finish();
}

criterion_group!(benches, requests, responses, streams);
criterion_main!(benches);
