//! What the mock upstream reads from a request in each provider's wire format, and the
//! deterministic reply it computes from it (`MockReply`): answer text or tool call, and usage.
//! Owns the URL conventions (`route`), the request readers, the documented answer and usage
//! functions, and each provider's error shape. Rendering replies as bytes is `render`'s job.
//!
//! The reply is a pure function of the request, the same in every format, so a test that knows
//! the request the upstream saw (`RecordedRequest::reply`) knows field by field what the
//! upstream answered:
//! - text: `answer_text(last user text)` ("Hello from the flowgate mock provider. Your
//!   message had N words."), the answer of the gateway's built-in `mock` provider;
//! - a tool call instead, when the request declares tools, its last user text contains
//!   `TOOL_TRIGGER` (any case) and no tool result follows that user message: the first
//!   declared tool, with arguments `TOOL_ARGUMENTS`;
//! - a text answer cut at the request's output limit when that limit is smaller than its word
//!   count: the first `limit` words, finish reason "length" in the format's words, and exactly
//!   `limit` output tokens (see `MockReply::truncated`);
//! - usage: see `MockReply::input_tokens` and `MockReply::output_tokens`.

use serde_json::Value;

pub use flowgate_providers::mock::estimate_tokens;

/// The word in the last user text that makes the mock call a tool (when tools are declared).
pub const TOOL_TRIGGER: &str = "weather";
/// The arguments of every tool call the mock makes, as JSON text.
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Paris"}"#;
/// Id of OpenAI chat completions (streamed or not).
pub const OPENAI_COMPLETION_ID: &str = "chatcmpl-mock-upstream";
/// Id of the OpenAI tool call.
pub const OPENAI_TOOL_CALL_ID: &str = "call_mock_0";
/// Id of Anthropic messages.
pub const ANTHROPIC_MESSAGE_ID: &str = "msg_mock_upstream";
/// Id of the Anthropic `tool_use` block.
pub const ANTHROPIC_TOOL_USE_ID: &str = "toolu_mock_0";
/// Gemini `responseId`. Gemini function calls carry no id.
pub const GEMINI_RESPONSE_ID: &str = "resp_mock_upstream";
/// The `api_version` `MockUpstream::provider_toml` gives Azure OpenAI providers.
pub const AZURE_API_VERSION: &str = "2024-10-21";
/// Ollama `created_at`. Ollama answers and tool calls carry no id.
pub const OLLAMA_CREATED_AT: &str = "2026-01-01T00:00:00Z";

/// A provider wire format the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// OpenAI Chat Completions: `POST {base}/chat/completions` (and `/embeddings`), base
    /// `http://ADDR/v1`.
    OpenAi,
    /// Azure OpenAI: `POST /openai/deployments/{deployment}/chat/completions?api-version=..`
    /// (and `/embeddings`) with an `api-key` header; base `http://ADDR`. Same bodies as OpenAI.
    AzureOpenAi,
    /// Anthropic Messages: `POST {base}/messages`, base `http://ADDR/v1`.
    Anthropic,
    /// Gemini: `POST {base}/models/{model}:generateContent` and
    /// `{base}/models/{model}:streamGenerateContent?alt=sse`, base `http://ADDR/v1beta`.
    Gemini,
    /// Ollama: `POST {base}/api/chat` (NDJSON stream unless `"stream": false`), base
    /// `http://ADDR`.
    Ollama,
}

impl WireFormat {
    pub const ALL: [Self; 5] = [
        Self::OpenAi,
        Self::AzureOpenAi,
        Self::Anthropic,
        Self::Gemini,
        Self::Ollama,
    ];

