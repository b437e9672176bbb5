//! Small wire-format helpers shared by the dialect codecs.
//!
//! Owns the "string or array" JSON shape, `data:` URL parsing, generated ids, JSON output into
//! `Bytes`, and the check that refuses fields from another dialect. It knows no dialect.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};

use crate::error::TranslateError;
use crate::ir::{DialectField, Ingress, IrRequest};

/// A JSON value that is either a bare string or an array of `T` (OpenAI `content`, `stop`;
/// Anthropic `system`, `content`).
#[derive(Debug)]
pub(crate) enum OneOrMany<T> {
    One(String),
    Many(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string or an array")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany::One(value.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Self::Value, E> {
                Ok(OneOrMany::One(value))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

/// Splits a `data:<media type>;base64,<data>` URL. Returns `None` for anything else.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (header, data) = rest.split_once(',')?;
    let media_type = header.strip_suffix(";base64")?;
    Some((media_type, data))
}

/// Serialises a value into `Bytes`.
pub(crate) fn to_bytes<T: Serialize>(
    value: &T,
    what: &'static str,
) -> Result<Bytes, TranslateError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|source| TranslateError::Malformed { what, source })
}

/// Appends a value's JSON to a buffer. Serialising the crate's own output structs (strings,
/// numbers and verbatim raw JSON) cannot fail, so a failure is reported as `Malformed`.
pub(crate) fn write_json<T: Serialize>(
    out: &mut Vec<u8>,
    value: &T,
    what: &'static str,
) -> Result<(), TranslateError> {
    serde_json::to_writer(out, value).map_err(|source| TranslateError::Malformed { what, source })
}

static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A process-unique id with a dialect prefix, for upstreams that send none (Ollama answers,
/// Gemini and Ollama tool calls).
pub(crate) fn generate_id(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    let sequence = ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:016x}{:04x}", nanos, sequence & 0xffff)
}

/// Current Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Fields of another dialect that have no effect on the generated answer, so they may be
/// omitted when translating (they concern storage, billing tiers or abuse tracking only).
const OUTPUT_NEUTRAL_FIELDS: &[&str] = &[
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
];

/// Refuses dialect-specific fields that the target dialect cannot carry.
pub(crate) fn check_foreign_fields(
    request: &IrRequest,
    target: Option<Ingress>,
    target_name: &str,
) -> Result<(), TranslateError> {
    for DialectField { dialect, name, .. } in &request.dialect_fields {
        if Some(*dialect) != target && !OUTPUT_NEUTRAL_FIELDS.contains(name) {
            return Err(TranslateError::unsupported(
                *name,
                format!("{target_name} upstreams have no equivalent"),
            ));
        }
    }
    Ok(())
}

/// Refuses Anthropic-only request features for non-Anthropic upstreams.
pub(crate) fn check_no_thinking(
    request: &IrRequest,
    target_name: &str,
) -> Result<(), TranslateError> {
    if request.thinking.is_some() {
        return Err(TranslateError::unsupported(
            "thinking",
            format!("extended thinking is not available on {target_name} upstreams"),
        ));
    }
    Ok(())
}

/// Checks that tool-call arguments are a JSON object, for dialects that carry them as objects.
pub(crate) fn arguments_object(
    arguments: &str,
    field: impl Fn() -> String,
) -> Result<&serde_json::value::RawValue, TranslateError> {
    let trimmed = arguments.trim();
    if trimmed.is_empty() {
        return empty_object();
    }
    let raw: &serde_json::value::RawValue = serde_json::from_str(trimmed).map_err(|err| {
        TranslateError::invalid(field(), format!("arguments are not JSON: {err}"))
    })?;
    if !raw.get().starts_with('{') {
        return Err(TranslateError::invalid(
            field(),
            "arguments must be a JSON object",
        ));
    }
    Ok(raw)
}

fn empty_object() -> Result<&'static serde_json::value::RawValue, TranslateError> {
    serde_json::from_str("{}").map_err(|source| TranslateError::Malformed {
        what: "empty object",
        source,
    })
}

/// Refuses OpenAI participant names for upstreams without an equivalent field.
pub(crate) fn check_no_names(request: &IrRequest, target_name: &str) -> Result<(), TranslateError> {
    if let Some(position) = request
        .messages
        .iter()
        .position(|message| message.name.is_some())
    {
        return Err(TranslateError::unsupported(
            format!("messages[{position}].name"),
            format!("{target_name} upstreams have no participant names"),
        ));
    }
    Ok(())
}
