//! One deadline per request (`REQUEST_DEADLINE_MS`, docs/reliability.md): an
//! order stuck behind a lock in the database is answered at its deadline —
//! 503 `dependency_unavailable` naming the database, with `Retry-After` —
//! stores nothing, gives its gate unit and its in-flight mark back, and its
//! retry buys once the lock is gone. With the deadline off, the same order
//! is still waiting when its client gives up.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{
    Reply, TestApp, TestUser, assert_answered_database_unavailable, spawn_app_with,
};

/// How long the client waits for any answer here.
const CLIENT_PATIENCE: Duration = Duration::from_secs(4);

/// An app whose requests have `deadline` (zero: none), and one product of 5.
async fn app_with_deadline(deadline: Duration) -> (TestApp, i64) {
    let app = spawn_app_with(|settings| settings.request_deadline = deadline).await;
    let product = app.reset_with_one_product(5).await;
    (app, product)
}

/// A transaction of the test's own that holds the product's row (on
/// SQLite: the database's write lock) until it is rolled back.
async fn hold_the_stock_row(app: &TestApp, product: i64) -> flashguard::store::Tx {
    let mut holder = app.state.db.begin().await.expect("a transaction");
    let touch = format!("UPDATE products SET stock = stock WHERE id = {product}");
    sqlx::query(&touch)
        .execute(&mut *holder)
        .await
        .expect("the row is ours");
    holder
}

/// One order, answered within the client's patience or `None`.
async fn order_within_patience(
    app: &TestApp,
    buyer: &TestUser,
    key: &str,
    product: i64,
) -> Option<Reply> {
    let request = app.post_order_request(buyer, key, product, 1);
    let response = tokio::time::timeout(CLIENT_PATIENCE, request.send()).await;
    Some(Reply::read(response.ok()?.expect("a response")).await)
}

/// Answered within the client's patience: 503, the database, `Retry-After`.
fn answered_503_by_the_database(reply: Option<Reply>) {
    let reply = reply.expect("answered within the client's patience");
    assert_answered_database_unavailable(&reply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_stuck_on_the_database_is_answered_at_its_deadline_and_its_retry_buys() {
    let (app, product) = app_with_deadline(Duration::from_millis(1_000)).await;
    let alice = app.login("alice").await;
    let holder = hold_the_stock_row(&app, product).await;

    let stuck = order_within_patience(&app, &alice, "stuck", product).await;
    answered_503_by_the_database(stuck);

    holder.rollback().await.expect("the lock released");
    let mut retried = app.post_order_retrying(&alice, "stuck", product, 1).await;
    for _ in 0..50 {
        // The cut-off request's mark and unit come back in the background.
        if retried.status != StatusCode::CONFLICT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        retried = app.post_order_retrying(&alice, "stuck", product, 1).await;
    }
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.body);
    assert_eq!(app.order_count(product).await, 1);
    assert_eq!(app.audit().await["ok"], true, "{}", app.audit().await);
}

/// The anomaly the deadline prevents: without it, the order waits on the
/// lock for as long as the lock is held (here, past the client's patience).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_deadline_the_stuck_order_outwaits_its_client() {
    let (app, product) = app_with_deadline(Duration::ZERO).await;
    let alice = app.login("alice").await;
    let holder = hold_the_stock_row(&app, product).await;

    let stuck = order_within_patience(&app, &alice, "stuck", product).await;
    assert!(stuck.is_none(), "answered: {:?}", stuck.map(|r| r.body));

    holder.rollback().await.expect("the lock released");
    assert_eq!(app.audit().await["ok"], true, "{}", app.audit().await);
}

/// The database's own bound (`DB_STATEMENT_TIMEOUT_MS`), even with the
/// request deadline off: Postgres and MariaDB end the waiting statement, and
/// the order is answered 503 (the database) — SQLite has no such bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statement_timeout_ends_a_statement_stuck_on_a_lock() {
    let app = spawn_app_with(|settings| {
        settings.request_deadline = Duration::ZERO;
        settings.db_statement_timeout = Duration::from_millis(1_000);
    })
    .await;
    let product = app.reset_with_one_product(5).await;
    let alice = app.login("alice").await;
    let holder = hold_the_stock_row(&app, product).await;

    let stuck = order_within_patience(&app, &alice, "stuck", product).await;
    holder.rollback().await.expect("the lock released");
    if app.state.db.backend() == flashguard::store::Backend::Sqlite {
        assert!(stuck.is_none(), "SQLite has no statement timeout");
        return;
    }
    answered_503_by_the_database(stuck);
}
