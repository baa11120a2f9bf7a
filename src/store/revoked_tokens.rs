//! Login tokens revoked by a logout, until they would have expired anyway.

use sqlx::{Any, Executor};

use super::error::{QueryContext, StoreError};

pub async fn insert<'e>(
    executor: impl Executor<'e, Database = Any>,
    token_id: &str,
    expires_at_secs: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
    )
    .bind(token_id)
    .bind(expires_at_secs)
    .execute(executor)
    .await
    .context("revoked_tokens::insert")?;
    Ok(())
}

/// The revoked tokens that have not expired at `now_secs`.
pub async fn live<'e>(
    executor: impl Executor<'e, Database = Any>,
    now_secs: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1")
        .bind(now_secs)
        .fetch_all(executor)
        .await
        .context("revoked_tokens::live")
}

/// Forgets the tokens that expired by `now_secs`.
pub async fn forget_expired<'e>(
    executor: impl Executor<'e, Database = Any>,
    now_secs: i64,
) -> Result<u64, StoreError> {
    let deleted = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
        .bind(now_secs)
        .execute(executor)
        .await
        .context("revoked_tokens::forget_expired")?;
    Ok(deleted.rows_affected())
}
