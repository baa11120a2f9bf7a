//! Payments: one row per charge attempt.

use serde::Serialize;
use sqlx::FromRow;

use super::{Db, now_ms};

pub const PROCESSING: &str = "PROCESSING";
pub const SUCCEEDED: &str = "SUCCEEDED";
pub const FAILED: &str = "FAILED";

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Payment {
    pub payment_no: String,
    pub order_no: String,
    pub user_id: i64,
    pub amount_cents: i64,
    pub status: String,
    pub provider_txn_id: Option<String>,
}

const PAYMENT_COLUMNS: &str =
    "payment_no, order_no, user_id, amount_cents, status, provider_txn_id";

#[derive(Debug)]
pub struct NewPayment<'a> {
    pub order_no: &'a str,
    pub user_id: i64,
    pub amount_cents: i64,
    /// Covered by the unique index on active payments (`unique_index` on).
    pub guarded: bool,
}

pub fn new_payment_no() -> String {
    format!("PAY{}", uuid::Uuid::now_v7().simple())
}

pub async fn insert(db: &Db, payment: &NewPayment<'_>) -> Result<Payment, sqlx::Error> {
    let now = now_ms();
    sqlx::query_as::<_, Payment>(&format!(
        "INSERT INTO payments (payment_no, order_no, user_id, amount_cents, status, guarded,
                               created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         RETURNING {PAYMENT_COLUMNS}"
    ))
    .bind(new_payment_no())
    .bind(payment.order_no)
    .bind(payment.user_id)
    .bind(payment.amount_cents)
    .bind(PROCESSING)
    .bind(payment.guarded)
    .bind(now)
    .fetch_one(db.pool())
    .await
}

pub async fn set_provider_txn_id(
    db: &Db,
    payment_no: &str,
    txn_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments SET provider_txn_id = $1 WHERE payment_no = $2 AND provider_txn_id IS NULL",
    )
    .bind(txn_id)
    .bind(payment_no)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn find(db: &Db, payment_no: &str) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as::<_, Payment>(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE payment_no = $1"
    ))
    .bind(payment_no)
    .fetch_optional(db.pool())
    .await
}

/// The latest payment of the order that is not FAILED (PROCESSING or SUCCEEDED).
pub async fn find_active(db: &Db, order_no: &str) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as::<_, Payment>(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments
          WHERE order_no = $1 AND status <> $2 ORDER BY id DESC LIMIT 1"
    ))
    .bind(order_no)
    .bind(FAILED)
    .fetch_optional(db.pool())
    .await
}

/// The succeeded payment of a paid order (the first, if a double charge made several).
pub async fn find_succeeded(db: &Db, order_no: &str) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as::<_, Payment>(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments
          WHERE order_no = $1 AND status = $2 ORDER BY id LIMIT 1"
    ))
    .bind(order_no)
    .bind(SUCCEEDED)
    .fetch_optional(db.pool())
    .await
}

pub async fn list_for_order(db: &Db, order_no: &str) -> Result<Vec<Payment>, sqlx::Error> {
    sqlx::query_as::<_, Payment>(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_no = $1 ORDER BY id"
    ))
    .bind(order_no)
    .fetch_all(db.pool())
    .await
}
