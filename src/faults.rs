//! Fault injection for the lab (`PUT /api/admin/faults`): makes the failures
//! that at-least-once delivery is built for happen on demand.

use std::sync::atomic::{AtomicU64, Ordering};

/// The next N reward deliveries "crash" after their effect, before the ack.
#[derive(Debug, Default)]
pub struct Faults {
    crash_after_effect: AtomicU64,
}

impl Faults {
    pub fn set_crash_after_effect(&self, count: u64) {
        self.crash_after_effect.store(count, Ordering::SeqCst);
    }

    pub fn crash_after_effect(&self) -> u64 {
        self.crash_after_effect.load(Ordering::SeqCst)
    }

    /// Takes one pending crash, if any is left.
    pub fn take_crash(&self) -> bool {
        self.crash_after_effect
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}
