//! flashguard: a flash-sale order backend that shows, under real concurrency,
//! every defense that keeps an API idempotent, and lets you switch each one off.
//!
//! | defense           | module                                  | test (tests/api/…)               |
//! |-------------------|-----------------------------------------|----------------------------------|
//! | `idempotency_key` | [`defenses::idempotency_key`]           | `idempotency.rs`, `defenses.rs`  |
//! | `unique_index`    | [`defenses::unique_index`]              | `defenses.rs`                    |
//! | `version_lock`    | [`defenses::version_lock`]              | `defenses.rs`, `flash_sale.rs`   |
//! | `payment_token`   | [`defenses::payment_token`]             | `payments.rs`, `payment_defenses.rs` |
//! | `order_lock`      | [`defenses::order_lock`]                | `payments.rs`, `payment_defenses.rs` |
//! | `callback_dedup`  | [`defenses::callback_dedup`]            | `callbacks.rs`, `payment_defenses.rs` |
//! | `state_check`     | [`defenses::state_check`]               | `callbacks.rs`, `payment_defenses.rs` |
//! | `message_dedup`   | [`defenses::message_dedup`]             | `rewards.rs`                     |
//!
//! Layout: [`startup`] builds the app for `main` and the tests; [`routes`] are
//! thin; [`flows`] compose the defenses; [`store`] holds the database and the key
//! store, each with a real (Postgres, Redis) and an embedded (SQLite, in-process)
//! backend.

pub mod auth;
pub mod configuration;
pub mod defenses;
pub mod domain;
pub mod error;
pub mod flows;
pub mod loadtest;
pub mod metrics;
pub mod psp;
pub mod routes;
pub mod startup;
pub mod store;
pub mod telemetry;