    /// The path the provider's `base_url` ends with (appended to `http://ADDR`).
    pub fn base_path(self) -> &'static str {
        match self {
            Self::OpenAi | Self::Anthropic => "/v1",
            Self::Gemini => "/v1beta",
            Self::AzureOpenAi | Self::Ollama => "",
        }
    }

    /// The provider `kind` in the gateway configuration (Azure is `openai` with an
    /// `api_version`).
    pub fn config_kind(self) -> &'static str {
        match self {
            Self::OpenAi | Self::AzureOpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Ollama => "ollama",
        }
    }

    /// The content type of the format's streams.
    pub fn stream_content_type(self) -> &'static str {
        match self {
            Self::Ollama => "application/x-ndjson",
            _ => "text/event-stream",
        }
    }

    /// An error body in this provider's shape:
    /// - OpenAI/Azure `{"error":{"message","type","param":null,"code"}}` (`type` from the
    ///   status: `invalid_request_error` (404: code `model_not_found`), `authentication_error`
    ///   (code `invalid_api_key`), `permission_error`, `rate_limit_error` (code
    ///   `rate_limit_exceeded`), `server_error`);
    /// - Anthropic `{"type":"error","error":{"type","message"}}` (`invalid_request_error`,
    ///   `authentication_error`, `permission_error`, `not_found_error`, `request_too_large`,
    ///   `rate_limit_error`, `api_error`, `overloaded_error` for 503/529, `timeout_error` for 504);
    /// - Gemini `{"error":{"code":STATUS,"message","status"}}` (`INVALID_ARGUMENT`,
    ///   `UNAUTHENTICATED`, `PERMISSION_DENIED`, `NOT_FOUND`, `RESOURCE_EXHAUSTED`, `INTERNAL`,
    ///   `UNAVAILABLE`, `DEADLINE_EXCEEDED`);
    /// - Ollama `{"error":"message"}`.
    pub fn error_body(self, status: u16, message: &str) -> String {
        match self {
            Self::OpenAi | Self::AzureOpenAi => {
                let (kind, code) = match status {
                    401 => ("authentication_error", Value::from("invalid_api_key")),
                    403 => ("permission_error", Value::Null),
                    404 => ("invalid_request_error", Value::from("model_not_found")),
                    429 => ("rate_limit_error", Value::from("rate_limit_exceeded")),
                    400..=499 => ("invalid_request_error", Value::Null),
                    _ => ("server_error", Value::Null),
                };
                serde_json::json!({
                    "error": {"message": message, "type": kind, "param": null, "code": code}
                })
            }
            Self::Anthropic => serde_json::json!({
                "type": "error",
                "error": {"type": anthropic_error_type(status), "message": message},
            }),
            Self::Gemini => serde_json::json!({
                "error": {"code": status, "message": message, "status": gemini_status(status)}
            }),
            Self::Ollama => serde_json::json!({"error": message}),
        }
        .to_string()
    }

    /// The error event a stream of this format ends with when the provider fails mid-stream
    /// (OpenAI `data: {"error":..}` without `[DONE]`, Anthropic `event: error`, Gemini
    /// `data: {"error":..}`, Ollama an `{"error":..}` line).
    pub fn stream_error_chunk(self, status: u16, message: &str) -> String {
        let body = self.error_body(status, message);
        match self {
            Self::Anthropic => format!("event: error\ndata: {body}\n\n"),
            Self::Ollama => format!("{body}\n"),
            _ => format!("data: {body}\n\n"),
        }
    }
}

fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

fn gemini_status(status: u16) -> &'static str {
    match status {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        400..=499 => "INVALID_ARGUMENT",
        _ => "INTERNAL",
    }
}

/// What an upstream path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Embeddings,
}

/// Which format and endpoint a request path (without query) is for; `None` for paths the mock
/// does not serve.
pub(crate) fn route(path: &str) -> Option<(WireFormat, Endpoint)> {
    let openai = if path.contains("/openai/deployments/") {
        WireFormat::AzureOpenAi
    } else {
        WireFormat::OpenAi
    };
    if path.ends_with("/chat/completions") {
        Some((openai, Endpoint::Chat))
    } else if path.ends_with("/embeddings") {
        Some((openai, Endpoint::Embeddings))
    } else if path.ends_with("/messages") {
        Some((WireFormat::Anthropic, Endpoint::Chat))
    } else if path.ends_with("/api/chat") {
        Some((WireFormat::Ollama, Endpoint::Chat))
    } else if gemini_model(path).is_some() {
        Some((WireFormat::Gemini, Endpoint::Chat))
    } else {
        None
    }
}

