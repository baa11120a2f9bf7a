//! Defense `version_lock` (乐观锁, 版本号) — the stock row is only ever written
//! by a guarded update.
//!
//! **Without it** stock is decremented by read-modify-write: two requests read
//! `stock = 20`, both write `19`, and one sale is lost from the count (a lost
//! update). Under a flash sale that means more units sold than exist: 超卖.
//!
//! **How it prevents that**, in one of two correct ways (the lab setting
//! `stock_write`; the lesson teaches when each fits):
//! - the **version check** (default): `UPDATE products SET stock = stock - q,
//!   version = version + 1 WHERE id = $1 AND version = $2 AND stock >= q`
//!   (`store::products::take_stock_if_version`) succeeds only if nobody wrote
//!   since the read. A loser re-reads and retries after a short jittered pause,
//!   a bounded number of times; when the budget is spent the client gets 503
//!   `busy_retry` with `Retry-After` and nothing is stored, so its retry can
//!   win. On a hot row one reader in N wins, so the group commit
//!   (docs/design.md §2.3) takes a whole batch's units with one check.
//! - the **conditional decrement**: `… WHERE id = $1 AND stock >= q`
//!   (`store::products::take_stock_if_enough`) checks the row as it is now,
//!   under its lock: 0 rows means sold out, and nobody retries.
//!
//! Both depend on the `UPDATE` reading the current row: PostgreSQL at READ
//! COMMITTED (flashguard's level) waits for a concurrent writer and re-checks
//! the WHERE; at REPEATABLE READ it would raise a serialization failure instead.
//!
//! Per-product admission keeps few writers on one stock row at a time (the rest
//! wait in process, not in the database where they would only collide).
//!
//! **Switched off**, the write is the plain read-modify-write, and the lab's race
//! window widens the gap between read and write so the lost updates show
//! reliably. Shown by `tests/api/defenses.rs`:
//! `with_version_lock_the_same_race_sells_exactly_the_stock` (on) and
//! `without_version_lock_updates_are_lost_and_stock_is_oversold` (off); the two
//! guarded writes compared by `tests/api/lab.rs::experiment_hot_row`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::configuration::VersionLockSettings;
use crate::metrics;
use crate::store::products::{self, StockSnapshot};
use crate::store::{StoreError, Tx};
use crate::switches::{Defense, StockWrite, SwitchBoard};

/// Result of one attempt to take stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Taken,
    /// Someone wrote the row since we read it: re-read and retry.
    VersionConflict,
    /// The conditional decrement found too little stock: sold out.
    Short,
}

/// The defense, built once at start-up.
#[derive(Debug)]
pub struct VersionLock {
    switches: Arc<SwitchBoard>,
    settings: VersionLockSettings,
    admission: RowAdmission,
    /// Version conflicts since start (each one a retry), for the lab.
    conflicts: AtomicU64,
    deadlocks: AtomicU64,
}

impl VersionLock {
    pub fn new(switches: Arc<SwitchBoard>, settings: VersionLockSettings) -> Self {
        Self {
            switches,
            settings,
            admission: RowAdmission::default(),
            conflicts: AtomicU64::new(0),
            deadlocks: AtomicU64::new(0),
        }
    }

    /// Counts one order transaction the database rolled back to break a
    /// deadlock, and that runs again.
    pub fn count_deadlock(&self) {
        self.deadlocks.fetch_add(1, Ordering::Relaxed);
        metrics::count(metrics::DEADLOCK_RETRIES);
    }

    /// Deadlocks retried on this instance since start.
    pub fn deadlocks(&self) -> u64 {
        self.deadlocks.load(Ordering::Relaxed)
    }

    /// Counts one version conflict (the metric, and this instance's total).
    pub fn count_conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        metrics::count(metrics::VERSION_CONFLICTS);
    }

    /// Version conflicts on this instance since start.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Whether a guarded order may join the group commit: batches take their
    /// units with one version-checked update.
    pub fn batches(&self) -> bool {
        self.settings.batch_max > 1
            && self.switches.is_on(Defense::VersionLock)
            && self.switches.group_commit()
            && self.switches.stock_write() == StockWrite::VersionCheck
    }

    /// Attempts after the first one before answering 503 `busy_retry`.
    pub fn max_retries(&self) -> u32 {
        self.settings.max_retries
    }

    // [lesson version_lock::take_stock]
    /// Takes `quantity` units of the row read in `read`, inside `tx`: by the
    /// guarded write the lab chose (`stock_write`), or, switched off, by the
    /// unguarded read-modify-write.
    pub async fn take_stock(
        &self,
        tx: &mut Tx,
        read: &StockSnapshot,
        quantity: i64,
    ) -> Result<Take, StoreError> {
        if !self.switches.is_on(Defense::VersionLock) {
            products::overwrite_stock(&mut **tx, read, quantity).await?;
            return Ok(Take::Taken);
        }
        Ok(match self.switches.stock_write() {
            StockWrite::VersionCheck => {
                match products::take_stock_if_version(&mut **tx, read, quantity).await? {
                    true => Take::Taken,
                    false => Take::VersionConflict,
                }
            }
            StockWrite::ConditionalDecrement => {
                match products::take_stock_if_enough(&mut **tx, read.id, quantity).await? {
                    true => Take::Taken,
                    false => Take::Short,
                }
            }
        })
    }
    // [/lesson]

    /// The teaching aid: with the defense off, wait between the read and the
    /// write so that concurrent requests read the same stock.
    pub async fn race_window(&self) {
        self.switches.widen_race_unless(Defense::VersionLock).await;
    }

    /// Waits for one of the few writer slots of this product's stock row.
    pub async fn enter(&self, product_id: i64) -> Option<OwnedSemaphorePermit> {
        self.admission
            .enter(product_id, self.settings.per_product_writers)
            .await
    }

    /// Jittered exponential back-off before retry `attempt` (0-based), capped at 64×base.
    pub async fn back_off(&self, attempt: u32) {
        let base = u64::try_from(self.settings.backoff_base.as_micros()).unwrap_or(u64::MAX);
        let ceiling = base.saturating_mul(1 << attempt.min(6)).max(1);
        let pause = rand::rng().random_range(0..=ceiling);
        tokio::time::sleep(Duration::from_micros(pause)).await;
    }
}

/// Per-product admission: at most `writers` transactions of this instance work
/// on one stock row at a time; the others wait here, in process, instead of in
/// the database where they would only collide on the version.
#[derive(Debug, Default)]
struct RowAdmission {
    semaphores: Mutex<HashMap<i64, Arc<Semaphore>>>,
}

impl RowAdmission {
    async fn enter(&self, product_id: i64, writers: usize) -> Option<OwnedSemaphorePermit> {
        if writers == 0 {
            return None;
        }
        let semaphore = self
            .semaphores
            .lock()
            .entry(product_id)
            .or_insert_with(|| Arc::new(Semaphore::new(writers)))
            .clone();
        semaphore.acquire_owned().await.ok()
    }
}
