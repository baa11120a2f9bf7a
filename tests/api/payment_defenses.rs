//! The payment defenses switched off: each shows its anomaly, and the same
//! attack with the defense on (the layers behind it still off) shows none.

use std::sync::Arc;
use std::time::Duration;

use crate::callbacks::{failed_event, pending_payment};
use crate::helpers::{TestApp, check, concurrently, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::json;

/// 10 concurrent pays of one order, each with its own key and token.
async fn ten_tabs_pay(app: &Arc<TestApp>) -> String {
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 1).await;
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(app.payment_token(&alice, &order_no).await);
    }
    let tokens = Arc::new(tokens);
    concurrently(10, |i| {
        let (app, alice, order_no, tokens) =
            (app.clone(), alice.clone(), order_no.clone(), tokens.clone());
        async move {
            app.pay(&alice, &order_no, &format!("tab-{i}"), Some(&tokens[i]))
                .await
        }
    })
    .await;
    order_no
}

async fn racy_app() -> Arc<TestApp> {
    let app = spawn_app_with(|settings| settings.race_window = Duration::from_millis(200)).await;
    app.set_psp(json!({ "callbacks": 1, "delay_ms": 0 })).await;
    app.set_defenses(json!({ "unique_index": false })).await;
    Arc::new(app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_order_lock_concurrent_pays_charge_twice() {
    let app = racy_app().await;
    app.set_defenses(json!({ "order_lock": false })).await;

    let order_no = ten_tabs_pay(&app).await;

    let payments = app
        .count(&format!(
            "SELECT COUNT(*) FROM payments WHERE order_no = '{order_no}'"
        ))
        .await;
    eprintln!("anomaly (order_lock + unique_index off): {payments} payments for one order");
    assert!(payments > 1, "double charge: {payments} payments");
    app.wait_until("every charge is reported", || async {
        app.count("SELECT COUNT(*) FROM payments WHERE status = 'SUCCEEDED'")
            .await
            == payments
    })
    .await;
    let audit = app.audit().await;
    assert_eq!(
        check(&audit, "one_charge_per_order")["ok"],
        false,
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_order_lock_the_same_race_charges_once() {
    let app = racy_app().await;

    let order_no = ten_tabs_pay(&app).await;

    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM payments WHERE order_no = '{order_no}'"
        ))
        .await,
        1
    );
    app.wait_until("the order is PAID", || async {
        app.order_status(&order_no).await == "PAID"
    })
    .await;
    assert_eq!(app.audit().await["ok"], true);
}

/// The same pay request (same token) sent twice with different keys, while the
/// layers behind the token are off.
async fn replay_one_token(app: &TestApp) -> i64 {
    app.set_psp(json!({ "callbacks": 1, "delay_ms": 0 })).await;
    app.set_defenses(json!({ "state_check": false, "unique_index": false }))
        .await;
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 1).await;
    let token = app.payment_token(&alice, &order_no).await;
    app.pay(&alice, &order_no, "original", Some(&token)).await;
    app.pay(&alice, &order_no, "replayed", Some(&token)).await;
    app.count("SELECT COUNT(*) FROM payments").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_payment_token_a_replayed_pay_charges_again() {
    let app = spawn_app().await;
    app.set_defenses(json!({ "payment_token": false })).await;

    let payments = replay_one_token(&app).await;

    eprintln!("anomaly (payment_token off): {payments} payments after one replay");
    assert_eq!(payments, 2, "the replay started a second charge");
    app.wait_until("both charges are reported", || async {
        app.count("SELECT COUNT(*) FROM payment_events WHERE status = 'SUCCEEDED'")
            .await
            == 2
    })
    .await;
    let audit = app.audit().await;
    assert_eq!(
        check(&audit, "one_charge_per_order")["ok"],
        false,
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_payment_token_the_replay_is_refused() {
    let app = spawn_app().await;

    let payments = replay_one_token(&app).await;

    assert_eq!(payments, 1);
}

/// One SUCCEEDED event delivered five times, with state_check off behind it.
async fn redeliver_five_times(app: &TestApp) -> Vec<String> {
    app.set_defenses(json!({ "state_check": false })).await;
    let alice = app.login("alice").await;
    let event = pending_payment(app, &alice).await;
    let mut results = Vec::new();
    for _ in 0..5 {
        let reply = app.send_callback(&event).await;
        assert_eq!(reply.status, StatusCode::OK);
        results.push(
            reply.json()["result"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_callback_dedup_an_event_is_applied_again() {
    let app = spawn_app().await;
    app.set_defenses(json!({ "callback_dedup": false })).await;

    let results = redeliver_five_times(&app).await;

    eprintln!(
        "anomaly (callback_dedup + state_check off): one event delivered 5 times: {results:?}"
    );
    assert_eq!(results, vec!["applied"; 5]);
    let audit = app.audit().await;
    assert_eq!(check(&audit, "events_applied_once")["ok"], false, "{audit}");
    app.wait_until("the repeated PAID messages are consumed", || async {
        app.count("SELECT COUNT(*) FROM rewards").await == 5
    })
    .await;
    assert_eq!(
        check(&app.audit().await, "one_reward_per_order")["ok"],
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_callback_dedup_the_repeats_are_duplicates() {
    let app = spawn_app().await;

    let results = redeliver_five_times(&app).await;

    assert_eq!(
        results,
        [
            "applied",
            "duplicate",
            "duplicate",
            "duplicate",
            "duplicate"
        ]
    );
    app.wait_until("the one reward", || async {
        app.count("SELECT COUNT(*) FROM rewards").await == 1
    })
    .await;
    assert_eq!(app.audit().await["ok"], true);
}

/// A SUCCEEDED, then a late FAILED for the same payment.
async fn late_failure(app: &TestApp) -> String {
    let alice = app.login("alice").await;
    let success = pending_payment(app, &alice).await;
    app.send_callback(&success).await;
    app.send_callback(&failed_event(&success)).await;
    success["order_no"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_state_check_a_late_failed_moves_a_paid_order_back() {
    let app = spawn_app().await;
    app.set_defenses(json!({ "state_check": false })).await;

    let order_no = late_failure(&app).await;

    let status = app.order_status(&order_no).await;
    eprintln!("anomaly (state_check off): a late FAILED moved the PAID order to {status}");
    assert_eq!(status, "PENDING_PAYMENT", "moved back");
    let audit = app.audit().await;
    assert_eq!(
        check(&audit, "paid_orders_charged_once")["ok"],
        false,
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_state_check_a_late_failed_changes_nothing() {
    let app = spawn_app().await;

    let order_no = late_failure(&app).await;

    assert_eq!(app.order_status(&order_no).await, "PAID");
    let audit = app.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}
