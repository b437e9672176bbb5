//! OpenAI Chat Completions codec for non-streamed bodies.
//!
//! Owns: parsing a client's `/v1/chat/completions` request into the IR, encoding the IR as a
//! request to an OpenAI-compatible upstream, decoding such an upstream's answer and encoding an
//! IR answer for an OpenAI client. Streams live in `stream::openai`. URLs, headers and Azure
//! specifics are the gateway's business (the body is identical).

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::TranslateError;
use crate::ir::{
    Choice, DialectField, FinishReason, Image, ImageSource, Ingress, IrRequest, IrResponse,
    Message, Part, ResponseFormat, Role, Tool, ToolCall, ToolChoice, ToolResult, Usage,
};
use crate::wire::{self, OneOrMany};

// ---------------------------------------------------------------------------------------------
// Request parsing (client -> IR)

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
    tools: Option<Vec<ChatTool>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    n: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stop: Option<OneOrMany<String>>,
    stream: Option<bool>,
    stream_options: Option<ChatStreamOptions>,
    response_format: Option<ChatResponseFormat>,
    seed: Option<i64>,
    user: Option<String>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    metadata: Option<Box<RawValue>>,
    logprobs: Option<bool>,
    // OpenAI-only fields, kept verbatim as `DialectField`s.
    store: Option<Box<RawValue>>,
    logit_bias: Option<Box<RawValue>>,
    top_logprobs: Option<Box<RawValue>>,
    service_tier: Option<Box<RawValue>>,
    reasoning_effort: Option<Box<RawValue>>,
    modalities: Option<Box<RawValue>>,
    audio: Option<Box<RawValue>>,
    prediction: Option<Box<RawValue>>,
    web_search_options: Option<Box<RawValue>>,
    prompt_cache_key: Option<Box<RawValue>>,
    safety_identifier: Option<Box<RawValue>>,
    verbosity: Option<Box<RawValue>>,
    functions: Option<Box<RawValue>>,
    function_call: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatStreamOptions {
    include_usage: Option<bool>,
    include_obfuscation: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    json_schema: Option<ChatJsonSchema>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatJsonSchema {
    name: String,
    description: Option<String>,
    schema: Option<Box<RawValue>>,
    strict: Option<bool>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ChatRole {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatMessage {
    role: ChatRole,
    content: Option<OneOrMany<ChatPart>>,
    name: Option<String>,
    tool_calls: Option<Vec<ChatToolCall>>,
    tool_call_id: Option<String>,
    refusal: Option<String>,
    function_call: Option<Box<RawValue>>,
    audio: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    image_url: Option<ChatImageUrl>,
    refusal: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatImageUrl {
    url: String,
    detail: Option<String>,
}

#[derive(Deserialize)]
struct ChatToolCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    function: ChatFunctionCall,
}

#[derive(Deserialize)]
struct ChatFunctionCall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatTool {
    #[serde(rename = "type")]
    kind: String,
    function: Option<ChatFunctionDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatFunctionDef {
    name: String,
    description: Option<String>,
    parameters: Option<Box<RawValue>>,
    strict: Option<bool>,
}

/// Parses an OpenAI Chat Completions request body.
pub(crate) fn parse_request(body: &[u8]) -> Result<IrRequest, TranslateError> {
    let wire: ChatRequest = serde_json::from_slice(body)
        .map_err(|err| TranslateError::from_request_json("OpenAI chat request", err))?;

    let mut messages = Vec::with_capacity(wire.messages.len());
    for (position, message) in wire.messages.into_iter().enumerate() {
        messages.push(convert_message(position, message)?);
    }

    let mut tools = Vec::new();
    for (position, tool) in wire.tools.unwrap_or_default().into_iter().enumerate() {
        let Some(function) = tool.function.filter(|_| tool.kind == "function") else {
            return Err(TranslateError::unsupported(
                format!("tools[{position}].type"),
                format!(
                    "tool type `{}` is not translated (only `function`)",
                    tool.kind
                ),
            ));
        };
        tools.push(Tool {
            name: function.name,
            description: function.description,
            parameters: function.parameters,
            strict: function.strict,
            cache_control: None,
        });
    }

    let tool_choice = wire
        .tool_choice
        .as_ref()
        .map(parse_tool_choice)
        .transpose()?;
    let response_format = match wire.response_format {
        None => None,
        Some(format) => Some(match format.kind.as_str() {
            "text" => ResponseFormat::Text,
            "json_object" => ResponseFormat::JsonObject,
            "json_schema" => {
                let schema = format.json_schema.ok_or_else(|| {
                    TranslateError::invalid("response_format.json_schema", "missing")
                })?;
                ResponseFormat::JsonSchema {
                    name: schema.name,
                    description: schema.description,
                    schema: schema.schema,
                    strict: schema.strict,
                }
            }
            other => {
                return Err(TranslateError::unsupported(
                    "response_format.type",
                    format!("unknown format `{other}`"),
                ));
            }
        }),
    };

    let mut dialect_fields = Vec::new();
    let extras = [
        ("store", wire.store),
        ("logit_bias", wire.logit_bias),
        ("top_logprobs", wire.top_logprobs),
        ("service_tier", wire.service_tier),
        ("reasoning_effort", wire.reasoning_effort),
        ("modalities", wire.modalities),
        ("audio", wire.audio),
        ("prediction", wire.prediction),
        ("web_search_options", wire.web_search_options),
        ("prompt_cache_key", wire.prompt_cache_key),
        ("safety_identifier", wire.safety_identifier),
        ("verbosity", wire.verbosity),
        ("functions", wire.functions),
        ("function_call", wire.function_call),
    ];
    for (name, value) in extras {
        if let Some(value) = value {
            dialect_fields.push(DialectField {
                dialect: Ingress::OpenAi,
                name,
                value,
            });
        }
    }
    if wire.logprobs == Some(true) {
        dialect_fields.push(DialectField {
            dialect: Ingress::OpenAi,
            name: "logprobs",
            value: raw_true()?,
        });
    }
    let include_usage = wire
        .stream_options
        .as_ref()
        .and_then(|options| options.include_usage)
        .unwrap_or(false);
    if let Some(options) = &wire.stream_options {
        let _ = options.include_obfuscation;
    }

    Ok(IrRequest {
        model: wire.model,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: wire.parallel_tool_calls,
        n: wire.n,
        temperature: wire.temperature,
        top_p: wire.top_p,
        top_k: None,
        max_tokens: wire.max_completion_tokens.or(wire.max_tokens),
        stop: match wire.stop {
            None => Vec::new(),
            Some(OneOrMany::One(stop)) => vec![stop],
            Some(OneOrMany::Many(stops)) => stops,
        },
        presence_penalty: wire.presence_penalty,
        frequency_penalty: wire.frequency_penalty,
        seed: wire.seed,
        response_format,
        stream: wire.stream.unwrap_or(false),
        include_usage,
        user: wire.user,
        metadata: wire.metadata,
        thinking: None,
        dialect_fields,
    })
}

fn raw_true() -> Result<Box<RawValue>, TranslateError> {
    RawValue::from_string("true".to_owned()).map_err(|source| TranslateError::Malformed {
        what: "literal",
        source,
    })
}

fn parse_tool_choice(value: &Value) -> Result<ToolChoice, TranslateError> {
    match value {
        Value::String(text) => match text.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(TranslateError::invalid(
                "tool_choice",
                format!("unknown value `{other}`"),
            )),
        },
        Value::Object(map) => {
            let name = map
                .get("function")
                .and_then(|function| function.get("name"))
                .and_then(Value::as_str);
            match (map.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(name)) => Ok(ToolChoice::Tool(name.to_owned())),
                (kind, _) => Err(TranslateError::unsupported(
                    "tool_choice",
                    format!(
                        "tool_choice of type `{}` is not translated",
                        kind.unwrap_or("?")
                    ),
                )),
            }
        }
        _ => Err(TranslateError::invalid(
            "tool_choice",
            "must be a string or an object",
        )),
    }
}

fn convert_message(position: usize, message: ChatMessage) -> Result<Message, TranslateError> {
    if message.function_call.is_some() || message.role == ChatRole::Function {
        return Err(TranslateError::unsupported(
            format!("messages[{position}].function_call"),
            "legacy function calling is not translated; use tools",
        ));
    }
    if message.audio.is_some() {
        return Err(TranslateError::unsupported(
            format!("messages[{position}].audio"),
            "audio is not translated",
        ));
    }
    let role = match message.role {
        ChatRole::System | ChatRole::Developer => Role::System,
        ChatRole::User => Role::User,
        ChatRole::Assistant => Role::Assistant,
        ChatRole::Tool | ChatRole::Function => Role::Tool,
    };
    let mut parts = match message.content {
        None => Vec::new(),
        Some(OneOrMany::One(text)) if text.is_empty() && role == Role::Assistant => Vec::new(),
        Some(OneOrMany::One(text)) => vec![Part::text(text)],
        Some(OneOrMany::Many(wire_parts)) => {
            let mut parts = Vec::with_capacity(wire_parts.len());
            for (index, part) in wire_parts.into_iter().enumerate() {
                parts.push(convert_part(position, index, part)?);
            }
            parts
        }
    };
    if let Some(refusal) = message.refusal {
        parts.push(Part::text(refusal));
    }
    if role == Role::Tool {
        let call_id = message.tool_call_id.ok_or_else(|| {
            TranslateError::invalid(format!("messages[{position}].tool_call_id"), "missing")
        })?;
        return Ok(Message {
            role,
            parts: vec![Part::ToolResult(ToolResult {
                call_id,
                content: parts,
                is_error: false,
            })],
            name: None,
        });
    }
    if let Some(calls) = message.tool_calls {
        if role != Role::Assistant {
            return Err(TranslateError::invalid(
                format!("messages[{position}].tool_calls"),
                "only assistant messages carry tool calls",
            ));
        }
        for (index, call) in calls.into_iter().enumerate() {
            let field = || format!("messages[{position}].tool_calls[{index}]");
            if call.kind.as_deref().is_some_and(|kind| kind != "function") {
                return Err(TranslateError::unsupported(
                    field(),
                    "only function tool calls",
                ));
            }
            parts.push(Part::ToolCall(ToolCall {
                id: call
                    .id
                    .ok_or_else(|| TranslateError::invalid(format!("{}.id", field()), "missing"))?,
                name: call.function.name.ok_or_else(|| {
                    TranslateError::invalid(format!("{}.function.name", field()), "missing")
                })?,
                arguments: call.function.arguments.unwrap_or_default(),
            }));
        }
    }
    Ok(Message {
        role,
        parts,
        name: message.name,
    })
}

fn convert_part(position: usize, index: usize, part: ChatPart) -> Result<Part, TranslateError> {
    let field = || format!("messages[{position}].content[{index}]");
    match part.kind.as_str() {
        "text" => Ok(Part::text(part.text.ok_or_else(|| {
            TranslateError::invalid(format!("{}.text", field()), "missing")
        })?)),
        "refusal" => Ok(Part::text(part.refusal.unwrap_or_default())),
        "image_url" => {
            let image = part.image_url.ok_or_else(|| {
                TranslateError::invalid(format!("{}.image_url", field()), "missing")
            })?;
            let source = match wire::parse_data_url(&image.url) {
                Some((media_type, data)) => ImageSource::Base64 {
                    media_type: media_type.to_owned(),
                    data: data.to_owned(),
                },
                None => ImageSource::Url(image.url),
            };
            Ok(Part::Image(Image {
                source,
                detail: image.detail,
            }))
        }
        "input_audio" => Err(TranslateError::unsupported(
            field(),
            "audio input is not translated",
        )),
        "file" => Err(TranslateError::unsupported(
            field(),
            "file inputs are not translated",
        )),
        other => Err(TranslateError::unsupported(
            field(),
            format!("content part type `{other}` is not translated"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Request encoding (IR -> OpenAI upstream)

#[derive(Serialize)]
struct OutRequest<'a> {
    model: &'a str,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<OutToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<OutResponseFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<OutStreamOptions>,
    #[serde(flatten)]
    extra: OutExtras<'a>,
}

struct OutExtras<'a>(&'a [DialectField]);

impl Serialize for OutExtras<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let fields: Vec<&DialectField> = self
            .0
            .iter()
            .filter(|field| field.dialect == Ingress::OpenAi)
            .collect();
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for field in fields {
            map.serialize_entry(field.name, &field.value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct OutStreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutResponseFormat<'a> {
    Text,
    JsonObject,
    JsonSchema { json_schema: OutJsonSchema<'a> },
}

#[derive(Serialize)]
struct OutJsonSchema<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutToolChoice<'a> {
    Mode(&'static str),
    Named {
        #[serde(rename = "type")]
        kind: &'static str,
        function: OutName<'a>,
    },
}

#[derive(Serialize)]
struct OutName<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct OutTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunctionDef<'a>,
}

#[derive(Serialize)]
struct OutFunctionDef<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Option<OutContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutContent<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<OutPart<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: OutImageUrl<'a> },
}

#[derive(Serialize)]
struct OutImageUrl<'a> {
    url: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct OutToolCall<'a> {
    pub(crate) id: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) function: OutFunctionCall<'a>,
}

#[derive(Serialize)]
pub(crate) struct OutFunctionCall<'a> {
    pub(crate) name: &'a str,
    pub(crate) arguments: &'a str,
}

/// OpenAI reasoning models (o-series, GPT-5) reject `max_tokens` and take only
/// `max_completion_tokens`; other models and most compatible servers take `max_tokens`.
fn needs_max_completion_tokens(upstream_model: &str) -> bool {
    let name = upstream_model.rsplit('/').next().unwrap_or(upstream_model);
    name.starts_with("gpt-5")
        || ["o1", "o3", "o4"].iter().any(|family| {
            name.strip_prefix(family)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        })
}

/// Prefix given to the text of a failed tool result, since OpenAI has no `is_error` flag.
pub const TOOL_ERROR_PREFIX: &str = "[tool error] ";

/// Encodes the IR as an OpenAI Chat Completions request for `upstream_model`. Streamed
/// requests always ask for the final usage chunk, whatever the client asked.
pub(crate) fn encode_request(
    request: &IrRequest,
    upstream_model: &str,
) -> Result<Bytes, TranslateError> {
    wire::check_foreign_fields(request, Some(Ingress::OpenAi), "OpenAI")?;
    wire::check_no_thinking(request, "OpenAI")?;
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    for (position, message) in request.messages.iter().enumerate() {
        encode_message(position, message, &mut messages)?;
    }
    let tools = request
        .tools
        .iter()
        .map(|tool| OutTool {
            kind: "function",
            function: OutFunctionDef {
                name: &tool.name,
                description: tool.description.as_deref(),
                parameters: tool.parameters.as_deref(),
                strict: tool.strict,
            },
        })
        .collect();
    let tool_choice = request.tool_choice.as_ref().map(|choice| match choice {
        ToolChoice::Auto => OutToolChoice::Mode("auto"),
        ToolChoice::None => OutToolChoice::Mode("none"),
        ToolChoice::Required => OutToolChoice::Mode("required"),
        ToolChoice::Tool(name) => OutToolChoice::Named {
            kind: "function",
            function: OutName { name },
        },
    });
    let response_format = request.response_format.as_ref().map(|format| match format {
        ResponseFormat::Text => OutResponseFormat::Text,
        ResponseFormat::JsonObject => OutResponseFormat::JsonObject,
        ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => OutResponseFormat::JsonSchema {
            json_schema: OutJsonSchema {
                name,
                description: description.as_deref(),
                schema: schema.as_deref(),
                strict: *strict,
            },
        },
    });
    if request.top_k.is_some() {
        return Err(TranslateError::unsupported(
            "top_k",
            "OpenAI Chat Completions has no top_k",
        ));
    }
    let out = OutRequest {
        model: upstream_model,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: request.parallel_tool_calls,
        n: request.n,
        temperature: request.temperature,
        top_p: request.top_p,
        max_tokens: request
            .max_tokens
            .filter(|_| !needs_max_completion_tokens(upstream_model)),
        max_completion_tokens: request
            .max_tokens
            .filter(|_| needs_max_completion_tokens(upstream_model)),
        stop: &request.stop,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        seed: request.seed,
        response_format,
        user: request.user.as_deref(),
        metadata: request.metadata.as_deref(),
        stream: request.stream,
        stream_options: request.stream.then_some(OutStreamOptions {
            include_usage: true,
        }),
        extra: OutExtras(&request.dialect_fields),
    };
    wire::to_bytes(&out, "OpenAI chat request")
}

fn image_url(image: &Image) -> Cow<'_, str> {
    match &image.source {
        ImageSource::Url(url) => Cow::Borrowed(url),
        ImageSource::Base64 { media_type, data } => {
            Cow::Owned(format!("data:{media_type};base64,{data}"))
        }
    }
}

fn encode_message<'a>(
    position: usize,
    message: &'a Message,
    out: &mut Vec<OutMessage<'a>>,
) -> Result<(), TranslateError> {
    let field = |index: usize| format!("messages[{position}].content[{index}]");
    let role = match message.role {
        Role::System => "system",
        Role::User | Role::Tool => "user",
        Role::Assistant => "assistant",
    };
    let mut content_parts: Vec<OutPart<'a>> = Vec::new();
    let mut tool_calls = Vec::new();
    let mut has_image = false;
    for (index, part) in message.parts.iter().enumerate() {
        match part {
            Part::Text { text, .. } => content_parts.push(OutPart::Text { text }),
            Part::Image(image) => {
                if message.role != Role::User {
                    return Err(TranslateError::unsupported(
                        field(index),
                        "OpenAI accepts images only in user messages",
                    ));
                }
                has_image = true;
                content_parts.push(OutPart::ImageUrl {
                    image_url: OutImageUrl {
                        url: image_url(image),
                        detail: image.detail.as_deref(),
                    },
                });
            }
            Part::ToolCall(call) => tool_calls.push(OutToolCall {
                id: &call.id,
                kind: "function",
                function: OutFunctionCall {
                    name: &call.name,
                    arguments: if call.arguments.is_empty() {
                        "{}"
                    } else {
                        &call.arguments
                    },
                },
            }),
            Part::ToolResult(result) => {
                // Tool results become `tool` messages, placed before any other content of the
                // same message (Anthropic requires results first, so the order is kept).
                let text = tool_result_text(result, || field(index))?;
                out.push(OutMessage {
                    role: "tool",
                    content: Some(OutContent::Text(text)),
                    name: None,
                    tool_calls: Vec::new(),
                    tool_call_id: Some(&result.call_id),
                });
            }
            Part::Thinking { .. } | Part::RedactedThinking { .. } => {
                return Err(TranslateError::unsupported(
                    field(index),
                    "thinking blocks cannot be sent to OpenAI upstreams",
                ));
            }
        }
    }
    if content_parts.is_empty() && tool_calls.is_empty() {
        return Ok(());
    }
    let content = if content_parts.is_empty() {
        None
    } else if !has_image {
        // Text-only content is sent as one string (the widest-supported form).
        Some(OutContent::Text(join_text(&content_parts)))
    } else {
        Some(OutContent::Parts(content_parts))
    };
    out.push(OutMessage {
        role,
        content,
        name: message.name.as_deref(),
        tool_calls,
        tool_call_id: None,
    });
    Ok(())
}

