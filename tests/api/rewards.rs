//! At-least-once rewards: forced redelivery, with and without message_dedup.

use crate::callbacks::pending_payment;
use crate::helpers::{TestApp, check, spawn_app};
use serde_json::json;

/// Pays `count` orders by hand while the consumer "crashes" after each effect.
async fn pay_with_crashing_consumer(app: &TestApp, count: usize) {
    app.set_faults(json!({ "rewards_crash_after_effect": count }))
        .await;
    let alice = app.login("alice").await;
    for _ in 0..count {
        let event = pending_payment(app, &alice).await;
        assert_eq!(app.send_callback(&event).await.json()["result"], "applied");
    }
    app.wait_until("every injected crash happened", || async {
        app.state.faults.crash_after_effect() == 0
    })
    .await;
    app.wait_until("every message is acknowledged", || async {
        app.state
            .bus
            .pending("order_paid", "rewards")
            .await
            .unwrap_or(1)
            == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_paid_order_is_rewarded_once_despite_redelivery() {
    let app = spawn_app().await;

    pay_with_crashing_consumer(&app, 3).await;

    assert_eq!(app.count("SELECT COUNT(*) FROM rewards").await, 3);
    assert_eq!(
        app.count("SELECT COUNT(DISTINCT order_no) FROM rewards")
            .await,
        3
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM processed_messages").await,
        3
    );
    let audit = app.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_message_dedup_a_redelivery_rewards_twice() {
    let app = spawn_app().await;
    app.set_defenses(json!({ "message_dedup": false })).await;

    pay_with_crashing_consumer(&app, 3).await;

    let rewards = app.count("SELECT COUNT(*) FROM rewards").await;
    eprintln!("anomaly (message_dedup off): {rewards} rewards for 3 paid orders");
    assert_eq!(rewards, 6, "each order rewarded twice");
    let audit = app.audit().await;
    assert_eq!(
        check(&audit, "one_reward_per_order")["ok"],
        false,
        "{audit}"
    );
}
