//! Login tokens revoked by a logout, until they would have expired anyway.

use super::db::Backend;
use super::error::{QueryContext, StoreError};
use super::{Conn, sql};

pub async fn insert(
    mut conn: impl Conn,
    token_id: &str,
    expires_at_secs: i64,
) -> Result<(), StoreError> {
    let insert = match conn.backend() {
        Backend::Postgres | Backend::Sqlite => {
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING"
        }
        Backend::Mysql => {
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2)
             ON DUPLICATE KEY UPDATE jti = jti"
        }
    };
    sqlx::query(&sql(conn.backend(), insert))
        .bind(token_id)
        .bind(expires_at_secs)
        .execute(conn.executor())
        .await
        .context("revoked_tokens::insert")?;
    Ok(())
}

/// The revoked tokens that have not expired at `now_secs`.
pub async fn live(mut conn: impl Conn, now_secs: i64) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as(&sql(
        conn.backend(),
        "SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1",
    ))
    .bind(now_secs)
    .fetch_all(conn.executor())
    .await
    .context("revoked_tokens::live")
}

/// Forgets the tokens that expired by `now_secs`.
pub async fn forget_expired(mut conn: impl Conn, now_secs: i64) -> Result<u64, StoreError> {
    let deleted = sqlx::query(&sql(
        conn.backend(),
        "DELETE FROM revoked_tokens WHERE expires_at <= $1",
    ))
    .bind(now_secs)
    .execute(conn.executor())
    .await
    .context("revoked_tokens::forget_expired")?;
    Ok(deleted.rows_affected())
}
