//! Google Gemini `generateContent` codec for non-streamed bodies (upstream side only).
//!
//! Owns encoding the IR as a `generateContent` request and decoding its answer (also the shape
//! of each `streamGenerateContent?alt=sse` event, reused by `stream::gemini`). The model and
//! the `:generateContent` / `:streamGenerateContent?alt=sse` method live in the URL, which the
//! gateway builds. Gemini has no tool-call ids: they are generated, and tool results are
//! matched to their call's function name through the conversation.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::TranslateError;
use crate::ir::{
    Choice, FinishReason, ImageSource, IrRequest, IrResponse, Part, ResponseFormat, Role,
    ToolChoice, Usage,
};
use crate::wire;

// ---------------------------------------------------------------------------------------------
// Request encoding (IR -> Gemini upstream)

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutRequest<'a> {
    contents: Vec<OutContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<OutSystem<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTools<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<OutToolConfig<'a>>,
    #[serde(skip_serializing_if = "OutGenerationConfig::is_empty")]
    generation_config: OutGenerationConfig<'a>,
}

#[derive(Serialize)]
struct OutSystem<'a> {
    parts: Vec<OutPart<'a>>,
}

#[derive(Serialize)]
struct OutContent<'a> {
    role: &'static str,
    parts: Vec<OutPart<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum OutPart<'a> {
    Text(&'a str),
    InlineData(OutBlob<'a>),
    FileData(OutFile<'a>),
    FunctionCall(OutFunctionCall<'a>),
    FunctionResponse(OutFunctionResponse<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutBlob<'a> {
    mime_type: &'a str,
    data: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutFile<'a> {
    file_uri: &'a str,
}

#[derive(Serialize)]
struct OutFunctionCall<'a> {
    name: &'a str,
    args: &'a RawValue,
}

#[derive(Serialize)]
struct OutFunctionResponse<'a> {
    name: &'a str,
    response: OutResponseValue<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutResponseValue<'a> {
    /// The tool returned a JSON object: it is the whole response.
    Object(&'a RawValue),
    /// Gemini's documented keys for plain output and for errors.
    Output {
        output: Cow<'a, str>,
    },
    Error {
        error: Cow<'a, str>,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutTools<'a> {
    function_declarations: Vec<OutFunctionDeclaration<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutFunctionDeclaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    /// Full JSON Schema (Gemini's `parameters` takes only an OpenAPI subset).
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters_json_schema: Option<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutToolConfig<'a> {
    function_calling_config: OutFunctionCallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutFunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<[&'a str; 1]>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct OutGenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
}

impl OutGenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.candidate_count.is_none()
            && self.response_mime_type.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.seed.is_none()
    }
}

/// Finds the function name of the tool call `call_id` (Gemini matches results by name).
pub(crate) fn tool_name_for<'a>(request: &'a IrRequest, call_id: &str) -> Option<&'a str> {
    request.messages.iter().rev().find_map(|message| {
        message.parts.iter().find_map(|part| match part {
            Part::ToolCall(call) if call.id == call_id => Some(call.name.as_str()),
            _ => None,
        })
    })
}

/// Encodes the IR as a Gemini `generateContent` request (the model goes in the URL).
pub(crate) fn encode_request(request: &IrRequest) -> Result<Bytes, TranslateError> {
    wire::check_foreign_fields(request, None, "Gemini")?;
    wire::check_no_names(request, "Gemini")?;
    wire::check_no_thinking(request, "Gemini")?;
    if request.parallel_tool_calls == Some(false) {
        return Err(TranslateError::unsupported(
            "parallel_tool_calls",
            "Gemini cannot forbid parallel function calls",
        ));
    }
    let mut system_parts = Vec::new();
    let mut contents: Vec<OutContent<'_>> = Vec::with_capacity(request.messages.len());
    let mut previous_was_tool = false;
    for (position, message) in request.messages.iter().enumerate() {
        let field = |index: usize| format!("messages[{position}].content[{index}]");
        if message.role == Role::System {
            for (index, part) in message.parts.iter().enumerate() {
                match part {
                    Part::Text { text, .. } => system_parts.push(OutPart::Text(text)),
                    _ => {
                        return Err(TranslateError::unsupported(
                            field(index),
                            "Gemini system instructions are text only",
                        ));
                    }
                }
            }
            continue;
        }
        let mut parts = Vec::with_capacity(message.parts.len());
        for (index, part) in message.parts.iter().enumerate() {
            parts.push(match part {
                Part::Text { text, .. } => OutPart::Text(text),
                Part::Image(image) => match &image.source {
                    ImageSource::Base64 { media_type, data } => OutPart::InlineData(OutBlob {
                        mime_type: media_type,
                        data,
                    }),
                    ImageSource::Url(url)
                        if url.starts_with("gs://")
                            || url.contains("generativelanguage.googleapis.com/") =>
                    {
                        OutPart::FileData(OutFile { file_uri: url })
                    }
                    ImageSource::Url(_) => {
                        return Err(TranslateError::unsupported(
                            field(index),
                            "Gemini does not fetch image URLs; send the image inline (base64)",
                        ));
                    }
                },
                Part::ToolCall(call) => OutPart::FunctionCall(OutFunctionCall {
                    name: &call.name,
                    args: wire::arguments_object(&call.arguments, || {
                        format!("{}.arguments", field(index))
                    })?,
                }),
                Part::ToolResult(result) => {
                    let name = tool_name_for(request, &result.call_id).ok_or_else(|| {
                        TranslateError::invalid(
                            field(index),
                            format!("tool result for unknown call `{}`", result.call_id),
                        )
                    })?;
                    let mut texts = Vec::with_capacity(result.content.len());
                    for part in &result.content {
                        match part {
                            Part::Text { text, .. } => texts.push(text.as_str()),
                            _ => {
                                return Err(TranslateError::unsupported(
                                    field(index),
                                    "Gemini function responses carry text only",
                                ));
                            }
                        }
                    }
                    let text: Cow<'_, str> = match texts.as_slice() {
                        [single] => Cow::Borrowed(*single),
                        many => Cow::Owned(many.join("\n\n")),
                    };
                    let response = match (&text, result.is_error) {
                        (Cow::Borrowed(single), false) if single.trim_start().starts_with('{') => {
                            match serde_json::from_str::<&RawValue>(single) {
                                Ok(object) => OutResponseValue::Object(object),
                                Err(_) => OutResponseValue::Output { output: text },
                            }
                        }
                        (_, false) => OutResponseValue::Output { output: text },
                        (_, true) => OutResponseValue::Error { error: text },
                    };
                    OutPart::FunctionResponse(OutFunctionResponse { name, response })
                }
                Part::Thinking { .. } | Part::RedactedThinking { .. } => {
                    return Err(TranslateError::unsupported(
                        field(index),
                        "thinking blocks cannot be sent to Gemini upstreams",
                    ));
                }
            });
        }
        if parts.is_empty() {
            continue;
        }
        let role = if message.role == Role::Assistant {
            "model"
        } else {
            "user"
        };
        let is_tool = message.role == Role::Tool;
        if previous_was_tool
            && is_tool
            && let Some(last) = contents.last_mut()
        {
            last.parts.extend(parts);
        } else {
            contents.push(OutContent { role, parts });
        }
        previous_was_tool = is_tool;
    }

    let declarations: Vec<OutFunctionDeclaration<'_>> = request
        .tools
        .iter()
        .map(|tool| OutFunctionDeclaration {
            name: &tool.name,
            description: tool.description.as_deref(),
            parameters_json_schema: tool.parameters.as_deref(),
        })
        .collect();
    let tools = if declarations.is_empty() {
        Vec::new()
    } else {
        vec![OutTools {
            function_declarations: declarations,
        }]
    };
    let tool_config = request.tool_choice.as_ref().map(|choice| OutToolConfig {
        function_calling_config: match choice {
            ToolChoice::Auto => OutFunctionCallingConfig {
                mode: "AUTO",
                allowed_function_names: None,
            },
            ToolChoice::None => OutFunctionCallingConfig {
                mode: "NONE",
                allowed_function_names: None,
            },
            ToolChoice::Required => OutFunctionCallingConfig {
                mode: "ANY",
                allowed_function_names: None,
            },
            ToolChoice::Tool(name) => OutFunctionCallingConfig {
                mode: "ANY",
                allowed_function_names: Some([name]),
            },
        },
    });
    let (response_mime_type, response_json_schema) = match &request.response_format {
        None | Some(ResponseFormat::Text) => (None, None),
        Some(ResponseFormat::JsonObject) => (Some("application/json"), None),
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            (Some("application/json"), schema.as_deref())
        }
    };
    let out = OutRequest {
        contents,
        system_instruction: (!system_parts.is_empty()).then_some(OutSystem {
            parts: system_parts,
        }),
        tools,
        tool_config: if request.tools.is_empty() {
            None
        } else {
            tool_config
        },
        generation_config: OutGenerationConfig {
            temperature: request.temperature,
            top_p: request.top_p,
            top_k: request.top_k,
            max_output_tokens: request.max_tokens,
            stop_sequences: &request.stop,
            candidate_count: request.n,
            response_mime_type,
            response_json_schema,
            presence_penalty: request.presence_penalty,
            frequency_penalty: request.frequency_penalty,
            seed: request.seed,
        },
    };
    wire::to_bytes(&out, "Gemini generateContent request")
}

