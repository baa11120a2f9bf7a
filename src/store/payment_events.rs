//! Provider events as they were received: the table of the `callback_dedup`
//! defense (a unique index on `event_id` for guarded rows: partial on Postgres
//! and SQLite, over a generated column on MySQL).

use super::error::{QueryContext, StoreError};
use super::{Conn, now_ms, sql};

/// The event changed the payment (the `result` column; the audit counts these).
pub const APPLIED: &str = "applied";
/// The event was recorded but changed nothing (a late or out-of-order status).
pub const IGNORED: &str = "ignored";

/// What the provider said, reduced to what the record needs.
#[derive(Debug)]
pub struct EventRecord<'a> {
    pub event_id: &'a str,
    pub payment_no: &'a str,
    pub status: &'a str,
    /// `applied` or `ignored`.
    /// [`APPLIED`] or [`IGNORED`].
    pub result: &'a str,
    /// Covered by the unique index (`callback_dedup` on).
    pub guarded: bool,
}

/// Inserts the record; a second guarded record of one event id is a unique violation.
pub async fn insert(mut conn: impl Conn, event: &EventRecord<'_>) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        "INSERT INTO payment_events (event_id, payment_no, status, result, guarded, received_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    ))
    .bind(event.event_id)
    .bind(event.payment_no)
    .bind(event.status)
    .bind(event.result)
    .bind(event.guarded)
    .bind(now_ms())
    .execute(conn.executor())
    .await
    .context("payment_events::insert")?;
    Ok(())
}
