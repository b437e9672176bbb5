//! Integration tests of flowgate-translate: every ingress x upstream pair, non-streamed and
//! streamed, text and tool calls, against hand-written provider transcripts in
//! `tests/fixtures`; request translation; error shapes; the pass-through path; estimation.

mod edge;
mod errors;
mod passthrough;
mod requests;
mod support;

use flowgate_translate::ir::{Ingress, UpstreamKind};
use flowgate_translate::stream::{EncoderOptions, StreamOutcome, StreamTranscoder};
use flowgate_translate::{ErrorKind, decode_response, encode_response};
use proptest::prelude::*;

use support::{ALL_INGRESS, ALL_UPSTREAMS, expected, read_response, read_stream};

fn options(include_usage: bool) -> EncoderOptions {
    EncoderOptions {
        model: "client-model".to_owned(),
        id: "gw-req-1".to_owned(),
        created: 1_731_000_000,
        include_usage,
        estimated_input_tokens: None,
    }
}

fn transcode(
    ingress: Ingress,
    kind: UpstreamKind,
    chunks: &[&[u8]],
) -> (Vec<u8>, StreamTranscoder) {
    let mut transcoder = StreamTranscoder::new(ingress, kind, options(true));
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&transcoder.feed(chunk).expect("feed"));
    }
    out.extend_from_slice(&transcoder.finish().expect("finish"));
    (out, transcoder)
}

#[test]
fn every_pair_translates_complete_answers() {
    for ingress in ALL_INGRESS {
        for kind in ALL_UPSTREAMS {
            for scenario in ["text", "tools"] {
                let context = format!("{ingress:?} <- {kind:?} ({scenario}, complete)");
                let answer = decode_response(kind, &support::response_fixture(kind, scenario))
                    .unwrap_or_else(|err| panic!("{context}: decode: {err}"));
                let body = encode_response(ingress, &answer, "client-model")
                    .unwrap_or_else(|err| panic!("{context}: encode: {err}"));
                read_response(ingress, &body).assert_matches(
                    &expected(kind, scenario),
                    ingress,
                    &context,
                );
            }
        }
    }
}

