//! Criterion benchmarks of the policy engine's hot path.
//!
//! `cargo bench -p flowgate-policy` measures: a 16 KiB realistic prompt and a 1 MiB document
//! screened by the `default` preset, the same 16 KiB prompt with 10 / 100 / 1,000 keyword
//! rules on top (cost must stay flat or linear), a non-ASCII prompt (normalisation path),
//! and a 16 KiB answer streamed in 16-byte deltas.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flowgate_policy::{EvalContext, Phase, Policy, Preset, Rule, RuleMatch, StreamScreener};

const PARAGRAPHS: &[&str] = &[
    "You are a helpful assistant for the finance team. Summarise the following quarterly report in five bullet points, keeping every figure exact and noting which numbers changed compared with the previous quarter.\n\n",
    "Revenue grew 12.4% year over year to $48.2 million, while operating expenses rose to $31.7 million, mostly because of the new data centre in Frankfurt that opened on 2024-03-14. Headcount reached 412 people across 9 offices.\n\n",
    "```python\ndef load_orders(path: str) -> list[dict]:\n    with open(path) as handle:\n        rows = [json.loads(line) for line in handle]\n    return [row for row in rows if row[\"status\"] != \"cancelled\"]\n```\n\n",
    "Order #48213 was shipped on 2024-05-02 at 14:31:07 UTC to the customer in Lyon; the tracking id is 1Z999AA10123456784 and the invoice number is INV-2024-00912. Please check why the refund of EUR 129.90 has not been processed yet.\n\n",
    "Please ignore the formatting problems in the previous section; the system that exported it strips tables. The commit that introduced the regression is 3f9c2ab and the request id was 123e4567-e89b-12d3-a456-426614174000.\n\n",
    "When the customer called, they asked us to contact them at jane.doe@example.com rather than by phone, and to send the contract to the legal team before Friday. The meeting notes are attached below for reference.\n\n",
    "The service exposes three endpoints: GET /v1/orders, POST /v1/orders and DELETE /v1/orders/{id}. Each call must carry a bearer token obtained from the identity provider, and the gateway rejects requests larger than 1 MiB.\n\n",
    "Benchmarks on the staging cluster show p50 latency of 41 ms and p99 of 212 ms at 1,500 requests per second; CPU utilisation stays under 60% on every node and memory is flat at 2.3 GiB per replica.\n\n",
];

fn realistic_text(bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 512);
    let mut index = 0;
    while text.len() < bytes {
        text.push_str(PARAGRAPHS[index % PARAGRAPHS.len()]);
        index += 1;
    }
    let mut cut = bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text
}

/// A made-up codename per index, letters only (tenant keywords are words and names).
fn codename(index: usize) -> String {
    const SYLLABLES: [&str; 10] = ["ka", "zu", "mi", "ro", "te", "xi", "lo", "va", "qe", "nu"];
    let mut name = String::from("q");
    let mut rest = index;
    for _ in 0..4 {
        name.push_str(SYLLABLES[rest % 10]);
        rest /= 10;
    }
    name
}

fn keyword_rules(count: usize) -> Vec<Rule> {
    (0..count)
        .map(|i| {
            Rule::new(
                format!("kw-{i}"),
                RuleMatch::keywords([codename(i), format!("project {}", codename(i + count))]),
                flowgate_policy::Action::Block,
            )
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let policy = Policy::compile(Some(Preset::Default), &[]).expect("default preset compiles");
    let prompt = realistic_text(16 * 1024);
    let document = realistic_text(1024 * 1024);
    let context = EvalContext::request();

    let mut group = c.benchmark_group("default_preset");
    group.throughput(Throughput::Bytes(prompt.len() as u64));
    group.bench_function("16KiB_prompt", |b| {
        b.iter(|| policy.evaluate(black_box(&prompt), &context))
    });
    let accented = prompt
        .replace("Revenue", "Réveñue")
        .replace("Frankfurt", "Fráñkfurt");
    group.bench_function("16KiB_prompt_non_ascii", |b| {
        b.iter(|| policy.evaluate(black_box(&accented), &context))
    });
    group.throughput(Throughput::Bytes(document.len() as u64));
    group.sample_size(20);
    group.bench_function("1MiB_document", |b| {
        b.iter(|| policy.evaluate(black_box(&document), &context))
    });
    group.finish();

    let mut group = c.benchmark_group("keyword_rules_16KiB");
    group.throughput(Throughput::Bytes(prompt.len() as u64));
    for count in [10usize, 100, 1000] {
        let policy = Policy::compile(Some(Preset::Default), &keyword_rules(count))
            .expect("keyword rules compile");
        group.bench_with_input(BenchmarkId::from_parameter(count), &policy, |b, policy| {
            b.iter(|| policy.evaluate(black_box(&prompt), &context))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Bytes(prompt.len() as u64));
    group.bench_function("16KiB_answer_in_16B_deltas", |b| {
        b.iter(|| {
            let mut screener = StreamScreener::new(policy.clone(), Phase::Response);
            let mut out = String::with_capacity(prompt.len());
            for chunk in prompt.as_bytes().chunks(16) {
                // The prompt is ASCII, so every 16-byte chunk is valid UTF-8.
                let chunk = std::str::from_utf8(chunk).unwrap_or("");
                screener.push(chunk, &mut out);
            }
            screener.finish(&mut out);
            out
        })
    });
    group.finish();

    let mut group = c.benchmark_group("compile");
    group.bench_function("default_preset_plus_100_keyword_rules", |b| {
        let rules = keyword_rules(100);
        b.iter(|| Policy::compile(Some(Preset::Default), black_box(&rules)))
    });
    group.finish();
}

criterion_group! {
    name = policy_benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(policy_benches);
