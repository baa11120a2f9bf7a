//! The shared switch board: defense switches and lab settings as rows every
//! instance reads (docs/reliability.md), so a switch acts on all of them.

use sqlx::{Any, Executor};

use super::error::{QueryContext, StoreError};
use super::now_ms;

/// Writes one setting (inserted or replaced).
pub async fn put<'e>(
    executor: impl Executor<'e, Database = Any>,
    name: &str,
    value: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO switch_board (name, value, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(value)
    .bind(now_ms())
    .execute(executor)
    .await
    .context("switch_board::put")?;
    Ok(())
}

/// Every setting stored.
pub async fn all<'e>(
    executor: impl Executor<'e, Database = Any>,
) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query_as("SELECT name, value FROM switch_board")
        .fetch_all(executor)
        .await
        .context("switch_board::all")
}
