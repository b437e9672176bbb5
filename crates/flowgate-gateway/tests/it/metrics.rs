//! Metrics through the gateway: a known sequence of requests (allowed, blocked by a policy
//! rule, rate limited, unknown model, upstream failure), then a scrape of `GET /metrics` on the
//! internal listener checked counter by counter; the overhead histogram records exactly the
//! `x-flowgate-overhead-ms` value; `GET /v1/dashboard/metrics` serves the same text to the
//! admin key only.

use crate::{chat_body, setup};
use flowgate_test_support::gateway::config_for_upstream;
use flowgate_test_support::{Behaviour, MockUpstream, TestClient, TestGateway};
use http::{Method, StatusCode};
use serde_json::json;

/// The internal listener's exposition.
async fn scrape(gateway: &TestGateway) -> String {
    let response = TestClient::new()
        .call(
            Method::GET,
            &format!("{}/metrics", gateway.internal_url),
            &[],
            "",
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    response.text()
}

/// The value of the sample whose name and labels are exactly `series`, e.g.
/// `flowgate_retries_total{provider="mock"}`; `None` when absent.
fn value(text: &str, series: &str) -> Option<String> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(str::to_owned)
    })
}

fn count(text: &str, series: &str) -> u64 {
    value(text, series)
        .unwrap_or_else(|| panic!("no sample `{series}` in\n{text}"))
        .parse()
        .unwrap_or_else(|err| panic!("`{series}`: {err}"))
}

/// An exact decimal number of seconds as nanoseconds (no float rounding).
fn nanos(seconds: &str) -> u64 {
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let whole: u64 = whole
        .parse()
        .unwrap_or_else(|err| panic!("{seconds}: {err}"));
    let fraction: u64 = format!("{fraction:0<9}")
        .parse()
        .unwrap_or_else(|err| panic!("{seconds}: {err}"));
    whole * 1_000_000_000 + fraction
}

/// `1.234` milliseconds as microseconds.
fn header_micros(milliseconds: &str) -> u64 {
    let (whole, fraction) = milliseconds
        .split_once('.')
        .unwrap_or_else(|| panic!("overhead header `{milliseconds}`"));
    let whole: u64 = whole.parse().unwrap_or_else(|err| panic!("{err}"));
    let fraction: u64 = fraction.parse().unwrap_or_else(|err| panic!("{err}"));
    whole * 1000 + fraction
}

fn requests(tenant: &str, model: &str, provider: &str, decision: &str, status: u16) -> String {
    format!(
        "flowgate_requests_total{{tenant=\"{tenant}\",model=\"{model}\",provider=\"{provider}\",decision=\"{decision}\",status=\"{status}\"}}"
    )
}

const BLOCK_RULE: &str = r#"
[[rules]]
id = "project-codename"
phase = "request"
action = "block"
match = { keywords = ["project-x"] }
"#;

