//! [`KeyStore`] in process memory: the embedded default. Same semantics as the
//! Redis implementation (TTL, set-if-absent, compare-and-delete,
//! claim-and-decrement), each operation atomic under one mutex.
//!
//! It is single-process by nature: two instances with their own memory share
//! nothing, so several instances need the Redis store.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::kv::{Claim, Door, DoorAnswer, GateKeys, KeyStore, KvError, Reconcile, claim_units};

#[derive(Debug)]
struct Entry {
    value: String,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Debug, Default)]
pub struct MemoryKv {
    entries: Mutex<HashMap<String, Entry>>,
    /// Sorted sets (the gate's claims, the instances' heartbeats): member →
    /// score. Always locked
    /// after `entries` when both are needed, so operations stay atomic.
    sets: Mutex<HashMap<String, HashMap<String, i64>>>,
    /// Counts writes so that expired entries are purged now and then.
    writes: std::sync::atomic::AtomicU64,
}

const PURGE_EVERY_WRITES: u64 = 10_000;

impl MemoryKv {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `operation` on the live map, with expired entries of `key` dropped first.
    fn with_entries<T>(
        &self,
        key: &str,
        operation: impl FnOnce(&mut HashMap<String, Entry>) -> T,
    ) -> T {
        self.with_live(&[key], operation)
    }

    /// Like `with_entries`, for an operation on several keys at once.
    fn with_live<T>(
        &self,
        keys: &[&str],
        operation: impl FnOnce(&mut HashMap<String, Entry>) -> T,
    ) -> T {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        for key in keys {
            if entries.get(*key).is_some_and(|entry| !entry.is_live(now)) {
                entries.remove(*key);
            }
        }
        operation(&mut entries)
    }

    fn note_write(&self) {
        use std::sync::atomic::Ordering;
        if self.writes.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY_WRITES
            == PURGE_EVERY_WRITES - 1
        {
            let now = Instant::now();
            let mut entries = self.entries.lock();
            entries.retain(|_, entry| entry.is_live(now));
        }
    }
}

/// Adds `by` to an integer entry, if there is one.
fn add_to(entries: &mut HashMap<String, Entry>, key: &str, by: i64) {
    if let Some(counter) = entries.get_mut(key)
        && let Ok(value) = counter.value.parse::<i64>()
    {
        counter.value = (value + by).to_string();
    }
}

/// How many members of a sorted set are scored after `now_ms` (live claims).
fn live_members(
    sets: &HashMap<String, HashMap<String, i64>>,
    key: Option<&str>,
    now_ms: i64,
) -> i64 {
    key.and_then(|key| sets.get(key)).map_or(0, |set| {
        set.values()
            .filter(|expires_at| **expires_at > now_ms)
            .count() as i64
    })
}

/// A short gate's last step, on live entries: open while the key is in
/// flight, else the refusal cached (when there is one to cache) and "short".
fn refuse(entries: &mut HashMap<String, Entry>, door: &Door<'_>) -> DoorAnswer {
    if door
        .in_flight_key
        .is_some_and(|key| entries.contains_key(key))
    {
        return DoorAnswer::Open;
    }
    if let (Some(key), Some(refusal)) = (door.cached_key, door.refusal) {
        entries.insert(key.to_string(), entry(refusal, door.ttl));
    }
    DoorAnswer::Short
}

fn entry(value: &str, ttl: Duration) -> Entry {
    Entry {
        value: value.to_string(),
        expires_at: Some(Instant::now() + ttl),
    }
}

