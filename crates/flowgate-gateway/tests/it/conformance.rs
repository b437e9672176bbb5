//! The translation conformance suite: every ingress dialect (OpenAI Chat Completions,
//! Anthropic Messages) against every upstream wire format (OpenAI, Azure OpenAI, Anthropic,
//! Gemini, Ollama, each served over real HTTP by the mock upstream, plus the in-process `mock`
//! provider), complete and streamed, text and tool calls. Each answer is checked field by
//! field against what the upstream actually answered (`MockUpstream::last_reply`): text, tool
//! name and arguments, finish reason, and usage equal to the upstream's report. Upstream
//! 400/401/429/500 and a first-byte timeout come back with the right status in the client's
//! own error shape.

use crate::sse_events;
use flowgate_test_support::client::next_chunk;
use flowgate_test_support::upstream::wire::TOOL_ARGUMENTS;
use flowgate_test_support::{
    Behaviour, MockReply, MockUpstream, ReplyContent, TestClient, TestGateway, WireFormat,
};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ingress {
    OpenAi,
    Anthropic,
}

const MODEL: &str = "conformance-model";
const SYSTEM: &str = "Be brief.";
const TEXT_PROMPT: &str = "Say hello to Paris";
const TOOL_PROMPT: &str = "What is the weather in Paris?";

/// What the client saw, in neutral terms.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    text: String,
    tool: Option<(String, Value)>,
    finish: String,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

async fn gateway_for(format: Option<WireFormat>) -> (Option<MockUpstream>, TestGateway) {
    let (upstream, provider) = match format {
        Some(format) => {
            let upstream = MockUpstream::start()
                .await
                .unwrap_or_else(|err| panic!("mock upstream: {err}"));
            let provider = upstream.provider_toml(format, "up");
            (Some(upstream), provider)
        }
        None => (
            None,
            "[[providers]]\nname = \"up\"\nkind = \"mock\"\n".to_owned(),
        ),
    };
    let upstream_model = match format {
        Some(WireFormat::AzureOpenAi) => "gpt-deployment",
        Some(WireFormat::Gemini) => "gemini-test",
        _ => "upstream-model",
    };
    let config = format!(
        "{provider}\n[[models]]\nname = \"{MODEL}\"\nroutes = [ {{ provider = \"up\", model = \"{upstream_model}\" }} ]\n"
    );
    let gateway = TestGateway::spawn(&config, &[])
        .await
        .unwrap_or_else(|err| panic!("gateway: {err:#}"));
    (upstream, gateway)
}

fn tools(ingress: Ingress) -> Value {
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    match ingress {
        Ingress::OpenAi => json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": schema}},
            {"type": "function", "function": {"name": "get_time", "parameters": schema}},
        ]),
        Ingress::Anthropic => json!([
            {"name": "get_weather", "description": "Weather", "input_schema": schema},
            {"name": "get_time", "input_schema": schema},
        ]),
    }
}

fn request(ingress: Ingress, stream: bool, tool: bool) -> (&'static str, Value) {
    let prompt = if tool { TOOL_PROMPT } else { TEXT_PROMPT };
    match ingress {
        Ingress::OpenAi => {
            let mut body = json!({
                "model": MODEL,
                "max_tokens": 100,
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": prompt},
                ],
                "stream": stream,
            });
            if stream {
                body["stream_options"] = json!({"include_usage": true});
            }
            if tool {
                body["tools"] = tools(ingress);
            }
            ("/v1/chat/completions", body)
        }
        Ingress::Anthropic => {
            let mut body = json!({
                "model": MODEL,
                "max_tokens": 100,
                "system": SYSTEM,
                "messages": [{"role": "user", "content": prompt}],
                "stream": stream,
            });
            if tool {
                body["tools"] = tools(ingress);
            }
            ("/v1/messages", body)
        }
    }
}

fn headers(ingress: Ingress, key: &str) -> Vec<(&'static str, String)> {
    match ingress {
        Ingress::OpenAi => vec![("authorization", format!("Bearer {key}"))],
        Ingress::Anthropic => vec![
            ("x-api-key", key.to_owned()),
            ("anthropic-version", "2023-06-01".to_owned()),
        ],
    }
}

