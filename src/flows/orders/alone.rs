//! An order in a transaction of its own (docs/design.md §2.1): the path when
//! group commit does not take it — the version lock off (so the lab can show
//! the lost update), the lab's conditional decrement, group commit switched
//! off, or a batch that could not run.
//!
//! Read the stock row; then in one transaction claim the key row, insert the
//! order (`unique_index` catches a duplicate here, before the hot row is
//! touched — on Postgres and SQLite; MySQL takes the stock first, see
//! `try_place`), take the stock (`version_lock`: only if the row is still the
//! version read) and store the answer with the key: one commit, so a crash
//! leaves all of it or none. A version conflict rolls back and retries with
//! jitter, a bounded number of times.

use crate::defenses::idempotency_key::KeyClaim;
use crate::defenses::unique_index::OnUniqueViolation;
use crate::defenses::version_lock::Take;
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;
use crate::store::db::Backend;
use crate::store::orders::{self, Order};
use crate::store::products::{self, StockSnapshot};
use crate::store::{Tx, commit, now_ms, rollback};
use crate::trace;

use super::order::{Buyer, OrderRequest, Outcome, created, new_order};

// [lesson version_lock::retry]
/// Reads the stock row and places the order under the version lock, with retries.
pub(super) async fn place(
    state: &AppState,
    buyer: Buyer<'_>,
    request: OrderRequest,
) -> Result<Outcome, ApiError> {
    let lock = &state.version_lock;
    for attempt in 0..=lock.max_retries() {
        if attempt > 0 {
            lock.back_off(attempt - 1).await;
        }
        // Few writers per stock row at once: read and write inside the permit.
        let _writer = lock.enter(request.product_id).await;
        let read = read_stock(state, request).await?;
        trace::step(format!(
            "read stock {} (version {})",
            read.stock, read.version
        ));
        lock.race_window().await;
        match try_place(state, buyer, &read, request.quantity.get()).await {
            Ok(Some(outcome)) => return Ok(outcome),
            Ok(None) => {
                trace::step(format!("version conflict, retry {}", attempt + 1));
                lock.count_conflict();
            }
            // The database broke a deadlock by rolling this transaction back
            // (InnoDB: error 1213): nothing of it was kept; run it again.
            Err(ApiError::Database(error)) if error.is_transient_conflict() => {
                trace::step("deadlock: the database rolled the transaction back, retry");
                lock.count_deadlock();
                continue;
            }
            Err(error) => return Err(error),
        }
    }
    tracing::warn!("version-lock retry budget exhausted");
    metrics::count(metrics::RETRIES_EXHAUSTED);
    Err(ApiError::BusyRetry)
}
// [/lesson]

/// The stock row as read before the write: the product must exist, be on sale
/// and have enough stock.
async fn read_stock(state: &AppState, request: OrderRequest) -> Result<StockSnapshot, ApiError> {
    let read = products::stock_snapshot(state.db.pool(), request.product_id)
        .await?
        .ok_or(ApiError::ProductNotFound(request.product_id))?;
    if read.sale_starts_at.is_some_and(|starts| starts > now_ms()) {
        return Err(ApiError::SaleNotStarted);
    }
    if read.stock < request.quantity.get() {
        return Err(ApiError::SoldOut);
    }
    Ok(read)
}

// [lesson unique_index::try_place]
/// One transaction, one commit: claim the key row, insert the order, take the
/// stock, store the answer with the key. `None`: the stock row changed since
/// it was read (retry). On MySQL the stock comes before the order: InnoDB
/// checks the order's foreign key with a *shared* lock on the product row, and
/// two orders holding that lock would each wait for the other to let go before
/// the stock update's exclusive lock: a deadlock for every pair of buyers.
/// Taking the exclusive lock first makes them queue.
async fn try_place(
    state: &AppState,
    buyer: Buyer<'_>,
    read: &StockSnapshot,
    quantity: i64,
) -> Result<Option<Outcome>, ApiError> {
    let (user_id, key) = (buyer.keyed.user_id, buyer.keyed.key);
    let new_order = new_order(state, user_id, key, read, quantity)?;
    let stock_first = state.db.backend() == Backend::Mysql;
    let mut tx = state.db.begin().await?;
    if state.keys.claim_in(&mut tx, buyer.flight).await? == KeyClaim::Lost {
        rollback(tx).await?;
        return Ok(Some(Outcome::KeyTakenBefore));
    }
    if stock_first && let Some(stop) = take_stock(state, &mut tx, read, quantity).await? {
        rollback(tx).await?;
        return stop.outcome();
    }
    let inserted = match orders::insert(&mut *tx, &new_order).await {
        // A reset removed the product while this order waited for it.
        Err(error) if error.is_foreign_key_violation() => {
            return Err(ApiError::ProductNotFound(read.id));
        }
        other => other.map(Some).on_unique_violation(|| None)?,
    };
    let Some(order) = inserted else {
        trace::step("unique index: duplicate refused, rolled back");
        rollback(tx).await?;
        return Ok(Some(Outcome::Duplicate));
    };
    trace::step("order inserted");
    if !stock_first && let Some(stop) = take_stock(state, &mut tx, read, quantity).await? {
        rollback(tx).await?;
        return stop.outcome();
    }
    record_and_commit(state, tx, buyer, &order).await.map(Some)
}

/// Why an order's transaction stops before its commit.
enum Stop {
    /// The stock row changed since it was read: retry.
    VersionConflict,
    /// The conditional decrement matched no row.
    SoldOut,
}

impl Stop {
    /// `None` for a retry.
    fn outcome(self) -> Result<Option<Outcome>, ApiError> {
        match self {
            Self::VersionConflict => Ok(None),
            Self::SoldOut => Err(ApiError::SoldOut),
        }
    }
}

/// The version-checked stock update, in the order's transaction.
async fn take_stock(
    state: &AppState,
    tx: &mut Tx,
    read: &StockSnapshot,
    quantity: i64,
) -> Result<Option<Stop>, ApiError> {
    match state.version_lock.take_stock(tx, read, quantity).await? {
        Take::Taken => {
            trace::step("stock taken");
            Ok(None)
        }
        Take::VersionConflict => Ok(Some(Stop::VersionConflict)),
        Take::Short => {
            trace::step("conditional decrement: 0 rows, sold out");
            Ok(Some(Stop::SoldOut))
        }
    }
}

/// The rest of the same transaction: the answer stored with the key, the one commit.
async fn record_and_commit(
    state: &AppState,
    mut tx: Tx,
    buyer: Buyer<'_>,
    order: &Order,
) -> Result<Outcome, ApiError> {
    let reply = created(order, None)?;
    state
        .keys
        .complete_in(&mut tx, buyer.flight, &reply.stored)
        .await?;
    commit(tx).await?;
    trace::step("commit (one commit: key, order, stock, answer)");
    Ok(Outcome::Placed(reply))
}
// [/lesson]
