//! Payments: one row per charge attempt.

use serde::Serialize;
use sqlx::FromRow;

use super::db::Backend;
use super::error::{QueryContext, StoreError};
use super::now_ms;
use super::{Conn, sql};
use crate::domain::{Channel, PaymentStatus, Transition};

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Payment {
    pub payment_no: String,
    pub order_no: String,
    pub user_id: i64,
    pub amount_cents: i64,
    #[sqlx(try_from = "String")]
    pub status: PaymentStatus,
    pub provider_txn_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub channel: Channel,
    pub created_at: i64,
}

const PAYMENT_COLUMNS: &str =
    "payment_no, order_no, user_id, amount_cents, status, provider_txn_id, channel, created_at";

#[derive(Debug)]
pub struct NewPayment<'a> {
    pub order_no: &'a str,
    pub user_id: i64,
    pub amount_cents: i64,
    pub channel: Channel,
    /// Covered by the unique index on active payments (`unique_index` on).
    pub guarded: bool,
}

fn new_payment_no() -> String {
    format!("PAY{}", uuid::Uuid::now_v7().simple())
}

/// Inserts the payment and reads it back (`RETURNING` on Postgres and SQLite;
/// MySQL has none, so by its number).
pub async fn insert(mut conn: impl Conn, payment: &NewPayment<'_>) -> Result<Payment, StoreError> {
    let now = now_ms();
    let number = new_payment_no();
    let backend = conn.backend();
    let returning = match backend {
        Backend::Postgres | Backend::Sqlite => format!("RETURNING {PAYMENT_COLUMNS}"),
        Backend::Mysql => String::new(),
    };
    let statement = format!(
        "INSERT INTO payments (payment_no, order_no, user_id, amount_cents, status, guarded,
                               channel, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) {returning}"
    );
    let text = sql(backend, &statement);
    let query = sqlx::query_as::<_, Payment>(&text)
        .bind(&number)
        .bind(payment.order_no)
        .bind(payment.user_id)
        .bind(payment.amount_cents)
        .bind(PaymentStatus::Processing.as_str())
        .bind(payment.guarded)
        .bind(payment.channel.as_str())
        .bind(now)
        .bind(now);
    let inserted = query
        .fetch_optional(conn.executor())
        .await
        .context("payments::insert")?;
    let inserted = match inserted {
        Some(row) => Some(row),
        None => find(conn, &number).await?,
    };
    inserted.ok_or(StoreError {
        query: "payments::insert",
        source: sqlx::Error::RowNotFound,
    })
}

/// Records the provider's transaction id, unless one is recorded already.
pub async fn set_provider_txn_id(
    mut conn: impl Conn,
    payment_no: &str,
    txn_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(&sql(conn.backend(), "UPDATE payments SET provider_txn_id = $1 WHERE payment_no = $2 AND provider_txn_id IS NULL"))
    .bind(txn_id)
    .bind(payment_no)
    .execute(conn.executor())
    .await
    .context("payments::set_provider_txn_id")?;
    Ok(())
}

/// A success that arrived for an order that can no longer be paid: money to return.
pub async fn flag_for_refund(mut conn: impl Conn, payment_no: &str) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        "UPDATE payments SET needs_refund = $1 WHERE payment_no = $2",
    ))
    .bind(true)
    .bind(payment_no)
    .execute(conn.executor())
    .await
    .context("payments::flag_for_refund")?;
    Ok(())
}

/// The conditional update of the `state_check` defense (see `orders::move_status`).
pub async fn move_status(
    mut conn: impl Conn,
    payment_no: &str,
    transition: Transition<PaymentStatus>,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(&sql(
        conn.backend(),
        "UPDATE payments SET status = $1, updated_at = $2 WHERE payment_no = $3 AND status = $4",
    ))
    .bind(transition.to.as_str())
    .bind(now_ms())
    .bind(payment_no)
    .bind(transition.from.as_str())
    .execute(conn.executor())
    .await
    .context("payments::move_status")?;
    Ok(updated.rows_affected() > 0)
}

