//! The defenses of DESIGN §2, one module each, and the switch board that turns
//! them on and off at run time (admin API, lab page) so that a learner can watch
//! the anomaly each one prevents.
//!
//! | id                | module                | shown by (tests/api/…)                       |
//! |-------------------|-----------------------|----------------------------------------------|
//! | `idempotency_key` | [`idempotency_key`]   | `idempotency.rs`, `defenses.rs`              |
//! | `unique_index`    | [`unique_index`]      | `defenses.rs`                                |
//! | `version_lock`    | [`version_lock`]      | `defenses.rs`, `flash_sale.rs`               |
//! | `payment_token`   | [`payment_token`]     | `payments.rs`, `payment_defenses.rs`         |
//! | `order_lock`      | [`order_lock`]        | `payments.rs`, `payment_defenses.rs`         |
//! | `callback_dedup`  | [`callback_dedup`]    | `callbacks.rs`, `payment_defenses.rs`        |
//! | `state_check`     | [`state_check`]       | `callbacks.rs`, `payment_defenses.rs`        |
//! | `message_dedup`   | [`message_dedup`]     | `rewards.rs`                                 |
//! | `stock_gate`      | [`stock_gate`]        | `stock_gate.rs`                              |
//! | `button_disable`  | `static/app.js`       | `browser.rs`                                 |
//! | `popup_key`       | `static/app.js`       | `browser.rs`                                 |
//!
//! The two browser defenses live in the page's JavaScript; the server only keeps
//! their switches, which the page reads from `GET /api/defenses`.

pub mod callback_dedup;
pub mod idempotency_key;
pub mod message_dedup;
pub mod order_lock;
pub mod payment_token;
pub mod state_check;
pub mod stock_gate;
pub mod unique_index;
pub mod version_lock;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// Every defense this build implements, by its public id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Defense {
    IdempotencyKey,
    UniqueIndex,
    VersionLock,
    PaymentToken,
    OrderLock,
    CallbackDedup,
    StateCheck,
    MessageDedup,
    ButtonDisable,
    PopupKey,
    StockGate,
}

impl Defense {
    pub const ALL: [Defense; 11] = [
        Self::ButtonDisable,
        Self::PopupKey,
        Self::IdempotencyKey,
        Self::UniqueIndex,
        Self::VersionLock,
        Self::PaymentToken,
        Self::OrderLock,
        Self::CallbackDedup,
        Self::StateCheck,
        Self::MessageDedup,
        Self::StockGate,
    ];

    /// The id used in the admin API, the `Flashguard-Defense` header and metrics.
    pub fn id(self) -> &'static str {
        match self {
            Self::IdempotencyKey => "idempotency_key",
            Self::UniqueIndex => "unique_index",
            Self::VersionLock => "version_lock",
            Self::PaymentToken => "payment_token",
            Self::OrderLock => "order_lock",
            Self::CallbackDedup => "callback_dedup",
            Self::StateCheck => "state_check",
            Self::MessageDedup => "message_dedup",
            Self::ButtonDisable => "button_disable",
            Self::PopupKey => "popup_key",
            Self::StockGate => "stock_gate",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|defense| defense.id() == id)
    }

    /// Where the defense acts: `browser` or `server`.
    pub fn layer(self) -> &'static str {
        match self {
            Self::ButtonDisable | Self::PopupKey => "browser",
            _ => "server",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The on/off state of every defense in this process. All on by default.
#[derive(Debug)]
pub struct SwitchBoard {
    switches: [AtomicBool; Defense::ALL.len()],
}

impl Default for SwitchBoard {
    fn default() -> Self {
        Self {
            switches: std::array::from_fn(|_| AtomicBool::new(true)),
        }
    }
}

impl SwitchBoard {
    pub fn is_on(&self, defense: Defense) -> bool {
        self.switches[defense.index()].load(Ordering::SeqCst)
    }

    pub fn set(&self, defense: Defense, on: bool) {
        self.switches[defense.index()].store(on, Ordering::SeqCst);
        tracing::warn!(defense = defense.id(), on, "defense switched");
    }

    /// `{"idempotency_key": true, …}` in a stable order.
    pub fn snapshot(&self) -> BTreeMap<&'static str, bool> {
        Defense::ALL
            .into_iter()
            .map(|defense| (defense.id(), self.is_on(defense)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_all_start_on() {
        let board = SwitchBoard::default();
        for defense in Defense::ALL {
            assert_eq!(Defense::from_id(defense.id()), Some(defense));
            assert!(board.is_on(defense));
        }
        board.set(Defense::UniqueIndex, false);
        assert!(!board.is_on(Defense::UniqueIndex));
        assert!(!board.snapshot()["unique_index"]);
        assert_eq!(Defense::from_id("nope"), None);
    }
}
