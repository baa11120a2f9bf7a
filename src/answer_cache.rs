//! The local answer cache (本地缓存, the first level of a 多级缓存): completed
//! answers of keyed requests, kept in this instance's memory in front of the
//! key store (Redis) and the key table (docs/design.md §2.5).
//!
//! **What it saves**: a replay — a double click, a client's retry, a loser
//! pressing "buy" again — costs a key-store round trip even though its answer
//! can no longer change. Here it costs a hash lookup.
//!
//! **Why it stays correct**: an answer enters only once it is final (stored
//! with its key: in the key table, or the front door's refusal in the key
//! store), with its key's expiry, and with the fingerprint of its request, so
//! another body under the same key is still refused 422. Nothing else ever changes a completed answer, except a reset
//! of the sale: the instance that resets forgets its answers at once, and the
//! others when they next read the shared switch board (`flows/shared.rs`,
//! every `SWITCHES_REFRESH_MS`). What it cannot do is answer a key it has
//! never seen: another instance may have answered it, so an unknown key still
//! asks the key store.
//!
//! **Bounded**: by weight (the bytes of key, fingerprint and answer), with
//! `quick_cache`'s S3-FIFO eviction; `LOCAL_ANSWER_CACHE_MB` (0: off).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use quick_cache::Weighter;
use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

/// What the cache keeps: an answer that knows how many bytes it holds
/// (`defenses::idempotency_key::StoredResponse`).
pub trait Answer: Send + Sync + 'static {
    fn bytes(&self) -> usize;
}

/// A completed answer as this instance keeps it: small and held in the
/// cache's own table (no allocation of its own); every loser's "sold out" is
/// the same answer, which entries share rather than copy.
#[derive(Debug)]
pub struct LocalAnswer<A> {
    /// The SHA-256 fingerprint of the request that got it (method, path, body).
    fingerprint: [u8; 32],
    pub response: Arc<A>,
    /// When the key store forgets it too (epoch ms).
    expires_at_ms: i64,
}

impl<A> Clone for LocalAnswer<A> {
    fn clone(&self) -> Self {
        Self {
            fingerprint: self.fingerprint,
            response: self.response.clone(),
            expires_at_ms: self.expires_at_ms,
        }
    }
}

impl<A> LocalAnswer<A> {
    /// Whether `fingerprint` (hex, as the key row keeps it) is this answer's.
    pub fn answers(&self, fingerprint: &str) -> bool {
        digest(fingerprint) == Some(self.fingerprint)
    }
}

/// A hex SHA-256 fingerprint as its 32 bytes.
fn digest(fingerprint: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(fingerprint, &mut bytes).ok()?;
    Some(bytes)
}

/// Who asked under which key, as the cache's key: the SHA-256 of both, a
/// fixed size, so that an entry needs no allocation for its key either.
fn slot(user_id: i64, key: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(user_id.to_le_bytes())
        .chain_update(key)
        .finalize()
        .into()
}

/// An entry weighs what it holds, plus a fixed overhead for the table.
#[derive(Debug, Clone)]
struct Bytes;

const ENTRY_OVERHEAD: u64 = 128;

impl<A: Answer> Weighter<[u8; 32], LocalAnswer<A>> for Bytes {
    /// A shared answer is counted in full in every entry: the bound errs on
    /// the safe side.
    fn weight(&self, _: &[u8; 32], answer: &LocalAnswer<A>) -> u64 {
        answer.response.bytes() as u64 + ENTRY_OVERHEAD
    }
}

/// The cache, one per instance.
pub struct AnswerCache<A: Answer> {
    /// `None` when `LOCAL_ANSWER_CACHE_MB` is 0.
    entries: Option<Cache<[u8; 32], LocalAnswer<A>, Bytes>>,
    /// The last reset this instance has applied (the switch board's
    /// `sale.reset_at`, epoch ms).
    reset_seen: AtomicI64,
}

impl<A: Answer> std::fmt::Debug for AnswerCache<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("entries", &self.len())
            .finish()
    }
}

/// A rough count of entries for a given weight, to size the map's table.
const TYPICAL_ENTRY_BYTES: u64 = 512;

