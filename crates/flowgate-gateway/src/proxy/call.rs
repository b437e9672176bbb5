//! One inference call as the routing stage sees it: the client's dialect and body, and how to
//! turn it into each route's upstream request. Same dialect as the upstream: the bytes are
//! forwarded with only `model` rewritten (and OpenAI streams asked for usage). Another
//! dialect: the body is parsed once into the translator's IR, on first need, and encoded for
//! that upstream.

use crate::error::ApiError;
use crate::state::Route;
use bytes::Bytes;
use flowgate_config::ProviderKind;
use flowgate_providers::Operation;
use flowgate_translate::{Ingress, IrRequest, TranslateError, UpstreamKind, passthrough};
use http::{HeaderName, HeaderValue};

/// The wire dialect a provider kind speaks (the in-process mock speaks OpenAI's).
pub fn upstream_kind(kind: ProviderKind) -> UpstreamKind {
    match kind {
        ProviderKind::OpenAi | ProviderKind::Mock => UpstreamKind::OpenAi,
        ProviderKind::Anthropic => UpstreamKind::Anthropic,
        ProviderKind::Gemini => UpstreamKind::Gemini,
        ProviderKind::Ollama => UpstreamKind::Ollama,
    }
}

/// How a route's answer comes back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Same dialect: forwarded as is. `strip_usage`: the usage chunk of an OpenAI stream was
    /// requested by the gateway, not the client, and is removed on the way.
    Native { strip_usage: bool },
    /// Another dialect, decoded and re-encoded for the client.
    Translated(UpstreamKind),
}

/// An upstream request ready to send.
#[derive(Debug)]
pub struct Prepared {
    pub path: String,
    pub body: Bytes,
    pub wire: Wire,
}

#[derive(Debug)]
pub struct Call {
    pub ingress: Ingress,
    pub operation: Operation,
    /// The body as the client sent it.
    pub body: Bytes,
    /// The model name the client asked for (echoed in translated answers).
    pub client_model: String,
    /// `anthropic-version` / `anthropic-beta` from the client, for Anthropic upstreams.
    pub anthropic_headers: Vec<(HeaderName, HeaderValue)>,
    ir: Option<IrRequest>,
    /// The IR was changed (redacted): every route is sent the IR, never the original bytes.
    rewritten: bool,
}

static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
static ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

impl Call {
    pub fn new(
        ingress: Ingress,
        operation: Operation,
        body: Bytes,
        client_model: String,
        headers: &http::HeaderMap,
    ) -> Self {
        let anthropic_headers = if ingress == Ingress::Anthropic {
            [&ANTHROPIC_VERSION, &ANTHROPIC_BETA]
                .into_iter()
                .filter_map(|name| Some((name.clone(), headers.get(name)?.clone())))
                .collect()
        } else {
            Vec::new()
        };
        Self {
            ingress,
            operation,
            body,
            client_model,
            anthropic_headers,
            ir: None,
            rewritten: false,
        }
    }

    /// The request in the translator's IR, parsed on first use.
    pub fn ir(&mut self) -> Result<&IrRequest, ApiError> {
        if self.ir.is_none() {
            let parsed = flowgate_translate::parse_request(self.ingress, &self.body)
                .map_err(|err| request_error(&err))?;
            self.ir = Some(parsed);
        }
        self.ir
            .as_ref()
            .ok_or_else(|| ApiError::invalid("request could not be parsed"))
    }

    /// The request in the IR, for screening to rewrite.
    pub fn ir_mut(&mut self) -> Result<&mut IrRequest, ApiError> {
        self.ir()?;
        self.ir
            .as_mut()
            .ok_or_else(|| ApiError::invalid("request could not be parsed"))
    }

    /// Marks the IR as changed (redacted): routes encode it instead of forwarding the body.
    pub fn mark_rewritten(&mut self) {
        self.rewritten = true;
    }

    /// The parsed IR, if some route needed it.
    pub fn parsed(&self) -> Option<&IrRequest> {
        self.ir.as_ref()
    }

    /// Builds `route`'s upstream request.
    pub fn prepare(&mut self, route: &Route) -> Result<Prepared, ApiError> {
        let upstream = &route.upstream;
        let path = upstream
            .target(self.operation, &route.upstream_model)
            .ok_or_else(|| ApiError::InvalidRequest {
                message: format!(
                    "model `{}` is served by a `{}` provider, which has no {} endpoint",
                    self.client_model,
                    upstream.kind.as_str(),
                    match self.operation {
                        Operation::Embeddings => "embeddings",
                        Operation::Chat { .. } => "chat",
                    }
                ),
                param: Some("model"),
            })?;
        let kind = upstream_kind(upstream.kind);
        let native = kind.is_native_for(self.ingress) || self.operation == Operation::Embeddings;
        if native && !self.rewritten {
            let prepared =
                passthrough::prepare_request(self.ingress, &self.body, &route.upstream_model)
                    .map_err(|err| request_error(&err))?;
            let strip_usage = prepared.stream && !prepared.client_wants_usage;
            return Ok(Prepared {
                path,
                body: prepared.body.unwrap_or_else(|| self.body.clone()),
                wire: Wire::Native { strip_usage },
            });
        }
        let upstream_model = route.upstream_model.clone();
        let body = flowgate_translate::encode_request(kind, self.ir()?, &upstream_model)
            .map_err(|err| request_error(&err))?;
        // A redacted prompt for a same-dialect upstream: encoded from the IR, answered as is.
        let wire = if native {
            Wire::Native {
                strip_usage: self
                    .ir
                    .as_ref()
                    .is_some_and(|ir| ir.stream && !ir.include_usage),
            }
        } else {
            Wire::Translated(kind)
        };
        Ok(Prepared { path, body, wire })
    }
}

/// A request the translator refused: always the client's 400, naming the field.
pub fn request_error(error: &TranslateError) -> ApiError {
    let param = match error {
        TranslateError::Invalid { .. } | TranslateError::Unsupported { .. } => None,
        _ => Some("body"),
    };
    ApiError::InvalidRequest {
        message: error.to_string(),
        param,
    }
}
