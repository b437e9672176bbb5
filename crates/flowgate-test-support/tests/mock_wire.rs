//! The mock upstream over real HTTP, in every wire format: answers (JSON, streams, tool calls)
//! have the provider's documented shape, decode with flowgate-translate's own decoders into
//! the text, tool call and usage the mock documents, and every `Behaviour` (errors in the
//! provider's shape, stalls, resets, error events) applies to every format.

use bytes::Bytes;
use flowgate_test_support::client::next_chunk;
use flowgate_test_support::upstream::wire::{
    self, ANTHROPIC_TOOL_USE_ID, OPENAI_TOOL_CALL_ID, TOOL_ARGUMENTS, answer_text, estimate_tokens,
    input_tokens_for,
};
use flowgate_test_support::upstream::{MID_STREAM_ERROR_MESSAGE, error_message};
use flowgate_test_support::{
    Behaviour, MockReply, MockUpstream, ReplyContent, TestClient, TestGateway, TestResponse,
    WireFormat,
};
use flowgate_translate::ir::{FinishReason, Part};
use flowgate_translate::stream::StreamDecoder;
use flowgate_translate::{ErrorKind, StreamEvent, UpstreamKind, Usage};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const SYSTEM: &str = "Be brief.";
const USER_TEXT: &str = "Say hello to Paris";
const TOOL_TEXT: &str = "What is the WEATHER in Paris?";

fn kind(format: WireFormat) -> UpstreamKind {
    match format {
        WireFormat::OpenAi | WireFormat::AzureOpenAi => UpstreamKind::OpenAi,
        WireFormat::Anthropic => UpstreamKind::Anthropic,
        WireFormat::Gemini => UpstreamKind::Gemini,
        WireFormat::Ollama => UpstreamKind::Ollama,
    }
}

fn model(format: WireFormat) -> &'static str {
    match format {
        WireFormat::OpenAi => "gpt-test",
        WireFormat::AzureOpenAi => "gpt-deployment",
        WireFormat::Anthropic => "claude-test",
        WireFormat::Gemini => "gemini-test",
        WireFormat::Ollama => "llama-test",
    }
}

/// The URL of a chat call in `format`, as the gateway builds it from `base_url_for`.
fn url(upstream: &MockUpstream, format: WireFormat, stream: bool) -> String {
    let base = upstream.base_url_for(format);
    let path = match format {
        WireFormat::OpenAi => "/chat/completions".to_owned(),
        WireFormat::AzureOpenAi => format!(
            "/openai/deployments/{}/chat/completions?api-version=2024-10-21",
            model(format)
        ),
        WireFormat::Anthropic => "/messages".to_owned(),
        WireFormat::Gemini if stream => {
            format!("/models/{}:streamGenerateContent?alt=sse", model(format))
        }
        WireFormat::Gemini => format!("/models/{}:generateContent", model(format)),
        WireFormat::Ollama => "/api/chat".to_owned(),
    };
    format!("{base}{path}")
}

/// A chat body in `format`: a system prompt and one user turn, optionally with two tools.
fn body(format: WireFormat, stream: bool, user_text: &str, tools: bool) -> Value {
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    let function_tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": schema}},
        {"type": "function", "function": {"name": "get_time", "parameters": schema}},
    ]);
    let mut body = match format {
        WireFormat::OpenAi | WireFormat::AzureOpenAi => json!({
            "model": model(format),
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": user_text},
            ],
            "stream": stream,
        }),
        WireFormat::Anthropic => json!({
            "model": model(format),
            "max_tokens": 256,
            "system": SYSTEM,
            "messages": [{"role": "user", "content": [{"type": "text", "text": user_text}]}],
            "stream": stream,
        }),
        WireFormat::Gemini => json!({
            "systemInstruction": {"parts": [{"text": SYSTEM}]},
            "contents": [{"role": "user", "parts": [{"text": user_text}]}],
        }),
        WireFormat::Ollama => json!({
            "model": model(format),
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": user_text},
            ],
            "stream": stream,
        }),
    };
    if stream && matches!(format, WireFormat::OpenAi | WireFormat::AzureOpenAi) {
        body["stream_options"] = json!({"include_usage": true});
    }
    if tools {
        body["tools"] = match format {
            WireFormat::OpenAi | WireFormat::AzureOpenAi | WireFormat::Ollama => function_tools,
            WireFormat::Anthropic => json!([
                {"name": "get_weather", "input_schema": schema},
                {"name": "get_time", "input_schema": schema},
            ]),
            WireFormat::Gemini => json!([{"functionDeclarations": [
                {"name": "get_weather", "parametersJsonSchema": schema},
                {"name": "get_time", "parametersJsonSchema": schema},
            ]}]),
        };
    }
    body
}

