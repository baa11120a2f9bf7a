//! The last step of every keyed request (`POST /api/orders`, `/pay`): the
//! outcome is stored with the idempotency key and sent, or, when there is no
//! outcome to store (validation, server failure), the key is released so that the
//! client's retry runs the business.

use actix_web::HttpResponse;

use crate::defenses::idempotency_key::{IdempotencyKeys, Lease, Reply};
use crate::error::ApiError;

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
