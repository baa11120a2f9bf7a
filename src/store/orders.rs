//! Orders: the rows the flash sale creates, how they are read back, and how their
//! status moves.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::FromRow;

use super::db::Backend;
use super::error::{QueryContext, StoreError};
use super::kv::claim_member;
use super::{Conn, now_ms, sql};
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

pub async fn insert(conn: impl Conn, order: &NewOrder<'_>) -> Result<Order, StoreError> {
    insert_one(conn, order, OnDuplicate::Fail)
        .await?
        .ok_or(StoreError {
            query: "orders::insert",
            source: sqlx::Error::RowNotFound,
        })
}

/// Like [`insert`], but a row the unique index refuses is skipped instead of
/// failing the transaction (`None`), so a transaction that places several
/// orders goes on (group commit).
pub async fn insert_unless_duplicate(
    conn: impl Conn,
    order: &NewOrder<'_>,
) -> Result<Option<Order>, StoreError> {
    insert_one(conn, order, OnDuplicate::Skip).await
}

/// What an insert does with a row the unique index already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDuplicate {
    Fail,
    Skip,
}

/// The columns of an order row, in the order [`bind_order`] binds them.
const INSERT_ORDER: &str = "INSERT INTO orders
    (order_no, user_id, product_id, quantity, amount_cents, status,
     idempotency_key, guarded, created_at, updated_at)
    VALUES";

// [lesson orders::insert_one]
/// One order row. Postgres and SQLite skip a duplicate in the statement
/// itself (`ON CONFLICT … DO NOTHING`, naming the partial unique index) and
/// hand the row back (`RETURNING`): in Postgres a failed statement would abort
/// the whole transaction. MySQL has neither; but there a duplicate key (error
/// 1062) rolls back only the statement, so the plain INSERT is tried and the
/// error is the answer, and the row is read back by its number.
async fn insert_one(
    mut conn: impl Conn,
    order: &NewOrder<'_>,
    on_duplicate: OnDuplicate,
) -> Result<Option<Order>, StoreError> {
    let backend = conn.backend();
    let number = OrderNo::generate().as_str().to_string();
    let row = super::placeholders(1, ORDER_PARAMETERS);
    let skip = match (backend, on_duplicate) {
        (_, OnDuplicate::Fail) | (Backend::Mysql, _) => "",
        (Backend::Postgres, OnDuplicate::Skip) => {
            "ON CONFLICT (user_id, idempotency_key) WHERE guarded DO NOTHING"
        }
        (Backend::Sqlite, OnDuplicate::Skip) => {
            "ON CONFLICT (user_id, idempotency_key) WHERE guarded = 1 DO NOTHING"
        }
    };
    if backend != Backend::Mysql {
        let text = format!("{INSERT_ORDER} ({row}) {skip} RETURNING {ORDER_COLUMNS}");
        return bind_order(sqlx::query_as(&text), order, number, now_ms())
            .fetch_optional(conn.executor())
            .await
            .context("orders::insert");
    }
    let text = sql(backend, &format!("{INSERT_ORDER} ({row})")).into_owned();
    let inserted = bind_order(sqlx::query_as(&text), order, number.clone(), now_ms())
        .fetch_optional(conn.executor())
        .await
        .context("orders::insert");
    match inserted {
        Err(error) if on_duplicate == OnDuplicate::Skip && error.is_unique_violation() => Ok(None),
        Err(error) => Err(error),
        Ok(_) => find_by_number(conn, &number).await,
    }
}
// [/lesson]

/// Bound per order row: number, buyer, product, quantity, amount, status, key,
/// guarded, created, updated.
const ORDER_PARAMETERS: usize = 10;

