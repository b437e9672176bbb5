//! CPU time per operation, read from `/proc/thread-self/stat` (Linux), for figures that stay
//! meaningful on a busy shared machine where criterion's wall-clock times include waiting for
//! the CPU. Same inputs as `benches/translate.rs`.
//!
//! Run: `cargo bench -p flowgate-translate --bench cpu_time`.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
use flowgate_translate::ir::{Ingress, UpstreamKind};
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

mod fixtures;
use fixtures::*;

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
