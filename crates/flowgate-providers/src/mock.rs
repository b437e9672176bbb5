//! The built-in `mock` provider: deterministic OpenAI-format answers computed in process, so
//! `serve --dev` works offline and a newcomer's first call succeeds without any provider
//! account. The same request always gets the same answer; streams are split per word and end
//! with a usage chunk when `stream_options.include_usage` is set.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: Value,
}

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

/// A rough but deterministic token count: one token per four bytes, at least one per word.
pub fn estimate_tokens(text: &str) -> u64 {
    let words = text.split_whitespace().count() as u64;
    words.max((text.len() as u64).div_ceil(4))
}

/// The mock's answer text for a request.
fn answer_for(messages: &[Message]) -> (String, u64) {
    let prompt: String = messages
        .iter()
        .map(|message| text_of(&message.content))
        .collect::<Vec<_>>()
        .join("\n");
    let last_user = messages
        .iter()
        .rev()
        .find(|message| message.role == "user")
        .map(|message| text_of(&message.content))
        .unwrap_or_default();
    let words = last_user.split_whitespace().count();
    let answer = format!("Hello from the flowgate mock provider. Your message had {words} words.");
    (answer, estimate_tokens(&prompt) + 3 * messages.len() as u64)
}

/// Outcome of a mock chat call.
#[derive(Debug)]
pub enum MockAnswer {
    /// A complete JSON body.
    Json(Bytes),
    /// SSE chunks, each a complete `data: …\n\n` event.
    Stream(Vec<Bytes>),
}

/// Answers an OpenAI chat-completions body; `Err` carries a message for a 400.
pub fn chat(body: &[u8], model: &str, request_id: &str) -> Result<MockAnswer, String> {
    let request: ChatRequest =
        serde_json::from_slice(body).map_err(|err| format!("invalid request body: {err}"))?;
    let (answer, prompt_tokens) = answer_for(&request.messages);
    let completion_tokens = estimate_tokens(&answer);
    let id = format!("chatcmpl-mock-{}", request_id.trim_start_matches("req_"));
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    if !request.stream {
        let response = json!({
            "id": id,
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }],
            "usage": usage,
        });
        return Ok(MockAnswer::Json(Bytes::from(response.to_string())));
    }
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let words: Vec<&str> = answer.split(' ').collect();
    for (index, word) in words.iter().enumerate() {
        let piece = if index == 0 {
            (*word).to_owned()
        } else {
            format!(" {word}")
        };
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if request
        .stream_options
        .is_some_and(|options| options.include_usage)
    {
        events.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": usage,
        }));
    }
    let mut chunks: Vec<Bytes> = events
        .into_iter()
        .map(|event| Bytes::from(format!("data: {event}\n\n")))
        .collect();
    chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Ok(MockAnswer::Stream(chunks))
}

/// Deterministic 8-dimension unit vectors for an OpenAI embeddings body.
pub fn embeddings(body: &[u8], model: &str) -> Result<Bytes, String> {
    #[derive(Deserialize)]
    struct EmbeddingRequest {
        input: Value,
    }
    let request: EmbeddingRequest =
        serde_json::from_slice(body).map_err(|err| format!("invalid request body: {err}"))?;
    let inputs: Vec<String> = match request.input {
        Value::String(text) => vec![text],
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => text,
                other => other.to_string(),
            })
            .collect(),
        _ => return Err("`input` must be a string or an array".to_owned()),
    };
    let mut total_tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            total_tokens += estimate_tokens(text);
            json!({"object": "embedding", "index": index, "embedding": vector_for(text)})
        })
        .collect();
    let response = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": total_tokens, "total_tokens": total_tokens},
    });
    Ok(Bytes::from(response.to_string()))
}

fn vector_for(text: &str) -> Vec<f64> {
    // FNV-1a seeds a tiny xorshift generator: stable across runs and platforms.
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut vector: Vec<f64> = (0..8)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    let norm = vector
        .iter()
        .map(|value| value * value)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    for value in &mut vector {
        *value /= norm;
    }
    vector
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_is_deterministic_and_reports_usage() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"one two three"}]}"#;
        let (Ok(MockAnswer::Json(first)), Ok(MockAnswer::Json(second))) =
            (chat(body, "m", "req_1"), chat(body, "m", "req_1"))
        else {
            panic!("expected JSON answers")
        };
        assert_eq!(first, second);
        let value: Value = serde_json::from_slice(&first).unwrap_or_default();
        assert_eq!(
            value["choices"][0]["message"]["content"],
            "Hello from the flowgate mock provider. Your message had 3 words."
        );
        assert!(value["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0);
    }

    #[test]
    fn stream_reassembles_to_the_same_text_and_ends_with_usage_and_done() {
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
        let Ok(MockAnswer::Stream(chunks)) = chat(body, "m", "req_2") else {
            panic!("expected a stream")
        };
        assert_eq!(
            chunks.last().map(|c| c.as_ref()),
            Some(&b"data: [DONE]\n\n"[..])
        );
        let mut text = String::new();
        let mut saw_usage = false;
        for chunk in &chunks[..chunks.len() - 1] {
            let json = std::str::from_utf8(chunk)
                .unwrap_or("")
                .trim()
                .trim_start_matches("data: ");
            let value: Value = serde_json::from_str(json).unwrap_or_default();
            if let Some(piece) = value["choices"][0]["delta"]["content"].as_str() {
                text.push_str(piece);
            }
            saw_usage |= value.get("usage").is_some();
        }
        assert_eq!(
            text,
            "Hello from the flowgate mock provider. Your message had 1 words."
        );
        assert!(saw_usage);
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert!(chat(b"{", "m", "r").is_err());
        assert!(embeddings(br#"{"input": 5}"#, "m").is_err());
        let Ok(body) = embeddings(br#"{"input": ["a", "b"]}"#, "m") else {
            panic!("embeddings")
        };
        let value: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(value["data"].as_array().map(Vec::len), Some(2));
    }
}