/// The model of a Gemini path (`.../models/{model}:generateContent` or
/// `:streamGenerateContent`).
fn gemini_model(path: &str) -> Option<&str> {
    let (_, rest) = path.split_once("/models/")?;
    let (model, method) = rest.split_once(':')?;
    matches!(method, "generateContent" | "streamGenerateContent").then_some(model)
}

/// The Azure deployment of a path (`/openai/deployments/{deployment}/...`).
pub(crate) fn azure_deployment(path: &str) -> Option<&str> {
    let (_, rest) = path.split_once("/openai/deployments/")?;
    rest.split('/').next()
}

/// The value of query parameter `name` in a path with query.
pub(crate) fn query_param<'a>(path_and_query: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path_and_query.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// What the mock answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyContent {
    /// Assistant text: `answer_text(last user text)`.
    Text(String),
    /// One tool call: `name` is the first declared tool, `arguments` is `TOOL_ARGUMENTS`.
    ToolCall { name: String, arguments: String },
}

/// The mock's answer to one chat request, before rendering in the request's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockReply {
    pub format: WireFormat,
    /// The model the answer names: the request's `model` (Gemini: the model in the path;
    /// Azure without a body `model`: the deployment).
    pub model: String,
    /// Streamed: `"stream": true` (OpenAI, Anthropic), `:streamGenerateContent` (Gemini),
    /// `stream` absent or true (Ollama).
    pub stream: bool,
    /// OpenAI streams end with a usage chunk only when `stream_options.include_usage` is true.
    pub include_usage: bool,
    pub content: ReplyContent,
    /// The text answer was cut at the request's output limit (OpenAI `max_completion_tokens`
    /// or `max_tokens`, Anthropic `max_tokens`, Gemini `generationConfig.maxOutputTokens`,
    /// Ollama `options.num_predict`) because the limit was smaller than its word count: it is
    /// the first `limit` words, the finish reason is OpenAI `length`, Anthropic `max_tokens`,
    /// Gemini `MAX_TOKENS`, Ollama `length`, and `output_tokens` is `limit`. Tool calls are
    /// never cut.
    pub truncated: bool,
    /// `prompt_tokens`, Anthropic `input_tokens` (no cache tokens reported),
    /// `promptTokenCount`, `prompt_eval_count`: `input_tokens_for(segments)` over the request's
    /// text segments, one per message (plus one, first, for Anthropic `system` or Gemini
    /// `systemInstruction` when present), each the `text` of its text parts joined by a space
    /// (tool calls, tool results and images count as no text).
    pub input_tokens: u64,
    /// `completion_tokens`, `output_tokens`, `candidatesTokenCount`, `eval_count`:
    /// `estimate_tokens(text)` for a text answer, `estimate_tokens(name) +
    /// estimate_tokens(arguments)` for a tool call, the limit for a truncated answer.
    pub output_tokens: u64,
    /// Prompt tokens reported as served from the provider's cache, a part of `input_tokens`:
    /// 0 unless set with `MockUpstream::report_cached_tokens` (capped at `input_tokens`).
    /// OpenAI `usage.prompt_tokens_details.cached_tokens`; Anthropic
    /// `cache_read_input_tokens` (its `input_tokens` is then `input_tokens - cached_tokens`,
    /// the uncached part); Gemini `cachedContentTokenCount`; Ollama reports no cache figures
    /// (always 0 there).
    pub cached_tokens: u64,
}

impl MockReply {
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// This reply with `tokens` of its prompt reported as cached (capped at `input_tokens`;
    /// ignored for Ollama, which reports no cache figures).
    pub fn with_cached_tokens(mut self, tokens: u64) -> Self {
        self.cached_tokens = match self.format {
            WireFormat::Ollama => 0,
            _ => tokens.min(self.input_tokens),
        };
        self
    }

    /// The answer text, when the reply is text.
    pub fn text(&self) -> Option<&str> {
        match &self.content {
            ReplyContent::Text(text) => Some(text),
            ReplyContent::ToolCall { .. } => None,
        }
    }

    /// The called tool's name, when the reply is a tool call.
    pub fn tool_name(&self) -> Option<&str> {
        match &self.content {
            ReplyContent::Text(_) => None,
            ReplyContent::ToolCall { name, .. } => Some(name),
        }
    }
}

