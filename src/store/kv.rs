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

/// The keys of one stock-gate claim: the product's counter and set of pending
/// claims, the claim's own key, and its member in the pending set.
#[derive(Debug, Clone, Copy)]
pub struct GateKeys<'a> {
    pub counter: &'a str,
    pub pending: &'a str,
    pub claim: &'a str,
    pub member: &'a str,
}

/// A pending gate claim as a member of the pending set:
/// `<units>|<user id>:<idempotency key>`. The reconciliation adds up the units,
/// and recognises a claim that became an order by the same text.
pub fn claim_member(units: i64, user_id: i64, key: &str) -> String {
    format!("{units}|{user_id}:{key}")
}

/// The units of a pending claim (1 when the member carries none).
pub fn claim_units(member: &str) -> i64 {
    member
        .split_once('|')
        .and_then(|(units, _)| units.parse().ok())
        .unwrap_or(1)
}

/// The front door of a keyed write, asked in one round trip
/// ([`KeyStore::cached_or_short`]).
#[derive(Debug, Clone, Copy)]
pub struct Door<'a> {
    /// Where a completed answer of this key is cached (`None`: not asked).
    pub cached_key: Option<&'a str>,
    /// The stock counter to compare with `need` (`None`: not asked).
    pub counter_key: Option<&'a str>,
    pub need: i64,
    /// Cached at `cached_key` for `ttl` when the counter is short.
    pub refusal: Option<&'a str>,
    pub ttl: Duration,
}

/// What the front door said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorAnswer {
    /// The cached answer of this key.
    Cached(String),
    /// The counter is loaded and holds less than `need` (the refusal is cached).
    Short,
    /// Neither: go on.
    Open,
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

    /// One round trip for a replay and for a loser: the answer cached at
    /// `door.cached_key` if there is one; otherwise, if the counter is loaded
    /// and below `door.need`, the refusal is cached and [`DoorAnswer::Short`].
    async fn cached_or_short(&self, door: &Door<'_>) -> Result<DoorAnswer, KvError>;

    /// The stock gate's one atomic step: if the claim key exists →
    /// [`Claim::Repeat`] (nothing else happens); if the counter is absent →
    /// [`Claim::NotLoaded`]; if it holds less than `by` → [`Claim::Short`];
    /// otherwise decrement it by `by`, set the claim key (expiring after
    /// `claim_ttl`), add the member to the pending set (scored by its expiry,
    /// `now_ms + claim_ttl`) and return [`Claim::Taken`] with what is left.
    async fn claim_and_decrement(
        &self,
        keys: &GateKeys<'_>,
        by: i64,
        claim_ttl: Duration,
        now_ms: i64,
    ) -> Result<Claim, KvError>;

    /// Undoes a claim: deletes the claim key and, only if it existed, removes
    /// the member from the pending set and adds `by` back to the counter. True
    /// when something was given back.
    async fn release_claim(&self, keys: &GateKeys<'_>, by: i64) -> Result<bool, KvError>;

    /// The gate's reconciliation, atomic: drops pending members that expired by
    /// `now_ms`, adds up the units of the live ones not in `committed` (a member
    /// is `<units>|<user>:<key>`), and sets the counter to `stock` minus that sum
    /// (at least 0). `None` (and nothing changes) when
    /// the counter is not loaded.
    async fn reconcile_counter(
        &self,
        counter_key: &str,
        pending_key: &str,
        stock: i64,
        committed: &[String],
        now_ms: i64,
    ) -> Result<Option<i64>, KvError>;

    /// The members of a pending set that expire after `now_ms`.
    async fn pending_members(&self, pending_key: &str, now_ms: i64)
    -> Result<Vec<String>, KvError>;

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
