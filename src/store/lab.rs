//! The lab's own rows: each experiment buys from a product of its own, and the
//! next experiment removes those products with everything that hangs off them
//! (orders, payments, events, messages, rewards), so the audit speaks of the
//! latest experiment only.

use super::db::Backend;
use super::error::{QueryContext, StoreError};
use super::idempotency_keys::COMPLETED;
use super::payment_events::APPLIED;
use super::products::{NewProduct, Product};
use super::{Conn, Db, commit, now_ms, sql};
use crate::domain::{OrderStatus, PaymentStatus};

/// Orders of lab products, as a subquery.
const LAB_ORDERS: &str =
    "SELECT order_no FROM orders WHERE product_id IN (SELECT product_id FROM lab_products)";

/// Removes every lab product and what hangs off it, in one transaction.
pub async fn purge(db: &Db) -> Result<(), StoreError> {
    let backend = db.backend();
    // The outbox row of an order names it in its payload.
    let names_lab_order = match backend {
        Backend::Postgres | Backend::Sqlite => "outbox.payload LIKE '%' || lab.order_no || '%'",
        // `||` is OR under MySQL's default sql_mode (sqlx sets PIPES_AS_CONCAT,
        // but CONCAT does not depend on it).
        Backend::Mysql => "outbox.payload LIKE CONCAT('%', lab.order_no, '%')",
    };
    let statements = [
        format!(
            "DELETE FROM payment_events WHERE payment_no IN
               (SELECT payment_no FROM payments WHERE order_no IN ({LAB_ORDERS}))"
        ),
        format!("DELETE FROM mock_provider_charges WHERE order_no IN ({LAB_ORDERS})"),
        format!("DELETE FROM payments WHERE order_no IN ({LAB_ORDERS})"),
        format!(
            "DELETE FROM processed_messages WHERE message_id IN
               (SELECT message_id FROM rewards WHERE order_no IN ({LAB_ORDERS}))"
        ),
        format!("DELETE FROM rewards WHERE order_no IN ({LAB_ORDERS})"),
        format!(
            "DELETE FROM outbox WHERE EXISTS (SELECT 1 FROM ({LAB_ORDERS}) AS lab
                                           WHERE {names_lab_order})"
        ),
        format!("DELETE FROM orders WHERE order_no IN ({LAB_ORDERS})"),
        "DELETE FROM products WHERE id IN (SELECT product_id FROM lab_products)".to_string(),
        "DELETE FROM lab_products".to_string(),
    ];
    let mut tx = db.begin().await?;
    for statement in &statements {
        sqlx::query(&sql(backend, statement))
            .execute(&mut *tx)
            .await
            .context("lab::purge")?;
    }
    commit(tx).await
}

/// Creates the product an experiment buys from.
pub async fn create_product(
    db: &Db,
    experiment: &str,
    product: &NewProduct,
) -> Result<Product, StoreError> {
    let mut created = super::products::insert_all(db, std::slice::from_ref(product)).await?;
    let product = created.pop().ok_or_else(|| StoreError {
        query: "lab::create_product",
        source: sqlx::Error::RowNotFound,
    })?;
    sqlx::query(&sql(
        db.backend(),
        "INSERT INTO lab_products (product_id, experiment, created_at) VALUES ($1, $2, $3)",
    ))
    .bind(product.id)
    .bind(experiment)
    .bind(now_ms())
    .execute(db.pool())
    .await
    .context("lab::create_product")?;
    Ok(product)
}

/// What an experiment left behind on its product.
#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
pub struct Tally {
    /// Orders of the product.
    pub orders: i64,
    /// Units in those orders.
    pub units: i64,
    /// Payments of those orders.
    pub payments: i64,
    /// Payments the provider charged (a SUCCEEDED event was applied).
    pub charged: i64,
    /// SUCCEEDED or FAILED events applied.
    pub applied_events: i64,
    /// Orders PAID.
    pub paid: i64,
    /// Rewards of those orders.
    pub rewards: i64,
}

/// Units in the product's orders that still hold stock (not CLOSED): what
/// the sale has sold, as the simulator's ticks follow it.
pub async fn units_ordered(mut conn: impl Conn, product_id: i64) -> Result<i64, StoreError> {
    let closed = OrderStatus::Closed;
    let statement = format!(
        "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM orders
          WHERE product_id = $1 AND status <> '{closed}'"
    );
    let text = sql(conn.backend(), &statement);
    sqlx::query_scalar(&text)
        .bind(product_id)
        .fetch_one(conn.executor())
        .await
        .context("lab::units_ordered")
}

pub async fn tally(mut conn: impl Conn, product_id: i64) -> Result<Tally, StoreError> {
    let tally = tally_statement();
    let text = sql(conn.backend(), &tally);
    let mut query = sqlx::query_as::<_, Tally>(&text);
    for _ in 0..TALLY_PARAMETERS {
        query = query.bind(product_id);
    }
    query.fetch_one(conn.executor()).await.context("lab::tally")
}

/// The tally of one product: every `$n` is the product's id.
fn tally_statement() -> String {
    let (succeeded, paid) = (PaymentStatus::Succeeded, OrderStatus::Paid);
    format!(
        "SELECT
   (SELECT COUNT(*) FROM orders WHERE product_id = $1) AS orders,
   CAST(COALESCE((SELECT SUM(quantity) FROM orders WHERE product_id = $2), 0) AS BIGINT) AS units,
   (SELECT COUNT(*) FROM payments p JOIN orders o ON o.order_no = p.order_no
     WHERE o.product_id = $3) AS payments,
   (SELECT COUNT(*) FROM payments p JOIN orders o ON o.order_no = p.order_no
     WHERE o.product_id = $4 AND EXISTS (SELECT 1 FROM payment_events e
       WHERE e.payment_no = p.payment_no AND e.status = '{succeeded}' AND e.result = '{APPLIED}')) AS charged,
   (SELECT COUNT(*) FROM payment_events e JOIN payments p ON p.payment_no = e.payment_no
      JOIN orders o ON o.order_no = p.order_no
     WHERE o.product_id = $5 AND e.result = '{APPLIED}') AS applied_events,
   (SELECT COUNT(*) FROM orders WHERE product_id = $6 AND status = '{paid}') AS paid,
   (SELECT COUNT(*) FROM rewards r JOIN orders o ON o.order_no = r.order_no
     WHERE o.product_id = $7) AS rewards"
    )
}
const TALLY_PARAMETERS: usize = 7;