async fn call(
    upstream: &MockUpstream,
    format: WireFormat,
    stream: bool,
    body: &Value,
) -> TestResponse {
    TestClient::new()
        .call(
            Method::POST,
            &url(upstream, format, stream),
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
}

/// The reply the mock documents for the last request it received.
fn last_reply(upstream: &MockUpstream) -> MockReply {
    upstream
        .last_reply()
        .unwrap_or_else(|| panic!("no reply for the last request"))
}

/// Usage both prompts produce: the system prompt and the user text, one segment each.
fn expected_input_tokens(user_text: &str) -> u64 {
    input_tokens_for(&[SYSTEM.to_owned(), user_text.to_owned()])
}

fn reported(reply: &MockReply) -> Usage {
    Usage {
        input_tokens: reply.input_tokens,
        output_tokens: reply.output_tokens,
        cached_tokens: reply.cached_tokens,
        ..Usage::default()
    }
}

/// What a decoded stream said.
#[derive(Debug, Default)]
struct Decoded {
    text: String,
    tool_calls: Vec<(String, String, String)>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    error: Option<(ErrorKind, String)>,
    done: bool,
}

/// Decodes a whole stream body with the translator's decoder, fed in 5-byte pieces.
fn decode_stream(format: WireFormat, body: &[u8]) -> Decoded {
    let mut decoder = StreamDecoder::new(kind(format), "fallback");
    let mut events = Vec::new();
    for piece in body.chunks(5) {
        decoder
            .feed(piece, &mut events)
            .unwrap_or_else(|err| panic!("{format:?} stream does not decode: {err}"));
    }
    decoder
        .finish(&mut events)
        .unwrap_or_else(|err| panic!("{format:?} stream is incomplete: {err}"));
    let mut decoded = Decoded::default();
    for event in events {
        match event {
            StreamEvent::Start { usage, .. } => decoded.usage = decoded.usage.or(usage),
            StreamEvent::TextDelta { text, .. } => decoded.text.push_str(&text),
            StreamEvent::ToolCallStart { id, name, .. } => {
                decoded.tool_calls.push((id, name, String::new()));
            }
            StreamEvent::ToolCallDelta { arguments, .. } => {
                if let Some(call) = decoded.tool_calls.last_mut() {
                    call.2.push_str(&arguments);
                }
            }
            StreamEvent::Finish { reason, .. } => decoded.finish = Some(reason),
            StreamEvent::Usage(usage) => decoded.usage = Some(usage),
            StreamEvent::Error { kind, message } => decoded.error = Some((kind, message)),
            StreamEvent::Done => decoded.done = true,
            _ => {}
        }
    }
    decoded
}

fn json_args(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|err| panic!("arguments {arguments}: {err}"))
}

#[tokio::test]
async fn json_answers_decode_to_the_documented_text_and_usage() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    for format in WireFormat::ALL {
        let response = call(
            &upstream,
            format,
            false,
            &body(format, false, USER_TEXT, false),
        )
        .await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{format:?}: {}",
            response.text()
        );
        assert_eq!(response.header("content-type"), Some("application/json"));
        let reply = last_reply(&upstream);
        let expected_text = answer_text(USER_TEXT);
        assert_eq!(reply.content, ReplyContent::Text(expected_text.clone()));
        assert_eq!(
            reply.input_tokens,
            expected_input_tokens(USER_TEXT),
            "{format:?}"
        );
        assert_eq!(reply.output_tokens, estimate_tokens(&expected_text));
        assert_eq!(reply.model, model(format));

        let answer = flowgate_translate::decode_response(kind(format), &response.body)
            .unwrap_or_else(|err| panic!("{format:?} answer does not decode: {err}"));
        assert_eq!(answer.usage, Some(reported(&reply)), "{format:?}");
        assert_eq!(answer.model, model(format), "{format:?}");
        let choice = &answer.choices[0];
        assert_eq!(choice.finish_reason, Some(FinishReason::Stop), "{format:?}");
        let [Part::Text { text, .. }] = choice.parts.as_slice() else {
            panic!("{format:?}: expected one text part, got {:?}", choice.parts)
        };
        assert_eq!(text, &expected_text);

        // The provider's own field names.
        let value = response.json();
        match format {
            WireFormat::OpenAi | WireFormat::AzureOpenAi => {
                assert_eq!(value["object"], "chat.completion");
                assert_eq!(value["usage"]["prompt_tokens"], reply.input_tokens);
                assert_eq!(value["usage"]["total_tokens"], reply.total_tokens());
            }
            WireFormat::Anthropic => {
                assert_eq!(value["type"], "message");
                assert_eq!(value["stop_reason"], "end_turn");
                assert_eq!(value["usage"]["input_tokens"], reply.input_tokens);
                assert_eq!(value["usage"]["output_tokens"], reply.output_tokens);
            }
            WireFormat::Gemini => {
                assert_eq!(value["candidates"][0]["finishReason"], "STOP");
                assert_eq!(value["candidates"][0]["content"]["role"], "model");
                let usage = &value["usageMetadata"];
                assert_eq!(usage["promptTokenCount"], reply.input_tokens);
                assert_eq!(usage["candidatesTokenCount"], reply.output_tokens);
                assert_eq!(usage["totalTokenCount"], reply.total_tokens());
            }
            WireFormat::Ollama => {
                assert_eq!(value["done"], true);
                assert_eq!(value["done_reason"], "stop");
                assert_eq!(value["prompt_eval_count"], reply.input_tokens);
                assert_eq!(value["eval_count"], reply.output_tokens);
            }
        }
    }
    assert_eq!(upstream.request_count(), WireFormat::ALL.len());
}