// ---------------------------------------------------------------------------------------------
// Response decoding (Gemini upstream -> IR)

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireResponse {
    #[serde(default)]
    pub(crate) candidates: Vec<WireCandidate>,
    pub(crate) usage_metadata: Option<WireUsage>,
    pub(crate) model_version: Option<String>,
    pub(crate) response_id: Option<String>,
    pub(crate) prompt_feedback: Option<WirePromptFeedback>,
    pub(crate) error: Option<WireError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WirePromptFeedback {
    pub(crate) block_reason: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct WireError {
    pub(crate) message: Option<String>,
    pub(crate) status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireCandidate {
    pub(crate) content: Option<WireContent>,
    pub(crate) finish_reason: Option<String>,
    #[serde(default)]
    pub(crate) index: u32,
}

#[derive(Deserialize)]
pub(crate) struct WireContent {
    #[serde(default)]
    pub(crate) parts: Vec<WirePart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WirePart {
    pub(crate) text: Option<String>,
    pub(crate) function_call: Option<WireFunctionCall>,
    /// Thought summaries (only sent when asked for with `includeThoughts`, which the gateway
    /// never does) are reasoning, not answer text.
    #[serde(default)]
    pub(crate) thought: bool,
}

#[derive(Deserialize)]
pub(crate) struct WireFunctionCall {
    pub(crate) id: Option<String>,
    pub(crate) name: String,
    pub(crate) args: Option<Box<RawValue>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
}

impl WireUsage {
    /// Gemini's `promptTokenCount` already includes cached tokens; thinking tokens are billed
    /// as output.
    pub(crate) fn to_ir(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_token_count + self.tool_use_prompt_token_count,
            output_tokens: self.candidates_token_count + self.thoughts_token_count,
            cached_tokens: self.cached_content_token_count,
            cache_creation_tokens: 0,
            estimated: false,
        }
    }
}

pub(crate) fn finish_from_wire(reason: &str, called_tools: bool) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        _ if called_tools => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// Decodes a Gemini `generateContent` answer.
pub(crate) fn decode_response(body: &[u8]) -> Result<IrResponse, TranslateError> {
    let wire: WireResponse =
        serde_json::from_slice(body).map_err(|source| TranslateError::Malformed {
            what: "Gemini generateContent answer",
            source,
        })?;
    let response_id = wire
        .response_id
        .unwrap_or_else(|| wire::generate_id("gen_"));
    let mut choices = Vec::with_capacity(wire.candidates.len().max(1));
    for candidate in wire.candidates {
        let mut parts = Vec::new();
        let mut calls = 0u32;
        for part in candidate
            .content
            .map(|content| content.parts)
            .unwrap_or_default()
        {
            if part.thought {
                continue;
            }
            if let Some(text) = part.text.filter(|text| !text.is_empty()) {
                parts.push(Part::text(text));
            }
            if let Some(call) = part.function_call {
                parts.push(Part::ToolCall(crate::ir::ToolCall {
                    id: call.id.unwrap_or_else(|| {
                        format!("call_{response_id}_{}_{calls}", candidate.index)
                    }),
                    name: call.name,
                    arguments: call
                        .args
                        .map_or_else(|| "{}".to_owned(), |args| args.get().to_owned()),
                }));
                calls += 1;
            }
        }
        choices.push(Choice {
            index: candidate.index,
            parts,
            finish_reason: candidate
                .finish_reason
                .as_deref()
                .map(|reason| finish_from_wire(reason, calls > 0)),
            stop_sequence: None,
        });
    }
    if choices.is_empty()
        && wire
            .prompt_feedback
            .is_some_and(|feedback| feedback.block_reason.is_some())
    {
        choices.push(Choice {
            index: 0,
            parts: Vec::new(),
            finish_reason: Some(FinishReason::ContentFilter),
            stop_sequence: None,
        });
    }
    Ok(IrResponse {
        id: response_id,
        model: wire.model_version.unwrap_or_default(),
        created: None,
        choices,
        usage: wire.usage_metadata.as_ref().map(WireUsage::to_ir),
    })
}
