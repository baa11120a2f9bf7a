//! Defense `version_lock` — optimistic locking on the stock row.
//!
//! **Without it** stock is decremented by read-modify-write: two requests read
//! `stock = 20`, both write `19`, and one sale is lost from the count (a lost
//! update). Under a flash sale that means more units sold than exist (oversell).
//!
//! **How it prevents that**: the write carries the version that was read,
//! `UPDATE products SET stock = stock - q, version = version + 1
//!  WHERE id = $1 AND version = $2 AND stock >= q`, so it only succeeds if nobody
//! wrote in between. A loser re-reads and retries after a short jittered pause, a
//! bounded number of times; when the budget is spent the client gets 503
//! `busy_retry` with `Retry-After` and nothing is stored, so its retry can win.
//!
//! **Switched off**, the write is the plain read-modify-write, and the configured
//! race window (a teaching aid, `RACE_WINDOW_MS`) widens the gap between read and
//! write so the lost updates show reliably. Shown by `tests/api/defenses.rs`.

use std::time::Duration;

use rand::Rng;
use sqlx::{Any, Transaction};

use super::{Defense, SwitchBoard};
use crate::configuration::{Settings, VersionLockSettings};
use crate::store::products::StockSnapshot;

/// Result of one attempt to take stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Taken,
    /// Someone wrote the row since we read it: re-read and retry.
    VersionConflict,
}

/// Decrements the stock read in `snapshot` by `quantity`, inside `tx`.
pub async fn take_stock(
    tx: &mut Transaction<'static, Any>,
    switches: &SwitchBoard,
    snapshot: &StockSnapshot,
    quantity: i64,
) -> Result<Take, sqlx::Error> {
    if !switches.is_on(Defense::VersionLock) {
        return blind_write(tx, snapshot, quantity).await;
    }
    let updated = sqlx::query(
        "UPDATE products SET stock = stock - $1, version = version + 1
          WHERE id = $2 AND version = $3 AND stock >= $1",
    )
    .bind(quantity)
    .bind(snapshot.id)
    .bind(snapshot.version)
    .execute(&mut **tx)
    .await?;
    Ok(if updated.rows_affected() == 1 {
        Take::Taken
    } else {
        Take::VersionConflict
    })
}

/// The unprotected write: whatever was read, minus the quantity, overwrites the row.
async fn blind_write(
    tx: &mut Transaction<'static, Any>,
    snapshot: &StockSnapshot,
    quantity: i64,
) -> Result<Take, sqlx::Error> {
    sqlx::query("UPDATE products SET stock = $1, version = version + 1 WHERE id = $2")
        .bind(snapshot.stock - quantity)
        .bind(snapshot.id)
        .execute(&mut **tx)
        .await?;
    Ok(Take::Taken)
}

/// The teaching aid: with the defense off, wait between the read and the write
/// so that concurrent requests read the same stock. Never waits when it is on.
pub async fn race_window(switches: &SwitchBoard, settings: &Settings) {
    if !switches.is_on(Defense::VersionLock) && !settings.race_window.is_zero() {
        tokio::time::sleep(settings.race_window).await;
    }
}

/// Per-product admission: at most `per_product_writers` transactions of this
/// instance work on one stock row at a time; the others wait here, in process,
/// instead of in the database where they would only collide on the version.
#[derive(Debug, Default)]
pub struct RowAdmission {
    semaphores:
        std::sync::Mutex<std::collections::HashMap<i64, std::sync::Arc<tokio::sync::Semaphore>>>,
}

impl RowAdmission {
    pub async fn enter(
        &self,
        product_id: i64,
        writers: usize,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if writers == 0 {
            return None;
        }
        let semaphore = {
            let mut semaphores = self
                .semaphores
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            semaphores
                .entry(product_id)
                .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(writers)))
                .clone()
        };
        semaphore.acquire_owned().await.ok()
    }
}

/// Jittered exponential back-off before retry `attempt` (0-based), capped at 64×base.
pub async fn back_off(settings: &VersionLockSettings, attempt: u32) {
    let base = settings.backoff_base.as_micros() as u64;
    let ceiling = base.saturating_mul(1 << attempt.min(6)).max(1);
    let pause = rand::rng().random_range(0..=ceiling);
    tokio::time::sleep(Duration::from_micros(pause)).await;
}