/// Many orders in one statement (group commit, docs/design.md §2.3); a row the
/// unique index refuses is skipped. For each order given, in the same order:
/// the inserted row, or `None` for a duplicate. MySQL skips a duplicate with a
/// no-op `ON DUPLICATE KEY UPDATE` (not `INSERT IGNORE`, which would also turn
/// a missing product into a warning) and reads the rows back by number.
pub async fn insert_many_unless_duplicate(
    mut conn: impl Conn,
    orders: &[NewOrder<'_>],
) -> Result<Vec<Option<Order>>, StoreError> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let backend = conn.backend();
    let statement = batch_statement(backend, orders.len());
    let now = now_ms();
    let numbers: Vec<String> = orders
        .iter()
        .map(|_| OrderNo::generate().as_str().to_string())
        .collect();
    let text = sql(backend, &statement);
    let mut query = sqlx::query_as::<_, Order>(&text);
    for (order, number) in orders.iter().zip(&numbers) {
        query = bind_order(query, order, number.clone(), now);
    }
    let inserted = if backend == Backend::Mysql {
        query
            .fetch_all(conn.executor())
            .await
            .context("orders::insert_many")?;
        find_by_numbers(conn, &numbers).await?
    } else {
        query
            .fetch_all(conn.executor())
            .await
            .context("orders::insert_many")?
    };
    Ok(in_given_order(&numbers, inserted))
}

/// The INSERT of `rows` orders, a duplicate skipped.
fn batch_statement(backend: Backend, rows: usize) -> String {
    let rows = super::values_rows(rows, ORDER_PARAMETERS);
    match backend {
        Backend::Postgres => format!(
            "{INSERT_ORDER} {rows} ON CONFLICT (user_id, idempotency_key) WHERE guarded DO NOTHING
             RETURNING {ORDER_COLUMNS}"
        ),
        Backend::Sqlite => format!(
            "{INSERT_ORDER} {rows} ON CONFLICT (user_id, idempotency_key) WHERE guarded = 1 DO NOTHING
             RETURNING {ORDER_COLUMNS}"
        ),
        Backend::Mysql => format!("{INSERT_ORDER} {rows} ON DUPLICATE KEY UPDATE id = id"),
    }
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

type OrderQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Any, Order, sqlx::any::AnyArguments<'q>>;

/// Binds one order's row: number, buyer, product, amounts, status, key, times.
fn bind_order<'q>(
    query: OrderQuery<'q>,
    order: &NewOrder<'q>,
    number: String,
    now: i64,
) -> OrderQuery<'q> {
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
        .bind(now)
}

/// An order by its number.
async fn find_by_number(mut conn: impl Conn, number: &str) -> Result<Option<Order>, StoreError> {
    sqlx::query_as::<_, Order>(&sql(
        conn.backend(),
        &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_no = $1"),
    ))
    .bind(number)
    .fetch_optional(conn.executor())
    .await
    .context("orders::find_by_number")
}

/// The orders of these numbers that exist.
async fn find_by_numbers(
    mut conn: impl Conn,
    numbers: &[String],
) -> Result<Vec<Order>, StoreError> {
    let statement = format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE order_no IN ({})",
        super::placeholders(1, numbers.len())
    );
    let text = sql(conn.backend(), &statement);
    let mut query = sqlx::query_as::<_, Order>(&text);
    for number in numbers {
        query = query.bind(number);
    }
    query
        .fetch_all(conn.executor())
        .await
        .context("orders::find_by_numbers")
}

/// The order that holds (user, key) under the unique index.
pub async fn find_guarded_by_key(
    mut conn: impl Conn,
    user_id: i64,
    idempotency_key: &str,
) -> Result<Option<Order>, StoreError> {
    sqlx::query_as::<_, Order>(&sql(
        conn.backend(),
        &format!(
            "SELECT {ORDER_COLUMNS} FROM orders
          WHERE user_id = $1 AND idempotency_key = $2 AND guarded = $3"
        ),
    ))
    .bind(user_id)
    .bind(idempotency_key)
    .bind(true)
    .fetch_optional(conn.executor())
    .await
    .context("orders::find_guarded_by_key")
}

