//! Placing an order in the flash sale (docs/design.md §2.1): [`place`] is the
//! one entry point, and runs the defenses in the order they apply.
//!
//! 1. **Front door** (`front_door.rs`, one key-store round trip): the key's
//!    cached answer is replayed; a product the gate has no units of is
//!    answered "sold out" without any database work (a loser ends here).
//! 2. **idempotency_key**: the in-flight mark; a concurrent duplicate is told
//!    409 at once.
//! 3. **stock_gate**: the buyer's unit is claimed in the key store; a repeat of
//!    the same (user, key) gets the first request's answer.
//! 4. **The order's transaction** — with the winners of the same moment
//!    (`batch.rs`, group commit) or alone (`alone.rs`): the key row claimed,
//!    the order inserted (`unique_index`), the stock taken (`version_lock`),
//!    the answer stored with the key; one commit. Both paths end in an
//!    [`Outcome`] or an error (`Refused` comes only from a batch; alone, sold
//!    out is an error). Then the gate's unit is kept if an order was made,
//!    else given back.
//! 5. **The answer** is recorded with the key when the transaction did not,
//!    cached, and the mark removed (`flows/keyed.rs`).
//!
//! A winner: 1 open → 2 marked → 3 unit taken → 4 placed in a batch → 5
//! cached. A loser: 1 "sold out" (and that answer cached under its key).

mod alone;
pub mod batch;
mod front_door;
mod order;

use crate::defenses::idempotency_key::{self, Entry, KeyedRequest, Reply};
use crate::defenses::stock_gate::{Decision, GatePass};
use crate::domain::IdempotencyKey;
use crate::error::ApiError;
use crate::flows::keyed::{self, Answered, OrderAnswer};
use crate::state::AppState;
use crate::store::orders;
use crate::switches::Defense;
use batch::OrderBatches;
use front_door::FrontDoor;
pub use order::OrderRequestBody;
use order::created;
use order::{Buyer, OrderRequest, Outcome};

/// `POST /api/orders` for `user_id` under `key`: steps 1 to 5 above.
pub async fn place(
    state: &AppState,
    batches: &OrderBatches,
    user_id: i64,
    key: &IdempotencyKey,
    body: &[u8],
) -> Result<Answered, ApiError> {
    let (order, canonical_body) = OrderRequest::parse(body)?;
    let keyed = KeyedRequest {
        user_id,
        key,
        fingerprint: idempotency_key::fingerprint("POST", "/api/orders", &canonical_body),
    };
    match front_door::check(state, &keyed, order).await? {
        FrontDoor::Replay(stored) => return Ok(Answered::Replayed(stored)),
        FrontDoor::SoldOut(reply) => return Ok(Answered::Fresh(reply)),
        FrontDoor::SoldOutForNow => return Err(ApiError::SoldOutForNow),
        FrontDoor::Open => {}
    }
    let flight = match state.keys.enter(&keyed).await? {
        Entry::Replay(stored) => return Ok(Answered::Replayed(stored)),
        Entry::Run(flight) => flight,
    };
    let buyer = Buyer {
        keyed: &keyed,
        flight: &flight,
    };
    let answer = take_a_unit_and_place(state, batches, buyer, order).await;
    keyed::finish_in_one_commit(&state.keys, &keyed, flight, answer).await
}

/// Steps 3 and 4: the gate's unit, then the order's transaction (in a batch
/// when group commit takes it, else alone); the unit is kept only if an order
/// was made.
#[tracing::instrument(skip_all, fields(user_id = buyer.keyed.user_id, product_id = order.product_id))]
async fn take_a_unit_and_place(
    state: &AppState,
    batches: &OrderBatches,
    buyer: Buyer<'_>,
    order: OrderRequest,
) -> Result<OrderAnswer, ApiError> {
    let (user_id, key) = (buyer.keyed.user_id, buyer.keyed.key);
    let quantity = order.quantity.get();
    let pass = match state
        .gate
        .admit(order.product_id, user_id, key, quantity)
        .await?
    {
        Decision::Pass(pass) => pass,
        Decision::Repeat => return repeat_at_gate(state, buyer).await,
    };
    if pass.is_some() {
        state.faults.stall_after_gate().await; // the lab's frozen instance
    }
    let gate_cut_off = pass.as_ref().and_then(GatePass::cut_off);
    // No `?` before the gate's unit is settled: an error gives it back too.
    let outcome = match batch::place(state, batches, buyer, order, gate_cut_off).await {
        Ok(Some(outcome)) => Ok(outcome),
        Ok(None) => alone::place(state, buyer, order).await,
        Err(error) => Err(error),
    };
    // Settled before the answer is looked up (a duplicate's order, another
    // request's committed answer): those reads change nothing at the gate.
    if let Some(pass) = pass {
        let made_an_order = matches!(outcome, Ok(Outcome::Placed(_)));
        state.gate.finish(pass, made_an_order).await;
    }
    answer_of(state, buyer, outcome?).await
}

/// The answer an outcome gives: the committed reply, or for an outcome that
/// kept nothing, the order or the answer that was there first.
async fn answer_of(
    state: &AppState,
    buyer: Buyer<'_>,
    outcome: Outcome,
) -> Result<OrderAnswer, ApiError> {
    Ok(match outcome {
        Outcome::Placed(reply) | Outcome::Refused(reply) => OrderAnswer::Recorded(reply),
        Outcome::Duplicate => OrderAnswer::Unrecorded(existing_order(state, buyer).await?),
        Outcome::KeyTakenBefore => OrderAnswer::Replay(
            state
                .keys
                .committed_answer_or_in_progress(buyer.keyed)
                .await?,
        ),
    })
}

/// The gate saw this (user, key) before: the key row's committed answer (a
/// replay, or 422 for another payload), else its order, else "still in
/// progress".
async fn repeat_at_gate(state: &AppState, buyer: Buyer<'_>) -> Result<OrderAnswer, ApiError> {
    if buyer.flight.is_guarded()
        && let Some(stored) = state.keys.committed_answer(buyer.keyed).await?
    {
        return Ok(OrderAnswer::Replay(stored));
    }
    let (user_id, key) = (buyer.keyed.user_id, buyer.keyed.key);
    match orders::find_by_key(state.db.pool(), user_id, key.as_str()).await? {
        Some(order) => created(&order, Some(Defense::StockGate)).map(OrderAnswer::Unrecorded),
        None => Err(ApiError::RepeatAtGate),
    }
}

/// The answer for a duplicate caught by the unique index: the order that won.
async fn existing_order(state: &AppState, buyer: Buyer<'_>) -> Result<Reply, ApiError> {
    let (user_id, key) = (buyer.keyed.user_id, buyer.keyed.key);
    let order = orders::find_guarded_by_key(state.db.pool(), user_id, key.as_str())
        .await?
        .ok_or_else(|| ApiError::Internal("unique violation without a winning order".into()))?;
    created(&order, Some(Defense::UniqueIndex))
}
