//! Defense `order_lock` (分布式锁) — "一锁二判三更新": lock the order, check its
//! state, then update.
//!
//! **Without it** two pay requests for one order (two tabs, two tokens, a retry
//! with a new key) both read "no payment yet" and both create a payment and
//! charge: a double charge.
//!
//! **How it prevents that**: before checking the order's state, the pay flow takes
//! a lock in the key store: `SET lock:{o<no>} <random owner> NX PX <ttl>`. The
//! owner value is random per request, and the lock is released by a Lua
//! compare-and-delete, so a request whose lock expired can never delete the lock
//! of the request that holds it now. A second request waits (bounded) for the
//! lock, then checks the state and finds the payment the first one created.
//! The TTL frees the lock if its holder dies. A lock with a TTL can still have
//! two holders (a holder paused past its TTL), which is why the state check and
//! the unique index on the active payment stay behind it.
//!
//! **Switched off**, no lock is taken and the check-then-insert race is open; the
//! lab's race window then widens the gap between the state check and the insert
//! so the double charge shows reliably. Shown by `tests/api/payment_defenses.rs`:
//! `with_order_lock_the_same_race_charges_once` (on) and
//! `without_order_lock_concurrent_pays_charge_twice` (off).

use std::sync::Arc;
use std::time::Duration;

use crate::causes::Causes;
use crate::configuration::PaymentSettings;
use crate::metrics;
use crate::store::{KeyStore, KvError, key_layout};
use crate::switches::{Defense, SwitchBoard};
use crate::trace;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another payment request holds this order's lock; retry shortly")]
    Locked,
    #[error(transparent)]
    KeyStore(#[from] KvError),
}

/// The defense, built once at start-up.
#[derive(Debug)]
pub struct OrderLocks {
    kv: Arc<dyn KeyStore>,
    switches: Arc<SwitchBoard>,
    /// How long a lock lives if its holder dies.
    ttl: Duration,
    /// How long a request waits for the lock before 409 `order_locked`.
    wait: Duration,
}

/// A held lock (or none when the defense is off); give it back with [`OrderLocks::release`].
#[derive(Debug)]
pub struct OrderLock {
    key: String,
    owner: Option<String>,
}

impl OrderLocks {
    pub fn new(
        kv: Arc<dyn KeyStore>,
        switches: Arc<SwitchBoard>,
        settings: &PaymentSettings,
    ) -> Self {
        Self {
            kv,
            switches,
            ttl: settings.lock_ttl,
            wait: settings.lock_wait,
        }
    }

    // [lesson order_lock::acquire_release]
    /// Takes the lock of `order_no`, waiting up to the configured time.
    pub async fn acquire(&self, order_no: &str) -> Result<OrderLock, LockError> {
        let key = key_layout::order_lock(order_no);
        if !self.switches.is_on(Defense::OrderLock) {
            trace::step("order_lock off: no lock");
            return Ok(OrderLock { key, owner: None });
        }
        let owner = uuid::Uuid::new_v4().to_string();
        let deadline = tokio::time::Instant::now() + self.wait;
        while !self.kv.set_if_absent(&key, &owner, self.ttl).await? {
            metrics::count(metrics::LOCK_WAITS);
            if tokio::time::Instant::now() >= deadline {
                return Err(LockError::Locked);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        trace::step("order lock taken");
        Ok(OrderLock {
            key,
            owner: Some(owner),
        })
    }

    /// Compare-and-delete: removes the lock only if this request still owns it.
    pub async fn release(&self, lock: OrderLock) {
        let Some(owner) = lock.owner else {
            return;
        };
        match self.kv.compare_and_delete(&lock.key, &owner).await {
            Ok(true) => trace::step("order lock released"),
            Ok(false) => tracing::warn!(key = %lock.key, "order lock expired before release"),
            Err(error) => {
                tracing::warn!(error = %Causes(&error), "order lock release failed; its TTL frees it")
            }
        }
    }
    // [/lesson]

    /// The teaching aid: with the lock off, pause between the check and the insert.
    pub async fn race_window(&self) {
        self.switches.widen_race_unless(Defense::OrderLock).await;
    }
}
