//! The upstream HTTP client and one `Upstream` per configured provider.
//!
//! Each provider gets one pooled hyper client built at start (keep-alive, TCP_NODELAY, HTTP/2
//! over TLS by ALPN, rustls with the webpki roots), shared by every request to it, so the pool
//! and the connect timeout are per provider. Request bodies are sent as the caller's `Bytes`
//! without copying.

use crate::body::UpstreamBody;
use crate::{TimeoutPhase, UpstreamError};
use bytes::Bytes;
use flowgate_config::{ProviderConfig, ProviderKind, Timeouts};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tokio::time::Instant;

pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled HTTP/1.1 + HTTP/2 client over TCP or rustls TLS (TCP_NODELAY, keep-alive); also
/// used by the gateway's trace exporter.
pub fn build_client(connect_timeout: Duration) -> Result<HttpClient, UpstreamError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|err| UpstreamError::Request {
            detail: format!("TLS setup: {err}"),
        })?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(https))
}

/// An upstream answer whose head has arrived; the body streams under the idle and total limits.
#[derive(Debug)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: UpstreamBody,
}

/// What a call asks of a provider; decides the URL path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Chat { stream: bool },
    Embeddings,
}

/// Anthropic's API version sent when the client did not name one.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");
static AZURE_API_KEY: HeaderName = HeaderName::from_static("api-key");

/// One configured provider, ready to call.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub timeouts: Timeouts,
    /// Azure OpenAI `api-version` (deployment-style paths).
    api_version: Option<String>,
    /// The credential header in the provider's convention, marked sensitive.
    credential: Option<(HeaderName, HeaderValue)>,
    client: Option<HttpClient>,
}

impl Upstream {
    pub fn new(config: &ProviderConfig) -> Result<Self, UpstreamError> {
        let credential = match &config.api_key {
            Some(secret) => {
                let (name, text) = match (config.kind, &config.api_version) {
                    (ProviderKind::OpenAi, Some(_)) => {
                        (AZURE_API_KEY.clone(), secret.expose().to_owned())
                    }
                    (ProviderKind::Anthropic, _) => (X_API_KEY.clone(), secret.expose().to_owned()),
                    (ProviderKind::Gemini, _) => {
                        (X_GOOG_API_KEY.clone(), secret.expose().to_owned())
                    }
                    _ => (AUTHORIZATION, format!("Bearer {}", secret.expose())),
                };
                let mut value =
                    HeaderValue::from_str(&text).map_err(|_| UpstreamError::Request {
                        detail: format!(
                            "provider `{}` credential is not a valid header value",
                            config.name
                        ),
                    })?;
                value.set_sensitive(true);
                Some((name, value))
            }
            None => None,
        };
        let client = match config.kind {
            ProviderKind::Mock => None,
            _ => Some(build_client(config.timeouts.connect)?),
        };
        Ok(Self {
            name: config.name.clone(),
            kind: config.kind,
            base_url: config.base_url.clone(),
            timeouts: config.timeouts,
            api_version: config.api_version.clone(),
            credential,
            client,
        })
    }

    /// The path and query (after `base_url`) of an operation on `model`, in the provider's
    /// convention: OpenAI `/chat/completions` (Azure: `/openai/deployments/{model}/...
    /// ?api-version=`), Anthropic `/messages`, Gemini `/models/{model}:generateContent` or
    /// `:streamGenerateContent?alt=sse`, Ollama `/api/chat`. `None` when the provider has no
    /// such operation (embeddings outside OpenAI).
    pub fn target(&self, operation: Operation, model: &str) -> Option<String> {
        let model = PathSegment(model);
        match (self.kind, operation) {
            (ProviderKind::OpenAi, operation) => {
                let tail = match operation {
                    Operation::Chat { .. } => "chat/completions",
                    Operation::Embeddings => "embeddings",
                };
                Some(match &self.api_version {
                    Some(version) => format!(
                        "/openai/deployments/{model}/{tail}?api-version={}",
                        PathSegment(version)
                    ),
                    None => format!("/{tail}"),
                })
            }
            (ProviderKind::Anthropic, Operation::Chat { .. }) => Some("/messages".to_owned()),
            (ProviderKind::Gemini, Operation::Chat { stream: false }) => {
                Some(format!("/models/{model}:generateContent"))
            }
            (ProviderKind::Gemini, Operation::Chat { stream: true }) => {
                Some(format!("/models/{model}:streamGenerateContent?alt=sse"))
            }
            (ProviderKind::Ollama, Operation::Chat { .. }) => Some("/api/chat".to_owned()),
            (ProviderKind::Mock, _) => Some(String::new()),
            _ => None,
        }
    }