#[async_trait]
impl KeyStore for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<String>, KvError> {
        Ok(self.with_entries(key, |entries| {
            entries.get(key).map(|entry| entry.value.clone())
        }))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), KvError> {
        self.with_entries(key, |entries| {
            entries.insert(key.to_string(), entry(value, ttl))
        });
        self.note_write();
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, KvError> {
        let inserted = self.with_entries(key, |entries| {
            if entries.contains_key(key) {
                return false;
            }
            entries.insert(key.to_string(), entry(value, ttl));
            true
        });
        self.note_write();
        Ok(inserted)
    }

    async fn compare_and_delete(&self, key: &str, expected: &str) -> Result<bool, KvError> {
        Ok(self.with_entries(key, |entries| {
            if entries
                .get(key)
                .is_some_and(|entry| entry.value == expected)
            {
                entries.remove(key);
                return true;
            }
            false
        }))
    }

    async fn cached_or_short(&self, door: &Door<'_>) -> Result<DoorAnswer, KvError> {
        let keys: Vec<&str> = [door.cached_key, door.counter_key, door.in_flight_key]
            .into_iter()
            .flatten()
            .collect();
        let answer = self.with_live(&keys, |entries| {
            if let Some(cached) = door.cached_key.and_then(|key| entries.get(key)) {
                return DoorAnswer::Cached(cached.value.clone());
            }
            let left = door
                .counter_key
                .and_then(|key| entries.get(key))
                .and_then(|counter| counter.value.parse::<i64>().ok());
            if left.is_none_or(|left| left >= door.need) {
                return DoorAnswer::Open;
            }
            let held = live_members(&self.sets.lock(), door.placing_key, door.now_ms);
            if held > 0 {
                return DoorAnswer::ShortWhilePlacing { held };
            }
            refuse(entries, door)
        });
        if answer == DoorAnswer::Short {
            self.note_write();
        }
        Ok(answer)
    }

    async fn store_refusal(&self, door: &Door<'_>) -> Result<DoorAnswer, KvError> {
        let keys: Vec<&str> = [door.cached_key, door.in_flight_key]
            .into_iter()
            .flatten()
            .collect();
        let answer = self.with_live(&keys, |entries| {
            match door.cached_key.and_then(|key| entries.get(key)) {
                Some(cached) => DoorAnswer::Cached(cached.value.clone()),
                None => refuse(entries, door),
            }
        });
        if answer == DoorAnswer::Short {
            self.note_write();
        }
        Ok(answer)
    }

    async fn claim_and_decrement(
        &self,
        keys: &GateKeys<'_>,
        by: i64,
        claim_ttl: Duration,
        now_ms: i64,
    ) -> Result<Claim, KvError> {
        let claim = self.with_live(&[keys.counter, keys.claim], |entries| {
            if entries.contains_key(keys.claim) {
                return Claim::Repeat;
            }
            let Some(counter) = entries.get_mut(keys.counter) else {
                return Claim::NotLoaded;
            };
            let Ok(stock) = counter.value.parse::<i64>() else {
                return Claim::NotLoaded;
            };
            let mut sets = self.sets.lock();
            if stock < by {
                let held = live_members(&sets, Some(keys.placing), now_ms);
                if held > 0 {
                    return Claim::ShortWhilePlacing { held };
                }
                return Claim::Short;
            }
            counter.value = (stock - by).to_string();
            entries.insert(keys.claim.to_string(), entry(&by.to_string(), claim_ttl));
            let expires_at =
                now_ms.saturating_add(i64::try_from(claim_ttl.as_millis()).unwrap_or(i64::MAX));
            for set in [keys.pending, keys.placing] {
                sets.entry(set.to_string())
                    .or_default()
                    .insert(keys.member.to_string(), expires_at);
            }
            Claim::Taken { left: stock - by }
        });
        self.note_write();
        Ok(claim)
    }

    async fn release_claim(&self, keys: &GateKeys<'_>, by: i64) -> Result<bool, KvError> {
        Ok(self.with_live(&[keys.counter, keys.claim], |entries| {
            if entries.remove(keys.claim).is_none() {
                return false;
            }
            let mut sets = self.sets.lock();
            for set in [keys.pending, keys.placing] {
                if let Some(set) = sets.get_mut(set) {
                    set.remove(keys.member);
                }
            }
            add_to(entries, keys.counter, by);
            true
        }))
    }

    async fn settle_claim(&self, keys: &GateKeys<'_>) -> Result<(), KvError> {
        if let Some(set) = self.sets.lock().get_mut(keys.placing) {
            set.remove(keys.member);
        }
        Ok(())
    }

    async fn reconcile_counter(&self, job: &Reconcile<'_>) -> Result<Option<i64>, KvError> {
        Ok(self.with_entries(job.counter, |entries| {
            let counter = entries.get_mut(job.counter)?;
            let mut sets = self.sets.lock();
            let keeps = |member: &String, expires_at: &mut i64| {
                *expires_at > job.now_ms && job.holder_is_alive(member)
            };
            sets.entry(job.placing.to_string())
                .or_default()
                .retain(keeps);
            let pending_set = sets.entry(job.pending.to_string()).or_default();
            pending_set.retain(keeps);
            let pending: i64 = pending_set
                .keys()
                .filter(|member| !job.is_committed(member))
                .map(|member| claim_units(member))
                .sum();
            let value = job.stock.saturating_sub(pending).max(0);
            counter.value = value.to_string();
            Some(value)
        }))
    }

    async fn beat(
        &self,
        registry: &str,
        instance: &str,
        now_ms: i64,
        lapsed_before: i64,
    ) -> Result<Vec<String>, KvError> {
        let mut sets = self.sets.lock();
        let beats = sets.entry(registry.to_string()).or_default();
        beats.insert(instance.to_string(), now_ms);
        beats.retain(|_, last| *last >= lapsed_before);
        Ok(beats.keys().cloned().collect())
    }

    async fn live_instances(
        &self,
        registry: &str,
        lapsed_before: i64,
    ) -> Result<Vec<String>, KvError> {
        Ok(self
            .sets
            .lock()
            .get(registry)
            .map(|beats| {
                beats
                    .iter()
                    .filter(|(_, last)| **last >= lapsed_before)
                    .map(|(instance, _)| instance.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn pending_members(
        &self,
        pending_key: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, KvError> {
        Ok(self
            .sets
            .lock()
            .get(pending_key)
            .map(|set| {
                set.iter()
                    .filter(|(_, expires_at)| **expires_at > now_ms)
                    .map(|(member, _)| member.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn add_if_present(&self, key: &str, by: i64) -> Result<(), KvError> {
        self.with_entries(key, |entries| add_to(entries, key, by));
        Ok(())
    }

    async fn set_forever(&self, key: &str, value: &str) -> Result<(), KvError> {
        self.with_entries(key, |entries| {
            entries.insert(
                key.to_string(),
                Entry {
                    value: value.to_string(),
                    expires_at: None,
                },
            )
        });
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.with_entries(key, |entries| entries.remove(key));
        Ok(())
    }

    async fn clear_namespace(&self) -> Result<(), KvError> {
        self.entries.lock().clear();
        self.sets.lock().clear();
        Ok(())
    }

    async fn ping(&self) -> Result<(), KvError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "in-process key store (single instance only)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn set_if_absent_sets_only_once() {
        let kv = MemoryKv::new();
        assert!(kv.set_if_absent("k", "a", LONG).await.unwrap());
        assert!(!kv.set_if_absent("k", "b", LONG).await.unwrap());
        assert_eq!(kv.get("k").await.unwrap().as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn expired_entries_are_absent() {
        let kv = MemoryKv::new();
        kv.set("k", "a", Duration::from_millis(1)).await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(kv.get("k").await.unwrap(), None);
        assert!(kv.set_if_absent("k", "b", LONG).await.unwrap());
    }

    #[tokio::test]
    async fn compare_and_delete_keeps_another_owners_value() {
        let kv = MemoryKv::new();
        kv.set("lock", "owner-a", LONG).await.unwrap();
        assert!(!kv.compare_and_delete("lock", "owner-b").await.unwrap());
        assert!(kv.compare_and_delete("lock", "owner-a").await.unwrap());
        assert_eq!(kv.get("lock").await.unwrap(), None);
    }

    fn gate(claim: &'static str) -> GateKeys<'static> {
        GateKeys {
            counter: "stock",
            pending: "pending",
            placing: "placing",
            claim,
            member: claim,
        }
    }

    #[tokio::test]
    async fn a_claim_refuses_the_repeat_before_touching_stock() {
        let kv = MemoryKv::new();
        kv.set_forever("stock", "2").await.unwrap();
        assert_eq!(
            kv.claim_and_decrement(&gate("a"), 1, LONG, 0)
                .await
                .unwrap(),
            Claim::Taken { left: 1 }
        );
        assert_eq!(
            kv.claim_and_decrement(&gate("a"), 1, LONG, 0)
                .await
                .unwrap(),
            Claim::Repeat
        );
        assert_eq!(
            kv.get("stock").await.unwrap().as_deref(),
            Some("1"),
            "the repeat took nothing"
        );
    }

    #[tokio::test]
    async fn a_claim_is_short_while_the_last_units_are_placing() {
        let kv = MemoryKv::new();
        kv.set_forever("stock", "2").await.unwrap();
        kv.claim_and_decrement(&gate("a"), 1, LONG, 0)
            .await
            .unwrap();
        kv.settle_claim(&gate("a")).await.unwrap();
        assert_eq!(
            kv.claim_and_decrement(&gate("b"), 2, LONG, 0)
                .await
                .unwrap(),
            Claim::Short
        );
        assert_eq!(
            kv.claim_and_decrement(&gate("c"), 1, LONG, 0)
                .await
                .unwrap(),
            Claim::Taken { left: 0 }
        );
        assert_eq!(
            kv.claim_and_decrement(&gate("d"), 1, LONG, 0)
                .await
                .unwrap(),
            Claim::ShortWhilePlacing { held: 1 },
            "c is still placing its order"
        );
        assert_eq!(
            kv.claim_and_decrement(
                &GateKeys {
                    counter: "missing",
                    ..gate("e")
                },
                1,
                LONG,
                0
            )
            .await
            .unwrap(),
            Claim::NotLoaded
        );
    }

    #[tokio::test]
    async fn a_released_claim_gives_its_stock_back_once() {
        let kv = MemoryKv::new();
        kv.set_forever("stock", "1").await.unwrap();
        kv.claim_and_decrement(&gate("a"), 1, LONG, 0)
            .await
            .unwrap();
        assert!(kv.release_claim(&gate("a"), 1).await.unwrap());
        assert!(!kv.release_claim(&gate("a"), 1).await.unwrap(), "only once");
        assert_eq!(kv.get("stock").await.unwrap().as_deref(), Some("1"));
        kv.add_if_present("stock", 2).await.unwrap();
        kv.add_if_present("absent", 2).await.unwrap();
        assert_eq!(kv.get("stock").await.unwrap().as_deref(), Some("3"));
        assert_eq!(kv.get("absent").await.unwrap(), None);
    }

    fn reconcile<'a>(
        counter: &'a str,
        committed: &'a [String],
        live: Option<&'a [String]>,
        now_ms: i64,
    ) -> Reconcile<'a> {
        Reconcile {
            counter,
            pending: "pending",
            placing: "placing",
            stock: 9,
            committed,
            live,
            now_ms,
        }
    }

    #[tokio::test]
    async fn the_reconciliation_counts_live_claims_without_an_order() {
        let kv = MemoryKv::new();
        kv.set_forever("stock", "10").await.unwrap();
        for claim in ["1|1:a@i1", "1|2:b@i1", "1|3:c@i2"] {
            kv.claim_and_decrement(&gate(claim), 1, Duration::from_millis(100), 0)
                .await
                .unwrap();
        }
        // The database sold "a" (stock 9); "b" and "c" are still in flight.
        let committed = vec!["1|1:a".to_string()];
        let both = ["i1".to_string(), "i2".to_string()];
        let job = reconcile("stock", &committed, Some(&both), 50);
        assert_eq!(kv.reconcile_counter(&job).await.unwrap(), Some(7));
        // Instance i2's heartbeat lapsed: its claim gives its unit back now.
        let only_i1 = ["i1".to_string()];
        let job = reconcile("stock", &committed, Some(&only_i1), 50);
        assert_eq!(kv.reconcile_counter(&job).await.unwrap(), Some(8));
        assert_eq!(
            kv.sets.lock()["placing"].len(),
            2,
            "i2's claim left the placing set too"
        );
        // After their lease, the claims without an order give their units back.
        let job = reconcile("stock", &committed, None, 200);
        assert_eq!(kv.reconcile_counter(&job).await.unwrap(), Some(9));
        assert!(kv.pending_members("pending", 200).await.unwrap().is_empty());
        let job = reconcile("absent", &[], None, 0);
        assert_eq!(kv.reconcile_counter(&job).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_short_claim_says_whether_others_are_still_placing() {
        let kv = MemoryKv::new();
        kv.set_forever("stock", "1").await.unwrap();
        kv.claim_and_decrement(&gate("a"), 1, LONG, 0)
            .await
            .unwrap();
        assert_eq!(
            kv.claim_and_decrement(&gate("b"), 1, LONG, 0)
                .await
                .unwrap(),
            Claim::ShortWhilePlacing { held: 1 },
            "a's order may still fail"
        );
        kv.settle_claim(&gate("a")).await.unwrap();
        assert_eq!(
            kv.claim_and_decrement(&gate("b"), 1, LONG, 0)
                .await
                .unwrap(),
            Claim::Short,
            "a's order committed: final"
        );
    }

    #[tokio::test]
    async fn a_heartbeat_lists_the_live_instances() {
        let kv = MemoryKv::new();
        assert_eq!(kv.beat("beats", "i1", 1_000, 0).await.unwrap(), ["i1"]);
        let mut live = kv.beat("beats", "i2", 2_000, 0).await.unwrap();
        live.sort();
        assert_eq!(live, ["i1", "i2"]);
        assert_eq!(kv.live_instances("beats", 1_500).await.unwrap(), ["i2"]);
        assert_eq!(
            kv.beat("beats", "i2", 5_000, 2_000).await.unwrap(),
            ["i2"],
            "i1 lapsed and is forgotten"
        );
    }
}
