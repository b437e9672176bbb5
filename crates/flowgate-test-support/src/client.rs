//! `TestClient`: a small HTTP/1.1 client over hyper for tests, with whole-body and streaming
//! reads. Plain HTTP to loopback only.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, Clone)]
pub struct TestClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A whole response.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "body is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The `x-request-id` every gateway answer carries.
    ///
    /// # Panics
    /// When the answer has none (a test failure).
    pub fn request_id(&self) -> String {
        self.header("x-request-id")
            .unwrap_or_else(|| panic!("x-request-id missing"))
            .to_owned()
    }
}

impl Default for TestClient {
    fn default() -> Self {
        Self::new()
    }
}

impl TestClient {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends a request and returns the response with its body still streaming.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> http::Response<Incoming> {
        self.try_send(method, url, headers, body)
            .await
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Like `send`, but a refused connection is an `Err`.
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<http::Response<Incoming>, String> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(body.into()))
            .map_err(|err| format!("building request: {err}"))?;
        self.client
            .request(request)
            .await
            .map_err(|err| format!("request to {url} failed: {err}"))
    }

    /// Sends a request and reads the whole body.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> TestResponse {
        self.try_call(method, url, headers, body)
            .await
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Like `call`, but a refused connection or a broken body is an `Err` (for tests that
    /// kill the server on purpose).
    pub async fn try_call(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<TestResponse, String> {
        let response = self.try_send(method, url, headers, body).await?;
        let (parts, incoming) = response.into_parts();
        let body = incoming
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|err| format!("reading body from {url}: {err}"))?;
        Ok(TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn post_json(&self, url: &str, key: &str, body: &serde_json::Value) -> TestResponse {
        let authorization = format!("Bearer {key}");
        self.call(
            Method::POST,
            url,
            &[
                ("authorization", &authorization),
                ("content-type", "application/json"),
            ],
            body.to_string(),
        )
        .await
    }

    pub async fn get(&self, url: &str, key: &str) -> TestResponse {
        let authorization = format!("Bearer {key}");
        self.call(
            Method::GET,
            url,
            &[("authorization", &authorization)],
            Bytes::new(),
        )
        .await
    }
}

/// Reads the next data frame of a streaming body (None at the end or on error).
pub async fn next_chunk(body: &mut Incoming) -> Option<Result<Bytes, hyper::Error>> {
    loop {
        match body.frame().await? {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(err) => return Some(Err(err)),
        }
    }
}
