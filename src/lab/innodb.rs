//! The InnoDB experiments (MySQL only, docs/mysql.md): what the unique index
//! spares a MySQL system that Postgres and SQLite never show.
//!
//! - `check_then_insert_deadlock`: buyers of one key each run "SELECT … FOR
//!   UPDATE the key row (missing), then INSERT it". At REPEATABLE READ the
//!   locking read of a missing row locks the gap where it would go; gap locks
//!   do not conflict with each other, so every buyer holds one, and every
//!   buyer's INSERT waits for the others' gaps: InnoDB breaks the cycle by
//!   rolling buyers back (error 1213), and they retry. With the defense on the
//!   unique index decides: each buyer INSERTs first; one wins, the others get
//!   error 1062 (which undoes only that statement) and read the winner.
//! - `update_without_index`: an UPDATE that finds its product by a column
//!   without an index scans, and locks, every row of the table; an update of
//!   another product waits for it (here: gives up after 1 s, error 1205). By
//!   the primary key it locks one row, and the other update goes through.
//!
//! Each buyer runs on a connection of its own, closed afterwards, so the
//! session settings of the experiment never reach the pool. Every wait is
//! bounded.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use sqlx::Connection;
use tokio::sync::Barrier;

use super::context::Context;
use super::{LabError, Outcome};
use crate::defenses::unique_index;
use crate::store::StoreError;
use crate::store::lab::{self, LabKey};
use crate::store::products::{self, NewProduct};

/// Buyers racing for one key.
const BUYERS: usize = 8;
/// Attempts per buyer before it gives up (each failed one was a deadlock).
const ATTEMPTS: u32 = 20;
/// The user the race's key belongs to (no such user: the key table has no foreign key).
const LAB_USER: i64 = 0;

/// What one buyer did.
#[derive(Debug, Default, Clone, Copy)]
struct Bought {
    deadlocks: i64,
    inserted: bool,
}

pub async fn check_then_insert_deadlock(context: &Context<'_>) -> Result<Outcome, LabError> {
    let state = context.state;
    let check_first = !unique_index::guards_insert(&state.switches);
    let key_text = format!("lab-deadlock-{}", uuid::Uuid::new_v4().simple());
    let key = LabKey {
        user_id: LAB_USER,
        key: &key_text,
    };
    let barrier = Arc::new(Barrier::new(BUYERS));
    let buyers = (0..BUYERS).map(|n| buyer(context, key, n, check_first, Arc::clone(&barrier)));
    let bought: Vec<Bought> = join_all(buyers)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let rows = lab::key_rows(state.db.pool(), key).await?;
    lab::delete_key(state.db.pool(), key).await?;
    let deadlocks: i64 = bought.iter().map(|b| b.deadlocks).sum();
    let inserted = bought.iter().filter(|b| b.inserted).count() as i64;
    Ok(Outcome {
        requests: BUYERS as u64,
        anomalies: deadlocks,
        counts: [
            ("buyers", BUYERS as i64),
            ("deadlocks", deadlocks),
            ("retries", deadlocks),
            ("inserted", inserted),
            ("read_the_winner", BUYERS as i64 - inserted),
            ("rows", rows),
        ]
        .into(),
        ..Outcome::default()
    })
}

/// One buyer: its transaction, run again after each deadlock.
/// A random pause before a retry: up to 2 ms × 2^attempt, at most 50 ms.
fn retry_pause(attempt: u32) -> Duration {
    use rand::Rng;
    let ceiling = (2u64 << attempt.min(5)).min(50);
    Duration::from_millis(rand::rng().random_range(1..=ceiling))
}