    /// POSTs a JSON body to `base_url + path` and waits for the response head (first-byte limit).
    /// Extra headers are added as given (e.g. `traceparent`).
    pub async fn post_json(
        &self,
        path: &str,
        body: Bytes,
        extra_headers: &[(HeaderName, HeaderValue)],
    ) -> Result<UpstreamResponse, UpstreamError> {
        let Some(client) = &self.client else {
            return Err(UpstreamError::Request {
                detail: format!("provider `{}` has no HTTP endpoint", self.name),
            });
        };
        let started = Instant::now();
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.base_url))
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some((name, value)) = &self.credential {
            builder = builder.header(name, value.clone());
        }
        let mut has_version = false;
        for (name, value) in extra_headers {
            has_version |= *name == ANTHROPIC_VERSION;
            builder = builder.header(name, value.clone());
        }
        if self.kind == ProviderKind::Anthropic && !has_version {
            builder = builder.header(
                ANTHROPIC_VERSION.clone(),
                HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION),
            );
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|err| UpstreamError::Request {
                detail: err.to_string(),
            })?;
        let limit = self.timeouts.first_byte.min(self.timeouts.total);
        let response = match tokio::time::timeout(limit, client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => {
                return Err(if err.is_connect() {
                    if is_connect_timeout(&err) {
                        UpstreamError::Timeout {
                            provider: self.name.clone(),
                            phase: TimeoutPhase::Connect,
                            limit: self.timeouts.connect,
                        }
                    } else {
                        UpstreamError::Connect {
                            provider: self.name.clone(),
                            source: Box::new(err),
                        }
                    }
                } else {
                    UpstreamError::Broken {
                        provider: self.name.clone(),
                        source: Box::new(err),
                    }
                });
            }
            Err(_) => {
                return Err(UpstreamError::Timeout {
                    provider: self.name.clone(),
                    phase: TimeoutPhase::FirstByte,
                    limit,
                });
            }
        };
        let (parts, incoming) = response.into_parts();
        Ok(UpstreamResponse {
            status: parts.status,
            headers: parts.headers,
            body: UpstreamBody::http(
                incoming,
                self.name.clone(),
                self.timeouts.idle,
                started + self.timeouts.total,
                self.timeouts.total,
            ),
        })
    }
}

/// Percent-encodes what cannot stand in one URL path segment or query value.
struct PathSegment<'a>(&'a str);

impl std::fmt::Display for PathSegment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0.bytes() {
            if byte.is_ascii_alphanumeric()
                || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':' | b'@')
            {
                write!(f, "{}", byte as char)?;
            } else {
                write!(f, "%{byte:02X}")?;
            }
        }
        Ok(())
    }
}

fn is_connect_timeout(err: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = inner.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_config::{BreakerPolicy, RetryPolicy, Secret};

    fn upstream(kind: ProviderKind, api_version: Option<&str>) -> Upstream {
        let config = ProviderConfig {
            name: "p".to_owned(),
            kind,
            base_url: "http://127.0.0.1:1".to_owned(),
            api_key: Some(Secret::new("sk-test".to_owned())),
            credential: flowgate_config::CredentialSource::Env,
            timeouts: Timeouts::default(),
            api_version: api_version.map(str::to_owned),
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
        };
        Upstream::new(&config).unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn each_kind_has_its_paths_and_credential_header() {
        let chat = Operation::Chat { stream: false };
        let stream = Operation::Chat { stream: true };
        let openai = upstream(ProviderKind::OpenAi, None);
        assert_eq!(
            openai.target(chat, "m").as_deref(),
            Some("/chat/completions")
        );
        assert_eq!(
            openai.target(Operation::Embeddings, "m").as_deref(),
            Some("/embeddings")
        );
        assert_eq!(
            openai.credential.as_ref().map(|(name, _)| name.as_str()),
            Some("authorization")
        );
        let azure = upstream(ProviderKind::OpenAi, Some("2024-10-21"));
        assert_eq!(
            azure.target(chat, "my deploy").as_deref(),
            Some("/openai/deployments/my%20deploy/chat/completions?api-version=2024-10-21")
        );
        assert_eq!(
            azure.credential.as_ref().map(|(name, _)| name.as_str()),
            Some("api-key")
        );
        let anthropic = upstream(ProviderKind::Anthropic, None);
        assert_eq!(
            anthropic.target(stream, "claude").as_deref(),
            Some("/messages")
        );
        assert_eq!(anthropic.target(Operation::Embeddings, "claude"), None);
        assert_eq!(
            anthropic.credential.as_ref().map(|(name, _)| name.as_str()),
            Some("x-api-key")
        );
        let gemini = upstream(ProviderKind::Gemini, None);
        assert_eq!(
            gemini.target(chat, "gemini-2.0-flash").as_deref(),
            Some("/models/gemini-2.0-flash:generateContent")
        );
        assert_eq!(
            gemini.target(stream, "gemini-2.0-flash").as_deref(),
            Some("/models/gemini-2.0-flash:streamGenerateContent?alt=sse")
        );
        assert_eq!(
            gemini.credential.as_ref().map(|(name, _)| name.as_str()),
            Some("x-goog-api-key")
        );
        let ollama = upstream(ProviderKind::Ollama, None);
        assert_eq!(
            ollama.target(stream, "llama3").as_deref(),
            Some("/api/chat")
        );
    }
}
