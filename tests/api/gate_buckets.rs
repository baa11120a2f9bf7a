//! Hot stock in buckets (`GATE_BUCKETS`): the gate's counter split into N
//! counters, a buyer trying its own bucket first and then the others; the sum
//! of the buckets is the gate (docs/scaling.md, step 4).

use std::sync::Arc;

use crate::helpers::{
    TestApp, TestUser, answered_by, created_and_sold_out_at_gate, crowd_buys, spawn_app_with,
};
use flashguard::store::key_layout;
use reqwest::StatusCode;

async fn app_with_buckets(buckets: u32) -> Arc<TestApp> {
    Arc::new(spawn_app_with(|settings| settings.gate_buckets = buckets).await)
}

/// Each bucket's counter, bucket 0 first.
async fn buckets_of(app: &TestApp, product: i64) -> Vec<Option<i64>> {
    let buckets = app.settings.gate_buckets;
    let mut counters = Vec::new();
    for bucket in 0..buckets {
        let tag = key_layout::gate_tag(product, bucket, buckets);
        let value = app.state.kv.get(&key_layout::gate_stock_of(&tag)).await;
        counters.push(value.expect("key store").and_then(|v| v.parse().ok()));
    }
    counters
}

/// A user whose own bucket (user id mod `buckets`) is `bucket`.
async fn user_of_bucket(app: &TestApp, bucket: i64, buckets: i64, name: &str) -> TestUser {
    for n in 0..50 {
        let user = app.login(&format!("{name}{n}")).await;
        if user.user_id.rem_euclid(buckets) == bucket {
            return user;
        }
    }
    panic!("no user of bucket {bucket} in 50 logins");
}

/// 20 units in three buckets (7, 7, 6); 90 buyers: exactly 20 orders, every
/// loser answered by the gate, every bucket empty, the audit green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_buckets_sell_exactly_the_stock() {
    let app = app_with_buckets(3).await;
    let product = app.reset_with_one_product(20).await;
    assert_eq!(buckets_of(&app, product).await, [Some(7), Some(7), Some(6)]);
    let (users, replies) = crowd_buys(&app, 90, "bucket", product).await;
    let (created, at_gate) = created_and_sold_out_at_gate(&replies);
    assert_eq!((created, at_gate), (20, 70), "{:?}", answered_by(&replies));
    assert_eq!(app.order_count(product).await, 20);
    assert_eq!(buckets_of(&app, product).await, [Some(0), Some(0), Some(0)]);
    let loser = replies.iter().position(|r| r.status != StatusCode::CREATED);
    let loser = loser.expect("a loser");
    let again = app
        .post_order_retrying(&users[loser], &format!("bucket-{loser}"), product, 1)
        .await;
    assert_eq!(
        (again.status, again.body.clone()),
        (replies[loser].status, replies[loser].body.clone()),
        "a loser's retry is replayed"
    );
    assert_eq!(app.audit().await["ok"], true, "{}", app.audit().await);
}

/// One unit left, in bucket 0: a buyer whose own bucket is 2 finds it there
/// (it tries every bucket before "sold out"); the next buyer is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_whose_bucket_is_empty_buys_from_another() {
    let app = app_with_buckets(3).await;
    let product = app.reset_with_one_product(1).await;
    assert_eq!(buckets_of(&app, product).await, [Some(1), Some(0), Some(0)]);

    let buyer = user_of_bucket(&app, 2, 3, "far").await;
    let bought = app.post_order_retrying(&buyer, "far-1", product, 1).await;
    assert_eq!(bought.status, StatusCode::CREATED, "{}", bought.body);
    assert_eq!(buckets_of(&app, product).await, [Some(0), Some(0), Some(0)]);

    let late = user_of_bucket(&app, 1, 3, "late").await;
    let refused = app.post_order_retrying(&late, "late-1", product, 1).await;
    assert_eq!(refused.code().as_deref(), Some("sold_out"));
    assert_eq!(refused.defense.as_deref(), Some("stock_gate"));
    assert_eq!(app.audit().await["ok"], true);
}

/// What buckets cost (少卖): 3 units spread one per bucket, and a request for
/// 2 is refused although the database holds 3 — no single bucket has 2. With
/// one bucket the same request buys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_any_bucket_is_refused_though_the_sum_would_do() {
    for (buckets, expected) in [(3, StatusCode::CONFLICT), (1, StatusCode::CREATED)] {
        let app = app_with_buckets(buckets).await;
        let product = app.reset_with_one_product(3).await;
        let alice = app.login("alice").await;
        let reply = app.post_order_retrying(&alice, "two", product, 2).await;
        assert_eq!(reply.status, expected, "{buckets} buckets: {}", reply.body);
        assert_eq!(app.stock(product).await, 3 - 2 * i64::from(buckets == 1));
        assert_eq!(app.audit().await["ok"], true);
    }
}

/// The reconciliation evens the buckets out: after three sales from bucket
/// 0's users (0, 1, 2 left after bucket 0 ran dry), it spreads the three
/// units left one per bucket, and the sum stays the database's stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciliation_refills_drained_buckets_from_the_others() {
    let app = app_with_buckets(3).await;
    let product = app.reset_with_one_product(6).await;
    assert_eq!(buckets_of(&app, product).await, [Some(2), Some(2), Some(2)]);
    for n in 0..3 {
        let user = user_of_bucket(&app, 0, 3, &format!("zero{n}-")).await;
        let reply = app
            .post_order_retrying(&user, &format!("z-{n}"), product, 1)
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    assert_eq!(buckets_of(&app, product).await, [Some(0), Some(1), Some(2)]);

    let total = app.state.gate.reconcile(product).await.expect("reconcile");
    assert_eq!(total, Some(3));
    assert_eq!(buckets_of(&app, product).await, [Some(1), Some(1), Some(1)]);
    assert_eq!(app.audit().await["ok"], true);
}
