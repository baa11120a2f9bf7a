//! The lab's own rows: each experiment buys from a product of its own, and the
//! next experiment removes those products with everything that hangs off them
//! (orders, payments, events, messages, rewards), so the audit speaks of the
//! latest experiment only.

use super::db::Backend;
use super::error::{QueryContext, StoreError};
use super::products::{NewProduct, Product};
use super::{Conn, Db, commit, now_ms, sql};

/// Orders of lab products, as a subquery.
const LAB_ORDERS: &str =
    "SELECT order_no FROM orders WHERE product_id IN (SELECT product_id FROM lab_products)";

/// Removes every lab product and what hangs off it, in one transaction.
pub async fn purge(db: &Db) -> Result<(), StoreError> {
    let backend = db.backend();
    // The outbox row of an order names it in its payload.
    let names_lab_order = match backend {
        Backend::Postgres | Backend::Sqlite => "outbox.payload LIKE '%' || lab.order_no || '%'",
        // `||` is OR in MySQL.
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

pub async fn tally(mut conn: impl Conn, product_id: i64) -> Result<Tally, StoreError> {
    let text = sql(conn.backend(), TALLY);
    let mut query = sqlx::query_as::<_, Tally>(&text);
    for _ in 0..TALLY_PARAMETERS {
        query = query.bind(product_id);
    }
    query.fetch_one(conn.executor()).await.context("lab::tally")
}

/// The tally of one product: every `$n` is the product's id.
const TALLY: &str = "SELECT
   (SELECT COUNT(*) FROM orders WHERE product_id = $1) AS orders,
   CAST(COALESCE((SELECT SUM(quantity) FROM orders WHERE product_id = $2), 0) AS BIGINT) AS units,
   (SELECT COUNT(*) FROM payments p JOIN orders o ON o.order_no = p.order_no
     WHERE o.product_id = $3) AS payments,
   (SELECT COUNT(*) FROM payments p JOIN orders o ON o.order_no = p.order_no
     WHERE o.product_id = $4 AND EXISTS (SELECT 1 FROM payment_events e
       WHERE e.payment_no = p.payment_no AND e.status = 'SUCCEEDED' AND e.result = 'applied')) AS charged,
   (SELECT COUNT(*) FROM payment_events e JOIN payments p ON p.payment_no = e.payment_no
      JOIN orders o ON o.order_no = p.order_no
     WHERE o.product_id = $5 AND e.result = 'applied') AS applied_events,
   (SELECT COUNT(*) FROM orders WHERE product_id = $6 AND status = 'PAID') AS paid,
   (SELECT COUNT(*) FROM rewards r JOIN orders o ON o.order_no = r.order_no
     WHERE o.product_id = $7) AS rewards";
const TALLY_PARAMETERS: usize = 7;
