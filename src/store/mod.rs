//! The two stores every flow talks to, each with a real and an embedded backend:
//! [`Db`] (Postgres | SQLite, through `sqlx::Any`) and [`KeyStore`]
//! (Redis | in-process). All coordination between requests and between instances
//! goes through them, never through process memory.

pub mod bus;
pub mod db;
pub mod kv;
pub mod memory_kv;
pub mod orders;
pub mod payments;
pub mod products;
pub mod redis_bus;
pub mod redis_kv;
pub mod users;

pub use bus::MessageBus;
pub use db::{Db, now_ms};
pub use kv::{Claim, KeyStore, KvError};
