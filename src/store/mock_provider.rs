//! The mock provider's own books (`mock_provider_charges`): every charge it
//! accepted, as the provider records it. The provider's query (主动查单) and
//! its daily bill (对账) read them; flashguard's flows never do directly.

use sqlx::FromRow;

use super::error::{QueryContext, StoreError};
use super::{Conn, sql};

/// One charge, as the provider's books hold it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct Charge {
    pub payment_no: String,
    pub order_no: String,
    pub channel: String,
    pub trade_no: String,
    pub amount_cents: i64,
    /// `SUCCESS`: the mock accepts every charge.
    pub status: String,
    pub charged_at: i64,
}

const COLUMNS: &str = "payment_no, order_no, channel, trade_no, amount_cents, status, charged_at";

pub async fn record(mut conn: impl Conn, charge: &Charge) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        &format!(
            "INSERT INTO mock_provider_charges ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ),
    ))
    .bind(&charge.payment_no)
    .bind(&charge.order_no)
    .bind(&charge.channel)
    .bind(&charge.trade_no)
    .bind(charge.amount_cents)
    .bind(&charge.status)
    .bind(charge.charged_at)
    .execute(conn.executor())
    .await
    .context("mock_provider::record")?;
    Ok(())
}

/// The charge of one payment, if the provider has one.
pub async fn find(mut conn: impl Conn, payment_no: &str) -> Result<Option<Charge>, StoreError> {
    sqlx::query_as(&sql(
        conn.backend(),
        &format!("SELECT {COLUMNS} FROM mock_provider_charges WHERE payment_no = $1"),
    ))
    .bind(payment_no)
    .fetch_optional(conn.executor())
    .await
    .context("mock_provider::find")
}

/// Every charge made in `[from, to)` (epoch ms): a day's bill.
pub async fn between(mut conn: impl Conn, from: i64, to: i64) -> Result<Vec<Charge>, StoreError> {
    sqlx::query_as(&sql(
        conn.backend(),
        &format!(
            "SELECT {COLUMNS} FROM mock_provider_charges
          WHERE charged_at >= $1 AND charged_at < $2 ORDER BY charged_at, payment_no"
        ),
    ))
    .bind(from)
    .bind(to)
    .fetch_all(conn.executor())
    .await
    .context("mock_provider::between")
}

/// Forgets a charge (the lab's and the tests' way to make the books disagree).
pub async fn forget(mut conn: impl Conn, payment_no: &str) -> Result<bool, StoreError> {
    let deleted = sqlx::query(&sql(
        conn.backend(),
        "DELETE FROM mock_provider_charges WHERE payment_no = $1",
    ))
    .bind(payment_no)
    .execute(conn.executor())
    .await
    .context("mock_provider::forget")?;
    Ok(deleted.rows_affected() == 1)
}