#[tokio::test]
async fn streams_decode_to_the_documented_text_and_usage() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    for format in WireFormat::ALL {
        let response = call(
            &upstream,
            format,
            true,
            &body(format, true, USER_TEXT, false),
        )
        .await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{format:?}: {}",
            response.text()
        );
        assert_eq!(
            response.header("content-type"),
            Some(format.stream_content_type())
        );
        let reply = last_reply(&upstream);
        assert!(reply.stream);
        let decoded = decode_stream(format, &response.body);
        assert_eq!(decoded.text, answer_text(USER_TEXT), "{format:?}");
        assert!(decoded.tool_calls.is_empty());
        assert_eq!(decoded.finish, Some(FinishReason::Stop), "{format:?}");
        assert_eq!(decoded.usage, Some(reported(&reply)), "{format:?}");
        assert!(decoded.done && decoded.error.is_none(), "{format:?}");
    }
    assert_eq!(upstream.completed_streams(), WireFormat::ALL.len());
    assert_eq!(upstream.abandoned_streams(), 0);
}

#[tokio::test]
async fn stream_wire_shapes_follow_each_provider() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    // Anthropic: the documented event order, usage in message_start and message_delta.
    let anthropic = call(
        &upstream,
        WireFormat::Anthropic,
        true,
        &body(WireFormat::Anthropic, true, USER_TEXT, false),
    )
    .await
    .text();
    let names: Vec<&str> = anthropic
        .lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .collect();
    let words = answer_text(USER_TEXT).split(' ').count();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", words));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let reply = last_reply(&upstream);
    let events: Vec<Value> = data_lines(&anthropic);
    assert_eq!(
        events[0]["message"]["usage"]["input_tokens"],
        reply.input_tokens
    );
    let delta = &events[events.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], reply.output_tokens);

    // OpenAI: data chunks, a final usage chunk with no choices, then [DONE].
    let openai = call(
        &upstream,
        WireFormat::OpenAi,
        true,
        &body(WireFormat::OpenAi, true, USER_TEXT, false),
    )
    .await
    .text();
    assert!(openai.ends_with("data: [DONE]\n\n"));
    let chunks = data_lines(&openai);
    let usage_chunk = &chunks[chunks.len() - 1];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"]["completion_tokens"],
        reply.output_tokens
    );

    // Gemini: every chunk a GenerateContentResponse, finishReason and full usage on the last.
    let gemini = call(
        &upstream,
        WireFormat::Gemini,
        true,
        &body(WireFormat::Gemini, true, USER_TEXT, false),
    )
    .await
    .text();
    assert!(!gemini.contains("[DONE]"));
    let chunks = data_lines(&gemini);
    assert_eq!(chunks.len(), words);
    let last = &chunks[chunks.len() - 1];
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        last["usageMetadata"]["candidatesTokenCount"],
        reply.output_tokens
    );
    assert!(chunks[0]["candidates"][0].get("finishReason").is_none());
    let recorded = upstream.requests();
    let gemini_request = &recorded[recorded.len() - 1];
    assert_eq!(gemini_request.query_param("alt"), Some("sse"));
    assert_eq!(
        gemini_request.path_only(),
        "/v1beta/models/gemini-test:streamGenerateContent"
    );

    // Ollama: NDJSON, one object per line, the last with done, done_reason and counts.
    let ollama = call(
        &upstream,
        WireFormat::Ollama,
        true,
        &body(WireFormat::Ollama, true, USER_TEXT, false),
    )
    .await
    .text();
    let lines: Vec<Value> = ollama
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line}: {err}")))
        .collect();
    assert_eq!(lines.len(), words + 1);
    assert!(lines[..words].iter().all(|line| line["done"] == false));
    let last = &lines[words];
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["prompt_eval_count"], reply.input_tokens);
    assert_eq!(last["eval_count"], reply.output_tokens);
}