/// The first order for (user, key), guarded or not.
pub async fn find_by_key(
    mut conn: impl Conn,
    user_id: i64,
    idempotency_key: &str,
) -> Result<Option<Order>, StoreError> {
    sqlx::query_as::<_, Order>(&sql(
        conn.backend(),
        &format!(
            "SELECT {ORDER_COLUMNS} FROM orders
          WHERE user_id = $1 AND idempotency_key = $2 ORDER BY id LIMIT 1"
        ),
    ))
    .bind(user_id)
    .bind(idempotency_key)
    .fetch_optional(conn.executor())
    .await
    .context("orders::find_by_key")
}

/// An order of `user_id`; another user's order is simply not found.
pub async fn find_for_user(
    mut conn: impl Conn,
    user_id: i64,
    order_no: &OrderNo,
) -> Result<Option<Order>, StoreError> {
    sqlx::query_as::<_, Order>(&sql(
        conn.backend(),
        &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_no = $1 AND user_id = $2"),
    ))
    .bind(order_no.as_str())
    .bind(user_id)
    .fetch_optional(conn.executor())
    .await
    .context("orders::find_for_user")
}

pub async fn list_for_user(mut conn: impl Conn, user_id: i64) -> Result<Vec<Order>, StoreError> {
    sqlx::query_as::<_, Order>(&sql(
        conn.backend(),
        &format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT 100"
        ),
    ))
    .bind(user_id)
    .fetch_all(conn.executor())
    .await
    .context("orders::list_for_user")
}

// [lesson orders::move_status]
/// The conditional update of the `state_check` defense: moves the order along
/// `transition` only if it is still in `transition.from`. Returns whether it moved.
pub async fn move_status(
    mut conn: impl Conn,
    order_no: &str,
    transition: Transition<OrderStatus>,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(&sql(
        conn.backend(),
        "UPDATE orders SET status = $1, updated_at = $2 WHERE order_no = $3 AND status = $4",
    ))
    .bind(transition.to.as_str())
    .bind(now_ms())
    .bind(order_no)
    .bind(transition.from.as_str())
    .execute(conn.executor())
    .await
    .context("orders::move_status")?;
    Ok(updated.rows_affected() > 0)
}
// [/lesson]

/// The unguarded write (the lab's `state_check` off): sets the status whatever it was.
pub async fn overwrite_status(
    mut conn: impl Conn,
    order_no: &str,
    status: OrderStatus,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(&sql(
        conn.backend(),
        "UPDATE orders SET status = $1, updated_at = $2 WHERE order_no = $3",
    ))
    .bind(status.as_str())
    .bind(now_ms())
    .bind(order_no)
    .execute(conn.executor())
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
pub async fn unpaid_since(
    mut conn: impl Conn,
    cutoff_ms: i64,
    limit: i64,
) -> Result<Vec<Unpaid>, StoreError> {
    sqlx::query_as::<_, Unpaid>(&sql(
        conn.backend(),
        "SELECT order_no, product_id, quantity FROM orders
          WHERE status = $1 AND created_at <= $2 ORDER BY id LIMIT $3",
    ))
    .bind(OrderStatus::PendingPayment.as_str())
    .bind(cutoff_ms)
    .bind(limit)
    .fetch_all(conn.executor())
    .await
    .context("orders::unpaid_since")
}

/// The product's stock, and `"<quantity>|<user_id>:<idempotency key>"` of its
/// orders created at or after `since_ms` (the gate claims that already became
/// orders), read in **one statement**, so from one snapshot: read apart, an
/// order committing between the two reads is counted twice (in the lower stock
/// and as a claim still in flight) and the gate ends one unit short.
/// `None` when there is no such product.
pub async fn stock_and_recent_claims(
    mut conn: impl Conn,
    product_id: i64,
    since_ms: i64,
) -> Result<Option<(i64, Vec<String>)>, StoreError> {
    /// stock, and the order's quantity, user and key (absent without orders).
    type Row = (i64, Option<i64>, Option<i64>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(&sql(
        conn.backend(),
        "SELECT p.stock, o.quantity, o.user_id, o.idempotency_key
           FROM products p
           LEFT JOIN orders o ON o.product_id = p.id AND o.created_at >= $1
          WHERE p.id = $2",
    ))
    .bind(since_ms)
    .bind(product_id)
    .fetch_all(conn.executor())
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
