//! The key store: a small trait with the few atomic operations the defenses need.
//!
//! Real stack: Redis ([`super::redis_kv::RedisKv`]). Embedded default: an
//! in-process map with the same semantics ([`super::memory_kv::MemoryKv`]).
//! Every implementation prefixes the keys it is given with its namespace, so
//! several test runs or labs can share one Redis server.

use std::time::Duration;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("key store unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
}

/// What [`KeyStore::claim_and_decrement`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Taken { left: i64 },
    Repeat,
    Short,
    NotLoaded,
}

#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// The value at `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<String>, KvError>;

    /// Sets `key` to `value`, replacing any value, expiring after `ttl`.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), KvError>;

    /// Sets `key` only if it is absent (SET NX PX); true when this call set it.
    async fn set_if_absent(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, KvError>;

    /// Deletes `key` only if it still holds `expected`; true when it was deleted.
    async fn compare_and_delete(&self, key: &str, expected: &str) -> Result<bool, KvError>;

    /// The stock gate's one atomic step: if `claim_key` exists → [`Claim::Repeat`]
    /// (nothing else happens); if `counter_key` is absent → [`Claim::NotLoaded`];
    /// if it holds less than `by` → [`Claim::Short`]; otherwise decrement it by
    /// `by`, set `claim_key` (expiring after `claim_ttl`) and return
    /// [`Claim::Taken`] with what is left.
    async fn claim_and_decrement(
        &self,
        counter_key: &str,
        claim_key: &str,
        by: i64,
        claim_ttl: Duration,
    ) -> Result<Claim, KvError>;

    /// Undoes a claim: deletes `claim_key` and, only if it existed, adds `by`
    /// back to `counter_key`. True when something was given back.
    async fn release_claim(
        &self,
        counter_key: &str,
        claim_key: &str,
        by: i64,
    ) -> Result<bool, KvError>;

    /// Adds `by` to the integer at `key` if the key exists (returned stock).
    async fn add_if_present(&self, key: &str, by: i64) -> Result<(), KvError>;

    /// Sets `key` to `value` with no expiry (the gate's stock counters).
    async fn set_forever(&self, key: &str, value: &str) -> Result<(), KvError>;

    async fn delete(&self, key: &str) -> Result<(), KvError>;

    /// Removes every key of this store's namespace (used by the admin reset).
    async fn clear_namespace(&self) -> Result<(), KvError>;

    async fn ping(&self) -> Result<(), KvError>;

    /// A short name for logs and the start-up banner.
    fn describe(&self) -> String;
}
