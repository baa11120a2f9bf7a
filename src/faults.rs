//! Fault injection for the lab (`PUT /api/admin/faults`): makes the failures
//! that at-least-once delivery is built for happen on demand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest stall an order may be told to make (every wait is bounded).
pub const MAX_STALL_MS: u64 = 60_000;

/// The faults this instance is told to make.
#[derive(Debug, Default)]
pub struct Faults {
    /// The next N reward deliveries "crash" after their effect, before the ack.
    crash_after_effect: AtomicU64,
    /// The next N reward effects fail (their transaction is not committed):
    /// retried, then dead-lettered after `MESSAGE_MAX_DELIVERIES` failures.
    fail_effect: AtomicU64,
    /// Each order that took a unit at the stock gate pauses this long (ms)
    /// before its database step: an instance frozen (or about to be killed)
    /// in the middle of its orders (docs/scaling.md).
    stall_after_gate_ms: AtomicU64,
}

impl Faults {
    pub fn set_stall_after_gate(&self, millis: u64) {
        self.stall_after_gate_ms
            .store(millis.min(MAX_STALL_MS), Ordering::SeqCst);
    }

    pub fn stall_after_gate_ms(&self) -> u64 {
        self.stall_after_gate_ms.load(Ordering::SeqCst)
    }

    /// Makes the stall, if one is set.
    pub async fn stall_after_gate(&self) {
        let millis = self.stall_after_gate_ms();
        if millis > 0 {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
    }

    pub fn set_crash_after_effect(&self, count: u64) {
        self.crash_after_effect.store(count, Ordering::SeqCst);
    }

    pub fn crash_after_effect(&self) -> u64 {
        self.crash_after_effect.load(Ordering::SeqCst)
    }

    /// Takes one pending crash, if any is left.
    pub fn take_crash(&self) -> bool {
        take_one(&self.crash_after_effect)
    }

    pub fn set_fail_effect(&self, count: u64) {
        self.fail_effect.store(count, Ordering::SeqCst);
    }

    pub fn fail_effect(&self) -> u64 {
        self.fail_effect.load(Ordering::SeqCst)
    }

    /// Takes one pending effect failure, if any is left.
    pub fn take_effect_failure(&self) -> bool {
        take_one(&self.fail_effect)
    }
}

/// Counts one down, unless it is zero; true if it was not.
fn take_one(left: &AtomicU64) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}