fn join_text<'a>(parts: &[OutPart<'a>]) -> Cow<'a, str> {
    let mut texts = parts.iter().filter_map(|part| match part {
        OutPart::Text { text } => Some(*text),
        OutPart::ImageUrl { .. } => None,
    });
    match (texts.next(), texts.next()) {
        (None, _) => Cow::Borrowed(""),
        (Some(first), None) => Cow::Borrowed(first),
        (Some(first), Some(second)) => {
            let mut joined = String::with_capacity(first.len() + second.len() + 2);
            joined.push_str(first);
            joined.push_str("\n\n");
            joined.push_str(second);
            for text in texts {
                joined.push_str("\n\n");
                joined.push_str(text);
            }
            Cow::Owned(joined)
        }
    }
}

fn tool_result_text<'a>(
    result: &'a ToolResult,
    field: impl Fn() -> String,
) -> Result<Cow<'a, str>, TranslateError> {
    let mut texts: Vec<&str> = Vec::with_capacity(result.content.len());
    for part in &result.content {
        match part {
            Part::Text { text, .. } => texts.push(text),
            _ => {
                return Err(TranslateError::unsupported(
                    field(),
                    "OpenAI tool results carry text only",
                ));
            }
        }
    }
    let joined = match texts.as_slice() {
        [] => Cow::Borrowed(""),
        [single] => Cow::Borrowed(*single),
        many => Cow::Owned(many.join("\n\n")),
    };
    Ok(if result.is_error {
        Cow::Owned(format!("{TOOL_ERROR_PREFIX}{joined}"))
    } else {
        joined
    })
}

