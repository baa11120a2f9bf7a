//! Loyalty points, and the record of processed messages that the `message_dedup`
//! defense writes in the same transaction.

use sqlx::{Any, Executor};

use super::error::{QueryContext, StoreError};
use super::now_ms;

// [lesson rewards::record_processed]
/// Records that `consumer` processed `message_id`; false when it had already.
pub async fn record_processed<'e>(
    executor: impl Executor<'e, Database = Any>,
    consumer: &str,
    message_id: &str,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO processed_messages (consumer, message_id, processed_at) VALUES ($1, $2, $3)
         ON CONFLICT (consumer, message_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(message_id)
    .bind(now_ms())
    .execute(executor)
    .await
    .context("rewards::record_processed")?;
    Ok(inserted.rows_affected() == 1)
}
// [/lesson]

/// One award of points for a paid order.
#[derive(Debug)]
pub struct NewReward<'a> {
    pub order_no: &'a str,
    pub user_id: i64,
    pub points: i64,
    pub message_id: &'a str,
}

pub async fn insert<'e>(
    executor: impl Executor<'e, Database = Any>,
    reward: &NewReward<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO rewards (order_no, user_id, points, message_id, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(reward.order_no)
    .bind(reward.user_id)
    .bind(reward.points)
    .bind(reward.message_id)
    .bind(now_ms())
    .execute(executor)
    .await
    .context("rewards::insert")?;
    Ok(())
}

/// Points per order of `user_id`.
pub async fn points_by_order<'e>(
    executor: impl Executor<'e, Database = Any>,
    user_id: i64,
) -> Result<std::collections::HashMap<String, i64>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT order_no, CAST(SUM(points) AS BIGINT) FROM rewards WHERE user_id = $1 GROUP BY order_no",
    )
    .bind(user_id)
    .fetch_all(executor)
    .await
    .context("rewards::points_by_order")?;
    Ok(rows.into_iter().collect())
}
