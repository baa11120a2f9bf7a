//! Reading the headers of a request.

use actix_web::HttpRequest;
use utoipa::IntoParams;

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

// The headers as the API description (routes/openapi.rs) declares them.

/// `Idempotency-Key`: one key per business action (docs/design.md §3.1).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // describes the header; the handler reads it itself
pub struct IdempotencyKeyHeader {
    /// 1 to 255 visible ASCII characters (a UUID is ideal), one per business
    /// action: the same key with the same body is answered once and replayed.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]{1,255}$",
        example = "6f1c2b1e-4d2a-4f0b-9a52-0c7f2b1d9e11"
    )]
    idempotency_key: String,
}

/// `Payment-Token`: the one-time token (一次性令牌) from `payment-token`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // describes the header; the handler reads it itself
pub struct PaymentTokenHeader {
    /// The token from `POST /api/orders/{order_no}/payment-token`, good once.
    #[param(rename = "Payment-Token", min_length = 1, max_length = 255)]
    payment_token: String,
}

/// `PSP-Signature`: the provider's HMAC over the timestamp and the raw body.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // describes the header; the handler reads it itself
pub struct SignatureHeader {
    /// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, at most five minutes old.
    #[param(
        rename = "PSP-Signature",
        pattern = "^t=[0-9]{1,19},v1=[0-9a-f]{64}$",
        example = "t=1767225600,v1=0f4c6a3e2b1d9c8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f"
    )]
    psp_signature: String,
}
