//! The front door of `POST /api/orders`, one round trip to the key store
//! (docs/design.md §2.1) — none for a repeat this instance already knows the
//! answer of (`src/answer_cache.rs`): the idempotency key's cached answer (a
//! replay) and the stock gate's sold-out fast path (a loser), asked together
//! in one atomic script; a loser's "sold out" is cached for its retry in the
//! same step — unless the same key's first request is still in flight (the
//! door stays open and the in-flight mark answers), or some units are still
//! held by orders being placed (a failed order gives its unit back): then the
//! loser waits while they keep ending, and if they stop ending with units
//! still held (a frozen or dead instance) it is told "sold out for now"
//! (`Retry-After`), not cached. Both defenses keep their switches: a defense
//! that is off is simply not asked. When the key store cannot answer, the door
//! is open and the database decides.

use std::sync::{Arc, OnceLock};

use super::order::OrderRequest;
use crate::causes::Causes;
use crate::defenses::idempotency_key::{KeyedRequest, Reply, StoredResponse};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Door, DoorAnswer, KvError, now_ms};
use crate::trace;

/// What the front door decided.
#[derive(Debug)]
pub enum FrontDoor {
    /// The key's answer, cached: send it again.
    Replay(StoredResponse),
    /// The gate's counter is short: sold out, without any database work.
    SoldOut(Reply),
    /// Short, while other orders are still being placed: not final.
    SoldOutForNow,
    Open,
}

// [lesson front_door::check]
pub async fn check(
    state: &AppState,
    keyed: &KeyedRequest<'_>,
    order: OrderRequest,
) -> Result<FrontDoor, ApiError> {
    if let Some(stored) = state.keys.local_answer(keyed)? {
        return Ok(FrontDoor::Replay(stored));
    }
    let cached_key = state.keys.cache_slot(keyed);
    let in_flight_key = state.keys.in_flight_slot(keyed);
    let counter_key = state.gate.counter_slot(order.product_id);
    let placing_key = state.gate.placing_slot(order.product_id);
    let bucketed = state.gate.is_bucketed();
    if cached_key.is_none() && counter_key.is_none() && !bucketed {
        return Ok(FrontDoor::Open);
    }
    let sold_out = sold_out_at_gate()?;
    let refusal = state.keys.cached_form(keyed, &sold_out.reply.stored);
    let mut door = Door {
        cached_key: cached_key.as_deref(),
        counter_key: counter_key.as_deref(),
        placing_key: placing_key.as_deref(),
        in_flight_key: in_flight_key.as_deref(),
        need: order.quantity.get(),
        refusal: refusal.as_deref(),
        ttl: state.settings.idempotency.retention,
        now_ms: now_ms(),
    };
    // Units only held by orders being placed: wait (bounded) for them to end.
    let mut wait = state.gate.placing_wait();
    loop {
        let answer = if bucketed {
            ask_buckets(state, &door, order.product_id).await
        } else {
            state.kv.cached_or_short(&door).await
        };
        if let Ok(DoorAnswer::ShortWhilePlacing { held }) = answer
            && wait.next(held).await
        {
            door.now_ms = now_ms();
            continue;
        }
        return decide(state, keyed, &door, answer, sold_out);
    }
}
// [/lesson]

/// The front door when the gate's stock is in buckets: the key's cached
/// answer (the user's slot) and every bucket (the product's slots) asked at
/// once; a final "sold out" is stored after, as on a cluster with one bucket
/// (`store/redis_kv.rs`, `cached_or_short_by_slot`): an answer cached
/// meanwhile wins, and a key still in flight stays open.
async fn ask_buckets(
    state: &AppState,
    door: &Door<'_>,
    product_id: i64,
) -> Result<DoorAnswer, KvError> {
    let cached = async {
        match door.cached_key {
            Some(_) => state.kv.cached_or_short(door).await,
            None => Ok(DoorAnswer::Open),
        }
    };
    let buckets = state.gate.short_in_every_bucket(product_id, door.need);
    let (cached, buckets) = tokio::join!(cached, buckets);
    if let DoorAnswer::Cached(json) = cached? {
        return Ok(DoorAnswer::Cached(json));
    }
    match buckets? {
        DoorAnswer::Short => state.kv.store_refusal(door).await,
        answer => Ok(answer),
    }
}

/// What the key store's answer means for the request.
fn decide(
    state: &AppState,
    keyed: &KeyedRequest<'_>,
    door: &Door<'_>,
    answer: Result<DoorAnswer, KvError>,
    sold_out: &SoldOut,
) -> Result<FrontDoor, ApiError> {
    match answer {
        Ok(DoorAnswer::Cached(json)) => Ok(match state.keys.replay_cached(keyed, &json)? {
            Some(stored) => FrontDoor::Replay(stored),
            None => FrontDoor::Open,
        }),
        Ok(DoorAnswer::Short) => {
            trace::step("gate: sold out (fast path, no database work)");
            // Kept here only if the key store stored it with the key too.
            if door.cached_key.is_some() && door.refusal.is_some() {
                state.keys.remember_locally(keyed, sold_out.shared.clone());
            }
            Ok(FrontDoor::SoldOut(sold_out.reply.clone()))
        }
        Ok(DoorAnswer::ShortWhilePlacing { .. }) => {
            trace::step("gate: sold out for now (units held by orders being placed)");
            Ok(FrontDoor::SoldOutForNow)
        }
        Ok(DoorAnswer::Open) => {
            trace::step("key cache: miss; gate: open");
            Ok(FrontDoor::Open)
        }
        Err(error) => {
            tracing::warn!(error = %Causes(&error), "key store unavailable at the front door; the database decides");
            Ok(FrontDoor::Open)
        }
    }
}

/// The gate's sold-out answer: the same bytes for every loser, so built once
/// rather than on every request that passes the front door, and shared by
/// every loser's entry in the local answer cache.
struct SoldOut {
    reply: Reply,
    shared: Arc<StoredResponse>,
}

fn sold_out_at_gate() -> Result<&'static SoldOut, ApiError> {
    static SOLD_OUT: OnceLock<SoldOut> = OnceLock::new();
    if let Some(sold_out) = SOLD_OUT.get() {
        return Ok(sold_out);
    }
    let reply = ApiError::SoldOutAtGate.to_reply()?;
    let shared = Arc::new(reply.stored.clone());
    Ok(SOLD_OUT.get_or_init(|| SoldOut { reply, shared }))
}
