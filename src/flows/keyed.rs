//! The last step of every keyed request (`POST /api/orders`, `/pay`): the
//! outcome is stored with the idempotency key and sent, or, when there is no
//! outcome to store (validation, server failure), the key is released so that the
//! client's retry runs the business.
//!
//! Two shapes (docs/design.md §2.2): an order records its key row in its own
//! transaction (`finish_in_one_commit`); a payment, which calls the provider
//! in between, holds a lease on the row and stores the answer after (`finish`).

use actix_web::HttpResponse;

use crate::defenses::idempotency_key::{
    IdempotencyKeys, InFlight, KeyedRequest, Lease, Reply, StoredResponse,
};
use crate::error::ApiError;

/// What the order flow answered, and whether the key row holds it already.
#[derive(Debug)]
pub enum Answer {
    /// Recorded with the key in the order's own transaction, committed.
    Recorded(Reply),
    /// Decided outside that transaction (sold out, a duplicate the unique
    /// index caught): still to be recorded.
    Unrecorded(Reply),
    /// Another request committed this key first: its answer.
    Replay(StoredResponse),
}

pub async fn finish(
    keys: &IdempotencyKeys,
    lease: Lease,
    outcome: Result<Reply, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let reply = match outcome {
        Ok(reply) => reply,
        Err(error) if error.is_stored_with_key() => error.to_reply()?,
        Err(error) => {
            keys.release(&lease).await;
            return Err(error);
        }
    };
    keys.complete(&lease, &reply.stored).await?;
    Ok(reply.into_response())
}

/// Sends the order flow's answer; records it first when the order's
/// transaction did not; the in-flight mark is removed in every case.
pub async fn finish_in_one_commit(
    keys: &IdempotencyKeys,
    request: &KeyedRequest<'_>,
    flight: InFlight,
    outcome: Result<Answer, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let reply = match outcome {
        Ok(Answer::Recorded(reply)) => {
            keys.leave(&flight, Some(&reply.stored)).await;
            return Ok(reply.into_response());
        }
        Ok(Answer::Replay(stored)) => {
            keys.leave(&flight, None).await;
            return Ok(stored.replay());
        }
        Ok(Answer::Unrecorded(reply)) => reply,
        Err(error) if error.is_stored_with_key() => match error.to_reply() {
            Ok(reply) => reply,
            Err(error) => return failed(keys, &flight, error.into()).await,
        },
        Err(error) => return failed(keys, &flight, error).await,
    };
    match keys.record_alone(request, &flight, &reply.stored).await {
        Ok(None) => {
            keys.leave(&flight, Some(&reply.stored)).await;
            Ok(reply.into_response())
        }
        Ok(Some(theirs)) => {
            keys.leave(&flight, None).await;
            Ok(theirs.replay())
        }
        Err(error) => failed(keys, &flight, error.into()).await,
    }
}

/// Nothing to store: the mark goes, the error is sent; the client's retry runs.
async fn failed(
    keys: &IdempotencyKeys,
    flight: &InFlight,
    error: ApiError,
) -> Result<HttpResponse, ApiError> {
    keys.leave(flight, None).await;
    Err(error)
}