/// The answer text for a last user text (the built-in `mock` provider's answer).
pub fn answer_text(last_user_text: &str) -> String {
    let words = last_user_text.split_whitespace().count();
    format!("Hello from the flowgate mock provider. Your message had {words} words.")
}

/// Prompt tokens the mock reports for these text segments: `estimate_tokens` of the segments
/// joined by `\n`, plus 3 per segment.
pub fn input_tokens_for(segments: &[String]) -> u64 {
    estimate_tokens(&segments.join("\n")) + 3 * segments.len() as u64
}

/// Output tokens the mock reports for its content.
pub fn output_tokens_for(content: &ReplyContent) -> u64 {
    match content {
        ReplyContent::Text(text) => estimate_tokens(text),
        ReplyContent::ToolCall { name, arguments } => {
            estimate_tokens(name) + estimate_tokens(arguments)
        }
    }
}

/// The mock's reply to a chat request of `format` at `path_and_query` (the path decides the
/// model and streaming for Gemini, and the deployment for Azure). `Err` is the message of the
/// 400 the mock answers: a body that is not a JSON object, a missing `messages` (`contents`
/// for Gemini), or for Anthropic a missing `max_tokens` (required by the real API).
pub fn reply_for(
    format: WireFormat,
    path_and_query: &str,
    body: &[u8],
) -> Result<MockReply, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|err| format!("invalid request body: {err}"))?;
    if !value.is_object() {
        return Err("the request body must be a JSON object".to_owned());
    }
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(path, _)| path);
    let conversation = match format {
        WireFormat::OpenAi | WireFormat::AzureOpenAi => read_openai(&value, path)?,
        WireFormat::Anthropic => read_anthropic(&value)?,
        WireFormat::Gemini => read_gemini(&value, path)?,
        WireFormat::Ollama => read_ollama(&value)?,
    };
    let content = match conversation.first_tool {
        Some(name)
            if !conversation.tool_results_after_last_user
                && conversation
                    .last_user_text
                    .to_lowercase()
                    .contains(TOOL_TRIGGER) =>
        {
            ReplyContent::ToolCall {
                name,
                arguments: TOOL_ARGUMENTS.to_owned(),
            }
        }
        _ => ReplyContent::Text(answer_text(&conversation.last_user_text)),
    };
    let limit = conversation
        .max_tokens
        .filter(|limit| *limit >= 1)
        .and_then(|limit| usize::try_from(limit).ok());
    let (content, truncated, output_tokens) = match (content, limit) {
        (ReplyContent::Text(text), Some(limit)) if limit < text.split(' ').count() => {
            let cut = text.split(' ').take(limit).collect::<Vec<_>>().join(" ");
            (ReplyContent::Text(cut), true, limit as u64)
        }
        (content, _) => {
            let output_tokens = output_tokens_for(&content);
            (content, false, output_tokens)
        }
    };
    Ok(MockReply {
        format,
        model: conversation.model,
        stream: conversation.stream,
        include_usage: conversation.include_usage,
        input_tokens: input_tokens_for(&conversation.segments),
        output_tokens,
        content,
        truncated,
        cached_tokens: 0,
    })
}

/// The parts of a request the reply depends on.
#[derive(Debug, Default)]
struct Conversation {
    model: String,
    stream: bool,
    include_usage: bool,
    /// Text of each message (system first when it is a separate field).
    segments: Vec<String>,
    last_user_text: String,
    tool_results_after_last_user: bool,
    first_tool: Option<String>,
    /// The request's output token limit.
    max_tokens: Option<u64>,
}

/// The `text` fields of a content array joined by a space, or the content itself when it is
/// a string (what the built-in `mock` provider counts).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn string_field(value: &Value, name: &str) -> String {
    value
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn array<'a>(value: &'a Value, name: &str) -> Option<&'a Vec<Value>> {
    value.get(name).and_then(Value::as_array)
}

/// Fills the user-text fields from messages given as (is a user text turn, is tool results).
fn find_last_user(conversation: &mut Conversation, turns: &[(bool, bool, String)]) {
    if let Some(position) = turns.iter().rposition(|(user, _, _)| *user) {
        conversation.last_user_text = turns[position].2.clone();
        conversation.tool_results_after_last_user =
            turns[position + 1..].iter().any(|(_, results, _)| *results);
    }
}

