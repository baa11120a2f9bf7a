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
    #[error("key store unavailable")]
    Unavailable(#[from] redis::RedisError),
}

/// The keys of one stock-gate claim: the product's counter, its set of pending
/// claims (until their lease ends, for the reconciliation) and its set of
/// claims still placing their order (until the order commits or fails), the
/// claim's own key, and its member in both sets.
#[derive(Debug, Clone, Copy)]
pub struct GateKeys<'a> {
    pub counter: &'a str,
    pub pending: &'a str,
    pub placing: &'a str,
    pub claim: &'a str,
    pub member: &'a str,
}

/// A claim as the database knows it once its order committed:
/// `<units>|<user id>:<idempotency key>`. The reconciliation adds up the units,
/// and recognises a claim that became an order by the same text.
pub fn claim_member(units: i64, user_id: i64, key: &str) -> String {
    format!("{units}|{user_id}:{key}")
}

/// A pending claim as a member of the gate's sets: the claim, then `@` and the
/// instance that holds it, so that the others can release the claims of an
/// instance whose heartbeat lapsed (docs/scaling.md).
pub fn claim_member_of(instance: &str, units: i64, user_id: i64, key: &str) -> String {
    format!("{}@{instance}", claim_member(units, user_id, key))
}

/// A pending member split into the claim (as the database knows it) and the
/// instance holding it (`None` for a member without one).
pub fn claim_and_instance(member: &str) -> (&str, Option<&str>) {
    match member.rsplit_once('@') {
        Some((claim, instance)) => (claim, Some(instance)),
        None => (member, None),
    }
}

/// One reconciliation of a product's counter ([`KeyStore::reconcile_counter`]).
#[derive(Debug, Clone, Copy)]
pub struct Reconcile<'a> {
    pub counter: &'a str,
    pub pending: &'a str,
    pub placing: &'a str,
    /// The database's stock.
    pub stock: i64,
    /// The claims (as [`claim_member`]) that already became orders.
    pub committed: &'a [String],
    /// The instances whose heartbeat is live; `None` when unknown (heartbeats
    /// off, or the registry unreadable): then only leases end claims.
    pub live: Option<&'a [String]>,
    pub now_ms: i64,
}

impl Reconcile<'_> {
    /// Whether a pending member still holds its units (its instance is alive,
    /// as far as is known).
    pub fn holder_is_alive(&self, member: &str) -> bool {
        match (claim_and_instance(member).1, self.live) {
            (Some(instance), Some(live)) => live.iter().any(|alive| alive == instance),
            _ => true,
        }
    }

    /// Whether a pending member became an order.
    pub fn is_committed(&self, member: &str) -> bool {
        let claim = claim_and_instance(member).0;
        self.committed.iter().any(|done| done == claim)
    }
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
    /// The product's claims still placing their order (asked only when the
    /// counter is short).
    pub placing_key: Option<&'a str>,
    /// The key's in-flight mark: while it is there, the key's first request
    /// still runs (it may hold the last unit), so the door stays open and the
    /// mark answers the repeat (`None`: not asked).
    pub in_flight_key: Option<&'a str>,
    /// Cached at `cached_key` for `ttl` when the counter is short, no claim
    /// is still placing and the key is not in flight.
    pub refusal: Option<&'a str>,
    pub ttl: Duration,
    pub now_ms: i64,
}

/// What the front door said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorAnswer {
    /// The cached answer of this key.
    Cached(String),
    /// The counter is loaded and holds less than `need`, and no claim is
    /// still placing its order: final (the refusal is cached).
    Short,
    /// Short, but units are held by `held` claims still placing their order:
    /// they come back if an order fails (nothing is cached).
    ShortWhilePlacing { held: i64 },
    /// Neither: go on.
    Open,
}

/// What [`KeyStore::claim_and_decrement`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Taken {
        left: i64,
    },
    Repeat,
    Short,
    /// Short while `held` other claims are still placing their order.
    ShortWhilePlacing {
        held: i64,
    },
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
    /// and below `door.need`: [`DoorAnswer::ShortWhilePlacing`] when the
    /// placing set has a member that expires after `door.now_ms`, else
    /// [`KeyStore::store_refusal`]'s answer.
    async fn cached_or_short(&self, door: &Door<'_>) -> Result<DoorAnswer, KvError>;

    /// The refusal of a short gate, stored in one atomic step on the key's
    /// slot: the answer already cached at `door.cached_key` if there is one
    /// ([`DoorAnswer::Cached`]); [`DoorAnswer::Open`] while the key's
    /// in-flight mark is there (its first request still runs); else the
    /// refusal cached for `door.ttl` and [`DoorAnswer::Short`].
    async fn store_refusal(&self, door: &Door<'_>) -> Result<DoorAnswer, KvError>;

    /// The stock gate's one atomic step: if the claim key exists →
    /// [`Claim::Repeat`] (nothing else happens); if the counter is absent →
    /// [`Claim::NotLoaded`]; if it holds less than `by` → [`Claim::Short`], or
    /// [`Claim::ShortWhilePlacing`] when the placing set has a live member;
    /// otherwise decrement it by `by`, set the claim key (expiring after
    /// `claim_ttl`), add the member to the pending and the placing sets (scored
    /// by its expiry, `now_ms + claim_ttl`) and return [`Claim::Taken`] with
    /// what is left.
    async fn claim_and_decrement(
        &self,
        keys: &GateKeys<'_>,
        by: i64,
        claim_ttl: Duration,
        now_ms: i64,
    ) -> Result<Claim, KvError>;

    /// Undoes a claim: deletes the claim key and, only if it existed, removes
    /// the member from the pending and placing sets and adds `by` back to the
    /// counter. True when something was given back.
    async fn release_claim(&self, keys: &GateKeys<'_>, by: i64) -> Result<bool, KvError>;

    /// The claim's order committed: its member leaves the placing set (it
    /// stays pending, and its key keeps refusing repeats, until its lease ends).
    async fn settle_claim(&self, keys: &GateKeys<'_>) -> Result<(), KvError>;

    /// The gate's reconciliation, atomic: drops the pending and placing members
    /// that expired by `now_ms` or whose instance is not live, adds up the units
    /// of the remaining pending ones that are not committed, and sets the
    /// counter to `stock` minus that sum (at least 0). `None` (and nothing
    /// changes) when the counter is not loaded.
    async fn reconcile_counter(&self, job: &Reconcile<'_>) -> Result<Option<i64>, KvError>;

    /// An instance's heartbeat in the registry (a sorted set scored by the last
    /// beat): records `instance` at `now_ms`, forgets instances whose last beat
    /// is older than `lapsed_before`, and returns the live ones.
    async fn beat(
        &self,
        registry: &str,
        instance: &str,
        now_ms: i64,
        lapsed_before: i64,
    ) -> Result<Vec<String>, KvError>;

    /// The instances whose last beat is at `lapsed_before` or later.
    async fn live_instances(
        &self,
        registry: &str,
        lapsed_before: i64,
    ) -> Result<Vec<String>, KvError>;

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
