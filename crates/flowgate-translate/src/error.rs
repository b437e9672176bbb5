//! The crate's error type: what can go wrong while translating a body or a stream.
//!
//! Owns `TranslateError` only. How an error becomes an HTTP status and a client-facing body is
//! the gateway's decision (see `apierror` for the body shapes); every variant here carries the
//! structured fields the gateway needs to build a clear 400 or 502.

/// Why a body or stream could not be translated.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// The bytes were not valid JSON, or JSON of the wrong shape for the dialect. The gateway
    /// maps this to 400 for request bodies and to 502 for upstream bodies.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// Which body was being read, e.g. "OpenAI chat request" or "Anthropic stream event".
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A field has a value the dialect forbids (a missing required field, a reference to an
    /// unknown tool call). The gateway maps this to 400.
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    /// The request (or answer) uses something the other dialect cannot express. Never dropped
    /// silently: the gateway maps this to 400 naming the field.
    #[error("`{field}` cannot be translated: {reason}")]
    Unsupported { field: String, reason: String },
    /// The upstream stream ended (EOF) before its terminal event.
    #[error("upstream stream ended before it was complete")]
    Truncated,
    /// One line of an upstream stream grew beyond the buffering limit.
    #[error("upstream stream line longer than {limit} bytes")]
    LineTooLong { limit: usize },
}

impl TranslateError {
    pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Unsupported {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Turns a serde error on a request body into the most precise variant: serde's
    /// "unknown field" errors become `Unsupported` naming the field, since a field the
    /// translator does not know can only be dropped, which it must never do silently.
    pub(crate) fn from_request_json(what: &'static str, source: serde_json::Error) -> Self {
        let text = source.to_string();
        if let Some(rest) = text.strip_prefix("unknown field `")
            && let Some(end) = rest.find('`')
        {
            return Self::unsupported(
                &rest[..end],
                "field is not known to the translator; it would be lost in translation",
            );
        }
        Self::Malformed { what, source }
    }
}