// The InnoDB experiments (MySQL only): each buyer runs on a connection of its
// own (`Db::dedicated_connection`), in a transaction the lab module drives.

/// The key row the "check then insert" buyers race for.
#[derive(Debug, Clone, Copy)]
pub struct LabKey<'a> {
    pub user_id: i64,
    pub key: &'a str,
}

// [lesson lab::check_then_insert]
/// The check of "check then insert": a locking read of the key row. When the
/// row is missing, InnoDB at REPEATABLE READ locks the *gap* where it would
/// go; gap locks do not conflict with each other, so every buyer gets one —
/// and each buyer's INSERT then waits for the others' gaps: a deadlock.
pub async fn key_exists_for_update(
    mut conn: impl Conn,
    key: LabKey<'_>,
) -> Result<bool, StoreError> {
    let found: Option<String> = sqlx::query_scalar(&sql(
        conn.backend(),
        "SELECT owner FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2 FOR UPDATE",
    ))
    .bind(key.user_id)
    .bind(key.key)
    .fetch_optional(conn.executor())
    .await
    .context("lab::key_exists_for_update")?;
    Ok(found.is_some())
}
// [/lesson]

/// The insert of the race: a unique violation (error 1062) when another buyer
/// has the row.
pub async fn insert_key(
    mut conn: impl Conn,
    key: LabKey<'_>,
    owner: &str,
) -> Result<(), StoreError> {
    let now = now_ms();
    let statement = format!(
        "INSERT INTO idempotency_keys
             (user_id, idem_key, fingerprint, state, owner, lease_expires_at, created_at, expires_at)
         VALUES ($1, $2, 'lab', '{COMPLETED}', $3, $4, $5, $6)"
    );
    sqlx::query(&sql(conn.backend(), &statement))
        .bind(key.user_id)
        .bind(key.key)
        .bind(owner)
        .bind(now)
        .bind(now)
        .bind(now.saturating_add(60_000))
        .execute(conn.executor())
        .await
        .context("lab::insert_key")?;
    Ok(())
}

/// The winner's owner, by a plain (non-locking) read.
pub async fn key_owner(mut conn: impl Conn, key: LabKey<'_>) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar(&sql(
        conn.backend(),
        "SELECT owner FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2",
    ))
    .bind(key.user_id)
    .bind(key.key)
    .fetch_optional(conn.executor())
    .await
    .context("lab::key_owner")
}

/// How many rows the race left for its key (one when it went right).
pub async fn key_rows(mut conn: impl Conn, key: LabKey<'_>) -> Result<i64, StoreError> {
    sqlx::query_scalar(&sql(
        conn.backend(),
        "SELECT COUNT(*) FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2",
    ))
    .bind(key.user_id)
    .bind(key.key)
    .fetch_one(conn.executor())
    .await
    .context("lab::key_rows")
}

/// Removes the race's key row.
pub async fn delete_key(mut conn: impl Conn, key: LabKey<'_>) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        "DELETE FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2",
    ))
    .bind(key.user_id)
    .bind(key.key)
    .execute(conn.executor())
    .await
    .context("lab::delete_key")?;
    Ok(())
}

// [lesson lab::touch_stock]
/// A stock update that finds its product by `name` (no index: InnoDB scans
/// the whole clustered index and, at REPEATABLE READ, locks every row it
/// scans, and the gaps between them — for writers, the whole table) or by
/// `id` (the primary key: one row locked). Changes nothing; takes the locks.
pub async fn touch_stock(
    mut conn: impl Conn,
    product: &Product,
    by_name: bool,
) -> Result<(), StoreError> {
    let (by_name_text, by_id_text) = (
        sql(
            conn.backend(),
            "UPDATE products SET version = version WHERE name = $1",
        ),
        sql(
            conn.backend(),
            "UPDATE products SET version = version WHERE id = $1",
        ),
    );
    let query = if by_name {
        sqlx::query(&by_name_text).bind(product.name.clone())
    } else {
        sqlx::query(&by_id_text).bind(product.id)
    };
    query
        .execute(conn.executor())
        .await
        .context("lab::touch_stock")?;
    Ok(())
}

/// How many rows this connection's transaction holds locks on (InnoDB's own
/// count, `information_schema.INNODB_TRX`).
pub async fn rows_locked_here(mut conn: impl Conn) -> Result<i64, StoreError> {
    let locked: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(trx_rows_locked AS SIGNED) FROM information_schema.INNODB_TRX
          WHERE trx_mysql_thread_id = CONNECTION_ID()",
    )
    .fetch_optional(conn.executor())
    .await
    .context("lab::rows_locked_here")?;
    Ok(locked.unwrap_or(0))
}

/// Gives up on a row lock after `secs` seconds (error 1205) on this connection.
pub async fn lock_wait_timeout(mut conn: impl Conn, secs: i64) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        "SET SESSION innodb_lock_wait_timeout = $1",
    ))
    .bind(secs)
    .execute(conn.executor())
    .await
    .context("lab::lock_wait_timeout")?;
    Ok(())
}
// [/lesson]
