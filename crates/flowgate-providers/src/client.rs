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

fn build_client(connect_timeout: Duration) -> Result<HttpClient, UpstreamError> {
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

/// One configured provider, ready to call.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub timeouts: Timeouts,
    authorization: Option<HeaderValue>,
    client: Option<HttpClient>,
}

impl Upstream {
    pub fn new(config: &ProviderConfig) -> Result<Self, UpstreamError> {
        let authorization = match &config.api_key {
            Some(secret) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", secret.expose()))
                    .map_err(|_| UpstreamError::Request {
                        detail: format!(
                            "provider `{}` credential is not a valid header value",
                            config.name
                        ),
                    })?;
                value.set_sensitive(true);
                Some(value)
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
            authorization,
            client,
        })
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
        if let Some(authorization) = &self.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        for (name, value) in extra_headers {
            builder = builder.header(name, value.clone());
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
