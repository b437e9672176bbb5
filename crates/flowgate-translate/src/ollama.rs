//! Ollama native `/api/chat` codec for non-streamed bodies (upstream side only).
//!
//! Owns encoding the IR as an `/api/chat` request (messages with base64 `images`, tool calls
//! with object `arguments`, `format` for JSON mode, sampling in `options`) and decoding its
//! answer (also the shape of each NDJSON stream line, reused by `stream::ollama`). Ollama sends
//! no ids (they are generated). Usage: `prompt_eval_count` includes cached prompt tokens (since
//! Ollama fixed it in mid-2024; older versions omitted it for cached prompts, which then reads
//! as 0) and `prompt_eval_cached_count`, where reported, is the cached subset.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::TranslateError;
use crate::gemini::tool_name_for;
use crate::ir::{
    Choice, FinishReason, ImageSource, IrRequest, IrResponse, Part, ResponseFormat, Role, ToolCall,
    ToolChoice, Usage,
};
use crate::wire;

#[derive(Serialize)]
struct OutRequest<'a> {
    model: &'a str,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<OutFormat<'a>>,
    #[serde(skip_serializing_if = "OutOptions::is_empty")]
    options: OutOptions<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutFormat<'a> {
    Json(&'static str),
    Schema(&'a RawValue),
}

#[derive(Serialize, Default)]
struct OutOptions<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
}

impl OutOptions<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.num_predict.is_none()
            && self.stop.is_empty()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
    }
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Cow<'a, str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_name: Option<&'a str>,
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    function: OutFunctionCall<'a>,
}

#[derive(Serialize)]
struct OutFunctionCall<'a> {
    name: &'a str,
    arguments: &'a RawValue,
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
}

fn join<'a>(texts: &[&'a str]) -> Cow<'a, str> {
    match texts {
        [] => Cow::Borrowed(""),
        [single] => Cow::Borrowed(*single),
        many => Cow::Owned(many.join("\n\n")),
    }
}

/// Encodes the IR as an Ollama `/api/chat` request for `upstream_model`.
pub(crate) fn encode_request(
    request: &IrRequest,
    upstream_model: &str,
) -> Result<Bytes, TranslateError> {
    wire::check_foreign_fields(request, None, "Ollama")?;
    wire::check_no_names(request, "Ollama")?;
    wire::check_no_thinking(request, "Ollama")?;
    if let Some(n) = request.n.filter(|n| *n > 1) {
        return Err(TranslateError::unsupported(
            "n",
            format!("Ollama returns one answer per request (n = {n})"),
        ));
    }
    if request.parallel_tool_calls == Some(false) {
        return Err(TranslateError::unsupported(
            "parallel_tool_calls",
            "Ollama cannot forbid parallel tool calls",
        ));
    }
    // `none` is expressed by not offering the tools at all; forcing a call is not possible.
    let offer_tools = match &request.tool_choice {
        None | Some(ToolChoice::Auto) => true,
        Some(ToolChoice::None) => false,
        Some(ToolChoice::Required | ToolChoice::Tool(_)) => {
            return Err(TranslateError::unsupported(
                "tool_choice",
                "Ollama cannot force a tool call",
            ));
        }
    };

    let mut messages = Vec::with_capacity(request.messages.len());
    for (position, message) in request.messages.iter().enumerate() {
        let field = |index: usize| format!("messages[{position}].content[{index}]");
        let role = match message.role {
            Role::System => "system",
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let mut texts: Vec<&str> = Vec::new();
        let mut images = Vec::new();
        let mut tool_calls = Vec::new();
        for (index, part) in message.parts.iter().enumerate() {
            match part {
                Part::Text { text, .. } => texts.push(text),
                Part::Image(image) => match &image.source {
                    ImageSource::Base64 { data, .. } => images.push(data.as_str()),
                    ImageSource::Url(_) => {
                        return Err(TranslateError::unsupported(
                            field(index),
                            "Ollama does not fetch image URLs; send the image inline (base64)",
                        ));
                    }
                },
                Part::ToolCall(call) => tool_calls.push(OutToolCall {
                    function: OutFunctionCall {
                        name: &call.name,
                        arguments: wire::arguments_object(&call.arguments, || {
                            format!("{}.arguments", field(index))
                        })?,
                    },
                }),
                Part::ToolResult(result) => {
                    let mut result_texts = Vec::with_capacity(result.content.len());
                    for inner in &result.content {
                        match inner {
                            Part::Text { text, .. } => result_texts.push(text.as_str()),
                            _ => {
                                return Err(TranslateError::unsupported(
                                    field(index),
                                    "Ollama tool results carry text only",
                                ));
                            }
                        }
                    }
                    let content = join(&result_texts);
                    messages.push(OutMessage {
                        role: "tool",
                        content: if result.is_error {
                            Cow::Owned(format!("{}{content}", crate::openai::TOOL_ERROR_PREFIX))
                        } else {
                            content
                        },
                        images: Vec::new(),
                        tool_calls: Vec::new(),
                        tool_name: tool_name_for(request, &result.call_id),
                    });
                }
                Part::Thinking { .. } | Part::RedactedThinking { .. } => {
                    return Err(TranslateError::unsupported(
                        field(index),
                        "thinking blocks cannot be sent to Ollama upstreams",
                    ));
                }
            }
        }
        if texts.is_empty() && images.is_empty() && tool_calls.is_empty() {
            continue;
        }
        messages.push(OutMessage {
            role,
            content: join(&texts),
            images,
            tool_calls,
            tool_name: None,
        });
    }

    let tools = if offer_tools {
        request
            .tools
            .iter()
            .map(|tool| OutTool {
                kind: "function",
                function: OutFunctionDef {
                    name: &tool.name,
                    description: tool.description.as_deref(),
                    parameters: tool.parameters.as_deref(),
                },
            })
            .collect()
    } else {
        Vec::new()
    };
    let format = match &request.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(OutFormat::Json("json")),
        Some(ResponseFormat::JsonSchema {
            schema: Some(schema),
            ..
        }) => Some(OutFormat::Schema(schema)),
        Some(ResponseFormat::JsonSchema { schema: None, .. }) => Some(OutFormat::Json("json")),
    };
    let out = OutRequest {
        model: upstream_model,
        messages,
        tools,
        stream: request.stream,
        format,
        options: OutOptions {
            temperature: request.temperature,
            top_p: request.top_p,
            top_k: request.top_k,
            num_predict: request.max_tokens,
            stop: &request.stop,
            seed: request.seed,
            presence_penalty: request.presence_penalty,
            frequency_penalty: request.frequency_penalty,
        },
    };
    wire::to_bytes(&out, "Ollama chat request")
}

