//! The local answer cache (src/answer_cache.rs, docs/design.md §2.2): a repeat
//! this instance knows the answer of is answered from its memory — the same
//! bytes the key stores, the same headers — and a reset of the sale empties
//! every instance's memory.

use std::time::Duration;

use crate::helpers::{
    Reply, TestApp, TestUser, create_test_database, database_server, real_stack, redis_server,
    spawn_app, spawn_app_with,
};
use flashguard::flows::shared;
use flashguard::store::{Door, DoorAnswer, key_layout, now_ms};
use reqwest::StatusCode;
use serde_json::json;

/// A traced order request: the reply and the steps it took.
async fn traced_order(app: &TestApp, user: &TestUser, key: &str, product: i64) -> (Reply, String) {
    let response = app.post_order(user, key, product, 1).await;
    let trace = response
        .headers()
        .get("flashguard-trace")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (Reply::read(response).await, trace)
}

/// The stored answer of `key`: the key row's body, as the database keeps it.
async fn stored_body(app: &TestApp, key: &str) -> String {
    let sql = app.sql("SELECT response_body FROM idempotency_keys WHERE idem_key = $1");
    sqlx::query_scalar(&sql)
        .bind(key)
        .fetch_one(app.state.db.pool())
        .await
        .expect("the key row's answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_is_answered_from_memory_with_the_stored_bytes() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    app.admin_put("/api/admin/lab", json!({ "trace": true }))
        .await;

    let (first, _) = traced_order(&app, &alice, "k", 1).await;
    let (again, trace) = traced_order(&app, &alice, "k", 1).await;

    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert!(trace.contains("local answer cache: hit, replay"), "{trace}");
    assert_eq!(again.status, StatusCode::CREATED);
    assert!(again.replayed, "a replay says so");
    assert_eq!(again.content_type, first.content_type);
    assert_eq!(again.body, first.body);
    assert_eq!(again.body, stored_body(&app, "k").await, "the stored bytes");
    assert_eq!(app.order_count(1).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_local_cache_the_key_store_answers_the_repeat() {
    let app = spawn_app_with(|settings| settings.idempotency.local_cache_mb = 0).await;
    let alice = app.login("alice").await;
    app.admin_put("/api/admin/lab", json!({ "trace": true }))
        .await;

    let (first, _) = traced_order(&app, &alice, "k", 1).await;
    let (again, trace) = traced_order(&app, &alice, "k", 1).await;

    assert!(!trace.contains("local answer cache"), "{trace}");
    assert!(trace.contains("key cache: hit, replay"), "{trace}");
    assert!(again.replayed);
    assert_eq!(again.body, first.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loser_s_retry_is_its_sold_out_again_and_another_body_is_still_refused() {
    let app = spawn_app().await;
    let product = app.reset_with_one_product(0).await;
    let alice = app.login("alice").await;
    app.admin_put("/api/admin/lab", json!({ "trace": true }))
        .await;

    let (refused, _) = traced_order(&app, &alice, "late", product).await;
    let (retry, trace) = traced_order(&app, &alice, "late", product).await;
    let (other, _) = traced_order(&app, &alice, "late", 1).await;

    assert_eq!(refused.code().as_deref(), Some("sold_out"));
    assert!(trace.contains("local answer cache: hit, replay"), "{trace}");
    assert_eq!(retry.status, StatusCode::CONFLICT);
    assert!(retry.replayed);
    assert_eq!(retry.body, refused.body);
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.body
    );
    assert_eq!(other.code().as_deref(), Some("idempotency_key_reused"));
}

/// Two instances on one database and key store: the run's, or in the
/// embedded run the local Postgres and Redis. Neither reads the switch board
/// by itself during the test (the test says when).
async fn two_instances(test: &str) -> (TestApp, TestApp) {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let database_url = create_test_database(&database_server(test), &run_id).await;
    let cluster = std::env::var("REDIS_CLUSTER_URLS").is_ok_and(|urls| !urls.is_empty());
    let local_redis = (!cluster && real_stack().1.is_none()).then(|| redis_server(test));
    let first = spawn_app_with(move |settings| {
        settings.database_url = database_url;
        if let Some(url) = local_redis {
            settings.redis_url = Some(url);
        }
        settings.switches_refresh_every = Duration::from_secs(3600);
    })
    .await;
    let second = first.twin().await.expect("a second instance");
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a shared database and Redis: DATABASE_URL and REDIS_URL, or Postgres on :5432 and Redis on :6379"]
async fn after_a_reset_no_instance_replays_an_answer_of_the_old_sale() {
    let (a, b) = two_instances("after_a_reset_no_instance_replays_an_answer_of_the_old_sale").await;
    let product = a.reset_with_one_product(5).await;
    let alice = a.login("alice").await;
    let first = Reply::read(a.post_order(&alice, "k", product, 1).await).await;
    let on_b = Reply::read(b.post_order(&alice, "k", product, 1).await).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert!(
        on_b.replayed && on_b.body == first.body,
        "B replays A's answer"
    );

    a.reset_with_one_product(5).await;
    let on_a = Reply::read(a.post_order(&alice, "k", product, 1).await).await;
    let b_before_it_reads_the_board =
        Reply::read(b.post_order(&alice, "k", product, 1).await).await;
    shared::refresh(&b.state).await.expect("B reads the board");
    let b_after = Reply::read(b.post_order(&alice, "k", product, 1).await).await;

    assert!(!on_a.replayed, "A forgot at once: {}", on_a.body);
    assert!(
        b_before_it_reads_the_board.replayed && b_before_it_reads_the_board.body == first.body,
        "until B reads the board, its memory still holds the old sale's answer"
    );
    assert!(!b_after.replayed, "then B forgets it too: {}", b_after.body);
    assert_ne!(b_after.body, first.body);
}

/// A loser's front door for one unit, its refusal "sold out".
fn loser_door<'a>(
    cached: &'a str,
    counter: &'a str,
    in_flight_key: Option<&'a str>,
    ttl: Duration,
) -> Door<'a> {
    Door {
        cached_key: Some(cached),
        counter_key: Some(counter),
        placing_key: None,
        in_flight_key,
        need: 1,
        refusal: Some("sold out"),
        ttl,
        now_ms: now_ms(),
    }
}

/// The front door's last step, on every key store (in-process, Redis, a
/// cluster): a loser's key whose first request is still in flight is let
/// through, not refused — that request may hold the last unit, and a stored
/// "sold out" would contradict its order (and this instance's memory would
/// keep the contradiction). An answer cached meanwhile wins over the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_door_does_not_refuse_a_key_whose_first_request_is_in_flight() {
    let app = spawn_app().await;
    let kv = &app.state.kv;
    let cached = key_layout::idempotency_cache(7, "k");
    let in_flight = key_layout::idempotency_in_flight(7, "k");
    let counter = key_layout::gate_stock(999_999);
    let ttl = Duration::from_secs(60);
    kv.set(&counter, "0", ttl).await.unwrap();
    kv.set(&in_flight, "the first request", ttl).await.unwrap();
    let asking = loser_door(&cached, &counter, Some(&in_flight), ttl);
    let not_asking = loser_door(&cached, &counter, None, ttl);

    let asked = kv.cached_or_short(&asking).await.unwrap();
    let stored_after_asking = kv.get(&cached).await.unwrap();
    let refusal_step = kv.store_refusal(&asking).await.unwrap();
    let not_asked = kv.cached_or_short(&not_asking).await.unwrap();
    let stored_without_asking = kv.get(&cached).await.unwrap();
    kv.set(&cached, "the order", ttl).await.unwrap();
    let after_the_order = kv.store_refusal(&not_asking).await.unwrap();

    assert_eq!(asked, DoorAnswer::Open, "the mark answers the repeat");
    assert_eq!(stored_after_asking, None, "nothing stored for it");
    assert_eq!(refusal_step, DoorAnswer::Open);
    assert_eq!(
        not_asked,
        DoorAnswer::Short,
        "a door that does not ask the mark"
    );
    assert_eq!(
        stored_without_asking.as_deref(),
        Some("sold out"),
        "stores a refusal for a key that may yet buy (the anomaly)"
    );
    assert_eq!(after_the_order, DoorAnswer::Cached("the order".into()));
    assert_eq!(kv.get(&cached).await.unwrap().as_deref(), Some("the order"));
}
