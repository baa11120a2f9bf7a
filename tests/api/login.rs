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
        // One object with only a visible username.
        json!(["alice"]),
        json!({ "username": "alice", "admin": true }),
        json!({ "username": "ali\u{200B}ce" }),
        json!({ "username": "\u{202E}ecila" }),
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
    // Bob's claims with Alice's signature; and an unsigned token.
    let parts = |token: &str| token.split('.').map(str::to_string).collect::<Vec<_>>();
    let (alice_parts, bob_parts) = (parts(&alice.token), parts(&bob.token));
    let tampered = format!("{}.{}.{}", alice_parts[0], bob_parts[1], alice_parts[2]);
    let forged = format!("eyJhbGciOiJub25lIn0.{}.", bob_parts[1]);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_token_and_an_expired_token_is_refused() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.login_token_ttl = std::time::Duration::from_secs(1);
    })
    .await;
    let alice = app.login("alice").await;
    let me = |token: String| {
        let app = &app;
        async move {
            Reply::read(
                app.client
                    .get(app.url("/api/me"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    assert_eq!(me(alice.token.clone()).await.status, StatusCode::OK);

    let logout = app
        .client
        .post(app.url("/api/logout"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::OK);
    let revoked = me(alice.token.clone()).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    assert_eq!(revoked.code().as_deref(), Some("token_revoked"));

    let bob = app.login("bob").await;
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let expired = me(bob.token).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(expired.code().as_deref(), Some("token_expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_are_compared_after_nfc_normalisation() {
    let app = spawn_app().await;
    let composed = app.login("jos\u{00E9}").await;
    let decomposed = app.login("jose\u{0301}").await;
    assert_eq!(composed.user_id, decomposed.user_id, "one user after NFC");
}