/// The JSON of every `data:` line of an SSE body, except `[DONE]`.
fn data_lines(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap_or_else(|err| panic!("{data}: {err}")))
        .collect()
}

#[tokio::test]
async fn tool_calls_in_every_format_json_and_stream() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    let arguments = json_args(TOOL_ARGUMENTS);
    for format in WireFormat::ALL {
        let response = call(
            &upstream,
            format,
            false,
            &body(format, false, TOOL_TEXT, true),
        )
        .await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{format:?}: {}",
            response.text()
        );
        let reply = last_reply(&upstream);
        assert_eq!(
            reply.content,
            ReplyContent::ToolCall {
                name: "get_weather".to_owned(),
                arguments: TOOL_ARGUMENTS.to_owned()
            },
            "{format:?}"
        );
        assert_eq!(
            reply.output_tokens,
            estimate_tokens("get_weather") + estimate_tokens(TOOL_ARGUMENTS)
        );
        let answer = flowgate_translate::decode_response(kind(format), &response.body)
            .unwrap_or_else(|err| panic!("{format:?} answer does not decode: {err}"));
        assert_eq!(answer.usage, Some(reported(&reply)), "{format:?}");
        let choice = &answer.choices[0];
        assert_eq!(
            choice.finish_reason,
            Some(FinishReason::ToolCalls),
            "{format:?}"
        );
        let [Part::ToolCall(tool_call)] = choice.parts.as_slice() else {
            panic!("{format:?}: expected one tool call, got {:?}", choice.parts)
        };
        assert_eq!(tool_call.name, "get_weather");
        assert_eq!(json_args(&tool_call.arguments), arguments, "{format:?}");
        match format {
            WireFormat::OpenAi | WireFormat::AzureOpenAi => {
                assert_eq!(tool_call.id, OPENAI_TOOL_CALL_ID);
            }
            WireFormat::Anthropic => assert_eq!(tool_call.id, ANTHROPIC_TOOL_USE_ID),
            WireFormat::Gemini | WireFormat::Ollama => {}
        }

        let response = call(
            &upstream,
            format,
            true,
            &body(format, true, TOOL_TEXT, true),
        )
        .await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{format:?}: {}",
            response.text()
        );
        let decoded = decode_stream(format, &response.body);
        assert_eq!(decoded.text, "", "{format:?}");
        assert_eq!(decoded.finish, Some(FinishReason::ToolCalls), "{format:?}");
        assert_eq!(
            decoded.usage,
            Some(reported(&last_reply(&upstream))),
            "{format:?}"
        );
        let [(id, name, streamed_arguments)] = decoded.tool_calls.as_slice() else {
            panic!(
                "{format:?}: expected one tool call, got {:?}",
                decoded.tool_calls
            )
        };
        assert_eq!(name, "get_weather");
        assert_eq!(json_args(streamed_arguments), arguments, "{format:?}");
        assert!(!id.is_empty());
        // OpenAI and Anthropic stream the arguments in several pieces.
        let text = response.text();
        let pieces = match format {
            WireFormat::OpenAi | WireFormat::AzureOpenAi => text.matches("\"arguments\":").count(),
            WireFormat::Anthropic => text.matches("input_json_delta").count(),
            WireFormat::Gemini => text.matches("functionCall").count(),
            WireFormat::Ollama => text.matches("tool_calls").count(),
        };
        let expected_pieces = match format {
            WireFormat::OpenAi | WireFormat::AzureOpenAi => 4,
            WireFormat::Anthropic => 4,
            WireFormat::Gemini | WireFormat::Ollama => 1,
        };
        assert_eq!(pieces, expected_pieces, "{format:?}: {text}");
    }
}