#[tokio::test]
async fn a_known_sequence_is_counted_and_the_overhead_header_is_what_the_histogram_records() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    let config = format!(
        "{}\n{BLOCK_RULE}",
        config_for_upstream(&upstream.base_url())
    );
    let gateway = TestGateway::spawn(&config, &[])
        .await
        .unwrap_or_else(|err| panic!("gateway: {err:#}"));
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    let tenant = gateway.tenant_id.as_str();

    // Three allowed requests (a fourth follows below); their reported usage is what `flowgate_tokens_total` must hold.
    let (mut input_tokens, mut output_tokens) = (0, 0);
    for _ in 0..3 {
        let response = client
            .post_json(&url, &gateway.tenant_key, &chat_body(false))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        let usage = &response.json()["usage"];
        input_tokens += usage["prompt_tokens"].as_u64().unwrap_or(0);
        output_tokens += usage["completion_tokens"].as_u64().unwrap_or(0);
    }
    assert!(input_tokens > 0 && output_tokens > 0);

    // A request the policy blocks before any upstream is chosen.
    let mut secret = chat_body(false);
    secret["messages"][0]["content"] = json!("what is the status of project-x?");
    let blocked = client.post_json(&url, &gateway.tenant_key, &secret).await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN, "{}", blocked.text());

    // A tenant allowed one request a minute: admitted until the burst is spent, then 429.
    let created = client
        .post_json(
            &gateway.url("/v1/tenants"),
            &gateway.admin_key,
            &json!({"name": "metered", "max_requests_per_minute": 1}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let limited_id = created.json()["id"].as_str().unwrap_or_default().to_owned();
    let limited_key = created.json()["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut limited_allowed = 0;
    loop {
        let response = client
            .post_json(&url, &limited_key, &chat_body(false))
            .await;
        if response.status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        limited_allowed += 1;
        assert!(limited_allowed < 10, "the limit never refused");
    }

    // A model nobody configured: 404, and its name does not become a label.
    let mut unknown = chat_body(false);
    unknown["model"] = json!("no-such-model");
    let response = client.post_json(&url, &gateway.tenant_key, &unknown).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);

    // One allowed request between two scrapes: the overhead sum grows by exactly the header's
    // value (the header shows whole microseconds, the sum keeps nanoseconds).
    let before_text = scrape(&gateway).await;
    let before =
        nanos(&value(&before_text, "flowgate_overhead_duration_seconds_sum").unwrap_or_default());
    let response = client
        .post_json(&url, &gateway.tenant_key, &chat_body(false))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    let usage = &response.json()["usage"];
    input_tokens += usage["prompt_tokens"].as_u64().unwrap_or(0);
    output_tokens += usage["completion_tokens"].as_u64().unwrap_or(0);
    let header = response
        .header("x-flowgate-overhead-ms")
        .unwrap_or_else(|| panic!("no overhead header"))
        .to_owned();
    let after_text = scrape(&gateway).await;
    let after =
        nanos(&value(&after_text, "flowgate_overhead_duration_seconds_sum").unwrap_or_default());
    assert_eq!(
        (after - before) / 1000,
        header_micros(&header),
        "header {header}"
    );
    assert_eq!(
        count(&after_text, "flowgate_overhead_duration_seconds_count"),
        count(&before_text, "flowgate_overhead_duration_seconds_count") + 1
    );

    // The upstream fails (enough times to outlast any retries of the route).
    for _ in 0..5 {
        upstream.push(Behaviour::Status {
            status: 500,
            body: r#"{"error":{"message":"boom","type":"server_error"}}"#.to_owned(),
            retry_after: None,
        });
    }
    let failed = client
        .post_json(&url, &gateway.tenant_key, &chat_body(false))
        .await;
    assert!(
        failed.status.is_server_error(),
        "{} {}",
        failed.status,
        failed.text()
    );

    let text = scrape(&gateway).await;
    let model = "gpt-4o-mini";
    assert_eq!(
        count(&text, &requests(tenant, model, "mock", "allowed", 200)),
        4
    );
    assert_eq!(
        count(&text, &requests(&limited_id, model, "mock", "allowed", 200)),
        limited_allowed
    );
    assert_eq!(
        count(&text, &requests(tenant, model, "none", "blocked", 403)),
        1
    );
    // Refused at admission: no provider was chosen.
    assert_eq!(
        count(
            &text,
            &requests(&limited_id, model, "none", "rate_limited", 429)
        ),
        1
    );
    assert_eq!(
        count(&text, &requests(tenant, "other", "none", "error", 404)),
        1
    );
    assert_eq!(
        count(
            &text,
            &requests(tenant, model, "mock", "error", failed.status.as_u16())
        ),
        1
    );
    assert!(!text.contains("no-such-model"));
    assert_eq!(
        count(
            &text,
            &format!(
                "flowgate_ratelimit_rejections_total{{tenant=\"{limited_id}\",limit=\"requests\"}}"
            )
        ),
        1
    );
    assert_eq!(
        count(
            &text,
            &format!(
                "flowgate_tokens_total{{tenant=\"{tenant}\",model=\"{model}\",kind=\"input\"}}"
            )
        ),
        input_tokens
    );
    assert_eq!(
        count(
            &text,
            &format!(
                "flowgate_tokens_total{{tenant=\"{tenant}\",model=\"{model}\",kind=\"output\"}}"
            )
        ),
        output_tokens
    );
    let total = 4 + 1 + limited_allowed + 1 + 1 + 1;
    for histogram in [
        "flowgate_overhead_duration_seconds",
        "flowgate_request_duration_seconds",
    ] {
        assert_eq!(
            count(&text, &format!("{histogram}_count")),
            total,
            "{histogram}"
        );
        assert_eq!(
            count(&text, &format!("{histogram}_bucket{{le=\"+Inf\"}}")),
            total,
            "{histogram}"
        );
    }
    assert_eq!(count(&text, "flowgate_redis_fallback_active"), 0);
    let origin = gateway
        .gateway()
        .map(|running| running.state.audit().origin().to_owned())
        .unwrap_or_default();
    assert!(
        value(
            &text,
            &format!("flowgate_audit_log_size{{origin=\"{origin}\"}}")
        )
        .is_some(),
        "{text}"
    );
    assert!(value(&text, "process_resident_memory_bytes").is_some());
}

#[tokio::test]
async fn the_dashboard_route_serves_the_same_metrics_to_the_admin_key_only() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let response = client
        .post_json(
            &gateway.url("/v1/chat/completions"),
            &gateway.tenant_key,
            &chat_body(false),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK);
    let url = gateway.url("/v1/dashboard/metrics");
    let admin = client.get(&url, &gateway.admin_key).await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.text());
    assert_eq!(
        admin.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let series = requests(&gateway.tenant_id, "gpt-4o-mini", "mock", "allowed", 200);
    assert_eq!(count(&admin.text(), &series), 1);
    assert_eq!(count(&scrape(&gateway).await, &series), 1);
    let tenant = client.get(&url, &gateway.tenant_key).await;
    assert_eq!(tenant.status, StatusCode::FORBIDDEN);
    let anonymous = client.call(Method::GET, &url, &[], "").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    // The public listener has no unauthenticated /metrics.
    let public = client
        .call(Method::GET, &gateway.url("/metrics"), &[], "")
        .await;
    assert_eq!(public.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tenants_beyond_the_configured_label_budget_share_other() {
    let upstream = MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    let config = format!(
        "[telemetry]\nmax_tenant_labels = 1\n{}",
        config_for_upstream(&upstream.base_url())
    );
    let gateway = TestGateway::spawn(&config, &[])
        .await
        .unwrap_or_else(|err| panic!("gateway: {err:#}"));
    let client = TestClient::new();
    let url = gateway.url("/v1/chat/completions");
    // A request without a valid key is `none` and does not use up the budget.
    let anonymous = client
        .post_json(&url, "fgk_invalid", &chat_body(false))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let first = client
        .post_json(&url, &gateway.tenant_key, &chat_body(false))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let mut later_ids = Vec::new();
    for name in ["second", "third"] {
        let created = client
            .post_json(
                &gateway.url("/v1/tenants"),
                &gateway.admin_key,
                &json!({"name": name}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        later_ids.push(created.json()["id"].as_str().unwrap_or_default().to_owned());
        let key = created.json()["api_key"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let response = client.post_json(&url, &key, &chat_body(false)).await;
        assert_eq!(response.status, StatusCode::OK);
    }
    let text = scrape(&gateway).await;
    let model = "gpt-4o-mini";
    assert_eq!(
        count(
            &text,
            &requests(&gateway.tenant_id, model, "mock", "allowed", 200)
        ),
        1
    );
    assert_eq!(
        count(&text, &requests("other", model, "mock", "allowed", 200)),
        2
    );
    assert_eq!(
        count(&text, &requests("none", "none", "none", "error", 401)),
        1
    );
    for id in later_ids {
        assert!(!text.contains(&id), "{id} has a label of its own");
    }
}