#[test]
fn every_pair_transcodes_streams() {
    for ingress in ALL_INGRESS {
        for kind in ALL_UPSTREAMS {
            for scenario in ["text", "tools"] {
                let context = format!("{ingress:?} <- {kind:?} ({scenario}, stream)");
                let upstream = support::stream_fixture(kind, scenario);
                let (out, transcoder) = transcode(ingress, kind, &[&upstream]);
                let seen = read_stream(ingress, &out);
                let expected = expected(kind, scenario);
                seen.assert_matches(&expected, ingress, &context);
                let usage = transcoder.usage().expect("usage known at the end");
                assert!(!usage.estimated, "{context}: reported usage is exact");
                assert_eq!(
                    (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
                    (
                        expected.usage.input,
                        expected.usage.output,
                        expected.usage.cached
                    ),
                    "{context}: usage for accounting"
                );
                assert_eq!(transcoder.encoder().outcome(), StreamOutcome::Completed);
            }
        }
    }
}

#[test]
fn anthropic_stream_from_openai_carries_input_tokens() {
    // OpenAI reports usage only in the final chunk; the Anthropic client must still get
    // input_tokens (in message_delta, since message_start was sent before it was known).
    let upstream = support::stream_fixture(UpstreamKind::OpenAi, "text");
    let (out, _) = transcode(Ingress::Anthropic, UpstreamKind::OpenAi, &[&upstream]);
    let text = String::from_utf8(out).expect("utf8");
    let delta = text
        .split("\n\n")
        .find(|event| event.starts_with("event: message_delta"))
        .expect("message_delta");
    let data: serde_json::Value =
        serde_json::from_str(delta.split_once("data: ").expect("data").1).expect("json");
    assert_eq!(
        data["usage"]["input_tokens"], 15,
        "25 prompt tokens minus 10 cached"
    );
    assert_eq!(data["usage"]["cache_read_input_tokens"], 10);
    assert_eq!(data["usage"]["output_tokens"], 12);
}

#[test]
fn anthropic_stream_from_anthropic_reports_input_in_message_start() {
    let upstream = support::stream_fixture(UpstreamKind::Anthropic, "text");
    let (out, _) = transcode(Ingress::Anthropic, UpstreamKind::Anthropic, &[&upstream]);
    let text = String::from_utf8(out).expect("utf8");
    let start = text.split("\n\n").next().expect("first event");
    let data: serde_json::Value =
        serde_json::from_str(start.split_once("data: ").expect("data").1).expect("json");
    assert_eq!(data["message"]["usage"]["input_tokens"], 15);
    assert_eq!(data["message"]["usage"]["cache_read_input_tokens"], 20);
    assert_eq!(data["message"]["usage"]["cache_creation_input_tokens"], 5);
}

#[test]
fn openai_client_without_include_usage_gets_no_usage_chunk() {
    let upstream = support::stream_fixture(UpstreamKind::Anthropic, "text");
    let mut transcoder =
        StreamTranscoder::new(Ingress::OpenAi, UpstreamKind::Anthropic, options(false));
    let mut out = transcoder.feed(&upstream).expect("feed").to_vec();
    out.extend_from_slice(&transcoder.finish().expect("finish"));
    let text = String::from_utf8(out).expect("utf8");
    assert!(!text.contains("\"usage\""), "no usage chunk: {text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    // The gateway still knows the exact usage for accounting.
    assert_eq!(transcoder.usage().map(|usage| usage.output_tokens), Some(9));
}

#[test]
fn truncated_stream_ends_with_the_dialect_error_event() {
    for kind in ALL_UPSTREAMS {
        let upstream = support::stream_fixture(kind, "text");
        let cut = &upstream[..upstream.len() / 2];
        for ingress in ALL_INGRESS {
            let mut transcoder = StreamTranscoder::new(ingress, kind, options(true));
            let mut out = transcoder.feed(cut).expect("first half is valid").to_vec();
            let error = transcoder.finish().expect_err("stream stopped early");
            assert!(
                matches!(error, flowgate_translate::TranslateError::Truncated),
                "{kind:?}: {error}"
            );
            out.extend_from_slice(
                &transcoder.finish_with_error(ErrorKind::Timeout, "upstream stalled"),
            );
            let text = String::from_utf8(out).expect("utf8");
            let last = text.trim_end().rsplit("\n\n").next().expect("last event");
            match ingress {
                Ingress::Anthropic => {
                    assert!(last.starts_with("event: error\n"), "{last}");
                    let data: serde_json::Value =
                        serde_json::from_str(last.split_once("data: ").expect("data").1)
                            .expect("json");
                    assert_eq!(data["type"], "error");
                    assert_eq!(data["error"]["type"], "timeout_error");
                    assert_eq!(data["error"]["message"], "upstream stalled");
                }
                Ingress::OpenAi => {
                    assert!(!text.contains("[DONE]"));
                    let data: serde_json::Value =
                        serde_json::from_str(last.strip_prefix("data: ").expect("data"))
                            .expect("json");
                    assert_eq!(data["error"]["message"], "upstream stalled");
                    assert_eq!(data["error"]["type"], "server_error");
                }
            }
            assert_eq!(
                transcoder.encoder().outcome(),
                StreamOutcome::Failed(ErrorKind::Timeout)
            );
            // Nothing more is written after the terminating error.
            assert!(
                transcoder
                    .finish_with_error(ErrorKind::Api, "again")
                    .is_empty()
            );
        }
    }
}

#[test]
fn upstream_error_event_is_translated() {
    let upstream = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"m\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let mut transcoder =
        StreamTranscoder::new(Ingress::OpenAi, UpstreamKind::Anthropic, options(true));
    let out = transcoder.feed(upstream).expect("feed");
    let text = String::from_utf8(out.to_vec()).expect("utf8");
    assert!(text.contains("\"message\":\"Overloaded\""), "{text}");
    assert_eq!(
        transcoder.encoder().outcome(),
        StreamOutcome::Failed(ErrorKind::Overloaded)
    );
}

#[test]
fn stream_without_reported_usage_is_estimated() {
    let upstream = b"data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hello world\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let mut estimated_options = options(true);
    estimated_options.estimated_input_tokens = Some(7);
    let mut transcoder =
        StreamTranscoder::new(Ingress::Anthropic, UpstreamKind::OpenAi, estimated_options);
    let mut out = transcoder.feed(upstream).expect("feed").to_vec();
    out.extend_from_slice(&transcoder.finish().expect("finish"));
    let usage = transcoder.usage().expect("usage");
    assert!(usage.estimated);
    assert_eq!(
        (usage.input_tokens, usage.output_tokens),
        (7, 2),
        "\"hello world\" is 2 tokens"
    );
    let seen = read_stream(Ingress::Anthropic, &out);
    assert_eq!(seen.usage.map(|usage| usage.output), Some(2));
}

#[test]
fn screener_can_rewrite_text_between_decoder_and_encoder() {
    use flowgate_translate::ir::StreamEvent;
    use flowgate_translate::stream::{StreamDecoder, StreamEncoder};
    let upstream = support::stream_fixture(UpstreamKind::OpenAi, "text");
    let mut decoder = StreamDecoder::new(UpstreamKind::OpenAi, "gw");
    let mut encoder = StreamEncoder::new(Ingress::Anthropic, options(true));
    let mut events = Vec::new();
    decoder.feed(&upstream, &mut events).expect("feed");
    decoder.finish(&mut events).expect("finish");
    let mut out = Vec::new();
    for mut event in events {
        if let StreamEvent::TextDelta { text, .. } = &mut event {
            *text = text.replace("merci", "[redacted]");
        }
        encoder.encode(&event, &mut out).expect("encode");
    }
    let seen = read_stream(Ingress::Anthropic, &out);
    assert_eq!(seen.text, "Hello! Ça va très bien 👋 — [redacted].");
}

#[test]
fn keepalive_shapes() {
    use flowgate_translate::stream::StreamEncoder;
    let mut out = Vec::new();
    StreamEncoder::new(Ingress::Anthropic, options(true)).keepalive(&mut out);
    assert_eq!(out, b"event: ping\ndata: {\"type\":\"ping\"}\n\n");
    out.clear();
    StreamEncoder::new(Ingress::OpenAi, options(true)).keepalive(&mut out);
    assert!(out.starts_with(b":"), "an SSE comment");
}

#[test]
fn count_tokens_is_an_estimate_of_the_prompt() {
    let request = flowgate_translate::parse_request(
        Ingress::Anthropic,
        br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hello world"}]}"#,
    )
    .expect("count_tokens body has no max_tokens");
    let body = flowgate_translate::estimate::count_tokens_body(&request);
    let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
    // 3 reply priming + 3 per message + 2 for "hello world".
    assert_eq!(value["input_tokens"], 8);
}

#[test]
fn missing_usage_in_complete_answer_is_estimated() {
    let mut answer = decode_response(
        UpstreamKind::OpenAi,
        br#"{"id":"c","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello world"},"finish_reason":"stop"}]}"#,
    )
    .expect("decode");
    assert!(answer.usage.is_none());
    let request = flowgate_translate::parse_request(
        Ingress::OpenAi,
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}]}"#,
    )
    .expect("parse");
    flowgate_translate::estimate::fill_missing_usage(&request, &mut answer);
    let usage = answer.usage.expect("filled");
    assert!(usage.estimated);
    assert_eq!((usage.input_tokens, usage.output_tokens), (8, 2));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Feeding the same upstream stream split at arbitrary points (inside lines, inside UTF-8
    /// sequences) yields byte-identical client output.
    #[test]
    fn chunk_boundaries_do_not_change_output(
        upstream_index in 0usize..4,
        ingress_index in 0usize..2,
        scenario_index in 0usize..2,
        cuts in proptest::collection::vec(0.0f64..1.0, 0..12),
    ) {
        let kind = ALL_UPSTREAMS[upstream_index];
        let ingress = ALL_INGRESS[ingress_index];
        let scenario = ["text", "tools"][scenario_index];
        let upstream = support::stream_fixture(kind, scenario);
        let (whole, _) = transcode(ingress, kind, &[&upstream]);
        let mut positions: Vec<usize> = cuts.iter().map(|cut| (cut * upstream.len() as f64) as usize).collect();
        positions.sort_unstable();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut from = 0;
        for position in positions {
            chunks.push(&upstream[from..position]);
            from = position;
        }
        chunks.push(&upstream[from..]);
        let (split, _) = transcode(ingress, kind, &chunks);
        prop_assert_eq!(whole, split);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Arbitrary upstream bytes never panic a transcoder: they yield output or an error.
    #[test]
    fn arbitrary_upstream_bytes_never_panic(
        upstream_index in 0usize..4,
        ingress_index in 0usize..2,
        prefix_len in 0usize..400,
        noise in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let kind = ALL_UPSTREAMS[upstream_index];
        let ingress = ALL_INGRESS[ingress_index];
        let fixture = support::stream_fixture(kind, "tools");
        let mut upstream = fixture[..prefix_len.min(fixture.len())].to_vec();
        upstream.extend_from_slice(&noise);
        let mut transcoder = StreamTranscoder::new(ingress, kind, options(true));
        let fed = transcoder.feed(&upstream).and_then(|_| transcoder.finish());
        if fed.is_err() {
            let tail = transcoder.finish_with_error(ErrorKind::Api, "bad upstream");
            prop_assert!(!tail.is_empty() || transcoder.encoder().outcome() != StreamOutcome::Open);
        }
    }

    /// Arbitrary request bodies never panic the parsers or encoders.
    #[test]
    fn arbitrary_request_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        for ingress in ALL_INGRESS {
            if let Ok(request) = flowgate_translate::parse_request(ingress, &body) {
                for kind in ALL_UPSTREAMS {
                    let _ = flowgate_translate::encode_request(kind, &request, "m");
                }
            }
        }
        let _ = flowgate_translate::passthrough::rewrite_model(&body, "m");
        for kind in ALL_UPSTREAMS {
            let _ = decode_response(kind, &body);
            let _ = flowgate_translate::parse_upstream_error(kind, 500, &body);
        }
    }

    /// The pass-through sniffer strips the usage chunk identically however the stream is cut.
    #[test]
    fn sniffer_output_is_independent_of_chunking(cuts in proptest::collection::vec(0.0f64..1.0, 0..10)) {
        use flowgate_translate::passthrough::UsageSniffer;
        let upstream = support::stream_fixture(UpstreamKind::OpenAi, "tools");
        let run = |chunks: &[&[u8]]| {
            let mut sniffer = UsageSniffer::new(Ingress::OpenAi, true);
            let mut out = Vec::new();
            for chunk in chunks {
                out.extend_from_slice(&sniffer.feed(bytes::Bytes::copy_from_slice(chunk)).expect("feed"));
            }
            out.extend_from_slice(&sniffer.finish());
            (out, sniffer.usage())
        };
        let whole = run(&[&upstream]);
        let mut positions: Vec<usize> = cuts.iter().map(|cut| (cut * upstream.len() as f64) as usize).collect();
        positions.sort_unstable();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut from = 0;
        for position in positions {
            chunks.push(&upstream[from..position]);
            from = position;
        }
        chunks.push(&upstream[from..]);
        prop_assert_eq!(run(&chunks), whole);
    }
}
