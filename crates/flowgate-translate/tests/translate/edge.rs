//! Edge cases: thinking pass-through, several choices, blocked prompts, truncated lines,
//! model-dependent request fields.

use flowgate_translate::ir::{Ingress, UpstreamKind};
use flowgate_translate::stream::{EncoderOptions, StreamTranscoder};
use flowgate_translate::{
    TranslateError, decode_response, encode_request, encode_response, parse_request,
};
use serde_json::{Value, json};

fn options() -> EncoderOptions {
    EncoderOptions {
        model: "client-model".to_owned(),
        id: "gw-edge".to_owned(),
        created: 1,
        include_usage: true,
        estimated_input_tokens: None,
    }
}

fn run(ingress: Ingress, kind: UpstreamKind, upstream: &[u8]) -> Result<String, TranslateError> {
    let mut transcoder = StreamTranscoder::new(ingress, kind, options());
    let mut out = transcoder.feed(upstream)?.to_vec();
    out.extend_from_slice(&transcoder.finish()?);
    Ok(String::from_utf8(out).expect("utf8"))
}

fn data_of(events: &str) -> Vec<Value> {
    events
        .split("\n\n")
        .filter_map(|event| event.split_once("data: "))
        .filter(|(_, data)| *data != "[DONE]")
        .map(|(_, data)| serde_json::from_str(data).expect("json"))
        .collect()
}

#[test]
fn thinking_blocks_pass_through_anthropic_to_anthropic() {
    let upstream = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_t\",\"model\":\"claude\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me think.\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"42\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":30}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let out = run(
        Ingress::Anthropic,
        UpstreamKind::Anthropic,
        upstream.as_bytes(),
    )
    .expect("transcode");
    let events = data_of(&out);
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| event["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[2]["content_block"],
        json!({"type": "thinking", "thinking": ""})
    );
    assert_eq!(
        events[3]["delta"],
        json!({"type": "thinking_delta", "thinking": "Let me think."})
    );
    assert_eq!(
        events[4]["delta"],
        json!({"type": "signature_delta", "signature": "EqQBCgIYAhIM"})
    );
    assert_eq!(events[7]["index"], 1);
    // An OpenAI client gets the answer text only.
    let out = run(
        Ingress::OpenAi,
        UpstreamKind::Anthropic,
        upstream.as_bytes(),
    )
    .expect("transcode");
    assert!(!out.contains("Let me think"));
    assert!(out.contains("\"content\":\"42\""));
}

#[test]
fn several_gemini_candidates_reach_an_openai_client_as_choices() {
    let upstream = concat!(
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"A\"}],\"role\":\"model\"},\"index\":0},{\"content\":{\"parts\":[{\"text\":\"B\"}],\"role\":\"model\"},\"index\":1}],\"usageMetadata\":{\"promptTokenCount\":5},\"responseId\":\"r\"}\n\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0},{\"content\":{\"parts\":[{\"text\":\"b\"}],\"role\":\"model\"},\"finishReason\":\"MAX_TOKENS\",\"index\":1}],\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":4},\"responseId\":\"r\"}\n\n",
    );
    let out = run(Ingress::OpenAi, UpstreamKind::Gemini, upstream.as_bytes()).expect("transcode");
    let chunks = data_of(&out);
    let mut texts = [String::new(), String::new()];
    let mut finishes = [None, None];
    let mut roles = 0;
    for chunk in &chunks {
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let index = choice["index"].as_u64().expect("index") as usize;
            if choice["delta"]["role"] == "assistant" {
                roles += 1;
            }
            texts[index].push_str(choice["delta"]["content"].as_str().unwrap_or_default());
            if let Some(finish) = choice["finish_reason"].as_str() {
                finishes[index] = Some(finish.to_owned());
            }
        }
    }
    assert_eq!(texts, ["Aa".to_owned(), "Bb".to_owned()]);
    assert_eq!(
        finishes,
        [Some("stop".to_owned()), Some("length".to_owned())]
    );
    assert_eq!(roles, 2, "each choice gets its role once");
    let usage = &chunks.last().expect("usage chunk")["usage"];
    assert_eq!(
        (
            usage["prompt_tokens"].as_u64(),
            usage["completion_tokens"].as_u64()
        ),
        (Some(5), Some(4))
    );
    // An Anthropic client cannot take two answers.
    assert!(matches!(
        run(
            Ingress::Anthropic,
            UpstreamKind::Gemini,
            upstream.as_bytes()
        ),
        Err(TranslateError::Unsupported { .. })
    ));
}