async fn call(
    gateway: &TestGateway,
    ingress: Ingress,
    stream: bool,
    tool: bool,
) -> (StatusCode, String) {
    let (path, body) = request(ingress, stream, tool);
    let owned = headers(ingress, &gateway.tenant_key);
    let borrowed: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let response = TestClient::new()
        .send(
            Method::POST,
            &gateway.url(path),
            &borrowed,
            body.to_string(),
        )
        .await;
    let status = response.status();
    let mut incoming = response.into_body();
    let mut text = String::new();
    while let Some(chunk) = next_chunk(&mut incoming).await {
        match chunk {
            Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Err(err) => panic!("body broke: {err}"),
        }
    }
    (status, text)
}

fn parse_arguments(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("tool arguments {text:?}: {err}"))
}

fn read_openai(stream: bool, text: &str) -> Seen {
    let mut seen = Seen::default();
    if !stream {
        let body: Value = serde_json::from_str(text).unwrap_or_else(|err| panic!("{err}: {text}"));
        let message = &body["choices"][0]["message"];
        seen.text = message["content"].as_str().unwrap_or_default().to_owned();
        if let Some(call) = message["tool_calls"].get(0) {
            assert!(
                call["id"].as_str().is_some_and(|id| !id.is_empty()),
                "{body}"
            );
            seen.tool = Some((
                call["function"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                parse_arguments(call["function"]["arguments"].as_str().unwrap_or_default()),
            ));
        }
        seen.finish = body["choices"][0]["finish_reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        seen.input_tokens = body["usage"]["prompt_tokens"].as_u64();
        seen.output_tokens = body["usage"]["completion_tokens"].as_u64();
        return seen;
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let mut tool_name = None;
    let mut arguments = String::new();
    for (_, event) in sse_events(text) {
        if let Some(usage) = event.get("usage").filter(|usage| usage.is_object()) {
            seen.input_tokens = usage["prompt_tokens"].as_u64();
            seen.output_tokens = usage["completion_tokens"].as_u64();
        }
        let Some(choice) = event["choices"].get(0) else {
            continue;
        };
        if let Some(piece) = choice["delta"]["content"].as_str() {
            seen.text.push_str(piece);
        }
        if let Some(call) = choice["delta"]["tool_calls"].get(0) {
            if let Some(name) = call["function"]["name"].as_str() {
                tool_name = Some(name.to_owned());
            }
            arguments.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            seen.finish = finish.to_owned();
        }
    }
    seen.tool = tool_name.map(|name| (name, parse_arguments(&arguments)));
    seen
}

fn read_anthropic(stream: bool, text: &str) -> Seen {
    let mut seen = Seen::default();
    if !stream {
        let body: Value = serde_json::from_str(text).unwrap_or_else(|err| panic!("{err}: {text}"));
        assert_eq!(body["type"], "message", "{body}");
        for block in body["content"].as_array().cloned().unwrap_or_default() {
            match block["type"].as_str() {
                Some("text") => seen
                    .text
                    .push_str(block["text"].as_str().unwrap_or_default()),
                Some("tool_use") => {
                    assert!(
                        block["id"].as_str().is_some_and(|id| !id.is_empty()),
                        "{body}"
                    );
                    seen.tool = Some((
                        block["name"].as_str().unwrap_or_default().to_owned(),
                        block["input"].clone(),
                    ));
                }
                other => panic!("unexpected block {other:?} in {body}"),
            }
        }
        seen.finish = body["stop_reason"].as_str().unwrap_or_default().to_owned();
        seen.input_tokens = body["usage"]["input_tokens"].as_u64();
        seen.output_tokens = body["usage"]["output_tokens"].as_u64();
        return seen;
    }
    let events = sse_events(text);
    assert_eq!(
        events.first().map(|(name, _)| name.as_str()),
        Some("message_start"),
        "{text}"
    );
    assert_eq!(
        events.last().map(|(name, _)| name.as_str()),
        Some("message_stop"),
        "{text}"
    );
    let mut tool_name = None;
    let mut arguments = String::new();
    for (name, event) in &events {
        assert_eq!(event["type"], name.as_str(), "{text}");
        match name.as_str() {
            "message_start" => {
                seen.input_tokens = event["message"]["usage"]["input_tokens"]
                    .as_u64()
                    .filter(|tokens| *tokens > 0);
            }
            "content_block_start" if event["content_block"]["type"] == "tool_use" => {
                tool_name = event["content_block"]["name"].as_str().map(str::to_owned);
            }
            "content_block_delta" => match event["delta"]["type"].as_str() {
                Some("text_delta") => seen
                    .text
                    .push_str(event["delta"]["text"].as_str().unwrap_or_default()),
                Some("input_json_delta") => {
                    arguments.push_str(event["delta"]["partial_json"].as_str().unwrap_or_default());
                }
                _ => {}
            },
            "message_delta" => {
                seen.finish = event["delta"]["stop_reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                seen.output_tokens = event["usage"]["output_tokens"].as_u64();
                if let Some(input) = event["usage"]["input_tokens"].as_u64() {
                    seen.input_tokens = Some(input);
                }
            }
            _ => {}
        }
    }
    seen.tool = tool_name.map(|name| (name, parse_arguments(&arguments)));
    seen
}

/// What the client must have seen for the upstream's reply.
fn expected(ingress: Ingress, reply: &MockReply) -> Seen {
    let (text, tool) = match &reply.content {
        ReplyContent::Text(text) => (text.clone(), None),
        ReplyContent::ToolCall { name, arguments } => (
            String::new(),
            Some((name.clone(), parse_arguments(arguments))),
        ),
    };
    let finish = match (ingress, tool.is_some()) {
        (Ingress::OpenAi, false) => "stop",
        (Ingress::OpenAi, true) => "tool_calls",
        (Ingress::Anthropic, false) => "end_turn",
        (Ingress::Anthropic, true) => "tool_use",
    };
    Seen {
        text,
        tool,
        finish: finish.to_owned(),
        input_tokens: Some(reply.input_tokens),
        output_tokens: Some(reply.output_tokens),
    }
}

async fn answers_match(format: Option<WireFormat>) {
    let (upstream, gateway) = gateway_for(format).await;
    for ingress in [Ingress::OpenAi, Ingress::Anthropic] {
        for stream in [false, true] {
            for tool in [false, true] {
                if format.is_none() && tool {
                    continue; // the built-in mock answers text only
                }
                let case = format!("{ingress:?} <- {format:?}, stream {stream}, tool {tool}");
                let (status, text) = call(&gateway, ingress, stream, tool).await;
                assert_eq!(status, StatusCode::OK, "{case}: {text}");
                let seen = match ingress {
                    Ingress::OpenAi => read_openai(stream, &text),
                    Ingress::Anthropic => read_anthropic(stream, &text),
                };
                match &upstream {
                    Some(upstream) => {
                        let reply = upstream
                            .last_reply()
                            .unwrap_or_else(|| panic!("{case}: upstream saw nothing"));
                        assert_eq!(reply.stream, stream, "{case}");
                        assert_eq!(seen, expected(ingress, &reply), "{case}: {text}");
                        if tool {
                            assert_eq!(
                                seen.tool.as_ref().map(|(_, arguments)| arguments.clone()),
                                Some(parse_arguments(TOOL_ARGUMENTS)),
                                "{case}"
                            );
                        }
                    }
                    None => {
                        assert!(
                            seen.text
                                .starts_with("Hello from the flowgate mock provider"),
                            "{case}: {text}"
                        );
                        assert!(
                            seen.input_tokens.unwrap_or(0) > 0
                                && seen.output_tokens.unwrap_or(0) > 0,
                            "{case}: {text}"
                        );
                    }
                }
            }
        }
    }
}

fn error_shape(ingress: Ingress, body: &str) -> (String, String) {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {body}"));
    match ingress {
        Ingress::OpenAi => {
            assert!(value["error"]["type"].is_string(), "{body}");
            (
                value["error"]["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                value["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
        Ingress::Anthropic => {
            assert_eq!(value["type"], "error", "{body}");
            (
                value["error"]["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                value["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    }
}

async fn errors_match(format: WireFormat) {
    let (upstream, gateway) = gateway_for(Some(format)).await;
    let Some(upstream) = upstream else { return };
    for ingress in [Ingress::OpenAi, Ingress::Anthropic] {
        for (status, expected) in [
            (400, StatusCode::BAD_REQUEST),
            (401, StatusCode::BAD_GATEWAY),
            (429, StatusCode::TOO_MANY_REQUESTS),
            (500, StatusCode::BAD_GATEWAY),
        ] {
            upstream.push(Behaviour::error(format, status));
            let (got, body) = call(&gateway, ingress, false, false).await;
            let case = format!("{ingress:?} <- {format:?} upstream {status}");
            assert_eq!(got, expected, "{case}: {body}");
            let (kind, message) = error_shape(ingress, &body);
            assert!(
                message.contains(&format!("mock upstream error {status}")) || status != 400,
                "{case}: {body}"
            );
            let expected_kind = match (ingress, status) {
                (_, 400) => "invalid_request_error",
                (_, 429) => "rate_limit_error",
                (Ingress::OpenAi, _) => "api_error",
                (Ingress::Anthropic, _) => "api_error",
            };
            assert_eq!(kind, expected_kind, "{case}: {body}");
        }
        upstream.push(Behaviour::StallBeforeHead(Duration::from_secs(4)));
        let (got, body) = call(&gateway, ingress, true, false).await;
        assert_eq!(
            got,
            StatusCode::GATEWAY_TIMEOUT,
            "{ingress:?} <- {format:?} timeout: {body}"
        );
        error_shape(ingress, &body);
    }
}

#[tokio::test]
async fn openai_upstream() {
    answers_match(Some(WireFormat::OpenAi)).await;
    errors_match(WireFormat::OpenAi).await;
}

#[tokio::test]
async fn azure_openai_upstream() {
    answers_match(Some(WireFormat::AzureOpenAi)).await;
    errors_match(WireFormat::AzureOpenAi).await;
}

#[tokio::test]
async fn anthropic_upstream() {
    answers_match(Some(WireFormat::Anthropic)).await;
    errors_match(WireFormat::Anthropic).await;
}

#[tokio::test]
async fn gemini_upstream() {
    answers_match(Some(WireFormat::Gemini)).await;
    errors_match(WireFormat::Gemini).await;
}

#[tokio::test]
async fn ollama_upstream() {
    answers_match(Some(WireFormat::Ollama)).await;
    errors_match(WireFormat::Ollama).await;
}

#[tokio::test]
async fn builtin_mock_upstream() {
    answers_match(None).await;
}

#[tokio::test]
async fn anthropic_headers_reach_anthropic_upstreams_only() {
    let (upstream, gateway) = gateway_for(Some(WireFormat::Anthropic)).await;
    let Some(upstream) = upstream else { return };
    let (path, body) = request(Ingress::Anthropic, false, false);
    let response = TestClient::new()
        .call(
            Method::POST,
            &gateway.url(path),
            &[
                ("x-api-key", &gateway.tenant_key),
                ("anthropic-version", "2023-06-01"),
                ("anthropic-beta", "prompt-caching-2024-07-31"),
            ],
            body.to_string(),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let recorded = upstream
        .last_request()
        .unwrap_or_else(|| panic!("no request"));
    assert_eq!(recorded.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        recorded.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    // The tenant's key never leaves the gateway.
    assert_ne!(
        recorded.header("x-api-key"),
        Some(gateway.tenant_key.as_str())
    );
    // An OpenAI client still gets the default version header upstream.
    let (status, _) = call(&gateway, Ingress::OpenAi, false, false).await;
    assert_eq!(status, StatusCode::OK);
    let recorded = upstream
        .last_request()
        .unwrap_or_else(|| panic!("no request"));
    assert_eq!(recorded.header("anthropic-version"), Some("2023-06-01"));
    assert!(recorded.header("anthropic-beta").is_none());
}
