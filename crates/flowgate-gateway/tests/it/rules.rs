//! The rules API: a tenant's own rule takes effect on the very next request and deleting it
//! restores the behaviour; rules that do not compile are refused with 400; tenants see and
//! change only their own rules while the admin key names the tenant; presets are listed; and
//! `/v1/rules/test` answers decision, findings with spans and rule ids, and redacted text.

use crate::{chat_body, error_code, setup};
use flowgate_test_support::{TestClient, TestGateway};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const FALCON: &str = "Tell me about project-falcon please";

fn chat_with(text: &str) -> Value {
    let mut body = chat_body(false);
    body["messages"][0]["content"] = json!(text);
    body
}

fn falcon_rule() -> Value {
    json!({
        "id": "no-falcon",
        "description": "codename",
        "phase": "request",
        "action": "block",
        "match": {"keywords": ["project-falcon"]},
    })
}

async fn call(
    client: &TestClient,
    method: Method,
    url: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let authorization = format!("Bearer {key}");
    let response = client
        .call(
            method,
            url,
            &[
                ("authorization", &authorization),
                ("content-type", "application/json"),
            ],
            if body.is_null() {
                String::new()
            } else {
                body.to_string()
            },
        )
        .await;
    let status = response.status;
    let value = if response.body.is_empty() {
        Value::Null
    } else {
        response.json()
    };
    (status, value)
}

async fn chat_status(gateway: &TestGateway, key: &str, text: &str) -> (StatusCode, Value) {
    call(
        &TestClient::new(),
        Method::POST,
        &gateway.url("/v1/chat/completions"),
        key,
        &chat_with(text),
    )
    .await
}

