//! Renders a `MockReply` in its wire format: a complete JSON answer, or the stream chunks of
//! that format (OpenAI `data:` chunks with `[DONE]`, Anthropic named events, Gemini `data:`
//! `GenerateContentResponse`s, Ollama NDJSON lines). Text streams carry one word per chunk;
//! tool-call arguments are split across chunks where the format streams them (OpenAI,
//! Anthropic). Complete OpenAI text answers are the built-in `mock` provider's own, byte for
//! byte.

use bytes::Bytes;
use flowgate_providers::mock::{self, MockAnswer};
use serde_json::{Value, json};

use super::wire::{
    ANTHROPIC_MESSAGE_ID, ANTHROPIC_TOOL_USE_ID, GEMINI_RESPONSE_ID, MockReply, OLLAMA_CREATED_AT,
    OPENAI_COMPLETION_ID, OPENAI_TOOL_CALL_ID, ReplyContent, WireFormat, reply_for,
};

/// A rendered answer.
#[derive(Debug)]
pub(crate) enum Rendered {
    Json(Bytes),
    /// Stream chunks, each a complete event (or NDJSON line).
    Stream(Vec<Bytes>),
}

/// Renders the answer to a chat request; `Err` is the message of a 400.
/// Renders the answer to a chat request, with `cached_tokens` of its prompt reported as
/// cached; `Err` is the message of a 400.
pub(crate) fn chat(
    format: WireFormat,
    path_and_query: &str,
    body: &[u8],
    cached_tokens: u64,
) -> Result<Rendered, String> {
    let reply = reply_for(format, path_and_query, body)?.with_cached_tokens(cached_tokens);
    Ok(match format {
        WireFormat::OpenAi | WireFormat::AzureOpenAi => match &reply.content {
            ReplyContent::Text(_) if !reply.truncated && reply.cached_tokens == 0 => {
                match mock::chat(body, &reply.model, "req_upstream")? {
                    MockAnswer::Json(json) => Rendered::Json(json),
                    MockAnswer::Stream(chunks) => Rendered::Stream(chunks),
                }
            }
            _ => openai(&reply),
        },
        WireFormat::Anthropic => anthropic(&reply),
        WireFormat::Gemini => {
            let sse = super::wire::query_param(path_and_query, "alt") == Some("sse");
            gemini(&reply, sse)
        }
        WireFormat::Ollama => ollama(&reply),
    })
}

/// Words of `text` as stream pieces: the first word, then each next word with its space.
fn word_pieces(text: &str) -> Vec<String> {
    text.split(' ')
        .enumerate()
        .map(|(index, word)| {
            if index == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            }
        })
        .collect()
}

/// Tool arguments cut into three pieces (on character boundaries), as providers stream them.
fn argument_pieces(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    let size = chars.len().div_ceil(3).max(1);
    chars
        .chunks(size)
        .map(|piece| piece.iter().collect())
        .collect()
}

