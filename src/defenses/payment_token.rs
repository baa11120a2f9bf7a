//! Defense `payment_token` (一次性令牌) — a one-time token, issued by the server,
//! for each pay.
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
//! `payment_token_invalid`. The token comes from the server because paying is the
//! security-critical step; the pay request's idempotency key still comes from the
//! browser, like every other key.
//!
//! **Switched off**, the token is neither required nor consumed. Shown by
//! `tests/api/payment_defenses.rs`: `with_payment_token_the_replay_is_refused` (on)
//! and `without_payment_token_a_replayed_pay_charges_again` (off).

use std::sync::Arc;
use std::time::Duration;

use crate::configuration::random_hex;
use crate::metrics;
use crate::store::{KeyStore, KvError, key_layout};
use crate::switches::{Defense, SwitchBoard};
use crate::trace;

pub const PAYMENT_TOKEN_HEADER: &str = "Payment-Token";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the Payment-Token header is missing: open the payment popup to get one")]
    Missing,
    #[error("the payment token is used, expired, or not issued for this order and user")]
    Invalid,
    #[error(transparent)]
    KeyStore(#[from] KvError),
}

/// The defense, built once at start-up.
#[derive(Debug)]
pub struct PaymentTokens {
    kv: Arc<dyn KeyStore>,
    switches: Arc<SwitchBoard>,
    ttl: Duration,
}

fn token_key(order_no: &str, token: &str) -> String {
    key_layout::payment_token(order_no, token)
}

fn binding(user_id: i64, order_no: &str) -> String {
    format!("{user_id}:{order_no}")
}

impl PaymentTokens {
    pub fn new(kv: Arc<dyn KeyStore>, switches: Arc<SwitchBoard>, ttl: Duration) -> Self {
        Self { kv, switches, ttl }
    }

    /// Issues a fresh token for (user, order); returns it and its lifetime.
    pub async fn issue(&self, user_id: i64, order_no: &str) -> Result<(String, Duration), KvError> {
        let token = random_hex(24);
        self.kv
            .set(
                &token_key(order_no, &token),
                &binding(user_id, order_no),
                self.ttl,
            )
            .await?;
        Ok((token, self.ttl))
    }

    // [lesson payment_token::consume]
    /// Consumes the presented token: succeeds once, for its own user and order only.
    pub async fn consume(
        &self,
        presented: Option<&str>,
        user_id: i64,
        order_no: &str,
    ) -> Result<(), TokenError> {
        if !self.switches.is_on(Defense::PaymentToken) {
            trace::step("payment_token off: no token needed");
            return Ok(());
        }
        let token = presented.ok_or(TokenError::Missing)?;
        let well_formed = !token.is_empty()
            && token.len() <= 128
            && token.bytes().all(|b| b.is_ascii_alphanumeric());
        if !well_formed {
            return Err(TokenError::Invalid);
        }
        // Compare-and-delete: a foreign user's attempt does not burn the owner's token.
        let consumed = self
            .kv
            .compare_and_delete(&token_key(order_no, token), &binding(user_id, order_no))
            .await?;
        if !consumed {
            trace::step("payment token refused (used, expired or foreign)");
            metrics::count(metrics::TOKEN_REFUSALS);
            return Err(TokenError::Invalid);
        }
        trace::step("payment token consumed");
        Ok(())
    }
    // [/lesson]
}
