//! Request translation: each ingress fixture to each upstream kind, field by field, and the
//! refusals (`Unsupported`) for what cannot be translated.

use flowgate_translate::ir::{Ingress, Role, UpstreamKind};
use flowgate_translate::{TranslateError, encode_request, parse_request};
use serde_json::{Value, json};

use crate::support::fixture;

fn encode(ingress: Ingress, body: &[u8], kind: UpstreamKind) -> Value {
    let request = parse_request(ingress, body).expect("parse");
    let bytes = encode_request(kind, &request, "upstream-model").expect("encode");
    serde_json::from_slice(&bytes).expect("json")
}

fn unsupported_field(result: Result<impl Sized, TranslateError>) -> String {
    match result {
        Err(TranslateError::Unsupported { field, .. }) => field,
        Err(other) => panic!("expected Unsupported, got {other}"),
        Ok(_) => panic!("expected Unsupported, got success"),
    }
}

#[test]
fn openai_request_parses_into_the_ir() {
    let request =
        parse_request(Ingress::OpenAi, &fixture("openai_request_tools.json")).expect("parse");
    assert_eq!(request.model, "gpt-4o");
    assert_eq!(request.messages.len(), 6);
    assert_eq!(request.messages[0].role, Role::System);
    assert_eq!(request.messages[3].role, Role::Tool);
    assert_eq!(request.tools.len(), 2);
    assert_eq!(request.stop, vec!["###"]);
    assert_eq!(request.max_tokens, Some(512));
    assert!(request.stream && request.include_usage);
    assert_eq!(request.user.as_deref(), Some("user-42"));
}

