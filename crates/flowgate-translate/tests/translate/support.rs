//! Shared test support: fixtures, the expected content of each upstream transcript, and
//! parsers that read client streams back the way the official SDKs do.

use flowgate_translate::ir::{Ingress, UpstreamKind};
use serde_json::Value;

pub const ALL_UPSTREAMS: [UpstreamKind; 4] = [
    UpstreamKind::OpenAi,
    UpstreamKind::Anthropic,
    UpstreamKind::Gemini,
    UpstreamKind::Ollama,
];
pub const ALL_INGRESS: [Ingress; 2] = [Ingress::OpenAi, Ingress::Anthropic];

pub const TEXT: &str = "Hello! Ça va très bien 👋 — merci.";

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("reading {path}: {err}"))
}

pub fn prefix(kind: UpstreamKind) -> &'static str {
    match kind {
        UpstreamKind::OpenAi => "openai",
        UpstreamKind::Anthropic => "anthropic",
        UpstreamKind::Gemini => "gemini",
        UpstreamKind::Ollama => "ollama",
    }
}

pub fn stream_fixture(kind: UpstreamKind, scenario: &str) -> Vec<u8> {
    let extension = if kind == UpstreamKind::Ollama {
        "ndjson"
    } else {
        "sse"
    };
    fixture(&format!("{}_stream_{scenario}.{extension}", prefix(kind)))
}

pub fn response_fixture(kind: UpstreamKind, scenario: &str) -> Vec<u8> {
    fixture(&format!("{}_response_{scenario}.json", prefix(kind)))
}

/// Usage as a client sees it, in neutral terms: (all input, output, cached).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct SeenUsage {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
}

