//! The key layout of the key store (docs/scaling.md): every key names the
//! entity it belongs to in braces — a *hash tag* — so that on a Redis Cluster
//! all the keys one Lua script touches live in one hash slot (a script whose
//! keys span two slots fails there with `CROSSSLOT`). On one node, and in the
//! embedded store, the braces are just characters.
//!
//! | entity  | tag       | keys                                                        |
//! |---------|-----------|-------------------------------------------------------------|
//! | product | `{p<id>}` | `gate:{p1}:stock`, `gate:{p1}:pending`, `gate:{p1}:placing`, `gate:{p1}:claim:…` |
//! | bucket b of a product (`GATE_BUCKETS` > 1) | `{p<id>.<b>…}` | the same four keys, per bucket (see [`gate_tag`]) |
//! | order   | `{o<no>}` | `paytoken:{oFG…}:<token>`, `lock:{oFG…}`                     |
//! | user    | `{u<id>}` | `idem:{u7}:<key>`, `idem-flight:{u7}:<key>`                  |
//! | —       | none      | `instances` (the heartbeats; one key, read on its own)       |
//!
//! The store's prefix (`KV_PREFIX`) goes in front and holds no braces, so the
//! tag is always the first `{…}` of the key.

/// The number of hash slots of a Redis Cluster.
const SLOTS: u32 = 16384;

/// The hash tag of a product's gate, or of one bucket of it (docs/scaling.md,
/// step 4). One bucket: `p<id>`. Bucket `b` of `n`: `p<id>.<b>`, with `.<k>`
/// appended (k = 1, 2, …) until its slot falls in the middle half of the b-th
/// n-th of the slot space — the ranges `redis-cli --cluster create` gives to n
/// masters — so that n buckets sit on n different masters of such a cluster.
pub fn gate_tag(product_id: i64, bucket: u32, buckets: u32) -> String {
    let base = format!("p{product_id}");
    if buckets <= 1 {
        return base;
    }
    let base = format!("{base}.{bucket}");
    let (low, high) = middle_of_share(bucket, buckets);
    let lands = |tag: &str| (low..high).contains(&u32::from(hash_slot(tag)));
    if lands(&base) {
        return base;
    }
    (1..10_000)
        .map(|k| format!("{base}.{k}"))
        .find(|tag| lands(tag))
        .unwrap_or(base)
}

/// The middle half of bucket `b`'s share of the slots (away from the edges,
/// where a cluster's split may fall a slot or two either way).
fn middle_of_share(bucket: u32, buckets: u32) -> (u32, u32) {
    let low = bucket * SLOTS / buckets;
    let high = (bucket + 1) * SLOTS / buckets;
    let quarter = (high - low) / 4;
    (low + quarter, high - quarter)
}

/// The gate's counter under `tag` ([`gate_tag`]): the units left to claim.
pub fn gate_stock_of(tag: &str) -> String {
    format!("gate:{{{tag}}}:stock")
}

/// The gate's pending claims under `tag` (a sorted set scored by expiry).
pub fn gate_pending_of(tag: &str) -> String {
    format!("gate:{{{tag}}}:pending")
}

/// The gate's claims under `tag` still placing their order (a sorted set
/// scored by expiry; a member leaves when its order commits or fails).
pub fn gate_placing_of(tag: &str) -> String {
    format!("gate:{{{tag}}}:placing")
}

/// One buyer's claim under `tag`: a repeat of the same (user, key) finds it.
pub fn gate_claim_of(tag: &str, user_id: i64, key: &str) -> String {
    format!("gate:{{{tag}}}:claim:{user_id}:{key}")
}

/// The gate's counter of a product with one bucket.
pub fn gate_stock(product_id: i64) -> String {
    gate_stock_of(&gate_tag(product_id, 0, 1))
}

/// The pending claims of a product with one bucket.
pub fn gate_pending(product_id: i64) -> String {
    gate_pending_of(&gate_tag(product_id, 0, 1))
}

/// The claims still placing of a product with one bucket.
pub fn gate_placing(product_id: i64) -> String {
    gate_placing_of(&gate_tag(product_id, 0, 1))
}

/// One buyer's claim on a product with one bucket.
pub fn gate_claim(product_id: i64, user_id: i64, key: &str) -> String {
    gate_claim_of(&gate_tag(product_id, 0, 1), user_id, key)
}

