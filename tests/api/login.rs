use crate::helpers::{Reply, TestUser, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_creates_the_user_once() {
    let app = spawn_app().await;

    let first = app.login("alice").await;
    let second = app.login("alice").await;
    let other = app.login("bob").await;

    assert_eq!(first.user_id, second.user_id);
    assert_ne!(first.user_id, other.user_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usernames_and_bodies_are_400_problems() {
    let app = spawn_app().await;
    for body in [
        json!({ "username": "" }),
        json!({ "username": "a b" }),
        json!({ "name": "x" }),
    ] {
        let response = app
            .client
            .post(app.url("/api/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let reply = Reply::read(response).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.code().is_some(), "{body}: {}", reply.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_and_missing_tokens_are_401() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    // Alice's token with Bob's user id, keeping Alice's signature.
    let tampered = alice.token.replacen(
        &format!("v1.{}.", alice.user_id),
        &format!("v1.{}.", bob.user_id),
        1,
    );
    let forged = format!("v1.{}.Ym9i.{}", bob.user_id, "00".repeat(32));

    for token in [tampered, forged, "garbage".to_string()] {
        let user = TestUser {
            token,
            user_id: bob.user_id,
        };
        let reply = Reply::read(app.post_order(&user, "k", 1, 1).await).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.code().as_deref(), Some("unauthorized"));
    }
    let anonymous = app.client.get(app.url("/api/orders")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.order_count(1).await, 0, "no order was placed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_order_is_not_found() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let order = Reply::read(app.post_order(&alice, "k1", 1, 1).await)
        .await
        .json();
    let order_no = order["order_no"].as_str().unwrap();

    let own = app
        .client
        .get(app.url(&format!("/api/orders/{order_no}")))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    let foreign = app
        .client
        .get(app.url(&format!("/api/orders/{order_no}")))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();

    assert_eq!(own.status(), StatusCode::OK);
    let foreign = Reply::read(foreign).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(foreign.code().as_deref(), Some("order_not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_login_without_content_type_is_accepted() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(app.url("/api/login"))
        .body(r#"{"username":"carol"}"#)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
}
