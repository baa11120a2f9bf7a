//! The shared switch board: defense switches and lab settings as rows every
//! instance reads (docs/reliability.md), so a switch acts on all of them.

use super::db::Backend;
use super::error::{QueryContext, StoreError};
use super::{Conn, now_ms, sql};

/// Writes one setting (inserted or replaced).
pub async fn put(mut conn: impl Conn, name: &str, value: i64) -> Result<(), StoreError> {
    let now = now_ms();
    let upsert = match conn.backend() {
        Backend::Postgres | Backend::Sqlite => {
            "INSERT INTO switch_board (name, value, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET value = $4, updated_at = $5"
        }
        Backend::Mysql => {
            "INSERT INTO switch_board (name, value, updated_at) VALUES ($1, $2, $3)
             ON DUPLICATE KEY UPDATE value = $4, updated_at = $5"
        }
    };
    sqlx::query(&sql(conn.backend(), upsert))
        .bind(name)
        .bind(value)
        .bind(now)
        .bind(value)
        .bind(now)
        .execute(conn.executor())
        .await
        .context("switch_board::put")?;
    Ok(())
}

/// Every setting stored.
pub async fn all(mut conn: impl Conn) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as("SELECT name, value FROM switch_board")
        .fetch_all(conn.executor())
        .await
        .context("switch_board::all")
}