/// The instances' heartbeats: a sorted set, instance id → last beat (ms).
pub fn instances() -> String {
    "instances".to_string()
}

/// A completed answer of a user's idempotency key, cached.
pub fn idempotency_cache(user_id: i64, key: &str) -> String {
    format!("idem:{{u{user_id}}}:{key}")
}

/// The in-flight mark of a user's idempotency key.
pub fn idempotency_in_flight(user_id: i64, key: &str) -> String {
    format!("idem-flight:{{u{user_id}}}:{key}")
}

/// A one-time payment token of an order.
pub fn payment_token(order_no: &str, token: &str) -> String {
    format!("paytoken:{{o{order_no}}}:{token}")
}

/// The lock of an order while it is being paid.
pub fn order_lock(order_no: &str) -> String {
    format!("lock:{{o{order_no}}}")
}

/// The hash slot of `key` on a Redis Cluster: CRC16 (XMODEM) of its hash tag —
/// the text between the first `{` and the next `}`, when that is not empty —
/// or of the whole key, modulo 16384 (the Redis Cluster specification).
pub fn hash_slot(key: &str) -> u16 {
    crc16_xmodem(hash_tag(key).as_bytes()) % 16384
}

/// The part of `key` that decides its slot.
fn hash_tag(key: &str) -> &str {
    let Some(open) = key.find('{') else {
        return key;
    };
    match key[open + 1..].find('}') {
        Some(0) | None => key,
        Some(close) => &key[open + 1..open + 1 + close],
    }
}

/// CRC16-CCITT, XMODEM variant (polynomial 0x1021, initial value 0).
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_computed_as_redis_does() {
        // The values `CLUSTER KEYSLOT` gives (and the specification's test vector).
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        assert_eq!(hash_slot("foo"), 12182);
        assert_eq!(hash_slot("{user1000}.following"), hash_slot("user1000"));
        assert_eq!(hash_slot("foo{}{bar}"), hash_slot("foo{}{bar}"));
        assert_eq!(hash_tag("foo{}{bar}"), "foo{}{bar}");
        assert_eq!(hash_tag("foo{{bar}}zap"), "{bar");
    }

    /// Each script's keys share a slot (with a store prefix in front).
    #[test]
    fn every_script_touches_one_slot() {
        let prefixed = |key: String| format!("flashguard:{key}");
        let claim_keys = [
            gate_stock(42),
            gate_pending(42),
            gate_placing(42),
            gate_claim(42, 7, "k-1"),
        ];
        let slot = hash_slot(&prefixed(claim_keys[0].clone()));
        for key in claim_keys {
            assert_eq!(hash_slot(&prefixed(key.clone())), slot, "{key}");
        }
        assert_eq!(
            hash_slot(&prefixed(payment_token("FG1", "t"))),
            hash_slot(&prefixed(order_lock("FG1")))
        );
        assert_eq!(
            hash_slot(&prefixed(idempotency_cache(7, "k"))),
            hash_slot(&prefixed(idempotency_in_flight(7, "k")))
        );
        assert_ne!(
            hash_slot(&prefixed(gate_stock(1))),
            hash_slot(&prefixed(gate_stock(2))),
            "two products are two slots (here)"
        );
    }

    /// Bucket b of n lands in the b-th n-th of the slots (so, on a cluster
    /// made by `redis-cli --cluster create` with n masters, on master b), and
    /// a bucket's four keys share its slot.
    #[test]
    fn buckets_spread_over_the_slot_space() {
        assert_eq!(gate_tag(7, 0, 1), "p7");
        for buckets in 2..=16 {
            for product in 1..50 {
                for bucket in 0..buckets {
                    let tag = gate_tag(product, bucket, buckets);
                    let slot = u32::from(hash_slot(&gate_stock_of(&tag)));
                    let share = bucket * SLOTS / buckets..(bucket + 1) * SLOTS / buckets;
                    assert!(share.contains(&slot), "{tag}: slot {slot} not in {share:?}");
                    assert_eq!(hash_slot(&gate_claim_of(&tag, 1, "k")), slot as u16);
                    assert_eq!(hash_slot(&gate_placing_of(&tag)), slot as u16);
                }
            }
        }
    }
}
