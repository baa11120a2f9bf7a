//! Demo users: created on first login, no password.

use super::db::Backend;
use super::error::{QueryContext, StoreError};
use super::{Conn, Db, now_ms, sql};
use crate::domain::Username;

/// The id of `username`, creating the user on first use (safe under concurrency).
pub async fn find_or_create(db: &Db, username: &Username) -> Result<i64, StoreError> {
    let mut conn = db.pool();
    let insert = match conn.backend() {
        Backend::Postgres | Backend::Sqlite => {
            "INSERT INTO users (username, created_at) VALUES ($1, $2)
             ON CONFLICT (username) DO NOTHING"
        }
        Backend::Mysql => {
            "INSERT INTO users (username, created_at) VALUES ($1, $2)
             ON DUPLICATE KEY UPDATE username = username"
        }
    };
    sqlx::query(&sql(conn.backend(), insert))
        .bind(username.as_str())
        .bind(now_ms())
        .execute(conn.executor())
        .await
        .context("users::insert")?;
    sqlx::query_scalar(&sql(
        conn.backend(),
        "SELECT id FROM users WHERE username = $1",
    ))
    .bind(username.as_str())
    .fetch_one(conn.executor())
    .await
    .context("users::find")
}
