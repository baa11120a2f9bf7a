//! Orders: the rows the flash sale creates, how they are read back, and how their
//! status moves.

use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::{Any, Executor, FromRow};

use super::db::Backend;
use super::error::{QueryContext, StoreError};
use super::kv::claim_member;
use super::now_ms;
use crate::domain::{OrderNo, OrderStatus, Transition};

#[derive(Debug, Clone, FromRow)]
pub struct Order {
    pub order_no: String,
    pub user_id: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub amount_cents: i64,
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    pub idempotency_key: String,
    pub created_at: i64,
}

/// The order as the API shows it (the same bytes for the original and every replay).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderView<'a> {
    pub order_no: &'a str,
    pub product_id: i64,
    pub quantity: i64,
    pub amount_cents: i64,
    pub status: OrderStatus,
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
            status: self.status,
            idempotency_key: &self.idempotency_key,
            created_at: rfc3339(self.created_at),
        }
    }
}

pub fn rfc3339(epoch_ms: i64) -> String {
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

pub async fn insert<'e>(
    executor: impl Executor<'e, Database = Any>,
    order: &NewOrder<'_>,
) -> Result<Order, StoreError> {
    insert_query(order, InsertKind::Plain)
        .fetch_one(executor)
        .await
        .context("orders::insert")
}

/// Like [`insert`], but a row the unique index refuses is skipped instead of
/// failing the statement (`None`), so a transaction that places several
/// orders goes on (group commit). The conflict target names the partial
/// unique index as each backend wrote it.
pub async fn insert_unless_duplicate<'e>(
    executor: impl Executor<'e, Database = Any>,
    backend: Backend,
    order: &NewOrder<'_>,
) -> Result<Option<Order>, StoreError> {
    let skipping = match backend {
        Backend::Postgres => InsertKind::SkipDuplicatePostgres,
        Backend::Sqlite => InsertKind::SkipDuplicateSqlite,
    };
    insert_query(order, skipping)
        .fetch_optional(executor)
        .await
        .context("orders::insert_unless_duplicate")
}

/// The order's INSERT: plain, and skipping a duplicate on each backend.
static INSERT: LazyLock<[String; 3]> = LazyLock::new(|| {
    let on_conflict = "ON CONFLICT (user_id, idempotency_key) WHERE";
    [
        String::new(),
        format!("{on_conflict} guarded DO NOTHING"),
        format!("{on_conflict} guarded = 1 DO NOTHING"),
    ]
    .map(|clause| {
        format!(
            "INSERT INTO orders (order_no, user_id, product_id, quantity, amount_cents, status,
                                 idempotency_key, guarded, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             {clause}
             RETURNING {ORDER_COLUMNS}"
        )
    })
});

/// Which INSERT of [`INSERT`].
#[derive(Debug, Clone, Copy)]
enum InsertKind {
    Plain = 0,
    SkipDuplicatePostgres = 1,
    SkipDuplicateSqlite = 2,
}

/// Many orders in one statement (group commit, docs/design.md §2.3); a row the
/// unique index refuses is skipped. For each order given, in the same order:
/// the inserted row, or `None` for a duplicate.
pub async fn insert_many_unless_duplicate<'e>(
    executor: impl Executor<'e, Database = Any>,
    backend: Backend,
    orders: &[NewOrder<'_>],
) -> Result<Vec<Option<Order>>, StoreError> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let guard = match backend {
        Backend::Postgres => "guarded",
        Backend::Sqlite => "guarded = 1",
    };
    let sql = format!(
        "INSERT INTO orders (order_no, user_id, product_id, quantity, amount_cents, status,
                             idempotency_key, guarded, created_at, updated_at)
         VALUES {}
         ON CONFLICT (user_id, idempotency_key) WHERE {guard} DO NOTHING
         RETURNING {ORDER_COLUMNS}",
        super::values_rows(orders.len(), 10)
    );
    let now = now_ms();
    let numbers: Vec<String> = orders
        .iter()
        .map(|_| OrderNo::generate().as_str().to_string())
        .collect();
    let mut query = sqlx::query_as::<_, Order>(&sql);
    for (order, number) in orders.iter().zip(&numbers) {
        query = bind_order(query, order, number.clone(), now).bind(now);
    }
    let inserted = query
        .fetch_all(executor)
        .await
        .context("orders::insert_many_unless_duplicate")?;
    Ok(in_given_order(&numbers, inserted))
}

/// The inserted rows lined up with the order numbers given (`None`: skipped).
fn in_given_order(numbers: &[String], mut inserted: Vec<Order>) -> Vec<Option<Order>> {
    numbers
        .iter()
        .map(|number| {
            let at = inserted
                .iter()
                .position(|order| &order.order_no == number)?;
            Some(inserted.swap_remove(at))
        })
        .collect()
}

/// Binds one order's row: number, buyer, product, amounts, status, key, time.
fn bind_order<'q>(
    query: sqlx::query::QueryAs<'q, Any, Order, sqlx::any::AnyArguments<'q>>,
    order: &NewOrder<'q>,
    number: String,
    now: i64,
) -> sqlx::query::QueryAs<'q, Any, Order, sqlx::any::AnyArguments<'q>> {
    query
        .bind(number)
        .bind(order.user_id)
        .bind(order.product_id)
        .bind(order.quantity)
        .bind(order.amount_cents)
        .bind(OrderStatus::PendingPayment.as_str())
        .bind(order.idempotency_key)
        .bind(order.guarded)
        .bind(now)
}

/// The INSERT of this kind, with the order bound.
fn insert_query<'q>(
    order: &NewOrder<'q>,
    kind: InsertKind,
) -> sqlx::query::QueryAs<'q, Any, Order, sqlx::any::AnyArguments<'q>> {
    let query = sqlx::query_as::<_, Order>(INSERT[kind as usize].as_str());
    bind_order(
        query,
        order,
        OrderNo::generate().as_str().to_string(),
        now_ms(),
    )
}

