//! The last step of every keyed request (`POST /api/orders`, `/pay`): the
//! outcome is stored with the idempotency key and answered, or, when there is
//! no outcome to store (validation, server failure), the key is released so
//! that the client's retry runs the business. What is answered is data
//! ([`Answered`]); `routes/answer.rs` makes the HTTP response.
//!
//! Two shapes (docs/design.md §2.2): an order records its key row in its own
//! transaction (`finish_in_one_commit`); a payment, which calls the provider
//! in between, holds a lease on the row and stores the answer after (`finish`).

use crate::defenses::idempotency_key::{
    IdempotencyKeys, InFlight, KeyedRequest, Lease, Reply, StoredResponse,
};
use crate::error::ApiError;

/// What a keyed request is answered.
#[derive(Debug)]
pub enum Answered {
    /// This request's own answer (stored with its key when the defense is on).
    Fresh(Reply),
    /// An earlier request's answer under the same key, sent again
    /// (`Idempotent-Replayed: true`).
    Replayed(StoredResponse),
}

/// What the order flow answered, and whether the key row holds it already.
#[derive(Debug)]
pub enum OrderAnswer {
    /// Recorded with the key in the order's own transaction, committed.
    Recorded(Reply),
    /// Decided outside that transaction (sold out on reading the stock, a
    /// duplicate the unique index caught): still to be recorded.
    Unrecorded(Reply),
    /// Another request committed this key first: its answer.
    Replay(StoredResponse),
}

/// The payment's shape: the outcome stored on the leased key row, then answered.
pub async fn finish(
    keys: &IdempotencyKeys,
    lease: Lease,
    outcome: Result<Reply, ApiError>,
) -> Result<Answered, ApiError> {
    let reply = match outcome {
        Ok(reply) => reply,
        Err(error) if error.is_stored_with_key() => error.to_reply()?,
        Err(error) => {
            keys.release(&lease).await;
            return Err(error);
        }
    };
    keys.complete(&lease, &reply.stored).await?;
    Ok(Answered::Fresh(reply))
}

/// The order's shape: answers the order flow's outcome, recording it first
/// when the order's transaction did not; the in-flight mark is removed in
/// every case (and the answer cached when there is one).
pub async fn finish_in_one_commit(
    keys: &IdempotencyKeys,
    request: &KeyedRequest<'_>,
    flight: InFlight,
    answer: Result<OrderAnswer, ApiError>,
) -> Result<Answered, ApiError> {
    let reply = match answer {
        Ok(OrderAnswer::Recorded(reply)) => {
            keys.cache_and_unmark(&flight, Some(&reply.stored)).await;
            return Ok(Answered::Fresh(reply));
        }
        Ok(OrderAnswer::Replay(stored)) => {
            keys.cache_and_unmark(&flight, None).await;
            return Ok(Answered::Replayed(stored));
        }
        Ok(OrderAnswer::Unrecorded(reply)) => reply,
        Err(error) if error.is_stored_with_key() => match error.to_reply() {
            Ok(reply) => reply,
            Err(error) => return failed(keys, &flight, error.into()).await,
        },
        Err(error) => return failed(keys, &flight, error).await,
    };
    match keys
        .record_in_own_transaction(request, &flight, &reply.stored)
        .await
    {
        Ok(None) => {
            keys.cache_and_unmark(&flight, Some(&reply.stored)).await;
            Ok(Answered::Fresh(reply))
        }
        Ok(Some(theirs)) => {
            keys.cache_and_unmark(&flight, None).await;
            Ok(Answered::Replayed(theirs))
        }
        Err(error) => failed(keys, &flight, error.into()).await,
    }
}

/// Nothing to store: the mark goes, the error is sent; the client's retry runs.
async fn failed(
    keys: &IdempotencyKeys,
    flight: &InFlight,
    error: ApiError,
) -> Result<Answered, ApiError> {
    keys.cache_and_unmark(flight, None).await;
    Err(error)
}
