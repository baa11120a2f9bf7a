//! Defense `order_lock` — "一锁二判三更新": lock the order, check its state, then update.
//!
//! **Without it** two pay requests for one order (two tabs, two tokens, a retry
//! with a new key) both read "no payment yet" and both create a payment and
//! charge: a double charge.
//!
//! **How it prevents that**: before checking the order's state, the pay flow takes
//! a lock in the key store: `SET lock:order:<no> <random owner> NX PX <ttl>`. The
//! owner value is random per request, and the lock is released by a Lua
//! compare-and-delete, so a request whose lock expired can never delete the lock
//! of the request that holds it now. A second request waits (bounded) for the
//! lock, then checks the state and finds the payment the first one created.
//! The TTL frees the lock if its holder dies.
//!
//! **Switched off**, no lock is taken and the check-then-insert race is open; the
//! race window (`RACE_WINDOW_MS`, a teaching aid) then widens the gap between the
//! state check and the insert so the double charge shows reliably.
//! Shown by `tests/api/payment_defenses.rs`.

use std::time::Duration;

use super::{Defense, SwitchBoard};
use crate::configuration::Settings;
use crate::error::ApiError;
use crate::metrics;
use crate::startup::AppState;

/// A held lock (or none when the defense is off); give it back with [`OrderLock::release`].
#[derive(Debug)]
pub struct OrderLock {
    key: String,
    owner: Option<String>,
}

/// Takes the lock of `order_no`, waiting up to the configured time.
pub async fn acquire(state: &AppState, order_no: &str) -> Result<OrderLock, ApiError> {
    let key = format!("lock:order:{order_no}");
    if !state.switches.is_on(Defense::OrderLock) {
        return Ok(OrderLock { key, owner: None });
    }
    let settings = &state.settings.payments;
    let owner = uuid::Uuid::new_v4().to_string();
    let deadline = tokio::time::Instant::now() + settings.lock_wait;
    loop {
        if state
            .kv
            .set_if_absent(&key, &owner, settings.lock_ttl)
            .await?
        {
            return Ok(OrderLock {
                key,
                owner: Some(owner),
            });
        }
        metrics::count(metrics::LOCK_WAITS);
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::OrderLocked);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl OrderLock {
    /// Compare-and-delete: removes the lock only if this request still owns it.
    pub async fn release(self, state: &AppState) {
        let Some(owner) = self.owner else {
            return;
        };
        match state.kv.compare_and_delete(&self.key, &owner).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(key = %self.key, "order lock expired before release"),
            Err(error) => tracing::warn!(%error, "order lock release failed; its TTL frees it"),
        }
    }
}

/// The teaching aid: with the lock off, pause between the check and the insert.
pub async fn race_window(switches: &SwitchBoard, settings: &Settings) {
    if !switches.is_on(Defense::OrderLock) && !settings.race_window.is_zero() {
        tokio::time::sleep(settings.race_window).await;
    }
}