#[tokio::test]
async fn no_tool_call_without_tools_trigger_or_after_a_tool_result() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    for format in WireFormat::ALL {
        // The trigger without tools, and tools without the trigger.
        for request in [
            body(format, false, TOOL_TEXT, false),
            body(format, false, USER_TEXT, true),
        ] {
            let response = call(&upstream, format, false, &request).await;
            assert_eq!(response.status, StatusCode::OK);
            assert!(matches!(
                last_reply(&upstream).content,
                ReplyContent::Text(_)
            ));
        }
    }
    // A conversation that already carries the tool result gets a text answer about the
    // question (the tool-result turn is not a user text turn).
    let follow_ups = [
        (
            WireFormat::OpenAi,
            json!({"model": "m", "tools": body(WireFormat::OpenAi, false, "", true)["tools"], "messages": [
                {"role": "user", "content": TOOL_TEXT},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ]}),
        ),
        (
            WireFormat::Anthropic,
            json!({"model": "m", "max_tokens": 100, "tools": body(WireFormat::Anthropic, false, "", true)["tools"], "messages": [
                {"role": "user", "content": TOOL_TEXT},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
            ]}),
        ),
        (
            WireFormat::Gemini,
            json!({"tools": body(WireFormat::Gemini, false, "", true)["tools"], "contents": [
                {"role": "user", "parts": [{"text": TOOL_TEXT}]},
                {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}]},
            ]}),
        ),
        (
            WireFormat::Ollama,
            json!({"model": "m", "stream": false, "tools": body(WireFormat::Ollama, false, "", true)["tools"], "messages": [
                {"role": "user", "content": TOOL_TEXT},
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "sunny"},
            ]}),
        ),
    ];
    for (format, request) in follow_ups {
        let response = call(&upstream, format, false, &request).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{format:?}: {}",
            response.text()
        );
        let reply = last_reply(&upstream);
        assert_eq!(
            reply.content,
            ReplyContent::Text(answer_text(TOOL_TEXT)),
            "{format:?}"
        );
        let answer = flowgate_translate::decode_response(kind(format), &response.body)
            .unwrap_or_else(|err| panic!("{format:?}: {err}"));
        assert_eq!(answer.choices[0].finish_reason, Some(FinishReason::Stop));
    }
}

/// Sets the output token limit of a request in `format`'s own field.
fn limit_output(format: WireFormat, request: &mut Value, limit: u64) {
    match format {
        WireFormat::OpenAi | WireFormat::AzureOpenAi | WireFormat::Anthropic => {
            request["max_tokens"] = json!(limit);
        }
        WireFormat::Gemini => request["generationConfig"] = json!({"maxOutputTokens": limit}),
        WireFormat::Ollama => request["options"] = json!({"num_predict": limit}),
    }
}

#[tokio::test]
async fn answers_longer_than_the_limit_are_cut_with_a_length_finish() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    let cut = "Hello from the";
    for format in WireFormat::ALL {
        let mut request = body(format, false, USER_TEXT, false);
        limit_output(format, &mut request, 3);
        let response = call(&upstream, format, false, &request).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{format:?}: {}",
            response.text()
        );
        let reply = last_reply(&upstream);
        assert!(reply.truncated, "{format:?}");
        assert_eq!(reply.text(), Some(cut));
        assert_eq!(reply.output_tokens, 3);
        let answer = flowgate_translate::decode_response(kind(format), &response.body)
            .unwrap_or_else(|err| panic!("{format:?}: {err}"));
        assert_eq!(
            answer.choices[0].finish_reason,
            Some(FinishReason::Length),
            "{format:?}"
        );
        assert_eq!(answer.usage, Some(reported(&reply)), "{format:?}");
        let [Part::Text { text, .. }] = answer.choices[0].parts.as_slice() else {
            panic!("{format:?}: {:?}", answer.choices[0].parts)
        };
        assert_eq!(text, cut);

        let mut request = body(format, true, USER_TEXT, false);
        limit_output(format, &mut request, 3);
        let response = call(&upstream, format, true, &request).await;
        let decoded = decode_stream(format, &response.body);
        assert_eq!(decoded.text, cut, "{format:?}");
        assert_eq!(decoded.finish, Some(FinishReason::Length), "{format:?}");
        assert_eq!(
            decoded.usage,
            Some(reported(&last_reply(&upstream))),
            "{format:?}"
        );
    }
    // A limit at or above the answer's length changes nothing.
    let mut request = body(WireFormat::OpenAi, false, USER_TEXT, false);
    limit_output(WireFormat::OpenAi, &mut request, 11);
    call(&upstream, WireFormat::OpenAi, false, &request).await;
    let reply = last_reply(&upstream);
    assert!(!reply.truncated);
    assert_eq!(reply.text(), Some(answer_text(USER_TEXT).as_str()));
}

