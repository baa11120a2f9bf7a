//! At-least-once rewards: forced redelivery, with and without message_dedup.

use crate::callbacks::pending_payment;
use crate::helpers::{TestApp, check, spawn_app};
use serde_json::json;

/// Pays `count` orders by hand while the consumer "crashes" after `count`
/// effects, then waits until each crash's message came back and was handled:
/// stopped as a duplicate (`message_dedup` on) or rewarded again (off). On a
/// Redis Stream the message comes back after the idle time; on RabbitMQ at
/// once (the crash closes the consumer's channel).
pub async fn pay_with_crashing_consumer(app: &TestApp, count: usize, dedup: bool) {
    app.set_faults(json!({ "rewards_crash_after_effect": count }))
        .await;
    let alice = app.login("alice").await;
    for _ in 0..count {
        let event = pending_payment(app, &alice).await;
        assert_eq!(app.send_callback(&event).await.json()["result"], "applied");
    }
    let count = count as u64;
    app.wait_until("each crash's message handled again", || async {
        let rewarded = app.count("SELECT COUNT(*) FROM rewards").await;
        let again = if dedup {
            app.state.deliveries.duplicates() == count && rewarded >= count as i64
        } else {
            rewarded == 2 * count as i64
        };
        let unpublished = "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL";
        let pending = app.state.bus.pending("order_paid", "rewards").await;
        again && app.count(unpublished).await == 0 && pending.is_ok_and(|pending| pending == 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_paid_order_is_rewarded_once_despite_redelivery() {
    let app = spawn_app().await;

    pay_with_crashing_consumer(&app, 3, true).await;

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

    pay_with_crashing_consumer(&app, 3, false).await;

    let rewards = app.count("SELECT COUNT(*) FROM rewards").await;
    eprintln!("anomaly (message_dedup off): {rewards} rewards for 3 paid orders");
    assert_eq!(rewards, 6, "each crash's redelivery rewarded again");
    let audit = app.audit().await;
    assert_eq!(
        check(&audit, "one_reward_per_order")["ok"],
        false,
        "{audit}"
    );
}
