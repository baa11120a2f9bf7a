//! Reading the headers of a request.

use actix_web::HttpRequest;

use crate::domain::{IdempotencyKey, IdempotencyKeyError};
use crate::error::ApiError;

pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The parsed `Idempotency-Key` header of a keyed request.
pub fn idempotency_key_of(request: &HttpRequest) -> Result<IdempotencyKey, ApiError> {
    if request.headers().get_all(IDEMPOTENCY_KEY_HEADER).count() > 1 {
        return Err(IdempotencyKeyError::Repeated.into());
    }
    let header = request.headers().get(IDEMPOTENCY_KEY_HEADER);
    Ok(IdempotencyKey::from_header(
        header.map(|value| value.as_bytes()),
    )?)
}

/// A header's value, when it is present and visible ASCII.
pub fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}
