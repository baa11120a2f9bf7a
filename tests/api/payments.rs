//! Paying: the one-time token, the order lock, replays, and PAID through callbacks.

use std::sync::Arc;

use crate::helpers::{Reply, concurrently, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_reaches_paid_through_the_providers_callbacks() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 1).await;

    let reply = app.pay_fresh(&alice, &order_no).await;

    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], "PROCESSING");
    assert_eq!(body["order_no"], order_no.as_str());
    assert!(
        body["payment_no"]
            .as_str()
            .is_some_and(|no| no.starts_with("PAY"))
    );
    assert!(
        body["provider_txn_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("PSP"))
    );
    app.wait_until("the order is PAID", || async {
        app.order_status(&order_no).await == "PAID"
    })
    .await;
    // Re-entering the payment popup after paying shows PAID, and charges nothing.
    let again = app.pay_fresh(&alice, &order_no).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["status"], "PAID");
    assert_eq!(again.json()["payment_no"], body["payment_no"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
    app.wait_until("the reward is given", || async {
        app.count("SELECT COUNT(*) FROM rewards").await == 1
    })
    .await;
    let audit = app.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_used_once() {
    let app = spawn_app().await;
    app.set_psp(json!({ "callbacks": 0 })).await;
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 1).await;
    let token = app.payment_token(&alice, &order_no).await;

    let first = app.pay(&alice, &order_no, "pay-1", Some(&token)).await;
    let reuse = app.pay(&alice, &order_no, "pay-2", Some(&token)).await;

    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(reuse.status, StatusCode::FORBIDDEN);
    assert_eq!(reuse.code().as_deref(), Some("payment_token_invalid"));
    assert_eq!(reuse.defense.as_deref(), Some("payment_token"));
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_forged_and_foreign_tokens_are_refused() {
    let app = spawn_app().await;
    app.set_psp(json!({ "callbacks": 0 })).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let alices_order = app.place_order(&alice, 1).await;
    let bobs_order = app.place_order(&bob, 1).await;
    let alices_token = app.payment_token(&alice, &alices_order).await;
    let token_for_other_order = app
        .payment_token(&alice, &app.place_order(&alice, 1).await)
        .await;

    let missing = app.pay(&alice, &alices_order, "k1", None).await;
    let forged = app
        .pay(&alice, &alices_order, "k2", Some(&"ab".repeat(24)))
        .await;
    let garbage = app
        .pay(&alice, &alices_order, "k3", Some("not a token!"))
        .await;
    let other_order = app
        .pay(&alice, &alices_order, "k4", Some(&token_for_other_order))
        .await;
    let foreign_user = app.pay(&bob, &bobs_order, "k5", Some(&alices_token)).await;
    let foreign_order = app
        .pay(&bob, &alices_order, "k6", Some(&alices_token))
        .await;

    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.code().as_deref(), Some("payment_token_missing"));
    for refused in [
        &forged,
        &garbage,
        &other_order,
        &foreign_user,
        &foreign_order,
    ] {
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        assert_eq!(refused.code().as_deref(), Some("payment_token_invalid"));
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 0);
    // Bob's attempt did not burn Alice's token.
    let owner = app
        .pay(&alice, &alices_order, "k7", Some(&alices_token))
        .await;
    assert_eq!(owner.status, StatusCode::ACCEPTED, "{}", owner.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pay_retried_with_the_same_key_is_replayed() {
    let app = spawn_app().await;
    app.set_psp(json!({ "callbacks": 0 })).await;
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 1).await;
    let token = app.payment_token(&alice, &order_no).await;

    let first = app.pay(&alice, &order_no, "pay-key", Some(&token)).await;
    // The retry carries the same (now used) token: the key's replay comes first.
    let retry = app.pay(&alice, &order_no, "pay-key", Some(&token)).await;

    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(retry.status, StatusCode::ACCEPTED);
    assert!(retry.replayed);
    assert_eq!(retry.body, first.body);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_pays_with_different_keys_make_one_payment() {
    let app = Arc::new(spawn_app().await);
    app.set_psp(json!({ "callbacks": 0 })).await;
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 1).await;
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(app.payment_token(&alice, &order_no).await);
    }
    let tokens = Arc::new(tokens);

    let replies = concurrently(10, |i| {
        let (app, alice, order_no, tokens) =
            (app.clone(), alice.clone(), order_no.clone(), tokens.clone());
        async move {
            app.pay(&alice, &order_no, &format!("tab-{i}"), Some(&tokens[i]))
                .await
        }
    })
    .await;

    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
    let payment_no = replies[0].json()["payment_no"].clone();
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        assert_eq!(
            reply.json()["payment_no"],
            payment_no,
            "all see the one payment"
        );
    }
    let stopped_by_state_check = replies
        .iter()
        .filter(|r| r.defense.as_deref() == Some("state_check"))
        .count();
    assert_eq!(
        stopped_by_state_check, 9,
        "each later pay found the payment under the lock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_a_closed_order_is_refused_and_stock_came_back() {
    let app = spawn_app_with_zero_window().await;
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 1).await;
    assert_eq!(app.stock(1).await, 99);

    let closed = flashguard::flows::closing::close_expired_orders(&app.state)
        .await
        .unwrap();
    let closed_again = flashguard::flows::closing::close_expired_orders(&app.state)
        .await
        .unwrap();
    let reply = app.pay_fresh(&alice, &order_no).await;

    assert_eq!(closed, 1);
    assert_eq!(closed_again, 0, "each order is closed once");
    assert_eq!(app.order_status(&order_no).await, "CLOSED");
    assert_eq!(app.stock(1).await, 100, "the unit went back to stock");
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.code().as_deref(), Some("order_closed"));
    assert_eq!(app.audit().await["ok"], true);
}

async fn spawn_app_with_zero_window() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|settings| {
        settings.payments.payment_window = std::time::Duration::ZERO;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_token_endpoint_is_for_the_owner_only() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let order_no = app.place_order(&alice, 1).await;

    let response = app
        .client
        .post(app.url(&format!("/api/orders/{order_no}/payment-token")))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    let reply = Reply::read(response).await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let expires_in = {
        let response = app
            .client
            .post(app.url(&format!("/api/orders/{order_no}/payment-token")))
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap();
        Reply::read(response).await.json()["expires_in"].as_i64()
    };
    assert_eq!(expires_in, Some(900));
}