#[tokio::test]
async fn cached_tokens_are_reported_in_each_providers_fields() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    upstream.report_cached_tokens(5);
    for format in WireFormat::ALL {
        for stream in [false, true] {
            let response = call(
                &upstream,
                format,
                stream,
                &body(format, stream, USER_TEXT, false),
            )
            .await;
            assert_eq!(
                response.status,
                StatusCode::OK,
                "{format:?}: {}",
                response.text()
            );
            let reply = last_reply(&upstream);
            let expected_cached = if format == WireFormat::Ollama { 0 } else { 5 };
            assert_eq!(reply.cached_tokens, expected_cached, "{format:?}");
            assert_eq!(reply.input_tokens, expected_input_tokens(USER_TEXT));
            let usage = if stream {
                decode_stream(format, &response.body).usage
            } else {
                flowgate_translate::decode_response(kind(format), &response.body)
                    .unwrap_or_else(|err| panic!("{format:?}: {err}"))
                    .usage
            };
            assert_eq!(usage, Some(reported(&reply)), "{format:?} stream={stream}");
            if !stream {
                let value = response.json();
                match format {
                    WireFormat::OpenAi | WireFormat::AzureOpenAi => {
                        assert_eq!(value["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
                        assert_eq!(value["usage"]["prompt_tokens"], reply.input_tokens);
                    }
                    WireFormat::Anthropic => {
                        assert_eq!(value["usage"]["cache_read_input_tokens"], 5);
                        assert_eq!(value["usage"]["input_tokens"], reply.input_tokens - 5);
                    }
                    WireFormat::Gemini => {
                        assert_eq!(value["usageMetadata"]["cachedContentTokenCount"], 5);
                        assert_eq!(
                            value["usageMetadata"]["promptTokenCount"],
                            reply.input_tokens
                        );
                    }
                    WireFormat::Ollama => assert!(value.get("prompt_eval_cached_count").is_none()),
                }
            }
        }
    }
    upstream.report_cached_tokens(0);
    call(
        &upstream,
        WireFormat::Anthropic,
        false,
        &body(WireFormat::Anthropic, false, USER_TEXT, false),
    )
    .await;
    assert_eq!(last_reply(&upstream).cached_tokens, 0);
    // Earlier requests keep the figure they were answered with.
    assert_eq!(
        upstream.requests()[0]
            .reply()
            .map(|reply| reply.cached_tokens),
        Some(5)
    );
}

#[tokio::test]
async fn openai_answers_are_the_mock_providers_own() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    for stream in [false, true] {
        let request = body(WireFormat::OpenAi, stream, USER_TEXT, false);
        let response = call(&upstream, WireFormat::OpenAi, stream, &request).await;
        let own = flowgate_providers::mock::chat(
            request.to_string().as_bytes(),
            "gpt-test",
            "req_upstream",
        )
        .unwrap_or_else(|err| panic!("mock provider: {err}"));
        let expected: Bytes = match own {
            flowgate_providers::mock::MockAnswer::Json(json) => json,
            flowgate_providers::mock::MockAnswer::Stream(chunks) => chunks.concat().into(),
        };
        assert_eq!(response.body, expected);
    }
    // And the documented usage function agrees with the provider's numbers.
    let request = json!({"model": "m", "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "one two"}, {"type": "text", "text": "three"}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "four five six seven"},
    ]});
    let response = call(&upstream, WireFormat::OpenAi, false, &request).await;
    let value = response.json();
    let reply = last_reply(&upstream);
    assert_eq!(value["usage"]["prompt_tokens"], reply.input_tokens);
    assert_eq!(value["usage"]["completion_tokens"], reply.output_tokens);
    assert_eq!(
        value["choices"][0]["message"]["content"],
        answer_text("four five six seven")
    );
}

#[tokio::test]
async fn error_statuses_have_each_providers_shape() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    for format in WireFormat::ALL {
        for status in [400, 401, 403, 404, 429, 500, 503, 504] {
            if status == 429 {
                upstream.push(Behaviour::error_with_retry_after(format, status, "2"));
            } else {
                upstream.push(Behaviour::error(format, status));
            }
            let response = call(
                &upstream,
                format,
                false,
                &body(format, false, USER_TEXT, false),
            )
            .await;
            assert_eq!(response.status.as_u16(), status, "{format:?}");
            assert_eq!(
                response.header("retry-after"),
                (status == 429).then_some("2"),
                "{format:?}"
            );
            let value = response.json();
            match format {
                WireFormat::OpenAi | WireFormat::AzureOpenAi => {
                    assert!(value["error"]["type"].is_string());
                    assert!(value["error"].get("param").is_some());
                }
                WireFormat::Anthropic => {
                    assert_eq!(value["type"], "error");
                    assert!(value["error"]["type"].is_string());
                }
                WireFormat::Gemini => {
                    assert_eq!(value["error"]["code"], status);
                    assert!(value["error"]["status"].is_string());
                }
                WireFormat::Ollama => assert!(value["error"].is_string()),
            }
            let parsed =
                flowgate_translate::parse_upstream_error(kind(format), status, &response.body);
            assert_eq!(parsed.message, error_message(status), "{format:?}");
            // OpenAI's documented 404 (`model_not_found`) has type `invalid_request_error`,
            // which the translator classifies as such.
            let expected = match (format, status) {
                (WireFormat::OpenAi | WireFormat::AzureOpenAi, 404) => ErrorKind::InvalidRequest,
                _ => ErrorKind::from_status(status),
            };
            assert_eq!(parsed.kind, expected, "{format:?} {status}");
        }
    }
}

