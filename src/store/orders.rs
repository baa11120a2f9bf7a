//! Orders: the rows the flash sale creates, and how they are read back.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::{Any, FromRow, Transaction};

use super::{Db, now_ms};
use crate::domain::{OrderNo, order_status};

#[derive(Debug, Clone, FromRow)]
pub struct Order {
    pub order_no: String,
    pub user_id: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub amount_cents: i64,
    pub status: String,
    pub idempotency_key: String,
    pub created_at: i64,
}

/// The order as the API shows it (the same bytes for the original and every replay).
#[derive(Debug, Serialize)]
pub struct OrderView<'a> {
    pub order_no: &'a str,
    pub product_id: i64,
    pub quantity: i64,
    pub amount_cents: i64,
    pub status: &'a str,
    pub idempotency_key: &'a str,
    pub created_at: String,
}

impl Order {
    pub fn view(&self) -> OrderView<'_> {
        OrderView {
            order_no: &self.order_no,
            product_id: self.product_id,
            quantity: self.quantity,
            amount_cents: self.amount_cents,
            status: &self.status,
            idempotency_key: &self.idempotency_key,
            created_at: rfc3339(self.created_at),
        }
    }
}

fn rfc3339(epoch_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(epoch_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A new order, before it is inserted.
#[derive(Debug)]
pub struct NewOrder<'a> {
    pub user_id: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub amount_cents: i64,
    pub idempotency_key: &'a str,
    /// Covered by the unique index (the `unique_index` defense is on).
    pub guarded: bool,
}

const ORDER_COLUMNS: &str =
    "order_no, user_id, product_id, quantity, amount_cents, status, idempotency_key, created_at";

pub async fn insert(
    tx: &mut Transaction<'static, Any>,
    order: &NewOrder<'_>,
) -> Result<Order, sqlx::Error> {
    let now = now_ms();
    sqlx::query_as::<_, Order>(&format!(
        "INSERT INTO orders (order_no, user_id, product_id, quantity, amount_cents, status,
                             idempotency_key, guarded, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
         RETURNING {ORDER_COLUMNS}"
    ))
    .bind(OrderNo::generate().as_str())
    .bind(order.user_id)
    .bind(order.product_id)
    .bind(order.quantity)
    .bind(order.amount_cents)
    .bind(order_status::PENDING_PAYMENT)
    .bind(order.idempotency_key)
    .bind(order.guarded)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
}

/// The order that holds (user, key) under the unique index.
pub async fn find_guarded_by_key(
    db: &Db,
    user_id: i64,
    idempotency_key: &str,
) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query_as::<_, Order>(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders
          WHERE user_id = $1 AND idempotency_key = $2 AND guarded = $3"
    ))
    .bind(user_id)
    .bind(idempotency_key)
    .bind(true)
    .fetch_optional(db.pool())
    .await
}

/// The first order for (user, key), guarded or not.
pub async fn find_by_key(
    db: &Db,
    user_id: i64,
    idempotency_key: &str,
) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query_as::<_, Order>(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders
          WHERE user_id = $1 AND idempotency_key = $2 ORDER BY id LIMIT 1"
    ))
    .bind(user_id)
    .bind(idempotency_key)
    .fetch_optional(db.pool())
    .await
}

/// An order of `user_id`; another user's order is simply not found.
pub async fn find_for_user(
    db: &Db,
    user_id: i64,
    order_no: &OrderNo,
) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query_as::<_, Order>(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE order_no = $1 AND user_id = $2"
    ))
    .bind(order_no.as_str())
    .bind(user_id)
    .fetch_optional(db.pool())
    .await
}

pub async fn list_for_user(db: &Db, user_id: i64) -> Result<Vec<Order>, sqlx::Error> {
    sqlx::query_as::<_, Order>(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT 100"
    ))
    .bind(user_id)
    .fetch_all(db.pool())
    .await
}
