//! The transactional outbox: a message written in the transaction of the change
//! it announces, published later by a relay (at least once). Relays on several
//! instances claim rows with a lease, so a row is published by one of them.

use sqlx::FromRow;

use super::db::Backend;
use super::error::{QueryContext, StoreError};
use super::{Conn, now_ms, sql};
use crate::domain::OrderStatus;

#[derive(Debug, FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub message_id: String,
    pub topic: String,
    pub payload: String,
}

/// Writes a message about `order_no`; its id is new (`MSG` + a UUIDv7).
pub async fn insert(
    mut conn: impl Conn,
    topic: &str,
    order_no: &str,
    payload: &str,
) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        "INSERT INTO outbox (message_id, topic, order_no, payload, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    ))
    .bind(format!("MSG{}", uuid::Uuid::now_v7().simple()))
    .bind(topic)
    .bind(order_no)
    .bind(payload)
    .bind(now_ms())
    .execute(conn.executor())
    .await
    .context("outbox::insert")?;
    Ok(())
}

/// Claims up to `limit` unpublished rows for `owner` until `lease_until_ms`.
/// The condition is checked again on each row as it is updated, so two relays
/// never both claim one row (Postgres' READ COMMITTED re-reads a row it waited
/// for; InnoDB's UPDATE reads the current row, whatever the isolation level).
pub async fn claim_batch(
    mut conn: impl Conn,
    owner: &str,
    lease_until_ms: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    let now = now_ms();
    if conn.backend() == Backend::Mysql {
        return claim_batch_mysql(conn, owner, lease_until_ms, limit).await;
    }
    sqlx::query_as::<_, OutboxRow>(
        "UPDATE outbox SET claimed_by = $1, claimed_until = $2
          WHERE id IN (SELECT id FROM outbox
                        WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < $3)
                        ORDER BY id LIMIT $4)
            AND published_at IS NULL AND (claimed_until IS NULL OR claimed_until < $5)
         RETURNING id, message_id, topic, payload",
    )
    .bind(owner)
    .bind(lease_until_ms)
    .bind(now)
    .bind(limit)
    .bind(now)
    .fetch_all(conn.executor())
    .await
    .context("outbox::claim_batch")
}

/// MySQL cannot `LIMIT` a subquery of `IN`, nor read the table it updates in
/// one, nor return what it updated: its single-table `UPDATE … ORDER BY …
/// LIMIT` claims the rows, and a `SELECT` of this claim (owner and lease) reads
/// them back.
async fn claim_batch_mysql(
    mut conn: impl Conn,
    owner: &str,
    lease_until_ms: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    sqlx::query(
        "UPDATE outbox SET claimed_by = ?, claimed_until = ?
          WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < ?)
          ORDER BY id LIMIT ?",
    )
    .bind(owner)
    .bind(lease_until_ms)
    .bind(now_ms())
    .bind(limit)
    .execute(conn.executor())
    .await
    .context("outbox::claim_batch")?;
    sqlx::query_as::<_, OutboxRow>(
        "SELECT id, message_id, topic, payload FROM outbox
          WHERE published_at IS NULL AND claimed_by = ? AND claimed_until = ? ORDER BY id",
    )
    .bind(owner)
    .bind(lease_until_ms)
    .fetch_all(conn.executor())
    .await
    .context("outbox::claim_batch")
}

/// Marks a claimed row published (only while `owner` holds it).
pub async fn mark_published(mut conn: impl Conn, id: i64, owner: &str) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        "UPDATE outbox SET published_at = $1 WHERE id = $2 AND claimed_by = $3",
    ))
    .bind(now_ms())
    .bind(id)
    .bind(owner)
    .execute(conn.executor())
    .await
    .context("outbox::mark_published")?;
    Ok(())
}

/// Gives back the claims `owner` holds on unpublished rows: after a failed
/// publish, the next round (this relay's or another's) takes them at once
/// rather than after the lease.
pub async fn release_claims(mut conn: impl Conn, owner: &str) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL
          WHERE published_at IS NULL AND claimed_by = $1",
    ))
    .bind(owner)
    .execute(conn.executor())
    .await
    .context("outbox::release_claims")?;
    Ok(())
}

/// How many messages wait for the relay.
pub async fn count_unpublished(mut conn: impl Conn) -> Result<i64, StoreError> {
    sqlx::query_scalar(&sql(
        conn.backend(),
        "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL",
    ))
    .fetch_one(conn.executor())
    .await
    .context("outbox::count_unpublished")
}

/// Publishes again the messages of PAID orders that were paid and published
/// before `settled_before_ms` and still have no reward: a lost stream entry
/// costs delay, never a reward. Returns how many messages go out again.
pub async fn republish_unrewarded(
    mut conn: impl Conn,
    settled_before_ms: i64,
) -> Result<u64, StoreError> {
    let paid = OrderStatus::Paid;
    let statement = format!(
        "UPDATE outbox SET published_at = NULL, claimed_by = NULL, claimed_until = NULL
          WHERE published_at IS NOT NULL AND published_at <= $1
            AND order_no IN (SELECT o.order_no FROM orders o
                              WHERE o.status = '{paid}' AND o.updated_at <= $2
                                AND NOT EXISTS (SELECT 1 FROM rewards r WHERE r.order_no = o.order_no))"
    );
    let updated = sqlx::query(&sql(conn.backend(), &statement))
        .bind(settled_before_ms)
        .bind(settled_before_ms)
        .execute(conn.executor())
        .await
        .context("outbox::republish_unrewarded")?;
    Ok(updated.rows_affected())
}
