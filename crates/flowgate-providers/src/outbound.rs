//! `OutboundClient`: a pooled hyper client (the same rustls stack as upstreams) for calls to
//! URLs that operators or tenants configure (webhooks), where every connection goes through
//! the `AddressPolicy`. Host names are resolved by a resolver that checks every answer and
//! hands only checked addresses to the connector, so a name that re-resolves to a forbidden
//! address after it was accepted (DNS rebinding) is refused at connect time; IP literals are
//! checked before the request. Leaves out what is sent (the caller builds body and headers).

use crate::allowlist::{AddressPolicy, AddressRefusal, OutboundUrl};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// How much of a receiver's answer is read (and then discarded) to keep the connection
/// reusable.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why an outbound call failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("address refused: {0}")]
    Refused(#[from] AddressRefusal),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
}

/// A resolver that only ever yields addresses the policy accepts.
#[derive(Debug, Clone)]
struct CheckedResolver {
    policy: Arc<AddressPolicy>,
    timeout: Duration,
}

impl tower::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = AddressRefusal;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        let timeout = self.timeout;
        Box::pin(async move {
            // The connector sets the port; 0 here is a placeholder.
            let answers = policy.resolve(name.as_str(), 0, timeout).await?;
            Ok(answers.into_iter())
        })
    }
}

type CheckedClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector<CheckedResolver>>, Full<Bytes>>;

/// A pooled client whose every connection passes the address policy.
#[derive(Debug, Clone)]
pub struct OutboundClient {
    policy: Arc<AddressPolicy>,
    client: CheckedClient,
}

impl OutboundClient {
    pub fn new(policy: AddressPolicy, connect_timeout: Duration) -> Result<Self, OutboundError> {
        let policy = Arc::new(policy);
        let mut http = HttpConnector::new_with_resolver(CheckedResolver {
            policy: Arc::clone(&policy),
            timeout: connect_timeout,
        });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|err| OutboundError::Request(format!("TLS setup: {err}")))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(https);
        Ok(Self { policy, client })
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// POSTs a JSON body and returns the answer's status once its body has been read (at
    /// most 64 KiB, discarded). `timeout` bounds the whole exchange.
    pub async fn post_json(
        &self,
        url: &OutboundUrl,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<StatusCode, OutboundError> {
        if let Ok(ip) = url.host().parse::<std::net::IpAddr>() {
            // Literals bypass the resolver.
            self.policy.check_ip(ip)?;
        }
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(url.uri().clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            builder = builder.header(name, value.clone());
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|err| OutboundError::Request(err.to_string()))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|err| {
                if let Some(refusal) = find_refusal(&err) {
                    OutboundError::Refused(refusal)
                } else if err.is_connect() {
                    OutboundError::Connect(error_chain(&err))
                } else {
                    OutboundError::Request(error_chain(&err))
                }
            })?;
            let status = response.status();
            // The answer's content is not used; reading it lets the connection be reused.
            let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await;
            Ok(status)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| OutboundError::Timeout(timeout))?
    }
}

fn find_refusal(err: &hyper_util::client::legacy::Error) -> Option<AddressRefusal> {
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        if let Some(refusal) = inner.downcast_ref::<AddressRefusal>() {
            return Some(refusal.clone());
        }
        source = inner.source();
    }
    None
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