/// The order that holds (user, key) under the unique index.
pub async fn find_guarded_by_key<'e>(
    executor: impl Executor<'e, Database = Any>,
    user_id: i64,
    idempotency_key: &str,
) -> Result<Option<Order>, StoreError> {
    sqlx::query_as::<_, Order>(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders
          WHERE user_id = $1 AND idempotency_key = $2 AND guarded = $3"
    ))
    .bind(user_id)
    .bind(idempotency_key)
    .bind(true)
    .fetch_optional(executor)
    .await
    .context("orders::find_guarded_by_key")
}

/// The first order for (user, key), guarded or not.
pub async fn find_by_key<'e>(
    executor: impl Executor<'e, Database = Any>,
    user_id: i64,
    idempotency_key: &str,
) -> Result<Option<Order>, StoreError> {
    sqlx::query_as::<_, Order>(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders
          WHERE user_id = $1 AND idempotency_key = $2 ORDER BY id LIMIT 1"
    ))
    .bind(user_id)
    .bind(idempotency_key)
    .fetch_optional(executor)
    .await
    .context("orders::find_by_key")
}

/// An order of `user_id`; another user's order is simply not found.
pub async fn find_for_user<'e>(
    executor: impl Executor<'e, Database = Any>,
    user_id: i64,
    order_no: &OrderNo,
) -> Result<Option<Order>, StoreError> {
    sqlx::query_as::<_, Order>(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE order_no = $1 AND user_id = $2"
    ))
    .bind(order_no.as_str())
    .bind(user_id)
    .fetch_optional(executor)
    .await
    .context("orders::find_for_user")
}

pub async fn list_for_user<'e>(
    executor: impl Executor<'e, Database = Any>,
    user_id: i64,
) -> Result<Vec<Order>, StoreError> {
    sqlx::query_as::<_, Order>(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT 100"
    ))
    .bind(user_id)
    .fetch_all(executor)
    .await
    .context("orders::list_for_user")
}

// [lesson orders::move_status]
/// The conditional update of the `state_check` defense: moves the order along
/// `transition` only if it is still in `transition.from`. Returns whether it moved.
pub async fn move_status<'e>(
    executor: impl Executor<'e, Database = Any>,
    order_no: &str,
    transition: Transition<OrderStatus>,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE orders SET status = $1, updated_at = $2 WHERE order_no = $3 AND status = $4",
    )
    .bind(transition.to.as_str())
    .bind(now_ms())
    .bind(order_no)
    .bind(transition.from.as_str())
    .execute(executor)
    .await
    .context("orders::move_status")?;
    Ok(updated.rows_affected() > 0)
}
// [/lesson]

/// The unguarded write (the lab's `state_check` off): sets the status whatever it was.
pub async fn overwrite_status<'e>(
    executor: impl Executor<'e, Database = Any>,
    order_no: &str,
    status: OrderStatus,
) -> Result<bool, StoreError> {
    let updated = sqlx::query("UPDATE orders SET status = $1, updated_at = $2 WHERE order_no = $3")
        .bind(status.as_str())
        .bind(now_ms())
        .bind(order_no)
        .execute(executor)
        .await
        .context("orders::overwrite_status")?;
    Ok(updated.rows_affected() > 0)
}

/// An unpaid order, as the closing job needs it.
#[derive(Debug, FromRow)]
pub struct Unpaid {
    pub order_no: String,
    pub product_id: i64,
    pub quantity: i64,
}

/// Orders still awaiting payment that were created at or before `cutoff_ms`.
pub async fn unpaid_since<'e>(
    executor: impl Executor<'e, Database = Any>,
    cutoff_ms: i64,
    limit: i64,
) -> Result<Vec<Unpaid>, StoreError> {
    sqlx::query_as::<_, Unpaid>(
        "SELECT order_no, product_id, quantity FROM orders
          WHERE status = $1 AND created_at <= $2 ORDER BY id LIMIT $3",
    )
    .bind(OrderStatus::PendingPayment.as_str())
    .bind(cutoff_ms)
    .bind(limit)
    .fetch_all(executor)
    .await
    .context("orders::unpaid_since")
}

/// The product's stock, and `"<quantity>|<user_id>:<idempotency key>"` of its
/// orders created at or after `since_ms` (the gate claims that already became
/// orders), read in **one statement**, so from one snapshot: read apart, an
/// order committing between the two reads is counted twice (in the lower stock
/// and as a claim still in flight) and the gate ends one unit short.
/// `None` when there is no such product.
pub async fn stock_and_recent_claims<'e>(
    executor: impl Executor<'e, Database = Any>,
    product_id: i64,
    since_ms: i64,
) -> Result<Option<(i64, Vec<String>)>, StoreError> {
    /// stock, and the order's quantity, user and key (absent without orders).
    type Row = (i64, Option<i64>, Option<i64>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT p.stock, o.quantity, o.user_id, o.idempotency_key
           FROM products p
           LEFT JOIN orders o ON o.product_id = p.id AND o.created_at >= $2
          WHERE p.id = $1",
    )
    .bind(product_id)
    .bind(since_ms)
    .fetch_all(executor)
    .await
    .context("orders::stock_and_recent_claims")?;
    let Some((stock, ..)) = rows.first() else {
        return Ok(None);
    };
    let claims = rows
        .iter()
        .filter_map(|(_, quantity, user_id, key)| {
            Some(claim_member((*quantity)?, (*user_id)?, key.as_deref()?))
        })
        .collect();
    Ok(Some((*stock, claims)))
}
