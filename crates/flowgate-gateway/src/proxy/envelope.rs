//! Reading a request body and the few fields the pipeline needs before routing (`model`,
//! `stream`, the output-token limit), borrowing from the body without building a document.

use crate::error::ApiError;
use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body_util::BodyExt as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Reads the body, refusing more than `limit` bytes (413) before reading them when
/// `Content-Length` already says so.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(length) = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok())
        && length > limit as u64
    {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => {
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::BodyTooLarge { limit })
            } else {
                Err(ApiError::invalid("could not read the request body"))
            }
        }
    }
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

/// The fields of a chat or embeddings body the pipeline routes on.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub model: Cow<'a, str>,
    pub stream: bool,
    /// The requested output limit (`max_completion_tokens`, else `max_tokens`), if any.
    pub max_output_tokens: Option<u64>,
}

impl<'a> Envelope<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, ApiError> {
        let raw: RawEnvelope<'a> =
            serde_json::from_slice(body).map_err(|err| ApiError::InvalidRequest {
                message: format!("request body is not valid JSON for this endpoint: {err}"),
                param: None,
            })?;
        let model_raw = raw.model.ok_or(ApiError::InvalidRequest {
            message: "you must provide a model parameter".to_owned(),
            param: Some("model"),
        })?;
        let text = model_raw.get();
        let model: Cow<'a, str> = match serde_json::from_str::<&'a str>(text) {
            Ok(borrowed) => Cow::Borrowed(borrowed),
            Err(_) => Cow::Owned(serde_json::from_str::<String>(text).map_err(|_| {
                ApiError::InvalidRequest {
                    message: "`model` must be a string".to_owned(),
                    param: Some("model"),
                }
            })?),
        };
        if model.is_empty() {
            return Err(ApiError::InvalidRequest {
                message: "you must provide a model parameter".to_owned(),
                param: Some("model"),
            });
        }
        Ok(Self {
            model,
            stream: raw.stream.unwrap_or(false),
            max_output_tokens: raw.max_completion_tokens.or(raw.max_tokens),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_routing_fields() {
        let body = Bytes::from_static(br#"{ "messages": [{"role":"user","content":"model"}], "model" : "gpt-4o-mini", "stream": true, "x": {"model": 1} }"#);
        let envelope = Envelope::parse(&body).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(envelope.model, "gpt-4o-mini");
        assert!(envelope.stream);
    }

    #[test]
    fn bad_bodies_are_400s() {
        for body in [
            &b"{"[..],
            b"[]",
            b"{}",
            br#"{"model": 3}"#,
            br#"{"model": ""}"#,
            b"\xff",
        ] {
            let err = Envelope::parse(body)
                .err()
                .unwrap_or_else(|| panic!("accepted {body:?}"));
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        }
        let escaped =
            Envelope::parse(br#"{"model": "a\u0062c"}"#).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(escaped.model, "abc");
    }
}