#[test]
fn openai_request_to_anthropic() {
    let out = encode(
        Ingress::OpenAi,
        &fixture("openai_request_tools.json"),
        UpstreamKind::Anthropic,
    );
    assert_eq!(out["model"], "upstream-model");
    assert_eq!(out["system"], "You are a helpful assistant.");
    assert_eq!(out["max_tokens"], 512);
    assert_eq!(out["stop_sequences"], json!(["###"]));
    assert_eq!(out["temperature"], 0.7);
    assert_eq!(out["top_p"], 0.9);
    assert_eq!(out["stream"], true);
    assert_eq!(out["metadata"]["user_id"], "user-42");
    assert_eq!(out["tool_choice"], json!({"type": "auto"}));
    assert_eq!(out["tools"][0]["name"], "get_weather");
    assert_eq!(out["tools"][0]["input_schema"]["required"], json!(["city"]));
    let messages = out["messages"].as_array().expect("messages");
    assert_eq!(
        messages.len(),
        3,
        "user, assistant, user(tool results + text)"
    );
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(
        messages[0]["content"][0],
        json!({"type": "text", "text": "What's the weather and time in Paris?"})
    );
    assert_eq!(
        messages[0]["content"][1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(
        messages[1]["content"][0],
        json!({"type": "tool_use", "id": "call_weather", "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}})
    );
    assert_eq!(
        messages[1]["content"][1]["input"],
        json!({"timezone": "Europe/Paris"})
    );
    let last = messages[2]["content"].as_array().expect("content");
    assert_eq!(last.len(), 3);
    assert_eq!(last[0]["type"], "tool_result");
    assert_eq!(last[0]["tool_use_id"], "call_weather");
    assert_eq!(
        last[0]["content"][0]["text"],
        "{\"temperature\":18,\"condition\":\"cloudy\"}"
    );
    assert_eq!(last[1]["tool_use_id"], "call_time");
    assert_eq!(
        last[2],
        json!({"type": "text", "text": "Summarise in one sentence."})
    );
}

#[test]
fn openai_request_to_openai_asks_for_usage() {
    let out = encode(
        Ingress::OpenAi,
        &fixture("openai_request_tools.json"),
        UpstreamKind::OpenAi,
    );
    assert_eq!(out["model"], "upstream-model");
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    assert_eq!(out["messages"][2]["content"], Value::Null);
    assert_eq!(
        out["messages"][2]["tool_calls"][1]["function"]["name"],
        "get_time"
    );
    assert_eq!(
        out["messages"][1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
    assert_eq!(
        out["messages"][1]["content"][1]["image_url"]["detail"],
        "low"
    );
}

#[test]
fn openai_request_to_gemini() {
    let mut body: Value =
        serde_json::from_slice(&fixture("openai_request_tools.json")).expect("json");
    body["response_format"] = json!({"type": "json_object"});
    let out = encode(
        Ingress::OpenAi,
        &serde_json::to_vec(&body).expect("bytes"),
        UpstreamKind::Gemini,
    );
    assert!(out.get("model").is_none(), "the model goes in the URL");
    assert_eq!(
        out["systemInstruction"]["parts"][0]["text"],
        "You are a helpful assistant."
    );
    let contents = out["contents"].as_array().expect("contents");
    assert_eq!(
        contents.len(),
        4,
        "user, model, user(function responses), user"
    );
    assert_eq!(contents[0]["role"], "user");
    assert_eq!(
        contents[0]["parts"][1]["inlineData"],
        json!({"mimeType": "image/png", "data": "iVBORw0KGgo="})
    );
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(
        contents[1]["parts"][0]["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Paris", "unit": "celsius"}})
    );
    assert_eq!(
        contents[2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"temperature": 18, "condition": "cloudy"}})
    );
    assert_eq!(
        contents[2]["parts"][1]["functionResponse"],
        json!({"name": "get_time", "response": {"output": "14:05"}})
    );
    let config = &out["generationConfig"];
    assert_eq!(config["maxOutputTokens"], 512);
    assert_eq!(config["stopSequences"], json!(["###"]));
    assert_eq!(config["temperature"], 0.7);
    assert_eq!(config["topP"], 0.9);
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(
        out["tools"][0]["functionDeclarations"][1]["name"],
        "get_time"
    );
    assert_eq!(
        out["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["properties"]["unit"]["enum"],
        json!(["celsius", "fahrenheit"])
    );
    assert_eq!(out["toolConfig"]["functionCallingConfig"]["mode"], "AUTO");
}

#[test]
fn anthropic_request_to_openai() {
    let out = encode(
        Ingress::Anthropic,
        &fixture("anthropic_request_tools.json"),
        UpstreamKind::OpenAi,
    );
    assert_eq!(out["model"], "upstream-model");
    assert_eq!(out["max_tokens"], 1024);
    assert_eq!(out["stop"], json!(["###"]));
    assert_eq!(out["stream"], true);
    assert_eq!(
        out["stream_options"],
        json!({"include_usage": true}),
        "usage is always requested"
    );
    assert_eq!(out["user"], "user-42");
    assert_eq!(out["parallel_tool_calls"], true);
    assert_eq!(out["tool_choice"], "auto");
    assert_eq!(out["tools"][0]["type"], "function");
    assert_eq!(
        out["tools"][0]["function"]["parameters"]["required"],
        json!(["city"])
    );
    let messages = out["messages"].as_array().expect("messages");
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": "You are a helpful assistant."})
    );
    assert_eq!(messages[1]["role"], "user");
    assert_eq!(
        messages[1]["content"][0]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
    assert_eq!(
        messages[1]["content"][1]["text"],
        "What's the weather and time in Paris?"
    );
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["content"], "Let me check both.");
    assert_eq!(messages[2]["tool_calls"][0]["id"], "toolu_01");
    let arguments: Value = serde_json::from_str(
        messages[2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .expect("string"),
    )
    .expect("arguments JSON");
    assert_eq!(arguments, json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(
        messages[3],
        json!({"role": "tool", "content": "{\"temperature\":18}", "tool_call_id": "toolu_01"})
    );
    assert_eq!(
        messages[4],
        json!({"role": "tool", "content": "[tool error] clock unavailable", "tool_call_id": "toolu_02"})
    );
    assert_eq!(
        messages[5],
        json!({"role": "user", "content": "Summarise in one sentence."})
    );
    assert_eq!(messages.len(), 6);
}

#[test]
fn anthropic_request_to_ollama() {
    let out = encode(
        Ingress::Anthropic,
        &fixture("anthropic_request_tools.json"),
        UpstreamKind::Ollama,
    );
    assert_eq!(out["model"], "upstream-model");
    assert_eq!(out["stream"], true);
    assert_eq!(out["options"]["num_predict"], 1024);
    assert_eq!(out["options"]["stop"], json!(["###"]));
    assert_eq!(out["options"]["temperature"], 0.5);
    let messages = out["messages"].as_array().expect("messages");
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": "You are a helpful assistant."})
    );
    assert_eq!(messages[1]["images"], json!(["iVBORw0KGgo="]));
    assert_eq!(
        messages[2]["tool_calls"][0]["function"]["arguments"],
        json!({"city": "Paris", "unit": "celsius"})
    );
    assert_eq!(
        messages[3],
        json!({"role": "tool", "content": "{\"temperature\":18}", "tool_name": "get_weather"})
    );
    assert_eq!(messages[4]["tool_name"], "get_time");
    assert_eq!(messages[5]["content"], "Summarise in one sentence.");
    assert_eq!(out["tools"][1]["function"]["name"], "get_time");
}

#[test]
fn anthropic_request_to_gemini_marks_tool_errors() {
    let out = encode(
        Ingress::Anthropic,
        &fixture("anthropic_request_tools.json"),
        UpstreamKind::Gemini,
    );
    let contents = out["contents"].as_array().expect("contents");
    assert_eq!(contents[2]["role"], "user");
    assert_eq!(
        contents[2]["parts"][1]["functionResponse"],
        json!({"name": "get_time", "response": {"error": "clock unavailable"}})
    );
    assert_eq!(
        contents[2]["parts"][2]["text"],
        "Summarise in one sentence."
    );
}

#[test]
fn anthropic_request_round_trips_to_anthropic() {
    let out = encode(
        Ingress::Anthropic,
        &fixture("anthropic_request_tools.json"),
        UpstreamKind::Anthropic,
    );
    assert_eq!(
        out["system"],
        json!([{"type": "text", "text": "You are a helpful assistant.", "cache_control": {"type": "ephemeral"}}])
    );
    assert_eq!(
        out["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": false})
    );
    assert_eq!(out["messages"][2]["content"][1]["is_error"], true);
    assert_eq!(
        out["messages"][1]["content"][1]["input"],
        json!({"city": "Paris", "unit": "celsius"})
    );
}

#[test]
fn untranslatable_requests_are_refused_not_dropped() {
    let openai = |extra: Value| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (key, value) in extra.as_object().expect("object") {
            body[key] = value.clone();
        }
        serde_json::to_vec(&body).expect("bytes")
    };
    let to = |kind, body: Vec<u8>| {
        let request = parse_request(Ingress::OpenAi, &body).expect("parse");
        encode_request(kind, &request, "u").map(|_| ())
    };
    assert_eq!(
        unsupported_field(to(UpstreamKind::Anthropic, openai(json!({"n": 2})))),
        "n"
    );
    assert_eq!(
        unsupported_field(to(UpstreamKind::Ollama, openai(json!({"n": 3})))),
        "n"
    );
    assert_eq!(
        unsupported_field(to(
            UpstreamKind::Anthropic,
            openai(json!({"temperature": 1.5}))
        )),
        "temperature"
    );
    assert_eq!(
        unsupported_field(to(
            UpstreamKind::Anthropic,
            openai(json!({"response_format": {"type": "json_object"}}))
        )),
        "response_format"
    );
    assert_eq!(
        unsupported_field(to(
            UpstreamKind::Anthropic,
            openai(json!({"logit_bias": {"50256": -100}}))
        )),
        "logit_bias"
    );
    assert_eq!(
        unsupported_field(to(UpstreamKind::Gemini, openai(json!({"logprobs": true})))),
        "logprobs"
    );
    assert_eq!(
        unsupported_field(to(
            UpstreamKind::Ollama,
            openai(
                json!({"tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f"}}]})
            )
        )),
        "tool_choice"
    );
    // Output-neutral fields may be omitted.
    assert!(
        to(
            UpstreamKind::Anthropic,
            openai(json!({"store": false, "service_tier": "auto"}))
        )
        .is_ok()
    );
    // n > 1 is fine where the upstream can answer it.
    assert!(to(UpstreamKind::Gemini, openai(json!({"n": 2}))).is_ok());

    let audio = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]}]}"#;
    let field = unsupported_field(parse_request(Ingress::OpenAi, audio));
    assert!(field.contains("input_audio"), "{field}");
    let unknown = br#"{"model":"m","messages":[],"frobnicate":true}"#;
    assert_eq!(
        unsupported_field(parse_request(Ingress::OpenAi, unknown)),
        "frobnicate"
    );
    let url_image = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/cat.png"}}]}]}"#;
    let request = parse_request(Ingress::OpenAi, url_image).expect("parse");
    assert!(
        unsupported_field(encode_request(UpstreamKind::Ollama, &request, "u"))
            .contains("content[0]")
    );
    assert!(
        unsupported_field(encode_request(UpstreamKind::Gemini, &request, "u"))
            .contains("content[0]")
    );
    let anthropic_url =
        encode_request(UpstreamKind::Anthropic, &request, "u").expect("Anthropic fetches URLs");
    let value: Value = serde_json::from_slice(&anthropic_url).expect("json");
    assert_eq!(
        value["messages"][0]["content"][0]["source"],
        json!({"type": "url", "url": "https://example.com/cat.png"})
    );

    let thinking = br#"{"model":"m","max_tokens":10,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"hi"}]}"#;
    let request = parse_request(Ingress::Anthropic, thinking).expect("parse");
    assert_eq!(
        unsupported_field(encode_request(UpstreamKind::OpenAi, &request, "u")),
        "thinking"
    );
    assert!(encode_request(UpstreamKind::Anthropic, &request, "u").is_ok());
    let server_tool = br#"{"model":"m","max_tokens":10,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[]}"#;
    assert_eq!(
        unsupported_field(parse_request(Ingress::Anthropic, server_tool)),
        "tools[0].type"
    );
    let document = br#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"AA"}}]}]}"#;
    assert_eq!(
        unsupported_field(parse_request(Ingress::Anthropic, document)),
        "messages[0].content[0]"
    );
}

#[test]
fn malformed_bodies_are_reported() {
    assert!(matches!(
        parse_request(Ingress::OpenAi, b"{not json"),
        Err(TranslateError::Malformed { .. })
    ));
    assert!(matches!(
        parse_request(Ingress::Anthropic, br#"{"model":"m"}"#),
        Err(TranslateError::Malformed { .. })
    ));
    let bad_arguments = br#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{not json"}}]}]}"#;
    let request = parse_request(Ingress::OpenAi, bad_arguments).expect("parse keeps the text");
    assert!(matches!(
        encode_request(UpstreamKind::Anthropic, &request, "u"),
        Err(TranslateError::Invalid { .. })
    ));
}