fn sse_data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// OpenAI answers other than the built-in provider's: tool calls, truncated text, and
/// answers reporting cached tokens.
fn openai(reply: &MockReply) -> Rendered {
    let mut usage = json!({
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.total_tokens(),
    });
    if reply.cached_tokens > 0 {
        usage["prompt_tokens_details"] = json!({"cached_tokens": reply.cached_tokens});
    }
    let finish = match reply.content {
        ReplyContent::ToolCall { .. } => "tool_calls",
        ReplyContent::Text(_) if reply.truncated => "length",
        ReplyContent::Text(_) => "stop",
    };
    if !reply.stream {
        let message = match &reply.content {
            ReplyContent::Text(text) => json!({"role": "assistant", "content": text}),
            ReplyContent::ToolCall { name, arguments } => json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": OPENAI_TOOL_CALL_ID,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }],
            }),
        };
        return Rendered::Json(Bytes::from(
            json!({
                "id": OPENAI_COMPLETION_ID,
                "object": "chat.completion",
                "created": 0,
                "model": reply.model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            })
            .to_string(),
        ));
    }
    let chunk = |delta: Value, finish: Value| {
        sse_data(&json!({
            "id": OPENAI_COMPLETION_ID,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": reply.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
    };
    let mut chunks = Vec::new();
    match &reply.content {
        ReplyContent::Text(text) => {
            chunks.push(chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            ));
            for piece in word_pieces(text) {
                chunks.push(chunk(json!({"content": piece}), Value::Null));
            }
        }
        ReplyContent::ToolCall { name, arguments } => {
            chunks.push(chunk(
                json!({"role": "assistant", "content": null}),
                Value::Null,
            ));
            chunks.push(chunk(
                json!({"tool_calls": [{
                    "index": 0,
                    "id": OPENAI_TOOL_CALL_ID,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }]}),
                Value::Null,
            ));
            for piece in argument_pieces(arguments) {
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
        }
    }
    chunks.push(chunk(json!({}), json!(finish)));
    if reply.include_usage {
        chunks.push(sse_data(&json!({
            "id": OPENAI_COMPLETION_ID,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": reply.model,
            "choices": [],
            "usage": usage,
        })));
    }
    chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Rendered::Stream(chunks)
}

fn anthropic(reply: &MockReply) -> Rendered {
    let usage = |output_tokens: u64| {
        json!({
            "input_tokens": reply.input_tokens - reply.cached_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": reply.cached_tokens,
            "output_tokens": output_tokens,
        })
    };
    let stop_reason = match reply.content {
        ReplyContent::Text(_) if reply.truncated => "max_tokens",
        ReplyContent::Text(_) => "end_turn",
        ReplyContent::ToolCall { .. } => "tool_use",
    };
    if !reply.stream {
        let block = match &reply.content {
            ReplyContent::Text(text) => json!({"type": "text", "text": text}),
            ReplyContent::ToolCall { name, arguments } => json!({
                "type": "tool_use",
                "id": ANTHROPIC_TOOL_USE_ID,
                "name": name,
                "input": serde_json::from_str::<Value>(arguments).unwrap_or_default(),
            }),
        };
        return Rendered::Json(Bytes::from(
            json!({
                "id": ANTHROPIC_MESSAGE_ID,
                "type": "message",
                "role": "assistant",
                "model": reply.model,
                "content": [block],
                "stop_reason": stop_reason,
                "stop_sequence": null,
                "usage": usage(reply.output_tokens),
            })
            .to_string(),
        ));
    }
    let event = |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let mut chunks = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": ANTHROPIC_MESSAGE_ID,
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage(1),
        }}),
    )];
    let (block, deltas) = match &reply.content {
        ReplyContent::Text(text) => (
            json!({"type": "text", "text": ""}),
            word_pieces(text)
                .into_iter()
                .map(|piece| json!({"type": "text_delta", "text": piece}))
                .collect::<Vec<_>>(),
        ),
        ReplyContent::ToolCall { name, arguments } => (
            json!({"type": "tool_use", "id": ANTHROPIC_TOOL_USE_ID, "name": name, "input": {}}),
            std::iter::once(String::new())
                .chain(argument_pieces(arguments))
                .map(|piece| json!({"type": "input_json_delta", "partial_json": piece}))
                .collect(),
        ),
    };
    chunks.push(event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": block}),
    ));
    chunks.push(event("ping", json!({"type": "ping"})));
    for delta in deltas {
        chunks.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ));
    }
    chunks.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    chunks.push(event(
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": reply.output_tokens},
        }),
    ));
    chunks.push(event("message_stop", json!({"type": "message_stop"})));
    Rendered::Stream(chunks)
}