impl<A: Answer> AnswerCache<A> {
    /// A cache of at most `megabytes` MiB; 0 keeps nothing.
    pub fn new(megabytes: u64) -> Self {
        let bytes = megabytes.saturating_mul(1024 * 1024);
        let entries = (bytes > 0).then(|| {
            let items = usize::try_from(bytes / TYPICAL_ENTRY_BYTES).unwrap_or(usize::MAX);
            Cache::with_weighter(items, bytes, Bytes)
        });
        Self {
            entries,
            reset_seen: AtomicI64::new(0),
        }
    }

    /// The answer kept for `key` of `user_id`, if it is still good at `now_ms`.
    pub fn get(&self, user_id: i64, key: &str, now_ms: i64) -> Option<LocalAnswer<A>> {
        let answer = self.entries.as_ref()?.get(&slot(user_id, key))?;
        (answer.expires_at_ms > now_ms).then_some(answer)
    }

    /// Keeps a completed answer to the request with `fingerprint` (hex)
    /// until `expires_at_ms`.
    pub fn remember(
        &self,
        user_id: i64,
        key: &str,
        fingerprint: &str,
        response: Arc<A>,
        expires_at_ms: i64,
    ) {
        let (Some(entries), Some(fingerprint)) = (&self.entries, digest(fingerprint)) else {
            return;
        };
        let answer = LocalAnswer {
            fingerprint,
            response,
            expires_at_ms,
        };
        entries.insert(slot(user_id, key), answer);
    }

    /// Forgets every answer (a reset of the sale). A request still running
    /// across the reset may leave an answer of the old sale behind.
    pub fn forget_all(&self) {
        if let Some(entries) = &self.entries {
            entries.clear();
        }
    }

    /// Applies the switch board's `sale.reset_at`: forgets every answer when
    /// it names a reset this instance has not seen; true when it did.
    pub fn apply_reset(&self, reset_at: i64) -> bool {
        let seen = self.reset_seen.swap(reset_at, Ordering::AcqRel);
        if seen == reset_at {
            return false;
        }
        self.forget_all();
        true
    }

    /// How many answers are kept now.
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, Cache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Answer for String {
        fn bytes(&self) -> usize {
            self.len()
        }
    }

    fn answer(body: &str) -> Arc<String> {
        Arc::new(body.to_string())
    }

    const FP: &str = "0f4c6a3e2b1d9c8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";
    const OTHER_FP: &str = "1f4c6a3e2b1d9c8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";

    #[test]
    fn an_answer_is_kept_until_it_expires() {
        let cache = AnswerCache::<String>::new(1);
        cache.remember(7, "k", FP, answer("{}"), 1_000);
        let kept = cache.get(7, "k", 999).expect("kept");
        assert!(kept.answers(FP) && !kept.answers(OTHER_FP));
        assert_eq!(kept.response.as_str(), "{}");
        assert!(cache.get(7, "k", 1_000).is_none(), "expired");
        assert!(cache.get(8, "k", 0).is_none(), "another user's key");
    }

    #[test]
    fn a_reset_forgets_everything_once() {
        let cache = AnswerCache::<String>::new(1);
        cache.remember(7, "k", FP, answer("{}"), i64::MAX);
        assert!(cache.apply_reset(5));
        assert!(cache.get(7, "k", 0).is_none());
        cache.remember(7, "k", FP, answer("{}"), i64::MAX);
        assert!(
            !cache.apply_reset(5),
            "the same reset again changes nothing"
        );
        assert!(cache.get(7, "k", 0).is_some());
    }

    #[test]
    fn the_weight_bound_holds_and_zero_keeps_nothing() {
        let cache = AnswerCache::<String>::new(1);
        let body = "x".repeat(10_000);
        for i in 0..1_000 {
            cache.remember(i, "k", FP, answer(&body), i64::MAX);
        }
        assert!(
            cache.len() < 110,
            "{} answers of 10 kB in 1 MiB",
            cache.len()
        );
        let off = AnswerCache::<String>::new(0);
        off.remember(7, "k", FP, answer("{}"), i64::MAX);
        assert!(off.get(7, "k", 0).is_none());
    }
}
