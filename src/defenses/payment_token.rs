//! Defense `payment_token` — a one-time token, issued by the server, for each pay.
//!
//! **Without it** a replayed or forged pay request (a request copied from the
//! network log, a script, a second tab) reaches the payment step and can start a
//! second charge.
//!
//! **How it prevents that**: when the payment popup opens, the browser asks
//! `POST /api/orders/{order_no}/payment-token`; the server stores an unguessable
//! token bound to (user, order) in the key store with a TTL. `pay` consumes it with
//! one atomic compare-and-delete (a Lua script on Redis): exactly one request can
//! use it; a used, expired, foreign or forged token is refused with 403
//! `payment_token_invalid`. Payment keys come from the server (security matters),
//! ordinary idempotency keys from the browser.
//!
//! **Switched off**, the token is neither required nor consumed. Shown by
//! `tests/api/payments.rs` (on) and `tests/api/payment_defenses.rs` (off).

use std::time::Duration;

use super::Defense;
use crate::configuration::random_hex;
use crate::error::ApiError;
use crate::metrics;
use crate::startup::AppState;

pub const PAYMENT_TOKEN_HEADER: &str = "Payment-Token";

fn token_key(token: &str) -> String {
    format!("paytoken:{token}")
}

fn binding(user_id: i64, order_no: &str) -> String {
    format!("{user_id}:{order_no}")
}

/// Issues a fresh token for (user, order); returns it and its lifetime.
pub async fn issue(
    state: &AppState,
    user_id: i64,
    order_no: &str,
) -> Result<(String, Duration), ApiError> {
    let token = random_hex(24);
    let ttl = state.settings.payments.token_ttl;
    state
        .kv
        .set(&token_key(&token), &binding(user_id, order_no), ttl)
        .await?;
    Ok((token, ttl))
}

/// Consumes the presented token: succeeds once, for its own user and order only.
pub async fn consume(
    state: &AppState,
    presented: Option<&str>,
    user_id: i64,
    order_no: &str,
) -> Result<(), ApiError> {
    if !state.switches.is_on(Defense::PaymentToken) {
        return Ok(());
    }
    let token = presented.ok_or(ApiError::PaymentTokenMissing)?;
    let well_formed =
        !token.is_empty() && token.len() <= 128 && token.bytes().all(|b| b.is_ascii_alphanumeric());
    if !well_formed {
        return Err(ApiError::PaymentTokenInvalid);
    }
    // Compare-and-delete: a foreign user's attempt does not burn the owner's token.
    let consumed = state
        .kv
        .compare_and_delete(&token_key(token), &binding(user_id, order_no))
        .await?;
    if consumed {
        Ok(())
    } else {
        metrics::count(metrics::TOKEN_REFUSALS);
        Err(ApiError::PaymentTokenInvalid)
    }
}