// ---------------------------------------------------------------------------------------------
// Response decoding (OpenAI upstream -> IR)

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    created: Option<u64>,
    #[serde(default)]
    choices: Vec<CompletionChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct CompletionChoice {
    #[serde(default)]
    index: u32,
    message: CompletionMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct CompletionMessage {
    content: Option<String>,
    refusal: Option<String>,
    tool_calls: Option<Vec<ChatToolCall>>,
}

#[derive(Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) prompt_tokens: u64,
    #[serde(default)]
    pub(crate) completion_tokens: u64,
    pub(crate) prompt_tokens_details: Option<WirePromptDetails>,
}

#[derive(Deserialize)]
pub(crate) struct WirePromptDetails {
    pub(crate) cached_tokens: Option<u64>,
}

impl WireUsage {
    pub(crate) fn to_ir(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            cached_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|details| details.cached_tokens)
                .unwrap_or(0),
            cache_creation_tokens: 0,
            estimated: false,
        }
    }
}

pub(crate) fn finish_from_wire(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

pub(crate) fn finish_to_wire(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::StopSequence | FinishReason::Pause => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter | FinishReason::Refusal => "content_filter",
    }
}

/// Decodes an OpenAI Chat Completions answer.
pub(crate) fn decode_response(body: &[u8]) -> Result<IrResponse, TranslateError> {
    let wire: Completion =
        serde_json::from_slice(body).map_err(|source| TranslateError::Malformed {
            what: "OpenAI chat completion",
            source,
        })?;
    let mut choices = Vec::with_capacity(wire.choices.len());
    for choice in wire.choices {
        let mut parts = Vec::new();
        if let Some(text) = choice.message.content.filter(|text| !text.is_empty()) {
            parts.push(Part::text(text));
        }
        if let Some(refusal) = choice.message.refusal.filter(|text| !text.is_empty()) {
            parts.push(Part::text(refusal));
        }
        for (index, call) in choice
            .message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            parts.push(Part::ToolCall(ToolCall {
                id: call.id.unwrap_or_else(|| format!("call_{index}")),
                name: call.function.name.unwrap_or_default(),
                arguments: call.function.arguments.unwrap_or_default(),
            }));
            let _ = (call.index, call.kind);
        }
        choices.push(Choice {
            index: choice.index,
            parts,
            finish_reason: choice.finish_reason.as_deref().map(finish_from_wire),
            stop_sequence: None,
        });
    }
    Ok(IrResponse {
        id: wire.id,
        model: wire.model,
        created: wire.created,
        choices,
        usage: wire.usage.as_ref().map(WireUsage::to_ir),
    })
}