/// What each upstream transcript contains, per scenario.
pub struct Expected {
    pub text: &'static str,
    /// (name, arguments JSON)
    pub tools: Vec<(&'static str, Value)>,
    /// Finish reason in the OpenAI and Anthropic vocabularies.
    pub openai_finish: &'static str,
    pub anthropic_stop: &'static str,
    pub anthropic_stop_sequence: Option<&'static str>,
    pub usage: SeenUsage,
}

pub fn expected(kind: UpstreamKind, scenario: &str) -> Expected {
    let tools = || {
        vec![
            (
                "get_weather",
                serde_json::json!({"city": "Paris", "unit": "celsius"}),
            ),
            ("get_time", serde_json::json!({"timezone": "Europe/Paris"})),
        ]
    };
    let usage = |input, output, cached| SeenUsage {
        input,
        output,
        cached,
    };
    match (kind, scenario) {
        (UpstreamKind::OpenAi, "text") => Expected {
            text: TEXT,
            tools: vec![],
            openai_finish: "stop",
            anthropic_stop: "end_turn",
            anthropic_stop_sequence: None,
            usage: usage(25, 12, 10),
        },
        (UpstreamKind::OpenAi, "tools") => Expected {
            text: "",
            tools: tools(),
            openai_finish: "tool_calls",
            anthropic_stop: "tool_use",
            anthropic_stop_sequence: None,
            usage: usage(82, 45, 0),
        },
        (UpstreamKind::Anthropic, "text") => Expected {
            text: TEXT,
            tools: vec![],
            openai_finish: "stop",
            anthropic_stop: "stop_sequence",
            anthropic_stop_sequence: Some("###"),
            // 15 uncached + 20 cache reads + 5 cache writes.
            usage: usage(40, 9, 20),
        },
        (UpstreamKind::Anthropic, "tools") => Expected {
            text: "Let me check both.",
            tools: tools(),
            openai_finish: "tool_calls",
            anthropic_stop: "tool_use",
            anthropic_stop_sequence: None,
            usage: usage(120, 68, 0),
        },
        (UpstreamKind::Gemini, "text") => Expected {
            text: TEXT,
            tools: vec![],
            openai_finish: "stop",
            anthropic_stop: "end_turn",
            anthropic_stop_sequence: None,
            // 7 candidate tokens + 3 thinking tokens.
            usage: usage(18, 10, 0),
        },
        (UpstreamKind::Gemini, "tools") => Expected {
            text: "",
            tools: tools(),
            openai_finish: "tool_calls",
            anthropic_stop: "tool_use",
            anthropic_stop_sequence: None,
            usage: usage(60, 20, 0),
        },
        (UpstreamKind::Ollama, "text") => Expected {
            text: TEXT,
            tools: vec![],
            openai_finish: "stop",
            anthropic_stop: "end_turn",
            anthropic_stop_sequence: None,
            usage: usage(26, 11, 0),
        },
        (UpstreamKind::Ollama, "tools") => Expected {
            text: "",
            tools: tools(),
            openai_finish: "tool_calls",
            anthropic_stop: "tool_use",
            anthropic_stop_sequence: None,
            usage: usage(140, 30, 0),
        },
        other => panic!("no expectation for {other:?}"),
    }
}

/// A client's view of a finished answer, streamed or not.
#[derive(Debug, Default)]
pub struct Seen {
    pub id: String,
    pub model: String,
    pub text: String,
    /// (id, name, arguments JSON text)
    pub tools: Vec<(String, String, String)>,
    pub finish: Option<String>,
    pub stop_sequence: Option<String>,
    pub usage: Option<SeenUsage>,
}

impl Seen {
    pub fn assert_matches(&self, expected: &Expected, ingress: Ingress, context: &str) {
        assert_eq!(self.text, expected.text, "{context}: text");
        assert_eq!(
            self.tools.len(),
            expected.tools.len(),
            "{context}: tool count"
        );
        for ((id, name, arguments), (expected_name, expected_arguments)) in
            self.tools.iter().zip(&expected.tools)
        {
            assert!(!id.is_empty(), "{context}: tool id");
            assert_eq!(name, expected_name, "{context}: tool name");
            let parsed: Value = serde_json::from_str(arguments)
                .unwrap_or_else(|err| panic!("{context}: arguments {arguments:?}: {err}"));
            assert_eq!(&parsed, expected_arguments, "{context}: tool arguments");
        }
        let ids: std::collections::HashSet<_> = self.tools.iter().map(|tool| &tool.0).collect();
        assert_eq!(
            ids.len(),
            self.tools.len(),
            "{context}: tool ids are distinct"
        );
        match ingress {
            Ingress::OpenAi => {
                assert_eq!(
                    self.finish.as_deref(),
                    Some(expected.openai_finish),
                    "{context}: finish"
                );
            }
            Ingress::Anthropic => {
                assert_eq!(
                    self.finish.as_deref(),
                    Some(expected.anthropic_stop),
                    "{context}: stop_reason"
                );
                assert_eq!(
                    self.stop_sequence.as_deref(),
                    expected.anthropic_stop_sequence,
                    "{context}: stop_sequence"
                );
            }
        }
        assert_eq!(self.usage, Some(expected.usage), "{context}: usage");
        assert_eq!(
            self.model, "client-model",
            "{context}: the client's model name is echoed"
        );
    }
}

fn u(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// Reads a non-streamed answer the way a client of `ingress` does.
pub fn read_response(ingress: Ingress, body: &[u8]) -> Seen {
    let value: Value = serde_json::from_slice(body).expect("answer is JSON");
    let mut seen = Seen {
        id: value["id"].as_str().unwrap_or_default().to_owned(),
        model: value["model"].as_str().unwrap_or_default().to_owned(),
        ..Seen::default()
    };
    match ingress {
        Ingress::OpenAi => {
            assert_eq!(value["object"], "chat.completion");
            assert!(value["created"].is_u64());
            let message = &value["choices"][0]["message"];
            assert_eq!(message["role"], "assistant");
            seen.text = message["content"].as_str().unwrap_or_default().to_owned();
            if let Some(calls) = message["tool_calls"].as_array() {
                for call in calls {
                    assert_eq!(call["type"], "function");
                    seen.tools.push((
                        call["id"].as_str().unwrap_or_default().to_owned(),
                        call["function"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        call["function"]["arguments"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    ));
                }
            }
            seen.finish = value["choices"][0]["finish_reason"]
                .as_str()
                .map(str::to_owned);
            let usage = &value["usage"];
            assert_eq!(
                u(&usage["total_tokens"]),
                u(&usage["prompt_tokens"]) + u(&usage["completion_tokens"])
            );
            seen.usage = Some(SeenUsage {
                input: u(&usage["prompt_tokens"]),
                output: u(&usage["completion_tokens"]),
                cached: u(&usage["prompt_tokens_details"]["cached_tokens"]),
            });
        }
        Ingress::Anthropic => {
            assert_eq!(value["type"], "message");
            assert_eq!(value["role"], "assistant");
            assert!(
                seen.id.starts_with("msg_"),
                "Anthropic ids start with msg_: {}",
                seen.id
            );
            for block in value["content"].as_array().expect("content array") {
                match block["type"].as_str() {
                    Some("text") => seen
                        .text
                        .push_str(block["text"].as_str().unwrap_or_default()),
                    Some("tool_use") => {
                        assert!(block["input"].is_object(), "tool input is an object");
                        seen.tools.push((
                            block["id"].as_str().unwrap_or_default().to_owned(),
                            block["name"].as_str().unwrap_or_default().to_owned(),
                            block["input"].to_string(),
                        ));
                    }
                    other => panic!("unexpected block {other:?}"),
                }
            }
            seen.finish = value["stop_reason"].as_str().map(str::to_owned);
            seen.stop_sequence = value["stop_sequence"].as_str().map(str::to_owned);
            seen.usage = Some(anthropic_usage(&value["usage"]));
        }
    }
    seen
}

fn anthropic_usage(usage: &Value) -> SeenUsage {
    let cached = u(&usage["cache_read_input_tokens"]);
    SeenUsage {
        input: u(&usage["input_tokens"]) + cached + u(&usage["cache_creation_input_tokens"]),
        output: u(&usage["output_tokens"]),
        cached,
    }
}

/// Reads a client stream the way the official SDKs accumulate it, checking the event grammar.
pub fn read_stream(ingress: Ingress, bytes: &[u8]) -> Seen {
    let text = std::str::from_utf8(bytes).expect("client stream is UTF-8");
    assert!(text.ends_with("\n\n"), "stream ends with a complete event");
    let mut seen = Seen::default();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|event| !event.is_empty())
        .collect();
    match ingress {
        Ingress::OpenAi => {
            assert_eq!(
                events.last(),
                Some(&"data: [DONE]"),
                "OpenAI stream ends with [DONE]"
            );
            let mut tools: Vec<(String, String, String)> = Vec::new();
            for event in &events[..events.len() - 1] {
                let data = event.strip_prefix("data: ").expect("data line");
                let chunk: Value = serde_json::from_str(data).expect("chunk JSON");
                assert_eq!(chunk["object"], "chat.completion.chunk");
                seen.id = chunk["id"].as_str().unwrap_or_default().to_owned();
                seen.model = chunk["model"].as_str().unwrap_or_default().to_owned();
                if !chunk["usage"].is_null() {
                    assert!(chunk["choices"].as_array().is_some_and(Vec::is_empty));
                    let usage = &chunk["usage"];
                    assert_eq!(
                        u(&usage["total_tokens"]),
                        u(&usage["prompt_tokens"]) + u(&usage["completion_tokens"])
                    );
                    seen.usage = Some(SeenUsage {
                        input: u(&usage["prompt_tokens"]),
                        output: u(&usage["completion_tokens"]),
                        cached: u(&usage["prompt_tokens_details"]["cached_tokens"]),
                    });
                    continue;
                }
                let choice = &chunk["choices"][0];
                assert_eq!(choice["index"], 0);
                let delta = &choice["delta"];
                if let Some(content) = delta["content"].as_str() {
                    seen.text.push_str(content);
                }
                for call in delta["tool_calls"].as_array().into_iter().flatten() {
                    let index = call["index"].as_u64().expect("tool index") as usize;
                    if index == tools.len() {
                        tools.push((
                            call["id"]
                                .as_str()
                                .expect("first delta has the id")
                                .to_owned(),
                            call["function"]["name"]
                                .as_str()
                                .expect("and the name")
                                .to_owned(),
                            String::new(),
                        ));
                    }
                    tools[index]
                        .2
                        .push_str(call["function"]["arguments"].as_str().unwrap_or_default());
                }
                if let Some(finish) = choice["finish_reason"].as_str() {
                    assert!(seen.finish.is_none(), "one finish_reason");
                    seen.finish = Some(finish.to_owned());
                }
            }
            seen.tools = tools;
        }
        Ingress::Anthropic => {
            let mut names = Vec::new();
            let mut open: Option<(u64, String)> = None;
            let mut next_index = 0;
            let mut start_usage = Value::Null;
            for event in &events {
                let (name_line, data_line) = event.split_once('\n').expect("event + data lines");
                let name = name_line.strip_prefix("event: ").expect("event line");
                let data: Value =
                    serde_json::from_str(data_line.strip_prefix("data: ").expect("data line"))
                        .expect("JSON");
                assert_eq!(data["type"], name, "event name matches data type");
                names.push(name.to_owned());
                match name {
                    "message_start" => {
                        let message = &data["message"];
                        seen.id = message["id"].as_str().unwrap_or_default().to_owned();
                        seen.model = message["model"].as_str().unwrap_or_default().to_owned();
                        start_usage = message["usage"].clone();
                    }
                    "content_block_start" => {
                        assert!(open.is_none(), "blocks do not overlap");
                        assert_eq!(data["index"], next_index, "block indices count up");
                        let block = &data["content_block"];
                        let kind = block["type"].as_str().unwrap_or_default().to_owned();
                        if kind == "tool_use" {
                            assert_eq!(block["input"], serde_json::json!({}));
                            seen.tools.push((
                                block["id"].as_str().unwrap_or_default().to_owned(),
                                block["name"].as_str().unwrap_or_default().to_owned(),
                                String::new(),
                            ));
                        }
                        open = Some((next_index, kind));
                        next_index += 1;
                    }
                    "content_block_delta" => {
                        let (index, kind) = open.as_ref().expect("delta inside a block");
                        assert_eq!(&data["index"], index);
                        match data["delta"]["type"].as_str() {
                            Some("text_delta") => {
                                assert_eq!(kind, "text");
                                seen.text
                                    .push_str(data["delta"]["text"].as_str().unwrap_or_default());
                            }
                            Some("input_json_delta") => {
                                assert_eq!(kind, "tool_use");
                                let tool = seen.tools.last_mut().expect("a tool block");
                                tool.2.push_str(
                                    data["delta"]["partial_json"].as_str().unwrap_or_default(),
                                );
                            }
                            other => panic!("unexpected delta {other:?}"),
                        }
                    }
                    "content_block_stop" => {
                        let (index, _) = open.take().expect("stop of an open block");
                        assert_eq!(data["index"], index);
                    }
                    "message_delta" => {
                        assert!(open.is_none(), "blocks closed before message_delta");
                        seen.finish = data["delta"]["stop_reason"].as_str().map(str::to_owned);
                        seen.stop_sequence =
                            data["delta"]["stop_sequence"].as_str().map(str::to_owned);
                        // The SDK takes message_delta's cumulative fields over message_start's.
                        let mut usage = start_usage.clone();
                        for (key, value) in data["usage"].as_object().expect("usage").iter() {
                            usage[key] = value.clone();
                        }
                        seen.usage = Some(anthropic_usage(&usage));
                    }
                    "message_stop" | "ping" => {}
                    other => panic!("unexpected event {other}"),
                }
            }
            assert_eq!(names.first().map(String::as_str), Some("message_start"));
            assert_eq!(names.get(1).map(String::as_str), Some("ping"));
            assert_eq!(names.last().map(String::as_str), Some("message_stop"));
            assert_eq!(names[names.len() - 2], "message_delta");
            for tool in &mut seen.tools {
                if tool.2.is_empty() {
                    tool.2.push_str("{}");
                }
            }
        }
    }
    seen
}
