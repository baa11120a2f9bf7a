//! The queries behind the audit (docs/design.md §5): each counts the rows that
//! break one invariant, so zero means the invariant holds.

use sqlx::FromRow;

use super::error::{QueryContext, StoreError};
use super::idempotency_keys::IN_PROGRESS;
use super::payment_events::APPLIED;
use super::{Conn, sql};
use crate::domain::{OrderStatus, PaymentStatus};

/// Stock bookkeeping of one product.
#[derive(Debug, FromRow)]
pub struct StockLine {
    pub id: i64,
    pub initial_stock: i64,
    pub stock: i64,
    /// Units in orders that are not CLOSED.
    pub sold: i64,
}

pub async fn stock_lines(mut conn: impl Conn) -> Result<Vec<StockLine>, StoreError> {
    sqlx::query_as::<_, StockLine>(&sql(
        conn.backend(),
        "SELECT p.id, p.initial_stock, p.stock,
                CAST(COALESCE((SELECT SUM(o.quantity) FROM orders o
                                WHERE o.product_id = p.id AND o.status <> $1), 0) AS BIGINT) AS sold
           FROM products p ORDER BY p.id",
    ))
    .bind(OrderStatus::Closed.as_str())
    .fetch_all(conn.executor())
    .await
    .context("audit::stock_lines")
}

async fn count(mut conn: impl Conn, query: &'static str, text: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar(&sql(conn.backend(), text))
        .fetch_one(conn.executor())
        .await
        .context(query)
}

/// Orders beyond the first for one (user, idempotency key).
pub async fn duplicate_orders(conn: impl Conn) -> Result<i64, StoreError> {
    count(
        conn,
        "audit::duplicate_orders",
        "SELECT CAST(COALESCE(SUM(n - 1), 0) AS BIGINT) FROM
           (SELECT COUNT(*) AS n FROM orders GROUP BY user_id, idempotency_key
            HAVING COUNT(*) > 1) AS duplicated",
    )
    .await
}

/// Keys still in progress whose lease ended before `now_ms`.
pub async fn stale_keys(mut conn: impl Conn, now_ms: i64) -> Result<i64, StoreError> {
    let statement = format!(
        "SELECT COUNT(*) FROM idempotency_keys WHERE state = '{IN_PROGRESS}' AND lease_expires_at < $1"
    );
    sqlx::query_scalar(&sql(conn.backend(), &statement))
        .bind(now_ms)
        .fetch_one(conn.executor())
        .await
        .context("audit::stale_keys")
}

/// A payment the provider charged: one of its SUCCEEDED events was applied.
fn charged() -> String {
    let succeeded = PaymentStatus::Succeeded;
    format!(
        "EXISTS (SELECT 1 FROM payment_events e
                  WHERE e.payment_no = p.payment_no AND e.status = '{succeeded}'
                    AND e.result = '{APPLIED}')"
    )
}

/// Orders with more than one charged payment.
pub async fn doubly_charged_orders(conn: impl Conn) -> Result<i64, StoreError> {
    let charged = charged();
    let statement = format!(
        "SELECT COUNT(*) FROM (SELECT p.order_no FROM payments p WHERE {charged}
                               GROUP BY p.order_no HAVING COUNT(*) > 1) AS doubled"
    );
    count(conn, "audit::doubly_charged_orders", &statement).await
}

/// PAID orders that do not have exactly one charged payment.
pub async fn paid_without_one_charge(conn: impl Conn) -> Result<i64, StoreError> {
    let (paid, charged) = (OrderStatus::Paid, charged());
    let statement = format!(
        "SELECT COUNT(*) FROM orders o WHERE o.status = '{paid}'
           AND (SELECT COUNT(*) FROM payments p WHERE p.order_no = o.order_no AND {charged}) <> 1"
    );
    count(conn, "audit::paid_without_one_charge", &statement).await
}

/// Charged payments whose order is no longer PAID (and no refund was flagged).
pub async fn charged_but_moved_back(conn: impl Conn) -> Result<i64, StoreError> {
    let (paid, charged) = (OrderStatus::Paid, charged());
    let statement = format!(
        "SELECT COUNT(*) FROM payments p JOIN orders o ON o.order_no = p.order_no
          WHERE {charged} AND o.status <> '{paid}' AND p.needs_refund = FALSE"
    );
    count(conn, "audit::charged_but_moved_back", &statement).await
}

/// Provider events applied more than once.
pub async fn events_applied_twice(conn: impl Conn) -> Result<i64, StoreError> {
    let statement = format!(
        "SELECT COUNT(*) FROM (SELECT event_id FROM payment_events WHERE result = '{APPLIED}'
                               GROUP BY event_id HAVING COUNT(*) > 1) AS repeated"
    );
    count(conn, "audit::events_applied_twice", &statement).await
}

/// Rewards beyond the first for one existing order (a reward that arrives for an
/// order a reset or the lab already removed is not a second reward).
pub async fn extra_rewards(conn: impl Conn) -> Result<i64, StoreError> {
    count(
        conn,
        "audit::extra_rewards",
        "SELECT CAST(COALESCE(SUM(n - 1), 0) AS BIGINT) FROM
           (SELECT COUNT(*) AS n FROM rewards r JOIN orders o ON o.order_no = r.order_no
             GROUP BY r.order_no HAVING COUNT(*) > 1) AS doubled",
    )
    .await
}

/// PAID orders, paid at or before `settled_before_ms`, without exactly one reward
/// (missing, or more than one).
pub async fn paid_without_one_reward(
    mut conn: impl Conn,
    settled_before_ms: i64,
) -> Result<i64, StoreError> {
    let paid = OrderStatus::Paid;
    let statement = format!(
        "SELECT COUNT(*) FROM orders o
          WHERE o.status = '{paid}' AND o.updated_at <= $1
            AND (SELECT COUNT(*) FROM rewards r WHERE r.order_no = o.order_no) <> 1"
    );
    sqlx::query_scalar(&sql(conn.backend(), &statement))
        .bind(settled_before_ms)
        .fetch_one(conn.executor())
        .await
        .context("audit::paid_without_one_reward")
}

/// Pairs of orders of one user for one product, under different keys, created
/// within `window_ms` of each other: what a double click without `popup_key` leaves.
pub async fn suspected_double_submits(
    mut conn: impl Conn,
    window_ms: i64,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(&sql(
        conn.backend(),
        "SELECT COUNT(*) FROM orders a JOIN orders b
             ON b.user_id = a.user_id AND b.product_id = a.product_id AND b.id > a.id
          WHERE b.created_at - a.created_at <= $1 AND b.idempotency_key <> a.idempotency_key",
    ))
    .bind(window_ms)
    .fetch_one(conn.executor())
    .await
    .context("audit::suspected_double_submits")
}

/// Orders whose amount is not the product's price times the quantity, or not
/// positive (an overflow, a price changed under a live order).
pub async fn wrong_amounts(conn: impl Conn) -> Result<i64, StoreError> {
    count(
        conn,
        "audit::wrong_amounts",
        "SELECT COUNT(*) FROM orders o JOIN products p ON p.id = o.product_id
          WHERE o.amount_cents <> p.price_cents * o.quantity OR o.amount_cents <= 0",
    )
    .await
}