#[tokio::test]
async fn malformed_bodies_get_a_400_in_the_providers_shape() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    let client = TestClient::new();
    for format in WireFormat::ALL {
        let response = client
            .call(Method::POST, &url(&upstream, format, false), &[], "{")
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{format:?}");
        let parsed = flowgate_translate::parse_upstream_error(kind(format), 400, &response.body);
        assert_eq!(parsed.kind, ErrorKind::InvalidRequest, "{format:?}");
        assert!(
            parsed.message.contains("invalid request body"),
            "{format:?}"
        );
    }
    // Anthropic requires max_tokens, like the real API.
    let mut request = body(WireFormat::Anthropic, false, USER_TEXT, false);
    request
        .as_object_mut()
        .map(|object| object.remove("max_tokens"));
    let response = call(&upstream, WireFormat::Anthropic, false, &request).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json()["error"]["type"], "invalid_request_error");
    // Unknown paths and methods are refused and not recorded.
    let before = upstream.request_count();
    let missing = client
        .call(
            Method::POST,
            &format!("http://{}/v1/unknown", upstream.addr),
            &[],
            "{}",
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let get = client
        .call(
            Method::GET,
            &format!("{}/messages", upstream.base_url_for(WireFormat::Anthropic)),
            &[],
            "",
        )
        .await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(upstream.request_count(), before);
}

#[tokio::test]
async fn requests_are_recorded_with_query_and_headers() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    let client = TestClient::new();
    let cases = [
        (WireFormat::AzureOpenAi, ("api-key", "azure-secret")),
        (WireFormat::Anthropic, ("x-api-key", "anthropic-secret")),
        (WireFormat::Gemini, ("x-goog-api-key", "gemini-secret")),
    ];
    for (format, (name, value)) in cases {
        let response = client
            .call(
                Method::POST,
                &url(&upstream, format, false),
                &[(name, value), ("anthropic-version", "2023-06-01")],
                body(format, false, USER_TEXT, false).to_string(),
            )
            .await;
        assert_eq!(response.status, StatusCode::OK);
        let recorded = upstream.requests();
        let request = &recorded[recorded.len() - 1];
        assert_eq!(request.header(name), Some(value));
        assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(request.format(), Some(format));
        assert_eq!(
            request.json()["messages"],
            body(format, false, USER_TEXT, false)["messages"]
        );
    }
    let recorded = upstream.requests();
    assert_eq!(
        recorded[0].path,
        "/openai/deployments/gpt-deployment/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(recorded[0].query_param("api-version"), Some("2024-10-21"));
    assert_eq!(recorded[1].path, "/v1/messages");
    assert_eq!(
        recorded[2].path,
        "/v1beta/models/gemini-test:generateContent"
    );

    // Azure embeddings, and a Gemini stream without alt=sse (one JSON array).
    let embeddings = client
        .post_json(
            &format!(
                "{}/openai/deployments/emb/embeddings?api-version=2024-10-21",
                upstream.base_url_for(WireFormat::AzureOpenAi)
            ),
            "k",
            &json!({"input": ["a", "b"]}),
        )
        .await;
    assert_eq!(embeddings.json()["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(embeddings.json()["model"], "emb");
    assert!(upstream.requests()[3].reply().is_none());
    let array = client
        .post_json(
            &format!(
                "{}/models/g:streamGenerateContent",
                upstream.base_url_for(WireFormat::Gemini)
            ),
            "k",
            &body(WireFormat::Gemini, true, USER_TEXT, false),
        )
        .await;
    let responses = array.json();
    let responses = responses.as_array().map(Vec::as_slice).unwrap_or_default();
    assert_eq!(responses.len(), answer_text(USER_TEXT).split(' ').count());
    assert_eq!(responses[0]["responseId"], wire::GEMINI_RESPONSE_ID);
}

/// Reads chunks until the body ends, fails, or stays silent for `silence`.
async fn read_until_silent(
    response: http::Response<hyper::body::Incoming>,
    silence: Duration,
) -> (Vec<Bytes>, &'static str) {
    let mut body = response.into_body();
    let mut chunks = Vec::new();
    loop {
        match tokio::time::timeout(silence, next_chunk(&mut body)).await {
            Err(_) => return (chunks, "silent"),
            Ok(None) => return (chunks, "ended"),
            Ok(Some(Err(_))) => return (chunks, "broken"),
            Ok(Some(Ok(chunk))) => chunks.push(chunk),
        }
    }
}

#[tokio::test]
async fn broken_streams_in_every_format() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    let client = TestClient::new();
    for format in WireFormat::ALL {
        let target = url(&upstream, format, true);
        let payload = body(format, true, USER_TEXT, false).to_string();
        let send = || client.send(Method::POST, &target, &[], payload.clone());
        upstream.push(Behaviour::StallMidStream { after: 2 });
        let (chunks, how) = read_until_silent(send().await, Duration::from_millis(300)).await;
        assert_eq!((chunks.len(), how), (2, "silent"), "{format:?}");

        upstream.push(Behaviour::ResetMidStream { after: 2 });
        let (chunks, how) = read_until_silent(send().await, Duration::from_secs(5)).await;
        assert_eq!((chunks.len(), how), (2, "broken"), "{format:?}");

        upstream.push(Behaviour::ErrorMidStream {
            after: 2,
            status: 529,
        });
        let (chunks, how) = read_until_silent(send().await, Duration::from_secs(5)).await;
        assert_eq!((chunks.len(), how), (3, "ended"), "{format:?}");
        let body: Vec<u8> = chunks.concat();
        let mut decoder = StreamDecoder::new(kind(format), "fallback");
        let mut events = Vec::new();
        decoder
            .feed(&body, &mut events)
            .unwrap_or_else(|err| panic!("{format:?}: {err}"));
        let _ = decoder.finish(&mut events);
        let error = events.iter().find_map(|event| match event {
            StreamEvent::Error { message, .. } => Some(message.as_str()),
            _ => None,
        });
        assert_eq!(
            error,
            Some(MID_STREAM_ERROR_MESSAGE),
            "{format:?}: {events:?}"
        );

        upstream.push(Behaviour::StallBeforeHead(Duration::from_millis(150)));
        let started = std::time::Instant::now();
        let response = send().await;
        assert!(started.elapsed() >= Duration::from_millis(150));
        let (chunks, how) = read_until_silent(response, Duration::from_secs(5)).await;
        assert_eq!(how, "ended");
        assert!(decode_stream(format, &chunks.concat()).done, "{format:?}");

        upstream.push(Behaviour::Chunks {
            chunks: vec!["one\n".to_owned(), "two\n".to_owned()],
            delay: Duration::from_millis(5),
        });
        let response = send().await;
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok()),
            Some(format.stream_content_type())
        );
        let (chunks, _) = read_until_silent(response, Duration::from_secs(5)).await;
        assert_eq!(chunks.concat(), b"one\ntwo\n".to_vec());
    }
    // Stalled streams were abandoned by the client (dropped bodies), and counted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(upstream.abandoned_streams() >= WireFormat::ALL.len());
}

