//! The transactional outbox: a message written in the transaction of the change
//! it announces, published later by a relay (at least once).

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

/// Writes a message; its id is new (`MSG` + a UUIDv7).
pub async fn insert<'e>(
    executor: impl Executor<'e, Database = Any>,
    topic: &str,
    payload: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (message_id, topic, payload, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(format!("MSG{}", uuid::Uuid::now_v7().simple()))
    .bind(topic)
    .bind(payload)
    .bind(now_ms())
    .execute(executor)
    .await
    .context("outbox::insert")?;
    Ok(())
}

/// The oldest messages not yet published.
pub async fn unpublished<'e>(
    executor: impl Executor<'e, Database = Any>,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    sqlx::query_as::<_, OutboxRow>(
        "SELECT id, message_id, topic, payload FROM outbox
          WHERE published_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(executor)
    .await
    .context("outbox::unpublished")
}

pub async fn mark_published<'e>(
    executor: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE outbox SET published_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id)
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
