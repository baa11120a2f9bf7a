//! The idempotency_key defense (on): the key semantics of docs/design.md §4, one by one.

use std::sync::Arc;

use crate::helpers::{Reply, concurrently, spawn_app, spawn_app_with};
use flashguard::defenses::idempotency_key;
use flashguard::store::now_ms;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_identical_requests_make_one_order() {
    let app = Arc::new(spawn_app().await);
    let alice = app.login("alice").await;

    let replies = concurrently(50, |_| {
        let (app, alice) = (app.clone(), alice.clone());
        async move { Reply::read(app.post_order(&alice, "same-key", 1, 1).await).await }
    })
    .await;

    assert_eq!(app.order_count(1).await, 1);
    assert_eq!(app.stock(1).await, 99);
    let created: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert!(!created.is_empty());
    for reply in &replies {
        match reply.status {
            StatusCode::CREATED => assert_eq!(reply.body, created[0].body, "one body for all"),
            StatusCode::CONFLICT => {
                assert_eq!(reply.code().as_deref(), Some("request_in_progress"));
                assert_eq!(reply.retry_after.as_deref(), Some("1"));
                assert_eq!(reply.defense.as_deref(), Some("idempotency_key"));
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    let later = Reply::read(app.post_order(&alice, "same-key", 1, 1).await).await;
    assert_eq!(later.status, StatusCode::CREATED);
    assert_eq!(later.body, created[0].body, "byte for byte");
    assert!(later.replayed);
    assert_eq!(later.defense.as_deref(), Some("idempotency_key"));
    let audit = app.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_body_is_422() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;

    let first = Reply::read(app.post_order(&alice, "k", 1, 1).await).await;
    let other = Reply::read(app.post_order(&alice, "k", 1, 2).await).await;
    let reordered = app
        .post_order_raw(&alice, Some("k"), r#"{ "quantity": 1, "product_id": 1 }"#)
        .await;

    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.code().as_deref(), Some("idempotency_key_reused"));
    let reordered = Reply::read(reordered).await;
    assert_eq!(
        reordered.status,
        StatusCode::CREATED,
        "same JSON, other field order"
    );
    assert!(reordered.replayed);
    assert_eq!(app.order_count(1).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_scoped_per_user() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;

    let for_alice = Reply::read(app.post_order(&alice, "shared", 1, 1).await).await;
    let for_bob = Reply::read(app.post_order(&bob, "shared", 1, 1).await).await;

    assert_eq!(for_alice.status, StatusCode::CREATED);
    assert_eq!(for_bob.status, StatusCode::CREATED);
    assert!(!for_bob.replayed);
    assert_ne!(for_alice.json()["order_no"], for_bob.json()["order_no"]);
    assert_eq!(app.order_count(1).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_is_an_outcome_stored_and_replayed() {
    let app = spawn_app().await;
    let product = app.reset_with_one_product(0).await;
    let alice = app.login("alice").await;

    let first = Reply::read(app.post_order(&alice, "k", product, 1).await).await;
    let again = Reply::read(app.post_order(&alice, "k", product, 1).await).await;

    assert_eq!(first.status, StatusCode::CONFLICT);
    assert_eq!(first.code().as_deref(), Some("sold_out"));
    assert_eq!(
        first.content_type.as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.replayed);
    assert_eq!(again.body, first.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_come_from_the_database_when_the_key_store_is_empty() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let first = Reply::read(app.post_order(&alice, "k", 1, 1).await).await;

    app.state.kv.clear_namespace().await.unwrap();
    app.state.keys.forget_local_answers(); // as an instance that never saw it
    let again = Reply::read(app.post_order(&alice, "k", 1, 1).await).await;

    assert_eq!(again.status, StatusCode::CREATED);
    assert!(again.replayed);
    assert_eq!(again.body, first.body);
    assert_eq!(app.order_count(1).await, 1);
}

/// Without its cached answer, a key reused with another payload is still
/// refused: the claim in the order's transaction finds the committed row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_payload_is_422_when_the_key_store_is_empty() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let first = Reply::read(app.post_order(&alice, "k", 1, 1).await).await;
    assert_eq!(first.status, StatusCode::CREATED);

    app.state.kv.clear_namespace().await.unwrap();
    app.state.keys.forget_local_answers(); // as an instance that never saw it
    let other = Reply::read(app.post_order(&alice, "k", 1, 2).await).await;

    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.body
    );
    assert_eq!(app.order_count(1).await, 1);
    assert_eq!(app.audit().await["ok"], true);
}

/// Puts a key row in progress, as a request that is still running would.
async fn key_in_progress(
    app: &crate::helpers::TestApp,
    user_id: i64,
    key: &str,
    lease_expires_at: i64,
) {
    let fingerprint = idempotency_key::fingerprint(
        "POST",
        "/api/orders",
        &serde_json::json!({ "product_id": 1, "quantity": 1 }),
    );
    sqlx::query(
        &app.sql("INSERT INTO idempotency_keys
             (user_id, idem_key, fingerprint, state, owner, lease_expires_at, created_at, expires_at)
         VALUES ($1, $2, $3, 'in_progress', 'someone-else', $4, $5, $6)"),
    )
    .bind(user_id)
    .bind(key)
    .bind(fingerprint)
    .bind(lease_expires_at)
    .bind(now_ms())
    .bind(now_ms() + 86_400_000)
    .execute(app.state.db.pool())
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_while_the_first_runs_is_409_with_retry_after() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    key_in_progress(&app, alice.user_id, "busy", now_ms() + 60_000).await;

    let reply = Reply::read(app.post_order(&alice, "busy", 1, 1).await).await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.code().as_deref(), Some("request_in_progress"));
    assert!(reply.retry_after.is_some());
    assert_eq!(app.order_count(1).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_by_the_retry() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    key_in_progress(&app, alice.user_id, "crashed", now_ms() - 1).await;
    assert_eq!(
        crate::helpers::check(&app.audit().await, "no_stale_key_in_progress")["ok"],
        false
    );

    let reply = Reply::read(app.post_order(&alice, "crashed", 1, 1).await).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(app.order_count(1).await, 1);
    assert_eq!(app.audit().await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_its_retention_is_forgotten_and_swept() {
    let app = spawn_app_with(|settings| {
        settings.idempotency.retention = std::time::Duration::from_millis(1)
    })
    .await;
    let alice = app.login("alice").await;
    let first = Reply::read(app.post_order(&alice, "old", 1, 1).await).await;
    app.state.kv.clear_namespace().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let later = Reply::read(app.post_order(&alice, "old", 1, 1).await).await;
    let other = Reply::read(app.post_order(&alice, "other", 1, 1).await).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let swept = app.state.keys.sweep_expired().await.unwrap();

    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(later.status, StatusCode::CREATED);
    assert!(!later.replayed, "the stored answer has expired");
    assert_eq!(
        later.json()["order_no"],
        first.json()["order_no"],
        "the unique index answers with the order the key already made"
    );
    assert_eq!(later.defense.as_deref(), Some("unique_index"));
    assert_eq!(other.status, StatusCode::CREATED);
    assert!(swept >= 2, "expired keys are removed, {swept} were");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
}