// ---------------------------------------------------------------------------------------------
// Response encoding (IR -> OpenAI client)

#[derive(Serialize)]
struct OutCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<OutChoice<'a>>,
    usage: OutUsage,
}

#[derive(Serialize)]
struct OutChoice<'a> {
    index: u32,
    message: OutAnswer<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct OutAnswer<'a> {
    role: &'static str,
    content: Option<Cow<'a, str>>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
}

#[derive(Serialize)]
pub(crate) struct OutUsage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
    pub(crate) prompt_tokens_details: OutPromptDetails,
}

#[derive(Serialize)]
pub(crate) struct OutPromptDetails {
    pub(crate) cached_tokens: u64,
}

impl OutUsage {
    pub(crate) fn from_ir(usage: &Usage) -> Self {
        Self {
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            total_tokens: usage.total(),
            prompt_tokens_details: OutPromptDetails {
                cached_tokens: usage.cached_tokens,
            },
        }
    }
}

/// Encodes an IR answer as an OpenAI chat completion for a client that asked for `model`.
pub(crate) fn encode_response(response: &IrResponse, model: &str) -> Result<Bytes, TranslateError> {
    let mut choices = Vec::with_capacity(response.choices.len());
    for choice in &response.choices {
        let mut texts: Vec<&str> = Vec::new();
        let mut tool_calls = Vec::new();
        for part in &choice.parts {
            match part {
                Part::Text { text, .. } => texts.push(text),
                Part::ToolCall(call) => tool_calls.push(OutToolCall {
                    id: &call.id,
                    kind: "function",
                    function: OutFunctionCall {
                        name: &call.name,
                        arguments: if call.arguments.is_empty() {
                            "{}"
                        } else {
                            &call.arguments
                        },
                    },
                }),
                // Thinking only appears when the client asked for it, which an OpenAI client
                // cannot do; Chat Completions has no field for it.
                Part::Thinking { .. } | Part::RedactedThinking { .. } => {}
                Part::Image(_) | Part::ToolResult(_) => {
                    return Err(TranslateError::unsupported(
                        format!("choices[{}].message.content", choice.index),
                        "OpenAI answers carry text and tool calls only",
                    ));
                }
            }
        }
        let content = match texts.as_slice() {
            [] => None,
            [single] => Some(Cow::Borrowed(*single)),
            many => Some(Cow::Owned(many.concat())),
        };
        choices.push(OutChoice {
            index: choice.index,
            message: OutAnswer {
                role: "assistant",
                content,
                refusal: None,
                tool_calls,
            },
            logprobs: None,
            finish_reason: choice.finish_reason.map(finish_to_wire),
        });
    }
    let out = OutCompletion {
        id: &response.id,
        object: "chat.completion",
        created: response.created.unwrap_or_else(wire::unix_now),
        model,
        choices,
        usage: OutUsage::from_ir(&response.usage.unwrap_or_default()),
    };
    wire::to_bytes(&out, "OpenAI chat completion")
}
