//! Anthropic Messages codec for non-streamed bodies.
//!
//! Owns: parsing a client's `/v1/messages` (and `/v1/messages/count_tokens`) request into the
//! IR, encoding the IR as a request to an Anthropic upstream, decoding such an upstream's
//! answer and encoding an IR answer for an Anthropic client. Streams live in
//! `stream::anthropic`. Headers (`anthropic-version`, `anthropic-beta`) are the gateway's.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::TranslateError;
use crate::ir::{
    Choice, DialectField, FinishReason, Image, ImageSource, Ingress, IrRequest, IrResponse,
    Message, Part, ResponseFormat, Role, Tool, ToolCall, ToolChoice, ToolResult, Usage,
};
use crate::wire::{self, OneOrMany};

/// `max_tokens` sent to Anthropic when the client gave none (Anthropic requires the field;
/// OpenAI clients may omit it).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

// ---------------------------------------------------------------------------------------------
// Request parsing (client -> IR)

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesRequest {
    model: String,
    messages: Vec<WireMessage>,
    system: Option<OneOrMany<WireBlock>>,
    max_tokens: Option<u32>,
    stop_sequences: Option<Vec<String>>,
    stream: Option<bool>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u32>,
    tools: Option<Vec<WireTool>>,
    tool_choice: Option<WireToolChoice>,
    metadata: Option<WireMetadata>,
    thinking: Option<Box<RawValue>>,
    // Anthropic-only fields, kept verbatim as `DialectField`s.
    service_tier: Option<Box<RawValue>>,
    container: Option<Box<RawValue>>,
    mcp_servers: Option<Box<RawValue>>,
    context_management: Option<Box<RawValue>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum WireRole {
    User,
    Assistant,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMessage {
    role: WireRole,
    content: OneOrMany<WireBlock>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    source: Option<WireSource>,
    id: Option<String>,
    name: Option<String>,
    input: Option<Box<RawValue>>,
    tool_use_id: Option<String>,
    content: Option<OneOrMany<WireBlock>>,
    is_error: Option<bool>,
    cache_control: Option<Box<RawValue>>,
    /// Citation annotations of earlier answers: metadata about the text, not content.
    citations: Option<Box<RawValue>>,
    thinking: Option<String>,
    signature: Option<String>,
    data: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSource {
    #[serde(rename = "type")]
    kind: String,
    media_type: Option<String>,
    data: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTool {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: String,
    description: Option<String>,
    input_schema: Option<Box<RawValue>>,
    cache_control: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireToolChoice {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMetadata {
    user_id: Option<String>,
}

/// Parses an Anthropic Messages request body (also a `count_tokens` body, which has no
/// `max_tokens`).
pub(crate) fn parse_request(body: &[u8]) -> Result<IrRequest, TranslateError> {
    let wire: MessagesRequest = serde_json::from_slice(body)
        .map_err(|err| TranslateError::from_request_json("Anthropic messages request", err))?;

    let mut messages = Vec::with_capacity(wire.messages.len() + 1);
    match wire.system {
        None => {}
        Some(OneOrMany::One(text)) => messages.push(Message {
            role: Role::System,
            parts: vec![Part::text(text)],
            name: None,
        }),
        Some(OneOrMany::Many(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (index, block) in blocks.into_iter().enumerate() {
                let field = || format!("system[{index}]");
                if block.kind != "text" {
                    return Err(TranslateError::unsupported(
                        field(),
                        "system blocks must be text",
                    ));
                }
                parts.push(Part::Text {
                    text: block.text.ok_or_else(|| {
                        TranslateError::invalid(format!("{}.text", field()), "missing")
                    })?,
                    cache_control: block.cache_control,
                });
            }
            messages.push(Message {
                role: Role::System,
                parts,
                name: None,
            });
        }
    }
    for (position, message) in wire.messages.into_iter().enumerate() {
        let role = match message.role {
            WireRole::User => Role::User,
            WireRole::Assistant => Role::Assistant,
        };
        let parts = match message.content {
            OneOrMany::One(text) => vec![Part::text(text)],
            OneOrMany::Many(blocks) => {
                let mut parts = Vec::with_capacity(blocks.len());
                for (index, block) in blocks.into_iter().enumerate() {
                    parts.push(convert_block(
                        &|| format!("messages[{position}].content[{index}]"),
                        block,
                    )?);
                }
                parts
            }
        };
        messages.push(Message {
            role,
            parts,
            name: None,
        });
    }

    let mut tools = Vec::new();
    for (position, tool) in wire.tools.unwrap_or_default().into_iter().enumerate() {
        if let Some(kind) = tool.kind.as_deref().filter(|kind| *kind != "custom") {
            return Err(TranslateError::unsupported(
                format!("tools[{position}].type"),
                format!("server tool `{kind}` is not translated"),
            ));
        }
        tools.push(Tool {
            name: tool.name,
            description: tool.description,
            parameters: tool.input_schema,
            strict: None,
            cache_control: tool.cache_control,
        });
    }

    let (tool_choice, parallel_tool_calls) = match wire.tool_choice {
        None => (None, None),
        Some(choice) => {
            let parsed = match choice.kind.as_str() {
                "auto" => ToolChoice::Auto,
                "any" => ToolChoice::Required,
                "none" => ToolChoice::None,
                "tool" => ToolChoice::Tool(choice.name.ok_or_else(|| {
                    TranslateError::invalid("tool_choice.name", "missing for type `tool`")
                })?),
                other => {
                    return Err(TranslateError::invalid(
                        "tool_choice.type",
                        format!("unknown value `{other}`"),
                    ));
                }
            };
            (
                Some(parsed),
                choice.disable_parallel_tool_use.map(|disable| !disable),
            )
        }
    };

    let mut dialect_fields = Vec::new();
    let extras = [
        ("service_tier", wire.service_tier),
        ("container", wire.container),
        ("mcp_servers", wire.mcp_servers),
        ("context_management", wire.context_management),
    ];
    for (name, value) in extras {
        if let Some(value) = value {
            dialect_fields.push(DialectField {
                dialect: Ingress::Anthropic,
                name,
                value,
            });
        }
    }

    Ok(IrRequest {
        model: wire.model,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls,
        n: None,
        temperature: wire.temperature,
        top_p: wire.top_p,
        top_k: wire.top_k,
        max_tokens: wire.max_tokens,
        stop: wire.stop_sequences.unwrap_or_default(),
        presence_penalty: None,
        frequency_penalty: None,
        seed: None,
        response_format: None,
        stream: wire.stream.unwrap_or(false),
        // Anthropic streams always carry usage.
        include_usage: true,
        user: wire.metadata.and_then(|metadata| metadata.user_id),
        metadata: None,
        thinking: wire.thinking,
        dialect_fields,
    })
}

fn convert_block(field: &dyn Fn() -> String, block: WireBlock) -> Result<Part, TranslateError> {
    let _ = &block.citations;
    let missing = |name: &str| TranslateError::invalid(format!("{}.{name}", field()), "missing");
    match block.kind.as_str() {
        "text" => Ok(Part::Text {
            text: block.text.ok_or_else(|| missing("text"))?,
            cache_control: block.cache_control,
        }),
        "image" => {
            let source = block.source.ok_or_else(|| missing("source"))?;
            let source = match source.kind.as_str() {
                "base64" => ImageSource::Base64 {
                    media_type: source
                        .media_type
                        .ok_or_else(|| missing("source.media_type"))?,
                    data: source.data.ok_or_else(|| missing("source.data"))?,
                },
                "url" => ImageSource::Url(source.url.ok_or_else(|| missing("source.url"))?),
                other => {
                    return Err(TranslateError::unsupported(
                        format!("{}.source.type", field()),
                        format!("image source `{other}` is not translated"),
                    ));
                }
            };
            Ok(Part::Image(Image {
                source,
                detail: None,
            }))
        }
        "tool_use" => Ok(Part::ToolCall(ToolCall {
            id: block.id.ok_or_else(|| missing("id"))?,
            name: block.name.ok_or_else(|| missing("name"))?,
            arguments: block
                .input
                .map_or_else(|| "{}".to_owned(), |input| input.get().to_owned()),
        })),
        "tool_result" => {
            let content = match block.content {
                None => Vec::new(),
                Some(OneOrMany::One(text)) => vec![Part::text(text)],
                Some(OneOrMany::Many(blocks)) => {
                    let mut parts = Vec::with_capacity(blocks.len());
                    for (index, inner) in blocks.into_iter().enumerate() {
                        let inner_field = || format!("{}.content[{index}]", field());
                        let part = convert_block(&inner_field, inner)?;
                        if !matches!(part, Part::Text { .. } | Part::Image(_)) {
                            return Err(TranslateError::unsupported(
                                inner_field(),
                                "tool results carry text and images only",
                            ));
                        }
                        parts.push(part);
                    }
                    parts
                }
            };
            Ok(Part::ToolResult(ToolResult {
                call_id: block.tool_use_id.ok_or_else(|| missing("tool_use_id"))?,
                content,
                is_error: block.is_error.unwrap_or(false),
            }))
        }
        "thinking" => Ok(Part::Thinking {
            thinking: block.thinking.ok_or_else(|| missing("thinking"))?,
            signature: block.signature,
        }),
        "redacted_thinking" => Ok(Part::RedactedThinking {
            data: block.data.ok_or_else(|| missing("data"))?,
        }),
        other => Err(TranslateError::unsupported(
            field(),
            format!("content block type `{other}` is not translated"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Request encoding (IR -> Anthropic upstream)

#[derive(Serialize)]
struct OutRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<OutSystem<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<OutToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<OutMetadata<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a RawValue>,
    #[serde(flatten)]
    extra: OutExtras<'a>,
}

struct OutExtras<'a>(&'a [DialectField]);

impl Serialize for OutExtras<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for field in self
            .0
            .iter()
            .filter(|field| field.dialect == Ingress::Anthropic)
        {
            map.serialize_entry(field.name, &field.value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutSystem<'a> {
    Text(&'a str),
    Blocks(Vec<OutBlock<'a>>),
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Vec<OutBlock<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlock<'a> {
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
    Image {
        source: OutSource<'a>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a RawValue,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: Vec<OutBlock<'a>>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    Thinking {
        thinking: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<&'a str>,
    },
    RedactedThinking {
        data: &'a str,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Serialize)]
struct OutTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct OutToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Serialize)]
struct OutMetadata<'a> {
    user_id: &'a str,
}

fn empty_schema() -> Result<&'static RawValue, TranslateError> {
    serde_json::from_str(r#"{"type":"object","properties":{}}"#).map_err(|source| {
        TranslateError::Malformed {
            what: "empty schema",
            source,
        }
    })
}

/// Encodes the IR as an Anthropic Messages request for `upstream_model`.
pub(crate) fn encode_request(
    request: &IrRequest,
    upstream_model: &str,
) -> Result<Bytes, TranslateError> {
    wire::check_foreign_fields(request, Some(Ingress::Anthropic), "Anthropic")?;
    wire::check_no_names(request, "Anthropic")?;
    if let Some(n) = request.n.filter(|n| *n > 1) {
        return Err(TranslateError::unsupported(
            "n",
            format!("Anthropic returns one answer per request (n = {n})"),
        ));
    }
    if let Some(temperature) = request.temperature.filter(|value| *value > 1.0) {
        return Err(TranslateError::unsupported(
            "temperature",
            format!("Anthropic accepts 0 to 1 (got {temperature})"),
        ));
    }
    for (field, present) in [
        ("presence_penalty", request.presence_penalty.is_some()),
        ("frequency_penalty", request.frequency_penalty.is_some()),
        ("seed", request.seed.is_some()),
    ] {
        if present {
            return Err(TranslateError::unsupported(
                field,
                "Anthropic has no equivalent",
            ));
        }
    }
    if let Some(format) = &request.response_format
        && !matches!(format, ResponseFormat::Text)
    {
        return Err(TranslateError::unsupported(
            "response_format",
            "Anthropic has no JSON mode",
        ));
    }

    let mut system_blocks: Vec<OutBlock<'_>> = Vec::new();
    let mut messages: Vec<OutMessage<'_>> = Vec::with_capacity(request.messages.len());
    let mut previous_was_tool = false;
    for (position, message) in request.messages.iter().enumerate() {
        if message.role == Role::System {
            for (index, part) in message.parts.iter().enumerate() {
                match part {
                    Part::Text {
                        text,
                        cache_control,
                    } => system_blocks.push(OutBlock::Text {
                        text,
                        cache_control: cache_control.as_deref(),
                    }),
                    _ => {
                        return Err(TranslateError::unsupported(
                            format!("messages[{position}].content[{index}]"),
                            "Anthropic system prompts are text only",
                        ));
                    }
                }
            }
            continue;
        }
        let mut content = Vec::with_capacity(message.parts.len());
        for (index, part) in message.parts.iter().enumerate() {
            content.push(encode_block(
                &|| format!("messages[{position}].content[{index}]"),
                part,
            )?);
        }
        if content.is_empty() {
            continue;
        }
        let role = match message.role {
            Role::Assistant => "assistant",
            _ => "user",
        };
        // Results of parallel tool calls go back in one user turn, followed by any user text.
        if previous_was_tool
            && role == "user"
            && let Some(last) = messages.last_mut()
        {
            last.content.extend(content);
        } else {
            messages.push(OutMessage { role, content });
        }
        previous_was_tool = message.role == Role::Tool;
    }

    let system = match system_blocks.as_slice() {
        [] => None,
        [
            OutBlock::Text {
                text,
                cache_control: None,
            },
        ] => Some(OutSystem::Text(text)),
        _ => Some(OutSystem::Blocks(system_blocks)),
    };

    let mut tools = Vec::with_capacity(request.tools.len());
    for tool in &request.tools {
        tools.push(OutTool {
            name: &tool.name,
            description: tool.description.as_deref(),
            input_schema: match tool.parameters.as_deref() {
                Some(schema) => schema,
                None => empty_schema()?,
            },
            cache_control: tool.cache_control.as_deref(),
        });
    }
    let disable_parallel = request.parallel_tool_calls.map(|parallel| !parallel);
    let tool_choice = match (&request.tool_choice, disable_parallel) {
        (None, None) => None,
        (None | Some(ToolChoice::Auto), disable) => Some(OutToolChoice {
            kind: "auto",
            name: None,
            disable_parallel_tool_use: disable,
        }),
        (Some(ToolChoice::Required), disable) => Some(OutToolChoice {
            kind: "any",
            name: None,
            disable_parallel_tool_use: disable,
        }),
        (Some(ToolChoice::Tool(name)), disable) => Some(OutToolChoice {
            kind: "tool",
            name: Some(name),
            disable_parallel_tool_use: disable,
        }),
        (Some(ToolChoice::None), _) => Some(OutToolChoice {
            kind: "none",
            name: None,
            disable_parallel_tool_use: None,
        }),
    };
    let tool_choice = if tools.is_empty() { None } else { tool_choice };

    let out = OutRequest {
        model: upstream_model,
        max_tokens: request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        messages,
        system,
        stop_sequences: &request.stop,
        stream: request.stream,
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        tools,
        tool_choice,
        metadata: request
            .user
            .as_deref()
            .map(|user_id| OutMetadata { user_id }),
        thinking: request.thinking.as_deref(),
        extra: OutExtras(&request.dialect_fields),
    };
    wire::to_bytes(&out, "Anthropic messages request")
}

fn encode_block<'a>(
    field: &dyn Fn() -> String,
    part: &'a Part,
) -> Result<OutBlock<'a>, TranslateError> {
    Ok(match part {
        Part::Text {
            text,
            cache_control,
        } => OutBlock::Text {
            text,
            cache_control: cache_control.as_deref(),
        },
        Part::Image(image) => OutBlock::Image {
            source: match &image.source {
                ImageSource::Url(url) => OutSource::Url { url },
                ImageSource::Base64 { media_type, data } => OutSource::Base64 { media_type, data },
            },
        },
        Part::ToolCall(call) => OutBlock::ToolUse {
            id: &call.id,
            name: &call.name,
            input: wire::arguments_object(&call.arguments, || format!("{}.arguments", field()))?,
        },
        Part::ToolResult(result) => {
            let mut content = Vec::with_capacity(result.content.len());
            for part in &result.content {
                content.push(encode_block(field, part)?);
            }
            OutBlock::ToolResult {
                tool_use_id: &result.call_id,
                content,
                is_error: result.is_error,
            }
        }
        Part::Thinking {
            thinking,
            signature,
        } => OutBlock::Thinking {
            thinking,
            signature: signature.as_deref(),
        },
        Part::RedactedThinking { data } => OutBlock::RedactedThinking { data },
    })
}

// ---------------------------------------------------------------------------------------------
// Response decoding (Anthropic upstream -> IR)

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<WireAnswerBlock>,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
pub(crate) struct WireAnswerBlock {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) text: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) input: Option<Box<RawValue>>,
    pub(crate) thinking: Option<String>,
    pub(crate) signature: Option<String>,
    pub(crate) data: Option<String>,
}

/// Anthropic usage as sent in answers, `message_start` and `message_delta` (where every field
/// is cumulative and all but `output_tokens` may be absent).
#[derive(Deserialize, Default, Clone, Copy)]
pub(crate) struct WireUsage {
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) cache_creation_input_tokens: Option<u64>,
    pub(crate) cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Folds this report into `usage`: present fields replace, absent ones keep their value.
    pub(crate) fn merge_into(&self, usage: &mut Usage) {
        let mut uncached = usage.uncached_input();
        if let Some(value) = self.input_tokens {
            uncached = value;
        }
        if let Some(value) = self.cache_read_input_tokens {
            usage.cached_tokens = value;
        }
        if let Some(value) = self.cache_creation_input_tokens {
            usage.cache_creation_tokens = value;
        }
        usage.input_tokens = uncached + usage.cached_tokens + usage.cache_creation_tokens;
        if let Some(value) = self.output_tokens {
            usage.output_tokens = value;
        }
    }

    pub(crate) fn has_input(&self) -> bool {
        self.input_tokens.is_some()
    }
}

pub(crate) fn finish_from_wire(reason: &str) -> FinishReason {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "stop_sequence" => FinishReason::StopSequence,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::Refusal,
        "pause_turn" => FinishReason::Pause,
        _ => FinishReason::Stop,
    }
}

pub(crate) fn finish_to_wire(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "end_turn",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter | FinishReason::Refusal => "refusal",
        FinishReason::Pause => "pause_turn",
    }
}

pub(crate) fn answer_block_to_part(
    block: WireAnswerBlock,
    index: usize,
) -> Result<Part, TranslateError> {
    let field = || format!("content[{index}]");
    let missing = |name: &str| TranslateError::invalid(format!("{}.{name}", field()), "missing");
    Ok(match block.kind.as_str() {
        "text" => Part::text(block.text.unwrap_or_default()),
        "tool_use" => Part::ToolCall(ToolCall {
            id: block.id.ok_or_else(|| missing("id"))?,
            name: block.name.ok_or_else(|| missing("name"))?,
            arguments: block
                .input
                .map_or_else(|| "{}".to_owned(), |input| input.get().to_owned()),
        }),
        "thinking" => Part::Thinking {
            thinking: block.thinking.unwrap_or_default(),
            signature: block.signature,
        },
        "redacted_thinking" => Part::RedactedThinking {
            data: block.data.unwrap_or_default(),
        },
        other => {
            return Err(TranslateError::unsupported(
                field(),
                format!("answer block type `{other}` is not translated"),
            ));
        }
    })
}

/// Decodes an Anthropic Messages answer.
pub(crate) fn decode_response(body: &[u8]) -> Result<IrResponse, TranslateError> {
    let wire: WireResponse =
        serde_json::from_slice(body).map_err(|source| TranslateError::Malformed {
            what: "Anthropic message",
            source,
        })?;
    let mut parts = Vec::with_capacity(wire.content.len());
    for (index, block) in wire.content.into_iter().enumerate() {
        parts.push(answer_block_to_part(block, index)?);
    }
    let usage = wire.usage.map(|reported| {
        let mut usage = Usage::default();
        reported.merge_into(&mut usage);
        usage
    });
    Ok(IrResponse {
        id: wire.id,
        model: wire.model,
        created: None,
        choices: vec![Choice {
            index: 0,
            parts,
            finish_reason: wire.stop_reason.as_deref().map(finish_from_wire),
            stop_sequence: wire.stop_sequence,
        }],
        usage,
    })
}

// ---------------------------------------------------------------------------------------------
// Response encoding (IR -> Anthropic client)

#[derive(Serialize)]
struct OutResponse<'a> {
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<OutBlock<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'a str>,
    usage: OutUsage,
}

/// Anthropic usage object for answers and `message_delta`.
#[derive(Serialize)]
pub(crate) struct OutUsage {
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cache_creation_input_tokens: u64,
    pub(crate) cache_read_input_tokens: u64,
}

impl OutUsage {
    pub(crate) fn from_ir(usage: &Usage) -> Self {
        Self {
            input_tokens: usage.uncached_input(),
            output_tokens: usage.output_tokens,
            cache_creation_input_tokens: usage.cache_creation_tokens,
            cache_read_input_tokens: usage.cached_tokens,
        }
    }
}

/// An Anthropic message id for an upstream id from another dialect.
pub(crate) fn message_id(id: &str) -> Cow<'_, str> {
    if id.starts_with("msg_") {
        Cow::Borrowed(id)
    } else if id.is_empty() {
        Cow::Owned(wire::generate_id("msg_"))
    } else {
        Cow::Owned(format!("msg_{id}"))
    }
}

/// Encodes an IR answer as an Anthropic message for a client that asked for `model`.
pub(crate) fn encode_response(response: &IrResponse, model: &str) -> Result<Bytes, TranslateError> {
    if response.choices.len() > 1 {
        return Err(TranslateError::unsupported(
            "choices",
            "an Anthropic message carries one answer",
        ));
    }
    let mut content = Vec::new();
    let mut finish = None;
    let mut stop_sequence = None;
    if let Some(choice) = response.choices.first() {
        for (index, part) in choice.parts.iter().enumerate() {
            content.push(match part {
                Part::ToolCall(call) => OutBlock::ToolUse {
                    id: &call.id,
                    name: &call.name,
                    input: wire::arguments_object(&call.arguments, || {
                        format!("content[{index}].input")
                    })?,
                },
                other => encode_block(&|| format!("content[{index}]"), other)?,
            });
        }
        finish = choice.finish_reason;
        stop_sequence = choice.stop_sequence.as_deref();
    }
    let out = OutResponse {
        id: message_id(&response.id),
        kind: "message",
        role: "assistant",
        model,
        content,
        stop_reason: finish.map(finish_to_wire),
        stop_sequence,
        usage: OutUsage::from_ir(&response.usage.unwrap_or_default()),
    };
    wire::to_bytes(&out, "Anthropic message")
}
