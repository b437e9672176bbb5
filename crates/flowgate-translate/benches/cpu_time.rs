//! CPU time per operation, read from `/proc/thread-self/stat` (Linux), for figures that stay
//! meaningful on a busy shared machine where criterion's wall-clock times include waiting for
//! the CPU. Same inputs as `benches/translate.rs`.
//!
//! Run: `cargo bench -p flowgate-translate --bench cpu_time`.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
use flowgate_translate::ir::{Ingress, UpstreamKind};
use flowgate_translate::stream::{EncoderOptions, StreamTranscoder};
use flowgate_translate::{decode_response, encode_request, encode_response, parse_request};
use std::hint::black_box;

fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields[11].parse().unwrap();
    let stime: f64 = fields[12].parse().unwrap();
    (utime + stime) / 100.0
}

fn measure(name: &str, mut f: impl FnMut()) {
    for _ in 0..2000 {
        f();
    }
    let mut iterations = 0u64;
    let start = thread_cpu_seconds();
    let wall = std::time::Instant::now();
    while wall.elapsed().as_secs_f64() < 6.0 {
        for _ in 0..100 {
            f();
        }
        iterations += 100;
    }
    let cpu = thread_cpu_seconds() - start;
    println!(
        "{name}: {:.2} us CPU per iteration ({iterations} iterations, {:.2} s CPU)",
        cpu * 1e6 / iterations as f64,
        cpu
    );
}

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

fn main() {
    let openai = openai_request();
    let anthropic = anthropic_request();
    println!(
        "request sizes: openai {} B, anthropic {} B",
        openai.len(),
        anthropic.len()
    );
    measure("request openai->anthropic", || {
        let r = parse_request(Ingress::OpenAi, black_box(&openai)).unwrap();
        black_box(encode_request(UpstreamKind::Anthropic, &r, "claude").unwrap());
    });
    measure("request anthropic->openai", || {
        let r = parse_request(Ingress::Anthropic, black_box(&anthropic)).unwrap();
        black_box(encode_request(UpstreamKind::OpenAi, &r, "gpt-4o").unwrap());
    });
    measure("passthrough model rewrite", || {
        black_box(
            flowgate_translate::passthrough::rewrite_model(black_box(&openai), "gpt-4o-2024-08-06")
                .unwrap(),
        );
    });
    let a = anthropic_answer();
    let o = openai_answer();
    println!(
        "answer sizes: anthropic {} B, openai {} B",
        a.len(),
        o.len()
    );
    measure("response anthropic->openai", || {
        let r = decode_response(UpstreamKind::Anthropic, black_box(&a)).unwrap();
        black_box(encode_response(Ingress::OpenAi, &r, "m").unwrap());
    });
    measure("response openai->anthropic", || {
        let r = decode_response(UpstreamKind::OpenAi, black_box(&o)).unwrap();
        black_box(encode_response(Ingress::Anthropic, &r, "m").unwrap());
    });
    let os = openai_stream(200);
    let as_ = anthropic_stream(200);
    measure("stream 200 chunks openai->anthropic client", || {
        black_box(transcode(
            Ingress::Anthropic,
            UpstreamKind::OpenAi,
            black_box(&os),
        ));
    });
    measure("stream 200 chunks anthropic->openai client", || {
        black_box(transcode(
            Ingress::OpenAi,
            UpstreamKind::Anthropic,
            black_box(&as_),
        ));
    });
    measure(
        "stream 200 chunks openai->openai (IR, screener path)",
        || {
            black_box(transcode(
                Ingress::OpenAi,
                UpstreamKind::OpenAi,
                black_box(&os),
            ));
        },
    );
    measure("sniffer 200 chunks openai pass-through", || {
        let mut s = flowgate_translate::passthrough::UsageSniffer::new(Ingress::OpenAi, false);
        for c in os.chunks(1400) {
            black_box(s.feed(bytes::Bytes::copy_from_slice(c)).unwrap());
        }
    });
}