#[test]
fn blocked_gemini_prompt_becomes_a_content_filter_finish() {
    let body = br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9}}"#;
    let answer = decode_response(UpstreamKind::Gemini, body).expect("decode");
    let openai: Value =
        serde_json::from_slice(&encode_response(Ingress::OpenAi, &answer, "m").expect("encode"))
            .expect("json");
    assert_eq!(openai["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(openai["usage"]["prompt_tokens"], 9);
    let anthropic: Value =
        serde_json::from_slice(&encode_response(Ingress::Anthropic, &answer, "m").expect("encode"))
            .expect("json");
    assert_eq!(anthropic["stop_reason"], "refusal");
    let mut stream = b"data: ".to_vec();
    stream.extend_from_slice(body);
    stream.extend_from_slice(b"\n\n");
    let out = run(Ingress::Anthropic, UpstreamKind::Gemini, &stream).expect("transcode");
    assert!(out.contains("\"stop_reason\":\"refusal\""), "{out}");
}

#[test]
fn ollama_stream_cut_inside_the_last_line_is_truncated() {
    let upstream = b"{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n{\"model\":\"llama3.2\",\"message\":{\"role\":\"assis";
    assert!(matches!(
        run(Ingress::OpenAi, UpstreamKind::Ollama, upstream),
        Err(TranslateError::Truncated)
    ));
    let complete_without_newline = b"{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,\"eval_count\":1}";
    let out = run(
        Ingress::OpenAi,
        UpstreamKind::Ollama,
        complete_without_newline,
    )
    .expect("complete");
    assert!(out.ends_with("data: [DONE]\n\n"));
}

#[test]
fn ollama_error_line_ends_the_stream_with_an_error() {
    let upstream = b"{\"error\":\"model requires more system memory\"}\n";
    let out =
        run(Ingress::Anthropic, UpstreamKind::Ollama, upstream).expect("an error event is output");
    assert!(out.starts_with("event: error\n"), "{out}");
    assert!(out.contains("model requires more system memory"));
}

#[test]
fn reasoning_models_get_max_completion_tokens() {
    let request = parse_request(
        Ingress::Anthropic,
        br#"{"model":"a","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .expect("parse");
    for (model, field) in [
        ("gpt-4o", "max_tokens"),
        ("o3-mini", "max_completion_tokens"),
        ("o1", "max_completion_tokens"),
        ("gpt-5-mini", "max_completion_tokens"),
        ("o1337-custom", "max_tokens"),
        ("llama-3.1-70b", "max_tokens"),
    ] {
        let body: Value = serde_json::from_slice(
            &encode_request(UpstreamKind::OpenAi, &request, model).expect("encode"),
        )
        .expect("json");
        assert_eq!(body[field], 100, "{model}");
    }
}

#[test]
fn participant_names_need_an_openai_upstream() {
    let request = parse_request(
        Ingress::OpenAi,
        br#"{"model":"m","messages":[{"role":"user","name":"alice","content":"hi"}]}"#,
    )
    .expect("parse");
    for kind in [
        UpstreamKind::Anthropic,
        UpstreamKind::Gemini,
        UpstreamKind::Ollama,
    ] {
        match encode_request(kind, &request, "u") {
            Err(TranslateError::Unsupported { field, .. }) => assert_eq!(field, "messages[0].name"),
            other => panic!("{kind:?}: {other:?}"),
        }
    }
    let body: Value = serde_json::from_slice(
        &encode_request(UpstreamKind::OpenAi, &request, "u").expect("encode"),
    )
    .expect("json");
    assert_eq!(body["messages"][0]["name"], "alice");
}

#[test]
fn default_max_tokens_for_anthropic() {
    let request = parse_request(
        Ingress::OpenAi,
        br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .expect("parse");
    let body: Value = serde_json::from_slice(
        &encode_request(UpstreamKind::Anthropic, &request, "u").expect("encode"),
    )
    .expect("json");
    assert_eq!(body["max_tokens"], flowgate_translate::DEFAULT_MAX_TOKENS);
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    );
}

#[test]
fn encoder_options_follow_the_request() {
    let request = parse_request(
        Ingress::OpenAi,
        br#"{"model":"alias","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#,
    )
    .expect("parse");
    let options = EncoderOptions::for_request(&request);
    assert_eq!(options.model, "alias");
    assert!(options.include_usage);
    assert!(!options.id.is_empty());
    assert_eq!(
        UpstreamKind::from_config_name("gemini"),
        Some(UpstreamKind::Gemini)
    );
    assert_eq!(UpstreamKind::from_config_name("mock"), None);
    assert!(UpstreamKind::OpenAi.is_native_for(Ingress::OpenAi));
    assert!(!UpstreamKind::Ollama.is_native_for(Ingress::OpenAi));
}

#[test]
fn ollama_cached_prompt_tokens_are_reported() {
    let body = br#"{"model":"llama3.2","message":{"role":"assistant","content":"ok"},"done":true,"done_reason":"stop","prompt_eval_count":120,"prompt_eval_cached_count":100,"eval_count":2}"#;
    let answer = decode_response(UpstreamKind::Ollama, body).expect("decode");
    let usage = answer.usage.expect("usage");
    assert_eq!(
        (usage.input_tokens, usage.cached_tokens, usage.output_tokens),
        (120, 100, 2)
    );
    let anthropic: Value =
        serde_json::from_slice(&encode_response(Ingress::Anthropic, &answer, "m").expect("encode"))
            .expect("json");
    assert_eq!(anthropic["usage"]["input_tokens"], 20);
    assert_eq!(anthropic["usage"]["cache_read_input_tokens"], 100);
}
