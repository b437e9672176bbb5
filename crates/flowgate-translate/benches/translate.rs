//! Criterion benchmarks of the translation path: a typical ~2 KiB request and a typical
//! answer, OpenAI -> Anthropic and back, and a 200-chunk stream transcoded both ways.
//!
//! Run: `cargo bench -p flowgate-translate --bench translate`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowgate_translate::ir::{Ingress, UpstreamKind};
use flowgate_translate::{decode_response, encode_request, encode_response, parse_request};

mod fixtures;
use fixtures::*;

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