/// Creates a second tenant through the API and returns (id, key).
async fn second_tenant(gateway: &TestGateway, name: &str) -> (String, String) {
    let (status, created) = call(
        &TestClient::new(),
        Method::POST,
        &gateway.url("/v1/tenants"),
        &gateway.admin_key,
        &json!({"name": name}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["id"].as_str().unwrap_or_default().to_owned(),
        created["api_key"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_rule_created_over_the_api_blocks_the_next_request_and_delete_restores() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let key = &gateway.tenant_key;

    let (status, _) = chat_status(&gateway, key, FALCON).await;
    assert_eq!(status, StatusCode::OK, "no rule yet");

    let (status, created) = call(
        &client,
        Method::POST,
        &gateway.url("/v1/rules"),
        key,
        &falcon_rule(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["object"], "rule");
    assert_eq!(created["id"], "no-falcon");
    assert_eq!(created["tenant_id"], gateway.tenant_id.as_str());
    assert_eq!(created["match"]["keywords"], json!(["project-falcon"]));

    // The same gateway screens the very next request with it.
    let (status, body) = chat_status(&gateway, key, FALCON).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "content_policy_violation");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("no-falcon")),
        "{body}"
    );
    assert!(
        !body.to_string().contains("project-falcon"),
        "the error never echoes the matched text: {body}"
    );
    // Other prompts still pass, and the preset still applies beside the tenant's rule.
    let (status, _) = chat_status(&gateway, key, "Say hello").await;
    assert_eq!(status, StatusCode::OK);

    let (status, listed) = call(
        &client,
        Method::GET,
        &gateway.url("/v1/rules"),
        key,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["rules_preset"], "default");

    let (status, deleted) = call(
        &client,
        Method::DELETE,
        &gateway.url("/v1/rules/no-falcon"),
        key,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["deleted"], true);
    let (status, body) = chat_status(&gateway, key, FALCON).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "delete restores the behaviour: {body}"
    );
    let (status, _) = call(
        &client,
        Method::DELETE,
        &gateway.url("/v1/rules/no-falcon"),
        key,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rules_that_do_not_compile_are_refused_with_400() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let key = &gateway.tenant_key;
    let url = gateway.url("/v1/rules");

    let bad_regex = json!({"id": "tickets", "action": "redact", "match": {"regex": "T-([0-9]+"}});
    let (status, body) = call(&client, Method::POST, &url, key, &bad_regex).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_request");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("tickets") && message.contains("regex"),
        "{message}"
    );

    let cases = [
        // Two match kinds at once.
        json!({"id": "two", "action": "block", "match": {"keywords": ["a"], "regex": "b+"}}),
        // An id the default preset already uses.
        json!({"id": "builtin.credit_card", "action": "flag", "match": {"keywords": ["a"]}}),
        // An unknown detector.
        json!({"id": "d", "action": "flag", "match": {"detector": "horoscope"}}),
        // An invalid id.
        json!({"id": "has space", "action": "flag", "match": {"keywords": ["a"]}}),
        // An unknown field.
        json!({"id": "u", "action": "flag", "match": {"keywords": ["a"]}, "severity": 3}),
        // A regex that matches everything.
        json!({"id": "empty", "action": "block", "match": {"regex": "x*"}}),
    ];
    for rule in cases {
        let (status, body) = call(&client, Method::POST, &url, key, &rule).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{rule}: {body}");
    }
    let (_, listed) = call(&client, Method::GET, &url, key, &Value::Null).await;
    assert_eq!(listed["data"], json!([]), "nothing refused was stored");

    // A repeated id conflicts; a replacement that does not compile is refused and changes
    // nothing.
    let (status, _) = call(&client, Method::POST, &url, key, &falcon_rule()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = call(&client, Method::POST, &url, key, &falcon_rule()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let rule_url = gateway.url("/v1/rules/no-falcon");
    let (status, body) = call(
        &client,
        Method::PUT,
        &rule_url,
        key,
        &json!({"action": "block", "match": {"regex": "("}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = call(
        &client,
        Method::PUT,
        &rule_url,
        key,
        &json!({"id": "other", "action": "flag", "match": {"keywords": ["x"]}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, shown) = call(&client, Method::GET, &rule_url, key, &Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["action"], "block");
    let (status, body) = chat_status(&gateway, key, FALCON).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn a_replaced_rule_changes_behaviour_at_once() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let key = &gateway.tenant_key;
    let (status, _) = call(
        &client,
        Method::POST,
        &gateway.url("/v1/rules"),
        key,
        &falcon_rule(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = chat_status(&gateway, key, FALCON).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let mut flag = falcon_rule();
    flag["action"] = json!("flag");
    let (status, replaced) = call(
        &client,
        Method::PUT,
        &gateway.url("/v1/rules/no-falcon"),
        key,
        &flag,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["action"], "flag");
    let (status, body) = chat_status(&gateway, key, FALCON).await;
    assert_eq!(status, StatusCode::OK, "a flag passes: {body}");

    let (status, _) = call(
        &client,
        Method::PUT,
        &gateway.url("/v1/rules/missing"),
        key,
        &flag,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the body's id names another rule"
    );
    let mut missing = flag.clone();
    missing["id"] = json!("missing");
    let (status, _) = call(
        &client,
        Method::PUT,
        &gateway.url("/v1/rules/missing"),
        key,
        &missing,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_tenant_sees_and_changes_only_its_own_rules() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let (other_id, other_key) = second_tenant(&gateway, "other").await;
    let (status, _) = call(
        &client,
        Method::POST,
        &gateway.url("/v1/rules"),
        &gateway.tenant_key,
        &falcon_rule(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // The other tenant sees none of it and is not screened by it.
    let (status, listed) = call(
        &client,
        Method::GET,
        &gateway.url("/v1/rules"),
        &other_key,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"], json!([]));
    assert_eq!(listed["tenant_id"], other_id.as_str());
    let rule_url = gateway.url("/v1/rules/no-falcon");
    let (status, _) = call(&client, Method::GET, &rule_url, &other_key, &Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&client, Method::DELETE, &rule_url, &other_key, &Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = chat_status(&gateway, &other_key, FALCON).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "one tenant's rule never screens another"
    );

    // Naming the first tenant with the other's key is refused, in the query or the body.
    let foreign = gateway.url(&format!("/v1/rules?tenant_id={}", gateway.tenant_id));
    let (status, _) = call(&client, Method::GET, &foreign, &other_key, &Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut planted = falcon_rule();
    planted["id"] = json!("planted");
    planted["tenant_id"] = json!(gateway.tenant_id);
    let (status, _) = call(
        &client,
        Method::POST,
        &gateway.url("/v1/rules"),
        &other_key,
        &planted,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The first tenant's rule is intact and still enforced.
    let (status, shown) = call(
        &client,
        Method::GET,
        &rule_url,
        &gateway.tenant_key,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    let (status, _) = chat_status(&gateway, &gateway.tenant_key, FALCON).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_admin_key_names_the_tenant() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let admin = &gateway.admin_key;
    let (status, body) = call(
        &client,
        Method::GET,
        &gateway.url("/v1/rules"),
        admin,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "tenant_id");

    let mut rule = falcon_rule();
    rule["tenant_id"] = json!(gateway.tenant_id);
    let (status, created) = call(
        &client,
        Method::POST,
        &gateway.url("/v1/rules"),
        admin,
        &rule,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _) = chat_status(&gateway, &gateway.tenant_key, FALCON).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an admin-made rule screens the tenant"
    );

    let listed_url = gateway.url(&format!("/v1/rules?tenant_id={}", gateway.tenant_id));
    let (status, listed) = call(&client, Method::GET, &listed_url, admin, &Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"][0]["id"], "no-falcon");
    let (status, _) = call(
        &client,
        Method::GET,
        &gateway.url("/v1/rules?tenant_id=ten_missing"),
        admin,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let delete_url = gateway.url(&format!(
        "/v1/rules/no-falcon?tenant_id={}",
        gateway.tenant_id
    ));
    let (status, _) = call(&client, Method::DELETE, &delete_url, admin, &Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = chat_status(&gateway, &gateway.tenant_key, FALCON).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn presets_are_listed_and_the_test_endpoint_explains_a_decision() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let key = &gateway.tenant_key;
    let (status, presets) = call(
        &client,
        Method::GET,
        &gateway.url("/v1/rules/presets"),
        key,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{presets}");
    let names: Vec<&str> = presets["data"]
        .as_array()
        .map(|data| {
            data.iter()
                .filter_map(|preset| preset["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, ["default", "strict", "audit-only"]);
    assert!(
        presets["data"][0]["rules"]
            .as_array()
            .is_some_and(|rules| !rules.is_empty())
    );

    let test_url = gateway.url("/v1/rules/test");
    let text = "my card is 4111 1111 1111 1111";
    let (status, answer) = call(
        &client,
        Method::POST,
        &test_url,
        key,
        &json!({"text": text, "phase": "request"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], "REDACT");
    assert_eq!(answer["findings"][0]["rule_id"], "builtin.credit_card");
    assert_eq!(answer["findings"][0]["confidence"], "validated");
    assert_eq!(answer["findings"][0]["start"], 11);
    assert_eq!(answer["findings"][0]["end"], text.len());
    assert_eq!(answer["redacted_text"], "my card is [REDACTED:credit_card]");

    // Extra rules and another preset are tried without being stored.
    let (status, answer) = call(
        &client,
        Method::POST,
        &test_url,
        key,
        &json!({"text": FALCON, "rules": [falcon_rule()], "preset": "strict"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], "BLOCK");
    assert_eq!(answer["findings"][0]["rule_id"], "no-falcon");
    let (_, listed) = call(
        &client,
        Method::GET,
        &gateway.url("/v1/rules"),
        key,
        &Value::Null,
    )
    .await;
    assert_eq!(listed["data"], json!([]), "testing stores nothing");

    // The tenant's stored rules take part; the admin key may test a preset alone.
    let (status, _) = call(
        &client,
        Method::POST,
        &gateway.url("/v1/rules"),
        key,
        &falcon_rule(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, answer) = call(
        &client,
        Method::POST,
        &test_url,
        key,
        &json!({"text": FALCON}),
    )
    .await;
    assert_eq!(answer["decision"], "BLOCK");
    let (status, answer) = call(
        &client,
        Method::POST,
        &test_url,
        &gateway.admin_key,
        &json!({"text": FALCON}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["decision"], "ALLOW",
        "no tenant named: the preset alone"
    );
    let (_, answer) = call(
        &client,
        Method::POST,
        &test_url,
        &gateway.admin_key,
        &json!({"text": FALCON, "tenant_id": gateway.tenant_id}),
    )
    .await;
    assert_eq!(answer["decision"], "BLOCK");

    for bad in [
        json!({"text": "x", "preset": "lenient"}),
        json!({"text": "x", "phase": "sideways"}),
        json!({"text": "x", "rules": [{"id": "r", "action": "block", "match": {"regex": "("}}]}),
        json!({"phase": "request"}),
    ] {
        let (status, body) = call(&client, Method::POST, &test_url, key, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn tenant_rules_add_to_the_configured_rules_and_may_not_reuse_their_ids() {
    let configured = r#"
[[rules]]
id = "project-codename"
phase = "request"
action = "block"
match = { keywords = ["project-x"] }
"#;
    let (_upstream, gateway) = crate::setup_with(configured).await;
    let client = TestClient::new();
    let key = &gateway.tenant_key;
    let mut clash = falcon_rule();
    clash["id"] = json!("project-codename");
    let (status, body) = call(
        &client,
        Method::POST,
        &gateway.url("/v1/rules"),
        key,
        &clash,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("duplicate rule id `project-codename`")),
        "{body}"
    );
    let (status, _) = call(
        &client,
        Method::POST,
        &gateway.url("/v1/rules"),
        key,
        &falcon_rule(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    for (text, rule) in [
        ("about project-x", "project-codename"),
        (FALCON, "no-falcon"),
    ] {
        let (status, body) = chat_status(&gateway, key, text).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains(rule)),
            "{body}"
        );
    }
}

#[tokio::test]
async fn another_replica_enforces_a_new_rule_after_its_refresh() {
    let refresh = "[store]\nrefresh_interval_ms = 50\n";
    let (_upstream_a, first) = crate::setup_with(refresh).await;
    let database = first.database_url();
    let master = first.master_key.to_base64();
    let upstream_b = flowgate_test_support::MockUpstream::start()
        .await
        .unwrap_or_else(|err| panic!("mock upstream: {err}"));
    let config = format!(
        "{refresh}\n{}",
        flowgate_test_support::gateway::config_for_upstream(&upstream_b.base_url())
    );
    let second = TestGateway::spawn(
        &config,
        &[
            ("FLOWGATE_DATABASE_URL", &database),
            ("FLOWGATE_MASTER_KEY", &master),
        ],
    )
    .await
    .unwrap_or_else(|err| panic!("second gateway: {err:#}"));
    let key = &first.tenant_key;
    let (status, _) = chat_status(&second, key, FALCON).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = call(
        &TestClient::new(),
        Method::POST,
        &first.url("/v1/rules"),
        key,
        &falcon_rule(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut last = StatusCode::OK;
    for _ in 0..100 {
        last = chat_status(&second, key, FALCON).await.0;
        if last == StatusCode::FORBIDDEN {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        last,
        StatusCode::FORBIDDEN,
        "the other replica picks the rule up"
    );
}
