//! Admin API: tenants and keys, who may call what, and that changes reach the request path
//! at once.

use crate::{chat_body, error_code, setup};
use flowgate_test_support::TestClient;
use http::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn tenant_lifecycle_through_the_api() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let tenants_url = gateway.url("/v1/tenants");
    let created = client
        .post_json(
            &tenants_url,
            &gateway.admin_key,
            &json!({"name": "acme", "rules_preset": "strict", "max_requests_per_minute": 100, "allowed_models": []}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let created = created.json();
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let key = created["api_key"].as_str().unwrap_or_default().to_owned();
    assert!(key.starts_with("fgk_"));
    assert_eq!(created["rules_preset"], "strict");

    // The new key works immediately.
    let chat_url = gateway.url("/v1/chat/completions");
    assert_eq!(
        client
            .post_json(&chat_url, &key, &chat_body(false))
            .await
            .status,
        StatusCode::OK
    );

    // Reads never show the secret.
    let shown = client
        .get(
            &gateway.url(&format!("/v1/tenants/{id}")),
            &gateway.admin_key,
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(!shown.text().contains(&key));
    assert_eq!(shown.json()["keys"].as_array().map(Vec::len), Some(1));
    let listed = client.get(&tenants_url, &gateway.admin_key).await;
    assert_eq!(listed.json()["data"].as_array().map(Vec::len), Some(2));
    assert!(!listed.text().contains(&key));

    // A tenant key reads its own tenant, not others, and cannot list or create.
    assert_eq!(
        client
            .get(&gateway.url(&format!("/v1/tenants/{id}")), &key)
            .await
            .status,
        StatusCode::OK
    );
    let other = client
        .get(
            &gateway.url(&format!("/v1/tenants/{}", gateway.tenant_id)),
            &key,
        )
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!(
        client.get(&tenants_url, &key).await.status,
        StatusCode::FORBIDDEN
    );

    // Patch.
    let patched = client
        .call(
            Method::PATCH,
            &gateway.url(&format!("/v1/tenants/{id}")),
            &[("authorization", &format!("Bearer {}", gateway.admin_key))],
            json!({"allowed_models": ["renamed"], "max_requests_per_minute": null}).to_string(),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    assert_eq!(
        patched.json()["max_requests_per_minute"],
        serde_json::Value::Null
    );
    assert_eq!(
        client
            .post_json(&chat_url, &key, &chat_body(false))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Revoke the key: 401 at once.
    let key_id = created["key_id"].as_str().unwrap_or_default();
    let revoked = client
        .call(
            Method::DELETE,
            &gateway.url(&format!("/v1/tenants/{id}/keys/{key_id}")),
            &[("authorization", &format!("Bearer {}", gateway.admin_key))],
            "",
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    assert_eq!(
        client.get(&gateway.url("/v1/models"), &key).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Delete.
    let deleted = client
        .call(
            Method::DELETE,
            &gateway.url(&format!("/v1/tenants/{id}")),
            &[("authorization", &format!("Bearer {}", gateway.admin_key))],
            "",
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let missing = client
        .get(
            &gateway.url(&format!("/v1/tenants/{id}")),
            &gateway.admin_key,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_admin_requests() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let url = gateway.url("/v1/tenants");
    let cases = [
        (json!({"name": ""}), StatusCode::BAD_REQUEST),
        (
            json!({"name": "x", "rules_preset": "lenient"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"name": "x", "surprise": 1}), StatusCode::BAD_REQUEST),
        (json!({"name": "test"}), StatusCode::CONFLICT),
    ];
    for (body, status) in cases {
        let response = client.post_json(&url, &gateway.admin_key, &body).await;
        assert_eq!(response.status, status, "{body}: {}", response.text());
        error_code(&response.json());
    }
    assert_eq!(
        client.get(&url, "wrong").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn rotation_keeps_the_old_key_until_the_deadline() {
    let (_upstream, gateway) = setup().await;
    let client = TestClient::new();
    let rotated = client
        .post_json(
            &gateway.url(&format!("/v1/tenants/{}/keys/rotate", gateway.tenant_id)),
            &gateway.admin_key,
            &json!({"revoke_after_seconds": 1}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.text());
    let new_key = rotated.json()["new_key"]["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let models = gateway.url("/v1/models");
    assert_eq!(client.get(&models, &new_key).await.status, StatusCode::OK);
    assert_eq!(
        client.get(&models, &gateway.tenant_key).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        client.get(&models, &gateway.tenant_key).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(client.get(&models, &new_key).await.status, StatusCode::OK);
}
