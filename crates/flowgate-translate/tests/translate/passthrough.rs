//! The same-dialect fast path: model rewrite, usage injection and usage sniffing.

use bytes::Bytes;
use flowgate_translate::ir::{Ingress, UpstreamKind};
use flowgate_translate::passthrough::{UsageSniffer, prepare_request, rewrite_model};
use serde_json::{Value, json};

use crate::support::stream_fixture;

#[test]
fn model_rewrite_touches_only_the_model() {
    let body = br#"{ "messages" : [{"role":"user","content":"model \"x\" {}"}], "model" : "alias", "n":1 }"#;
    let rewritten = rewrite_model(body, "gpt-4o-2024-08-06")
        .expect("scan")
        .expect("changed");
    assert_eq!(
        &rewritten[..],
        br#"{ "messages" : [{"role":"user","content":"model \"x\" {}"}], "model" : "gpt-4o-2024-08-06", "n":1 }"#
    );
    assert_eq!(
        rewrite_model(body, "alias").expect("scan"),
        None,
        "unchanged body is not copied"
    );
    assert!(rewrite_model(b"[1,2]", "m").is_err());
    assert!(rewrite_model(br#"{"model":"a""#, "m").is_err());
}

#[test]
fn streamed_openai_requests_ask_for_usage() {
    let body = br#"{"model":"alias","stream":true,"messages":[]}"#;
    let prepared = prepare_request(Ingress::OpenAi, body, "alias").expect("prepare");
    assert!(prepared.stream);
    assert!(!prepared.client_wants_usage);
    let value: Value = serde_json::from_slice(&prepared.body.expect("changed")).expect("json");
    assert_eq!(value["stream_options"], json!({"include_usage": true}));

    let body = br#"{"model":"alias","stream":true,"stream_options":{"include_usage":false,"include_obfuscation":false},"messages":[]}"#;
    let prepared = prepare_request(Ingress::OpenAi, body, "real").expect("prepare");
    let value: Value = serde_json::from_slice(&prepared.body.expect("changed")).expect("json");
    assert_eq!(
        value["stream_options"],
        json!({"include_usage": true, "include_obfuscation": false})
    );
    assert_eq!(value["model"], "real");

    let body =
        br#"{"model":"real","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let prepared = prepare_request(Ingress::OpenAi, body, "real").expect("prepare");
    assert!(prepared.client_wants_usage);
    assert_eq!(prepared.body, None, "nothing to change");

    let body = br#"{"model":"real","messages":[]}"#;
    let prepared = prepare_request(Ingress::OpenAi, body, "real").expect("prepare");
    assert!(!prepared.stream);
    assert_eq!(prepared.body, None);
}

#[test]
fn sniffer_reads_openai_usage_and_strips_the_unrequested_chunk() {
    let upstream = stream_fixture(UpstreamKind::OpenAi, "text");
    for keep in [true, false] {
        let mut sniffer = UsageSniffer::new(Ingress::OpenAi, !keep);
        let mut forwarded = Vec::new();
        for chunk in upstream.chunks(7) {
            forwarded
                .extend_from_slice(&sniffer.feed(Bytes::copy_from_slice(chunk)).expect("feed"));
        }
        forwarded.extend_from_slice(&sniffer.finish());
        let usage = sniffer.usage().expect("usage");
        assert_eq!(
            (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
            (25, 12, 10)
        );
        assert!(sniffer.is_complete());
        let text = String::from_utf8(forwarded).expect("utf8");
        if keep {
            assert_eq!(text.as_bytes(), &upstream[..], "forwarded unchanged");
        } else {
            assert!(!text.contains("\"prompt_tokens\""), "usage chunk stripped");
            assert!(text.ends_with("data: [DONE]\n\n"));
            assert_eq!(text.matches("data: ").count(), 7, "all other events kept");
        }
    }
}

#[test]
fn sniffer_reads_anthropic_usage() {
    let upstream = stream_fixture(UpstreamKind::Anthropic, "text");
    let mut sniffer = UsageSniffer::new(Ingress::Anthropic, false);
    let bytes = Bytes::from(upstream);
    let forwarded = sniffer.feed(bytes.clone()).expect("feed");
    assert_eq!(forwarded, bytes, "zero-copy pass-through");
    let usage = sniffer.usage().expect("usage");
    assert_eq!(
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_tokens,
            usage.cache_creation_tokens
        ),
        (40, 9, 20, 5)
    );
    assert!(sniffer.is_complete());
}
