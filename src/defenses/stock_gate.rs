//! Defense `stock_gate` — a Redis gate in front of the hot stock row.
//!
//! **Without it** every buyer of a flash sale queues on the one stock row in the
//! database: thousands of losers spend a connection and a version-checked update
//! to learn "sold out", and the winners wait behind them. And a naive cache gate
//! has a classic bug: a repeat click decrements the cached stock again, so units
//! are "sold" in the cache that nobody ever buys.
//!
//! **How it prevents that**: a sold-out product is answered from the cached stock
//! before any database work (not even the idempotency key's row). Otherwise, after
//! the key row is taken, one Lua script (or the in-process equivalent), atomic:
//! first it refuses a repeat of the same (user, idempotency key) *before touching
//! stock*; then it decrements the cached stock only if enough is left and records
//! the claim. Sold out is answered from Redis (409 `sold_out`,
//! `Flashguard-Defense: stock_gate`); only winners reach the database, where
//! `version_lock` stays the last line of defense. A winner whose database step
//! fails gives its unit back (the claim is deleted and the stock incremented in
//! one script, so it is given back once).
//!
//! The gate is loaded from the database on reset, at start (only where absent, so
//! a restart does not disturb other instances), and when switched back on; closed
//! orders return their units to it. The audit compares it with the database.
//!
//! **Switched off**, requests go straight to the database: still correct (the
//! version lock), only slower. Shown by `tests/api/stock_gate.rs`.

use std::time::Duration;

use super::Defense;
use crate::domain::IdempotencyKey;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::{Claim, products};

/// How long a cached stock counter lives when loaded lazily (effectively forever).
const COUNTER_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

pub fn stock_key(product_id: i64) -> String {
    format!("gate:stock:{product_id}")
}

fn claim_key(product_id: i64, user_id: i64, key: &IdempotencyKey) -> String {
    format!("gate:claim:{product_id}:{user_id}:{}", key.as_str())
}

/// A unit (or units) taken at the gate for one request.
#[derive(Debug)]
pub struct GatePass {
    product_id: i64,
    claim_key: String,
    quantity: i64,
}

/// What the gate decided.
#[derive(Debug)]
pub enum Decision {
    /// Go on to the database; with a pass when the gate took stock.
    Pass(Option<GatePass>),
    /// This (user, key) already took stock: answer with its order, do not take more.
    Repeat,
}

pub async fn admit(
    state: &AppState,
    product_id: i64,
    user_id: i64,
    key: &IdempotencyKey,
    quantity: i64,
) -> Result<Decision, ApiError> {
    if !state.switches.is_on(Defense::StockGate) {
        return Ok(Decision::Pass(None));
    }
    let claim_key = claim_key(product_id, user_id, key);
    // A claim lives as long as a key's lease: the request holding it finishes (or
    // gives it back) within that time, or is dead and its retry may claim again.
    let claim_ttl = state.settings.idempotency.lease;
    for _ in 0..2 {
        let claim = state
            .kv
            .claim_and_decrement(&stock_key(product_id), &claim_key, quantity, claim_ttl)
            .await?;
        match claim {
            Claim::Taken { .. } => {
                return Ok(Decision::Pass(Some(GatePass {
                    product_id,
                    claim_key,
                    quantity,
                })));
            }
            Claim::Repeat => return Ok(Decision::Repeat),
            Claim::Short => return Err(ApiError::SoldOutAtGate),
            Claim::NotLoaded => {
                if !load_one(state, product_id).await? {
                    // No such product: the database path answers 404.
                    return Ok(Decision::Pass(None));
                }
            }
        }
    }
    Ok(Decision::Pass(None))
}

/// Gives the units of a pass back (its database step did not create an order).
pub async fn give_back(state: &AppState, pass: GatePass) {
    let result = state
        .kv
        .release_claim(&stock_key(pass.product_id), &pass.claim_key, pass.quantity)
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "stock gate give-back failed: the gate now holds less than the database");
    }
}

/// The fast path for losers: true when the cached stock is known to be short.
/// A read, not a claim: it can only ever answer "sold out" a moment late.
pub async fn is_sold_out(
    state: &AppState,
    product_id: i64,
    quantity: i64,
) -> Result<bool, ApiError> {
    if !state.switches.is_on(Defense::StockGate) {
        return Ok(false);
    }
    let cached = state.kv.get(&stock_key(product_id)).await?;
    Ok(cached
        .and_then(|value| value.parse::<i64>().ok())
        .is_some_and(|left| left < quantity))
}

/// Units that returned to the database's stock (a closed order) return to the gate.
pub async fn returned(state: &AppState, product_id: i64, quantity: i64) -> Result<(), ApiError> {
    Ok(state
        .kv
        .add_if_present(&stock_key(product_id), quantity)
        .await?)
}

/// Loads one product's counter from the database if absent; false if no such product.
async fn load_one(state: &AppState, product_id: i64) -> Result<bool, ApiError> {
    let Some(product) = products::find(&state.db, product_id).await? else {
        return Ok(false);
    };
    state
        .kv
        .set_if_absent(
            &stock_key(product_id),
            &product.stock.to_string(),
            COUNTER_TTL,
        )
        .await?;
    Ok(true)
}

/// How [`load`] treats a counter that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Reset, or the gate switched back on: the database's stock wins.
    Overwrite,
    /// Start-up: leave live counters alone (other instances may be selling).
    OnlyMissing,
}

/// Loads the counters of every product from the database's stock.
pub async fn load(state: &AppState, mode: Load) -> Result<(), ApiError> {
    for product in products::list(&state.db).await? {
        let (key, stock) = (stock_key(product.id), product.stock.to_string());
        match mode {
            Load::Overwrite => state.kv.set_forever(&key, &stock).await?,
            Load::OnlyMissing => {
                state.kv.set_if_absent(&key, &stock, COUNTER_TTL).await?;
            }
        }
    }
    Ok(())
}