#[tokio::test]
async fn a_gateway_configured_with_provider_toml_reaches_every_format() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock: {err}"));
    let mut config = String::new();
    for (index, format) in WireFormat::ALL.into_iter().enumerate() {
        config.push_str(&upstream.provider_toml(format, &format!("p{index}")));
        config.push_str(&format!(
            "\n[[models]]\nname = \"m{index}\"\nroutes = [ {{ provider = \"p{index}\", model = \"{}\" }} ]\n\n",
            model(format)
        ));
    }
    let gateway = TestGateway::spawn(&config, &[])
        .await
        .unwrap_or_else(|err| panic!("gateway: {err:#}\n{config}"));
    let client = TestClient::new();
    for (index, format) in WireFormat::ALL.into_iter().enumerate() {
        let response = client
            .post_json(
                &gateway.url("/v1/chat/completions"),
                &gateway.tenant_key,
                &json!({"model": format!("m{index}"), "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": USER_TEXT},
                ]}),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{format:?}: {}",
            response.text()
        );
        let seen = upstream
            .last_request()
            .unwrap_or_else(|| panic!("{format:?}: the upstream saw nothing"));
        assert_eq!(seen.format(), Some(format));
        let reply = last_reply(&upstream);
        assert_eq!(reply.model, model(format));
        let body = response.json();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            answer_text(USER_TEXT)
        );
        assert_eq!(
            body["usage"]["prompt_tokens"], reply.input_tokens,
            "{format:?}"
        );
        assert_eq!(
            body["usage"]["completion_tokens"], reply.output_tokens,
            "{format:?}"
        );
    }
    let recorded = upstream.requests();
    assert_eq!(
        recorded[1].query_param("api-version"),
        Some(wire::AZURE_API_VERSION)
    );
}
