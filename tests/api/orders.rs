use crate::helpers::{Reply, spawn_app};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_created_and_readable_by_its_owner() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;

    let reply = Reply::read(app.post_order(&alice, "key-1", 1, 2).await).await;

    assert_eq!(reply.status, StatusCode::CREATED);
    let order = reply.json();
    assert_eq!(order["status"], "PENDING_PAYMENT");
    assert_eq!(order["quantity"], 2);
    assert_eq!(order["amount_cents"], 2 * 19_900);
    assert_eq!(order["idempotency_key"], "key-1");
    assert_eq!(app.stock(1).await, 98);
    let listed = app
        .client
        .get(app.url("/api/orders"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    let listed: serde_json::Value = listed.json().await.unwrap();
    assert_eq!(listed["orders"][0]["order_no"], order["order_no"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_malformed_key_is_a_400_problem() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let body = r#"{"product_id":1,"quantity":1}"#;
    let long_key = "k".repeat(256);

    let cases = [
        (None, "idempotency_key_missing"),
        (Some(long_key.as_str()), "idempotency_key_invalid"),
        (Some("has space"), "idempotency_key_invalid"),
    ];
    for (key, code) in cases {
        let reply = Reply::read(app.post_order_raw(&alice, key, body).await).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{key:?}");
        assert_eq!(reply.code().as_deref(), Some(code));
        assert_eq!(
            reply.content_type.as_deref(),
            Some("application/problem+json")
        );
    }
    let longest = "k".repeat(255);
    let accepted = Reply::read(app.post_order_raw(&alice, Some(&longest), body).await).await;
    assert_eq!(accepted.status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_4xx_problems_never_5xx() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let cases = [
        ("{not json", StatusCode::BAD_REQUEST, "malformed_body"),
        (
            r#"{"product_id":1}"#,
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            r#"{"product_id":"one","quantity":1}"#,
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            r#"{"product_id":1,"quantity":0}"#,
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            r#"{"product_id":1,"quantity":-1}"#,
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            r#"{"product_id":1,"quantity":11}"#,
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            r#"{"product_id":999999,"quantity":1}"#,
            StatusCode::NOT_FOUND,
            "product_not_found",
        ),
    ];
    for (index, (body, status, code)) in cases.into_iter().enumerate() {
        let key = format!("bad-{index}");
        let reply = Reply::read(app.post_order_raw(&alice, Some(&key), body).await).await;
        assert_eq!(reply.status, status, "{body}");
        assert_eq!(reply.code().as_deref(), Some(code), "{body}");
    }
    assert_eq!(app.order_count(1).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_request_stores_nothing_so_the_key_can_be_used_again() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;

    let invalid = Reply::read(
        app.post_order_raw(&alice, Some("k"), r#"{"product_id":1,"quantity":0}"#)
            .await,
    )
    .await;
    let unknown = Reply::read(app.post_order(&alice, "k", 999_999, 1).await).await;
    let valid = Reply::read(app.post_order(&alice, "k", 1, 1).await).await;

    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        valid.status,
        StatusCode::CREATED,
        "not 422: nothing was stored: {}",
        valid.body
    );
    assert!(!valid.replayed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_before_the_sale_starts_is_409_and_stores_nothing() {
    let app = spawn_app().await;
    let body = serde_json::json!({
        "products": [{ "name": "later", "price_cents": 100, "stock": 5, "starts_in_secs": 3600 }]
    });
    let reset = app
        .client
        .post(app.url("/api/admin/reset"))
        .bearer_auth(&app.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let product: serde_json::Value = reset.json().await.unwrap();
    let product = product["products"][0]["id"].as_i64().unwrap();
    let alice = app.login("alice").await;

    let reply = Reply::read(app.post_order(&alice, "early", product, 1).await).await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.code().as_deref(), Some("sale_not_started"));
    assert_eq!(app.order_count(product).await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys").await,
        0,
        "nothing stored"
    );
}