fn gemini(reply: &MockReply, sse: bool) -> Rendered {
    let response = |parts: Value, finished: bool| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        let usage = if finished {
            candidate["finishReason"] = json!(if reply.truncated {
                "MAX_TOKENS"
            } else {
                "STOP"
            });
            json!({
                "promptTokenCount": reply.input_tokens,
                "candidatesTokenCount": reply.output_tokens,
                "totalTokenCount": reply.total_tokens(),
            })
        } else {
            json!({
                "promptTokenCount": reply.input_tokens,
                "totalTokenCount": reply.input_tokens,
            })
        };
        let mut usage = usage;
        if reply.cached_tokens > 0 {
            usage["cachedContentTokenCount"] = json!(reply.cached_tokens);
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": reply.model,
            "responseId": GEMINI_RESPONSE_ID,
        })
    };
    let function_call = |name: &str, arguments: &str| {
        json!([{"functionCall": {
            "name": name,
            "args": serde_json::from_str::<Value>(arguments).unwrap_or_default(),
        }}])
    };
    if !reply.stream {
        let parts = match &reply.content {
            ReplyContent::Text(text) => json!([{"text": text}]),
            ReplyContent::ToolCall { name, arguments } => function_call(name, arguments),
        };
        return Rendered::Json(Bytes::from(response(parts, true).to_string()));
    }
    let responses: Vec<Value> = match &reply.content {
        ReplyContent::Text(text) => {
            let pieces = word_pieces(text);
            let last = pieces.len().saturating_sub(1);
            pieces
                .into_iter()
                .enumerate()
                .map(|(index, piece)| response(json!([{"text": piece}]), index == last))
                .collect()
        }
        // Gemini sends a function call whole, in one chunk.
        ReplyContent::ToolCall { name, arguments } => {
            vec![response(function_call(name, arguments), true)]
        }
    };
    if sse {
        Rendered::Stream(responses.iter().map(sse_data).collect())
    } else {
        // Without `alt=sse` Gemini streams one JSON array of responses.
        Rendered::Json(Bytes::from(Value::Array(responses).to_string()))
    }
}

fn ollama(reply: &MockReply) -> Rendered {
    let line = |message: Value, done: bool| {
        let mut value = json!({
            "model": reply.model,
            "created_at": OLLAMA_CREATED_AT,
            "message": message,
            "done": done,
        });
        if done {
            let fields = json!({
                "done_reason": if reply.truncated { "length" } else { "stop" },
                "total_duration": 1_000_000,
                "load_duration": 1000,
                "prompt_eval_count": reply.input_tokens,
                "prompt_eval_duration": 1000,
                "eval_count": reply.output_tokens,
                "eval_duration": 1000,
            });
            if let (Some(target), Value::Object(fields)) = (value.as_object_mut(), fields) {
                target.extend(fields);
            }
        }
        value
    };
    let tool_message = |name: &str, arguments: &str| {
        json!({
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {
                "name": name,
                "arguments": serde_json::from_str::<Value>(arguments).unwrap_or_default(),
            }}],
        })
    };
    if !reply.stream {
        let message = match &reply.content {
            ReplyContent::Text(text) => json!({"role": "assistant", "content": text}),
            ReplyContent::ToolCall { name, arguments } => tool_message(name, arguments),
        };
        return Rendered::Json(Bytes::from(line(message, true).to_string()));
    }
    let mut lines: Vec<Value> = match &reply.content {
        ReplyContent::Text(text) => word_pieces(text)
            .into_iter()
            .map(|piece| line(json!({"role": "assistant", "content": piece}), false))
            .collect(),
        ReplyContent::ToolCall { name, arguments } => {
            vec![line(tool_message(name, arguments), false)]
        }
    };
    lines.push(line(json!({"role": "assistant", "content": ""}), true));
    Rendered::Stream(
        lines
            .into_iter()
            .map(|value| Bytes::from(format!("{value}\n")))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_in_three_and_rejoin() {
        let pieces = argument_pieces(super::super::wire::TOOL_ARGUMENTS);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces.concat(), super::super::wire::TOOL_ARGUMENTS);
        assert_eq!(argument_pieces("é").concat(), "é");
    }
}
