//! The transactional outbox: a message written in the transaction of the change
//! it announces, published later by a relay (at least once). Relays on several
//! instances claim rows with a lease, so a row is published by one of them.

use sqlx::{Any, Executor, FromRow};

use super::error::{QueryContext, StoreError};
use super::now_ms;

#[derive(Debug, FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub message_id: String,
    pub topic: String,
    pub payload: String,
}

/// Writes a message about `order_no`; its id is new (`MSG` + a UUIDv7).
pub async fn insert<'e>(
    executor: impl Executor<'e, Database = Any>,
    topic: &str,
    order_no: &str,
    payload: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (message_id, topic, order_no, payload, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(format!("MSG{}", uuid::Uuid::now_v7().simple()))
    .bind(topic)
    .bind(order_no)
    .bind(payload)
    .bind(now_ms())
    .execute(executor)
    .await
    .context("outbox::insert")?;
    Ok(())
}

/// Claims up to `limit` unpublished rows for `owner` until `lease_until_ms`.
/// The condition is checked again on each row as it is updated, so two relays
/// never both claim one row (READ COMMITTED re-reads a row it waited for).
pub async fn claim_batch<'e>(
    executor: impl Executor<'e, Database = Any>,
    owner: &str,
    lease_until_ms: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    sqlx::query_as::<_, OutboxRow>(
        "UPDATE outbox SET claimed_by = $1, claimed_until = $2
          WHERE id IN (SELECT id FROM outbox
                        WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < $3)
                        ORDER BY id LIMIT $4)
            AND published_at IS NULL AND (claimed_until IS NULL OR claimed_until < $3)
         RETURNING id, message_id, topic, payload",
    )
    .bind(owner)
    .bind(lease_until_ms)
    .bind(now_ms())
    .bind(limit)
    .fetch_all(executor)
    .await
    .context("outbox::claim_batch")
}

/// Marks a claimed row published (only while `owner` holds it).
pub async fn mark_published<'e>(
    executor: impl Executor<'e, Database = Any>,
    id: i64,
    owner: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE outbox SET published_at = $1 WHERE id = $2 AND claimed_by = $3")
        .bind(now_ms())
        .bind(id)
        .bind(owner)
        .execute(executor)
        .await
        .context("outbox::mark_published")?;
    Ok(())
}

/// How many messages wait for the relay.
pub async fn count_unpublished<'e>(
    executor: impl Executor<'e, Database = Any>,
) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(executor)
        .await
        .context("outbox::count_unpublished")
}

/// Publishes again the messages of PAID orders that were paid and published
/// before `settled_before_ms` and still have no reward: a lost stream entry
/// costs delay, never a reward. Returns how many messages go out again.
pub async fn republish_unrewarded<'e>(
    executor: impl Executor<'e, Database = Any>,
    settled_before_ms: i64,
) -> Result<u64, StoreError> {
    let updated = sqlx::query(
        "UPDATE outbox SET published_at = NULL, claimed_by = NULL, claimed_until = NULL
          WHERE published_at IS NOT NULL AND published_at <= $1
            AND order_no IN (SELECT o.order_no FROM orders o
                              WHERE o.status = 'PAID' AND o.updated_at <= $1
                                AND NOT EXISTS (SELECT 1 FROM rewards r WHERE r.order_no = o.order_no))",
    )
    .bind(settled_before_ms)
    .execute(executor)
    .await
    .context("outbox::republish_unrewarded")?;
    Ok(updated.rows_affected())
}
