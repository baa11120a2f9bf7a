//! The server-side defenses of docs/design.md §2, one module each, named after
//! the defense. Each opens with what goes wrong without it, how it prevents that,
//! and the tests that show it on and off. The table that names and describes them
//! all (and the two browser defenses in `static/app.js`) is
//! [`crate::switches::Defense::info`]; the switch board is
//! [`crate::switches::SwitchBoard`].
//!
//! A defense depends only on the store, the domain, the switch board and its own
//! settings; defenses that keep state are small structs built once at start-up
//! ([`idempotency_key::IdempotencyKeys`], [`stock_gate::StockGate`],
//! [`version_lock::VersionLock`], [`order_lock::OrderLocks`],
//! [`payment_token::PaymentTokens`]), and each returns its own error type.

pub mod callback_dedup;
pub mod idempotency_key;
pub mod message_dedup;
pub mod order_lock;
pub mod payment_token;
pub mod state_check;
pub mod stock_gate;
pub mod unique_index;
pub mod version_lock;
