//! Loyalty points, and the record of processed messages that the `message_dedup`
//! defense writes in the same transaction.

use super::db::Backend;
use super::error::{QueryContext, StoreError};
use super::{Conn, now_ms, sql};

// [lesson rewards::record_processed]
/// Records that `consumer` processed `message_id`; false when it had already.
pub async fn record_processed(
    mut conn: impl Conn,
    consumer: &str,
    message_id: &str,
) -> Result<bool, StoreError> {
    let backend = conn.backend();
    let insert = match backend {
        // Postgres: a failed statement aborts the whole transaction, so the
        // duplicate is skipped instead of raised.
        Backend::Postgres | Backend::Sqlite => {
            "INSERT INTO processed_messages (consumer, message_id, processed_at)
             VALUES ($1, $2, $3) ON CONFLICT (consumer, message_id) DO NOTHING"
        }
        // MySQL: error 1062 rolls back only this statement; the transaction
        // goes on, and the duplicate is the answer.
        Backend::Mysql => {
            "INSERT INTO processed_messages (consumer, message_id, processed_at)
             VALUES ($1, $2, $3)"
        }
    };
    let inserted = sqlx::query(&sql(backend, insert))
        .bind(consumer)
        .bind(message_id)
        .bind(now_ms())
        .execute(conn.executor())
        .await
        .context("rewards::record_processed");
    match inserted {
        Ok(done) => Ok(done.rows_affected() == 1),
        Err(error) if backend == Backend::Mysql && error.is_unique_violation() => Ok(false),
        Err(error) => Err(error),
    }
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

pub async fn insert(mut conn: impl Conn, reward: &NewReward<'_>) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        "INSERT INTO rewards (order_no, user_id, points, message_id, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    ))
    .bind(reward.order_no)
    .bind(reward.user_id)
    .bind(reward.points)
    .bind(reward.message_id)
    .bind(now_ms())
    .execute(conn.executor())
    .await
    .context("rewards::insert")?;
    Ok(())
}

/// Points per order of `user_id`.
pub async fn points_by_order(
    mut conn: impl Conn,
    user_id: i64,
) -> Result<std::collections::HashMap<String, i64>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(&sql(
        conn.backend(),
        "SELECT order_no, CAST(SUM(points) AS BIGINT) FROM rewards WHERE user_id = $1 GROUP BY order_no",
    ))
    .bind(user_id)
    .fetch_all(conn.executor())
    .await
    .context("rewards::points_by_order")?;
    Ok(rows.into_iter().collect())
}
