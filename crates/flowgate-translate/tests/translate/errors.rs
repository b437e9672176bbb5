//! Error shapes: ingress error bodies per status, and reading upstream error bodies.

use flowgate_translate::ir::{Ingress, UpstreamKind};
use flowgate_translate::{ErrorKind, error_body, parse_upstream_error};
use serde_json::{Value, json};

#[test]
fn openai_error_bodies() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (502, "server_error"),
        (503, "server_error"),
        (504, "server_error"),
    ] {
        let body: Value = serde_json::from_slice(&error_body(
            Ingress::OpenAi,
            status,
            "boom \"quoted\"",
            Some("c1"),
        ))
        .expect("json");
        assert_eq!(
            body,
            json!({"error": {"message": "boom \"quoted\"", "type": kind, "param": null, "code": "c1"}}),
            "status {status}"
        );
    }
    let body: Value =
        serde_json::from_slice(&error_body(Ingress::OpenAi, 400, "m", None)).expect("json");
    assert_eq!(body["error"]["code"], Value::Null);
}

#[test]
fn anthropic_error_bodies() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
        (504, "timeout_error"),
    ] {
        let body: Value = serde_json::from_slice(&error_body(
            Ingress::Anthropic,
            status,
            "boom",
            Some("ignored"),
        ))
        .expect("json");
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": kind, "message": "boom"}}),
            "status {status}"
        );
    }
}

#[test]
fn upstream_error_bodies_are_read() {
    let openai = parse_upstream_error(
        UpstreamKind::OpenAi,
        429,
        br#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
    );
    assert_eq!(openai.kind, ErrorKind::RateLimit);
    assert_eq!(openai.message, "Rate limit reached for gpt-4o");
    assert_eq!(openai.code.as_deref(), Some("rate_limit_exceeded"));

    let anthropic = parse_upstream_error(
        UpstreamKind::Anthropic,
        529,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#,
    );
    assert_eq!(anthropic.kind, ErrorKind::Overloaded);
    assert_eq!(anthropic.message, "Overloaded");

    let gemini = parse_upstream_error(
        UpstreamKind::Gemini,
        400,
        br#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT"}}"#,
    );
    assert_eq!(gemini.kind, ErrorKind::InvalidRequest);
    assert_eq!(gemini.code.as_deref(), Some("INVALID_ARGUMENT"));
    assert_eq!(gemini.message, "API key not valid.");

    let ollama = parse_upstream_error(
        UpstreamKind::Ollama,
        404,
        br#"{"error":"model 'llama9' not found"}"#,
    );
    assert_eq!(ollama.kind, ErrorKind::NotFound);
    assert_eq!(ollama.message, "model 'llama9' not found");

    let html = parse_upstream_error(UpstreamKind::OpenAi, 502, b"<html>Bad Gateway</html>");
    assert_eq!(html.kind, ErrorKind::Api);
    assert_eq!(html.message, "<html>Bad Gateway</html>");
    let empty = parse_upstream_error(UpstreamKind::OpenAi, 500, b"");
    assert_eq!(empty.message, "upstream answered HTTP 500");

    let unauthorized = parse_upstream_error(
        UpstreamKind::Anthropic,
        401,
        br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
    );
    assert_eq!(unauthorized.kind, ErrorKind::Authentication);
    assert_eq!(unauthorized.status, 401);
}

#[test]
fn upstream_error_round_trips_into_the_other_dialect() {
    let upstream = parse_upstream_error(
        UpstreamKind::OpenAi,
        429,
        br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#,
    );
    let body: Value = serde_json::from_slice(&error_body(
        Ingress::Anthropic,
        upstream.kind.status(),
        &upstream.message,
        upstream.code.as_deref(),
    ))
    .expect("json");
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    );
}