fn read_openai(value: &Value, path: &str) -> Result<Conversation, String> {
    let messages = array(value, "messages").ok_or("`messages` is required")?;
    let mut model = string_field(value, "model");
    if model.is_empty() {
        model = azure_deployment(path).unwrap_or_default().to_owned();
    }
    let mut conversation = Conversation {
        model,
        stream: value.get("stream").and_then(Value::as_bool) == Some(true),
        include_usage: value
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true),
        first_tool: first_function_tool(value),
        max_tokens: value
            .get("max_completion_tokens")
            .or_else(|| value.get("max_tokens"))
            .and_then(Value::as_u64),
        ..Conversation::default()
    };
    let turns: Vec<(bool, bool, String)> = messages
        .iter()
        .map(|message| {
            let role = message.get("role").and_then(Value::as_str);
            let text = text_of(message.get("content").unwrap_or(&Value::Null));
            (role == Some("user"), role == Some("tool"), text)
        })
        .collect();
    conversation.segments = turns.iter().map(|(_, _, text)| text.clone()).collect();
    find_last_user(&mut conversation, &turns);
    Ok(conversation)
}

/// `tools[0].function.name` (OpenAI and Ollama tool declarations).
fn first_function_tool(value: &Value) -> Option<String> {
    value
        .pointer("/tools/0/function/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn read_anthropic(value: &Value) -> Result<Conversation, String> {
    let messages = array(value, "messages").ok_or("messages: Field required")?;
    let Some(max_tokens) = value.get("max_tokens").and_then(Value::as_u64) else {
        return Err("max_tokens: Field required".to_owned());
    };
    let mut conversation = Conversation {
        max_tokens: Some(max_tokens),
        model: string_field(value, "model"),
        stream: value.get("stream").and_then(Value::as_bool) == Some(true),
        first_tool: value
            .pointer("/tools/0/name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..Conversation::default()
    };
    if let Some(system) = value.get("system") {
        conversation.segments.push(text_of(system));
    }
    let turns: Vec<(bool, bool, String)> = messages
        .iter()
        .map(|message| {
            let content = message.get("content").unwrap_or(&Value::Null);
            let blocks = content.as_array().map(Vec::as_slice).unwrap_or_default();
            let is_result = |block: &Value| block["type"] == "tool_result";
            let results = blocks.iter().any(is_result);
            let only_results = !blocks.is_empty() && blocks.iter().all(is_result);
            let user = message.get("role").and_then(Value::as_str) == Some("user");
            (user && !only_results, results, text_of(content))
        })
        .collect();
    conversation
        .segments
        .extend(turns.iter().map(|(_, _, text)| text.clone()));
    find_last_user(&mut conversation, &turns);
    Ok(conversation)
}

fn read_gemini(value: &Value, path: &str) -> Result<Conversation, String> {
    let contents = array(value, "contents").ok_or("`contents` is required")?;
    let declarations = array(value, "tools").and_then(|tools| {
        tools.iter().find_map(|tool| {
            tool.get("functionDeclarations")
                .or_else(|| tool.get("function_declarations"))
                .and_then(Value::as_array)
                .filter(|declarations| !declarations.is_empty())
        })
    });
    let mut conversation = Conversation {
        model: gemini_model(path).unwrap_or_default().to_owned(),
        stream: path.ends_with(":streamGenerateContent"),
        max_tokens: value
            .pointer("/generationConfig/maxOutputTokens")
            .or_else(|| value.pointer("/generation_config/max_output_tokens"))
            .and_then(Value::as_u64),
        first_tool: declarations
            .and_then(|declarations| declarations[0].get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..Conversation::default()
    };
    if let Some(system) = value
        .get("systemInstruction")
        .or_else(|| value.get("system_instruction"))
    {
        conversation
            .segments
            .push(text_of(system.get("parts").unwrap_or(&Value::Null)));
    }
    let turns: Vec<(bool, bool, String)> = contents
        .iter()
        .map(|content| {
            let parts = content
                .get("parts")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let is_result = |part: &Value| {
                part.get("functionResponse")
                    .or_else(|| part.get("function_response"))
                    .is_some()
            };
            let results = parts.iter().any(is_result);
            let only_results = !parts.is_empty() && parts.iter().all(is_result);
            // Gemini's role is optional and defaults to `user`.
            let user = content
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or("user")
                == "user";
            let text = text_of(content.get("parts").unwrap_or(&Value::Null));
            (user && !only_results, results, text)
        })
        .collect();
    conversation
        .segments
        .extend(turns.iter().map(|(_, _, text)| text.clone()));
    find_last_user(&mut conversation, &turns);
    Ok(conversation)
}

fn read_ollama(value: &Value) -> Result<Conversation, String> {
    let messages = array(value, "messages").ok_or("messages is required")?;
    let mut conversation = Conversation {
        model: string_field(value, "model"),
        // Ollama streams unless told not to.
        stream: value.get("stream").and_then(Value::as_bool) != Some(false),
        first_tool: first_function_tool(value),
        max_tokens: value
            .pointer("/options/num_predict")
            .and_then(Value::as_u64),
        ..Conversation::default()
    };
    let turns: Vec<(bool, bool, String)> = messages
        .iter()
        .map(|message| {
            let role = message.get("role").and_then(Value::as_str);
            let text = text_of(message.get("content").unwrap_or(&Value::Null));
            (role == Some("user"), role == Some("tool"), text)
        })
        .collect();
    conversation.segments = turns.iter().map(|(_, _, text)| text.clone()).collect();
    find_last_user(&mut conversation, &turns);
    Ok(conversation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_every_format() {
        let cases = [
            ("/v1/chat/completions", Some(WireFormat::OpenAi)),
            (
                "/openai/deployments/gpt/chat/completions",
                Some(WireFormat::AzureOpenAi),
            ),
            ("/v1/messages", Some(WireFormat::Anthropic)),
            (
                "/v1beta/models/gemini-2.5:generateContent",
                Some(WireFormat::Gemini),
            ),
            (
                "/v1beta/models/gemini-2.5:streamGenerateContent",
                Some(WireFormat::Gemini),
            ),
            ("/api/chat", Some(WireFormat::Ollama)),
            ("/v1/models", None),
            ("/v1beta/models/gemini:countTokens", None),
        ];
        for (path, expected) in cases {
            assert_eq!(route(path).map(|(format, _)| format), expected, "{path}");
        }
        assert_eq!(
            azure_deployment("/openai/deployments/gpt-4o/chat/completions"),
            Some("gpt-4o")
        );
        assert_eq!(
            query_param("/x?api-version=2024-10-21&alt=sse", "alt"),
            Some("sse")
        );
    }

    #[test]
    fn tool_call_only_on_trigger_with_tools_and_no_results_yet() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"What is the Weather?"}],
            "tools":[{"type":"function","function":{"name":"get_weather"}}]}"#;
        let Ok(reply) = reply_for(WireFormat::OpenAi, "/v1/chat/completions", body) else {
            panic!("reply")
        };
        assert_eq!(reply.tool_name(), Some("get_weather"));
        let answered = br#"{"model":"m","messages":[{"role":"user","content":"weather?"},
            {"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c","content":"sunny"}],
            "tools":[{"type":"function","function":{"name":"get_weather"}}]}"#;
        let Ok(reply) = reply_for(WireFormat::OpenAi, "/v1/chat/completions", answered) else {
            panic!("reply")
        };
        assert_eq!(
            reply.text(),
            Some("Hello from the flowgate mock provider. Your message had 1 words.")
        );
    }

    #[test]
    fn anthropic_requires_max_tokens_and_counts_system() {
        let missing = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        assert!(reply_for(WireFormat::Anthropic, "/v1/messages", missing).is_err());
        let body = br#"{"model":"m","max_tokens":64,"system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hi there"}]}]}"#;
        let Ok(reply) = reply_for(WireFormat::Anthropic, "/v1/messages", body) else {
            panic!("reply")
        };
        let segments = ["be brief".to_owned(), "hi there".to_owned()];
        assert_eq!(reply.input_tokens, input_tokens_for(&segments));
        assert_eq!(reply.text(), Some(answer_text("hi there").as_str()));
    }
}
