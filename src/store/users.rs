//! Demo users: created on first login, no password.

use super::Db;
use super::error::{QueryContext, StoreError};
use super::now_ms;
use crate::domain::Username;

/// The id of `username`, creating the user on first use (safe under concurrency).
pub async fn find_or_create(db: &Db, username: &Username) -> Result<i64, StoreError> {
    sqlx::query(
        "INSERT INTO users (username, created_at) VALUES ($1, $2)
         ON CONFLICT (username) DO NOTHING",
    )
    .bind(username.as_str())
    .bind(now_ms())
    .execute(db.pool())
    .await
    .context("users::insert")?;
    sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(username.as_str())
        .fetch_one(db.pool())
        .await
        .context("users::find")
}
