//! The two stores every flow talks to, each with a real and an embedded backend:
//! [`Db`] (Postgres | MySQL | SQLite, through `sqlx::Any`) and [`KeyStore`] +
//! [`MessageBus`] (Redis | in-process). All coordination between requests and
//! between instances goes through them, never through process memory. Every SQL
//! statement of the project lives in this module, one function per query,
//! generic over the connection it runs on ([`Conn`]: the pool or a transaction),
//! with each engine's dialect side by side where they differ (docs/mysql.md).

pub mod amqp_bus;
pub mod audit;
pub mod bus;
pub mod db;
pub mod dialect;
pub mod error;
pub mod idempotency_keys;
pub mod instance_lock;
pub mod key_layout;
pub mod kv;
pub mod lab;
pub mod memory_kv;
pub mod mock_provider;
pub mod orders;
pub mod outbox;
pub mod payment_events;
pub mod payments;
pub mod products;
pub mod redis_bus;
pub mod redis_connection;
pub mod redis_kv;
pub mod revoked_tokens;
pub mod rewards;
pub mod switch_board;
pub mod users;

pub use bus::MessageBus;
pub use db::{
    Backend, Db, PoolBounds, Tx, commit, millis, now_ms, placeholders, rollback, select_rows,
    values_rows,
};
pub use dialect::{Conn, sql};
pub use error::{QueryContext, StoreError};
pub use kv::{Claim, Door, DoorAnswer, GateKeys, KeyStore, KvError, Reconcile};