async fn buyer(
    context: &Context<'_>,
    key: LabKey<'_>,
    n: usize,
    check_first: bool,
    barrier: Arc<Barrier>,
) -> Result<Bought, LabError> {
    let mut conn = context.state.db.dedicated_connection().await?;
    lab::lock_wait_timeout(&mut conn, 5).await?;
    let owner = format!("buyer-{n}");
    let mut bought = Bought::default();
    for attempt in 0..ATTEMPTS {
        let meet = (attempt == 0).then_some(&*barrier);
        match buy_once(&mut conn, key, &owner, check_first, meet).await {
            Ok(inserted) => {
                bought.inserted = inserted;
                let _ = conn.close().await;
                return Ok(bought);
            }
            // InnoDB rolled the whole transaction back to break a deadlock;
            // the retry waits a random moment, or the buyers meet again and
            // again (seen in CI: one lost 20 in a row).
            Err(error) if error.is_transient_conflict() => {
                bought.deadlocks += 1;
                tokio::time::sleep(retry_pause(attempt)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(LabError::Step(format!(
        "buyer {n} lost {ATTEMPTS} deadlocks in a row"
    )))
}

// [lesson innodb::buy_once]
/// One attempt. Check first: a locking read, then the INSERT if nothing was
/// found. Insert first: the INSERT, and on error 1062 a plain read of the
/// winner. `meet`: the buyers wait for each other (at most 5 s) before the
/// INSERT, so that they really are concurrent. True when this buyer inserted.
async fn buy_once(
    conn: &mut sqlx::AnyConnection,
    key: LabKey<'_>,
    owner: &str,
    check_first: bool,
    meet: Option<&Barrier>,
) -> Result<bool, StoreError> {
    let mut tx = conn.begin().await.map_err(|source| StoreError {
        query: "lab::begin",
        source,
    })?;
    if check_first && lab::key_exists_for_update(&mut *tx, key).await? {
        tx.commit().await.ok();
        return Ok(false);
    }
    if let Some(barrier) = meet {
        let _ = tokio::time::timeout(Duration::from_secs(5), barrier.wait()).await;
    }
    let inserted = match lab::insert_key(&mut *tx, key, owner).await {
        Ok(()) => true,
        Err(error) if !check_first && error.is_unique_violation() => {
            lab::key_owner(&mut *tx, key).await?;
            false
        }
        Err(error) => return Err(error),
    };
    tx.commit().await.map_err(|source| StoreError {
        query: "lab::commit",
        source,
    })?;
    Ok(inserted)
}
// [/lesson]

pub async fn update_without_index(context: &Context<'_>) -> Result<Outcome, LabError> {
    let state = context.state;
    let by_name = !unique_index::guards_insert(&state.switches);
    let missing = || LabError::Step("the lab's product is gone".into());
    let product = products::find(state.db.pool(), context.product_id)
        .await?
        .ok_or_else(missing)?;
    let another = NewProduct {
        name: "lab: another product".into(),
        price_cents: 100,
        stock: 10,
        starts_in_secs: None,
    };
    let another = lab::create_product(&state.db, "update_without_index", &another).await?;
    let mut holder = state.db.dedicated_connection().await?;
    let mut tx = holder.begin().await.map_err(store("lab::begin"))?;
    lab::touch_stock(&mut *tx, &product, by_name).await?;
    let rows_locked = lab::rows_locked_here(&mut *tx).await?;
    let blocked = blocked_for_a_second(context, &another).await?;
    tx.rollback().await.map_err(store("lab::rollback"))?;
    let _ = holder.close().await;
    let rows = products::count(state.db.pool()).await?;
    Ok(Outcome {
        requests: 1,
        anomalies: blocked,
        counts: [
            ("rows_in_table", rows),
            ("rows_locked", rows_locked),
            ("other_update_blocked", blocked),
        ]
        .into(),
        ..Outcome::default()
    })
}

/// Whether an update of `other` (by its primary key) waits for a lock: it
/// gives up after 1 s with error 1205. 1 when blocked, 0 when it went through.
async fn blocked_for_a_second(
    context: &Context<'_>,
    other: &products::Product,
) -> Result<i64, LabError> {
    let mut conn = context.state.db.dedicated_connection().await?;
    lab::lock_wait_timeout(&mut conn, 1).await?;
    let blocked = match lab::touch_stock(&mut conn, other, false).await {
        Ok(()) => 0,
        Err(error) if error.is_lock_wait_timeout() => 1,
        Err(error) => return Err(error.into()),
    };
    let _ = conn.close().await;
    Ok(blocked)
}

fn store(query: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |source| StoreError { query, source }
}
