//! Each defense switched off shows its anomaly; switched on, the same attack
//! leaves none. The race window (a teaching aid) only acts on a defense that is off.
//! The stock gate, which stands in front of these defenses, is switched off so
//! that each test isolates the defense it is about.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::{Reply, TestApp, check, concurrently, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::json;

/// `count` concurrent identical requests (same user, same key) for one unit.
async fn double_submit(app: &Arc<TestApp>, product: i64, count: usize) -> Vec<Reply> {
    let alice = app.login("alice").await;
    concurrently(count, |_| {
        let (app, alice) = (app.clone(), alice.clone());
        async move {
            app.post_order_retrying(&alice, "one-intent", product, 1)
                .await
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idempotency_key_and_unique_index_duplicates_appear() {
    let app = Arc::new(spawn_app().await);
    let product = app.reset_with_one_product(100).await;
    app.set_defenses(
        json!({ "idempotency_key": false, "unique_index": false, "stock_gate": false }),
    )
    .await;

    double_submit(&app, product, 20).await;

    let orders = app.order_count(product).await;
    eprintln!("anomaly (idempotency_key + unique_index off): {orders} orders for one intent");
    assert!(
        orders > 1,
        "duplicates appear: {orders} orders for one intent"
    );
    let audit = app.audit().await;
    assert_eq!(check(&audit, "one_order_per_key")["ok"], false, "{audit}");
    assert_eq!(audit["ok"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unique_index_alone_stops_concurrent_duplicates() {
    let app = Arc::new(spawn_app().await);
    let product = app.reset_with_one_product(100).await;
    app.set_defenses(json!({ "idempotency_key": false, "stock_gate": false }))
        .await;

    let replies = double_submit(&app, product, 20).await;

    assert_eq!(app.order_count(product).await, 1);
    assert_eq!(app.stock(product).await, 99, "the losers' stock went back");
    assert!(replies.iter().all(|r| r.status == StatusCode::CREATED));
    assert!(
        replies.iter().all(|r| r.body == replies[0].body),
        "all see the one order"
    );
    let caught = replies
        .iter()
        .filter(|r| r.defense.as_deref() == Some("unique_index"))
        .count();
    assert_eq!(
        caught, 19,
        "every duplicate is named as caught by unique_index"
    );
    assert_eq!(app.audit().await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_key_alone_stops_concurrent_duplicates() {
    let app = Arc::new(spawn_app().await);
    let product = app.reset_with_one_product(100).await;
    app.set_defenses(json!({ "unique_index": false, "stock_gate": false }))
        .await;

    double_submit(&app, product, 20).await;

    assert_eq!(app.order_count(product).await, 1);
    assert_eq!(app.audit().await["ok"], true);
}

/// 30 buyers (distinct users and keys) race for 10 units.
async fn race_for_ten_units(app: &Arc<TestApp>) -> i64 {
    let product = app.reset_with_one_product(10).await;
    let mut users = Vec::new();
    for i in 0..30 {
        users.push(app.login(&format!("racer{i}")).await);
    }
    let users = Arc::new(users);
    concurrently(30, |i| {
        let (app, users) = (app.clone(), users.clone());
        async move {
            app.post_order_retrying(&users[i], &format!("race-{i}"), product, 1)
                .await
        }
    })
    .await;
    product
}

fn with_race_window(settings: &mut flashguard::configuration::Settings) {
    settings.race_window = Duration::from_millis(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_version_lock_updates_are_lost_and_stock_is_oversold() {
    let app = Arc::new(spawn_app_with(with_race_window).await);
    app.set_defenses(json!({ "version_lock": false, "stock_gate": false }))
        .await;

    let product = race_for_ten_units(&app).await;

    let orders = app.order_count(product).await;
    eprintln!(
        "anomaly (version_lock off): {orders} orders for 10 units, stock left {}",
        app.stock(product).await
    );
    assert!(orders > 10, "oversold: {orders} orders for 10 units");
    let audit = app.audit().await;
    assert_eq!(check(&audit, "stock_conserved")["ok"], false, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_version_lock_the_same_race_sells_exactly_the_stock() {
    let app = Arc::new(spawn_app_with(with_race_window).await);
    app.set_defenses(json!({ "stock_gate": false })).await;

    let product = race_for_ten_units(&app).await;

    assert_eq!(app.order_count(product).await, 10);
    assert_eq!(app.stock(product).await, 0);
    assert_eq!(app.audit().await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_retry_budget_is_503_and_stores_nothing() {
    let app = Arc::new(spawn_app_with(|settings| settings.version_lock.max_retries = 0).await);
    let product = app.reset_with_one_product(1_000).await;
    let mut users = Vec::new();
    for i in 0..40 {
        users.push(app.login(&format!("busy{i}")).await);
    }
    let users = Arc::new(users);

    let replies = concurrently(40, |i| {
        let (app, users) = (app.clone(), users.clone());
        async move {
            Reply::read(
                app.post_order(&users[i], &format!("b-{i}"), product, 1)
                    .await,
            )
            .await
        }
    })
    .await;

    for (i, reply) in replies.iter().enumerate() {
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(reply.code().as_deref(), Some("busy_retry"));
            assert!(reply.retry_after.is_some());
            let retry = app
                .post_order_retrying(&users[i], &format!("b-{i}"), product, 1)
                .await;
            assert_eq!(
                retry.status,
                StatusCode::CREATED,
                "nothing was stored: the retry runs"
            );
            assert!(!retry.replayed);
        } else {
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        }
    }
    assert_eq!(app.order_count(product).await, 40);
    assert_eq!(app.audit().await["ok"], true);
}
