//! The provider's callbacks: signatures, dedup, state checks, and a storm.

use std::sync::Arc;

use crate::helpers::{TestApp, TestUser, concurrently, spawn_app};
use flashguard::psp::signature::now_unix;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An order paid with the provider silent: returns the SUCCEEDED event to send.
pub async fn pending_payment(app: &TestApp, user: &TestUser) -> Value {
    app.set_psp(json!({ "callbacks": 0 })).await;
    let order_no = app.place_order(user, 1).await;
    let paid = app.pay_fresh(user, &order_no).await.json();
    json!({
        "event_id": format!("EVT{}", uuid::Uuid::new_v4().simple()),
        "order_no": order_no,
        "payment_no": paid["payment_no"],
        "provider_txn_id": paid["provider_txn_id"],
        "status": "SUCCEEDED",
        "amount_cents": 19_900,
    })
}

pub fn failed_event(success: &Value) -> Value {
    let mut failed = success.clone();
    failed["event_id"] = json!(format!("EVT{}", uuid::Uuid::new_v4().simple()));
    failed["status"] = json!("FAILED");
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_garbage_signatures_are_401() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let event = pending_payment(&app, &alice).await;
    let body = event.to_string();
    let wrong_secret = flashguard::psp::signature::sign(
        &secrecy::SecretString::from("not-the-secret".to_string()),
        now_unix(),
        &body,
    );

    let forged = app.send_callback_signed(&body, Some(&wrong_secret)).await;
    let stale = app.send_callback_at(&body, now_unix() - 301).await;
    let missing = app.send_callback_signed(&body, None).await;
    let garbage = app.send_callback_signed(&body, Some("t=abc,v1=xyz")).await;
    let tampered = {
        let signature = flashguard::psp::signature::sign(&app.psp_secret, now_unix(), &body);
        app.send_callback_signed(&body.replace("19900", "1"), Some(&signature))
            .await
    };

    for reply in [&forged, &missing, &garbage, &tampered] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
        assert_eq!(reply.code().as_deref(), Some("signature_invalid"));
    }
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stale.code().as_deref(), Some("signature_expired"));
    assert_eq!(
        app.order_status(event["order_no"].as_str().unwrap()).await,
        "PENDING_PAYMENT"
    );
    let signed_garbage = app.send_callback_at("{not json", now_unix()).await;
    assert_eq!(
        signed_garbage.status,
        StatusCode::BAD_REQUEST,
        "signed but malformed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_duplicate_callbacks_apply_once() {
    let app = Arc::new(spawn_app().await);
    let alice = app.login("alice").await;
    let event = Arc::new(pending_payment(&app, &alice).await);

    let replies = concurrently(20, |_| {
        let (app, event) = (app.clone(), event.clone());
        async move { app.send_callback(&event).await }
    })
    .await;

    let results: Vec<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(
                r.status,
                StatusCode::OK,
                "every delivery is acknowledged: {}",
                r.body
            );
            r.json()["result"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(
        results.iter().filter(|r| *r == "applied").count(),
        1,
        "{results:?}"
    );
    assert_eq!(results.iter().filter(|r| *r == "duplicate").count(), 19);
    assert_eq!(
        app.order_status(event["order_no"].as_str().unwrap()).await,
        "PAID"
    );
    app.wait_until("one reward", || async {
        app.count("SELECT COUNT(*) FROM rewards").await == 1
    })
    .await;
    let audit = app.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_failed_does_not_move_a_paid_order() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let success = pending_payment(&app, &alice).await;

    let applied = app.send_callback(&success).await;
    let late_failure = app.send_callback(&failed_event(&success)).await;

    assert_eq!(applied.json()["result"], "applied");
    assert_eq!(late_failure.status, StatusCode::OK);
    assert_eq!(late_failure.json()["result"], "ignored");
    assert_eq!(
        app.order_status(success["order_no"].as_str().unwrap())
            .await,
        "PAID"
    );
    assert_eq!(app.audit().await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_then_a_new_payment_succeeds() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let first = pending_payment(&app, &alice).await;
    let order_no = first["order_no"].as_str().unwrap().to_string();

    let failed = app.send_callback(&failed_event(&first)).await;
    let retry = app.pay_fresh(&alice, &order_no).await;

    assert_eq!(failed.json()["result"], "applied");
    assert_eq!(app.order_status(&order_no).await, "PENDING_PAYMENT");
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.body);
    assert_ne!(
        retry.json()["payment_no"],
        first["payment_no"],
        "a new payment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_for_a_closed_order_needs_a_refund_and_does_not_resurrect_it() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.payments.payment_window = std::time::Duration::ZERO;
    })
    .await;
    let alice = app.login("alice").await;
    let success = pending_payment(&app, &alice).await;
    flashguard::flows::closing::close_expired_orders(&app.state)
        .await
        .unwrap();

    let reply = app.send_callback(&success).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        app.order_status(success["order_no"].as_str().unwrap())
            .await,
        "CLOSED"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payments WHERE needs_refund = TRUE")
            .await,
        1
    );
    assert_eq!(
        app.stock(1).await,
        100,
        "the closed order's unit stays returned"
    );
    assert_eq!(app.audit().await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_that_does_not_match_its_payment_is_ignored() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let mut event = pending_payment(&app, &alice).await;
    event["amount_cents"] = json!(1);

    let reply = app.send_callback(&event).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["result"], "ignored");
    assert_eq!(
        app.order_status(event["order_no"].as_str().unwrap()).await,
        "PENDING_PAYMENT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_storm_over_many_orders_leaves_the_audit_ok() {
    let app = Arc::new(spawn_app().await);
    app.set_psp(
        json!({ "callbacks": 5, "delay_ms": 0, "concurrent": true, "failed_after_success": true }),
    )
    .await;
    let mut users = Vec::new();
    for i in 0..10 {
        users.push(app.login(&format!("storm{i}")).await);
    }
    let users = Arc::new(users);
    let mut orders = Vec::new();
    for user in users.iter() {
        for _ in 0..2 {
            orders.push((user.clone(), app.place_order(user, 2).await));
        }
    }
    let orders = Arc::new(orders);

    let replies = concurrently(orders.len(), |i| {
        let (app, orders) = (app.clone(), orders.clone());
        async move { app.pay_fresh(&orders[i].0, &orders[i].1).await }
    })
    .await;

    assert!(replies.iter().all(|r| r.status == StatusCode::ACCEPTED));
    app.wait_until("every order is PAID", || async {
        app.count("SELECT COUNT(*) FROM orders WHERE status = 'PAID'")
            .await
            == 20
    })
    .await;
    app.wait_until("every late FAILED is answered", || async {
        app.count("SELECT COUNT(DISTINCT event_id) FROM payment_events")
            .await
            == 40
    })
    .await;
    app.wait_until("every paid order is rewarded", || async {
        app.count("SELECT COUNT(*) FROM rewards").await == 20
    })
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 20);
    let audit = app.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}