/// The unguarded write (the lab's `state_check` off).
pub async fn overwrite_status(
    mut conn: impl Conn,
    payment_no: &str,
    status: PaymentStatus,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(&sql(
        conn.backend(),
        "UPDATE payments SET status = $1, updated_at = $2 WHERE payment_no = $3",
    ))
    .bind(status.as_str())
    .bind(now_ms())
    .bind(payment_no)
    .execute(conn.executor())
    .await
    .context("payments::overwrite_status")?;
    Ok(updated.rows_affected() > 0)
}

pub async fn find(mut conn: impl Conn, payment_no: &str) -> Result<Option<Payment>, StoreError> {
    sqlx::query_as::<_, Payment>(&sql(
        conn.backend(),
        &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_no = $1"),
    ))
    .bind(payment_no)
    .fetch_optional(conn.executor())
    .await
    .context("payments::find")
}

/// The latest payment of the order that is not FAILED (PROCESSING or SUCCEEDED).
pub async fn find_active(
    mut conn: impl Conn,
    order_no: &str,
) -> Result<Option<Payment>, StoreError> {
    sqlx::query_as::<_, Payment>(&sql(
        conn.backend(),
        &format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments
          WHERE order_no = $1 AND status <> $2 ORDER BY id DESC LIMIT 1"
        ),
    ))
    .bind(order_no)
    .bind(PaymentStatus::Failed.as_str())
    .fetch_optional(conn.executor())
    .await
    .context("payments::find_active")
}

/// The succeeded payment of a paid order (the first, if a double charge made several).
pub async fn find_succeeded(
    mut conn: impl Conn,
    order_no: &str,
) -> Result<Option<Payment>, StoreError> {
    sqlx::query_as::<_, Payment>(&sql(
        conn.backend(),
        &format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments
          WHERE order_no = $1 AND status = $2 ORDER BY id LIMIT 1"
        ),
    ))
    .bind(order_no)
    .bind(PaymentStatus::Succeeded.as_str())
    .fetch_optional(conn.executor())
    .await
    .context("payments::find_succeeded")
}

pub async fn list_for_order(
    mut conn: impl Conn,
    order_no: &str,
) -> Result<Vec<Payment>, StoreError> {
    sqlx::query_as::<_, Payment>(&sql(
        conn.backend(),
        &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_no = $1 ORDER BY id"),
    ))
    .bind(order_no)
    .fetch_all(conn.executor())
    .await
    .context("payments::list_for_order")
}

/// Payments still PROCESSING that were created before `cutoff` (epoch ms):
/// the ones whose provider is asked (主动查单), those asked least recently
/// first (never asked: oldest first), at most `limit`.
pub async fn processing_before(
    mut conn: impl Conn,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<Payment>, StoreError> {
    sqlx::query_as::<_, Payment>(&sql(
        conn.backend(),
        &format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments
          WHERE status = $1 AND created_at < $2
          ORDER BY COALESCE(queried_at, 0), created_at LIMIT $3"
        ),
    ))
    .bind(PaymentStatus::Processing.as_str())
    .bind(cutoff)
    .bind(limit)
    .fetch_all(conn.executor())
    .await
    .context("payments::processing_before")
}

/// Notes that the provider was asked about `payment_no` at `now` (epoch ms):
/// the next round asks about the others first.
pub async fn mark_queried(
    mut conn: impl Conn,
    payment_no: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        "UPDATE payments SET queried_at = $1 WHERE payment_no = $2",
    ))
    .bind(now)
    .bind(payment_no)
    .execute(conn.executor())
    .await
    .context("payments::mark_queried")?;
    Ok(())
}

/// Every payment created in `[from, to)` (epoch ms): a day's side of 对账.
pub async fn created_between(
    mut conn: impl Conn,
    from: i64,
    to: i64,
) -> Result<Vec<Payment>, StoreError> {
    sqlx::query_as::<_, Payment>(&sql(
        conn.backend(),
        &format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments
          WHERE created_at >= $1 AND created_at < $2 ORDER BY created_at"
        ),
    ))
    .bind(from)
    .bind(to)
    .fetch_all(conn.executor())
    .await
    .context("payments::created_between")
}