// ---------------------------------------------------------------------------------------------
// Response decoding

/// One Ollama `/api/chat` answer, or one line of its stream.
#[derive(Deserialize)]
pub(crate) struct WireChunk {
    pub(crate) model: Option<String>,
    pub(crate) message: Option<WireMessage>,
    #[serde(default)]
    pub(crate) done: bool,
    pub(crate) done_reason: Option<String>,
    prompt_eval_count: Option<u64>,
    prompt_eval_cached_count: Option<u64>,
    eval_count: Option<u64>,
    pub(crate) error: Option<String>,
}

impl WireChunk {
    pub(crate) fn usage(&self) -> Option<Usage> {
        if self.prompt_eval_count.is_none() && self.eval_count.is_none() {
            return None;
        }
        Some(Usage {
            input_tokens: self.prompt_eval_count.unwrap_or(0),
            output_tokens: self.eval_count.unwrap_or(0),
            cached_tokens: self.prompt_eval_cached_count.unwrap_or(0),
            ..Usage::default()
        })
    }
}

#[derive(Deserialize)]
pub(crate) struct WireMessage {
    #[serde(default)]
    pub(crate) content: String,
    pub(crate) tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
pub(crate) struct WireToolCall {
    pub(crate) function: WireFunction,
}

#[derive(Deserialize)]
pub(crate) struct WireFunction {
    pub(crate) name: String,
    pub(crate) arguments: Option<Box<RawValue>>,
}

pub(crate) fn finish_from_wire(reason: Option<&str>, called_tools: bool) -> FinishReason {
    match reason {
        Some("length") => FinishReason::Length,
        _ if called_tools => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// Decodes an Ollama `/api/chat` answer (`stream: false`).
pub(crate) fn decode_response(body: &[u8]) -> Result<IrResponse, TranslateError> {
    let wire: WireChunk =
        serde_json::from_slice(body).map_err(|source| TranslateError::Malformed {
            what: "Ollama chat answer",
            source,
        })?;
    let id = wire::generate_id("chatcmpl-");
    let usage = wire.usage();
    let mut parts = Vec::new();
    let mut calls = 0usize;
    if let Some(message) = wire.message {
        if !message.content.is_empty() {
            parts.push(Part::text(message.content));
        }
        for call in message.tool_calls.unwrap_or_default() {
            parts.push(Part::ToolCall(ToolCall {
                id: format!("call_{id}_{calls}"),
                name: call.function.name,
                arguments: call
                    .function
                    .arguments
                    .map_or_else(|| "{}".to_owned(), |args| args.get().to_owned()),
            }));
            calls += 1;
        }
    }
    Ok(IrResponse {
        id,
        model: wire.model.unwrap_or_default(),
        created: None,
        choices: vec![Choice {
            index: 0,
            parts,
            finish_reason: Some(finish_from_wire(wire.done_reason.as_deref(), calls > 0)),
            stop_sequence: None,
        }],
        usage,
    })
}
