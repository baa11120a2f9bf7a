//! The key layout of the key store (docs/scaling.md): every key names the
//! entity it belongs to in braces — a *hash tag* — so that on a Redis Cluster
//! all the keys one Lua script touches live in one hash slot (a script whose
//! keys span two slots fails there with `CROSSSLOT`). On one node, and in the
//! embedded store, the braces are just characters.
//!
//! | entity  | tag       | keys                                                        |
//! |---------|-----------|-------------------------------------------------------------|
//! | product | `{p<id>}` | `gate:{p1}:stock`, `gate:{p1}:pending`, `gate:{p1}:placing`, `gate:{p1}:claim:…` |
//! | order   | `{o<no>}` | `paytoken:{oFG…}:<token>`, `lock:{oFG…}`                     |
//! | user    | `{u<id>}` | `idem:{u7}:<key>`, `idem-flight:{u7}:<key>`                  |
//! | —       | none      | `instances` (the heartbeats; one key, read on its own)       |
//!
//! The store's prefix (`KV_PREFIX`) goes in front and holds no braces, so the
//! tag is always the first `{…}` of the key.

/// The gate's counter of a product: the units left to claim.
pub fn gate_stock(product_id: i64) -> String {
    format!("gate:{{p{product_id}}}:stock")
}

/// The gate's pending claims of a product (a sorted set scored by expiry).
pub fn gate_pending(product_id: i64) -> String {
    format!("gate:{{p{product_id}}}:pending")
}

/// The gate's claims of a product still placing their order (a sorted set
/// scored by expiry; a member leaves when its order commits or fails).
pub fn gate_placing(product_id: i64) -> String {
    format!("gate:{{p{product_id}}}:placing")
}

/// The instances' heartbeats: a sorted set, instance id → last beat (ms).
pub fn instances() -> String {
    "instances".to_string()
}

/// One buyer's claim on a product: a repeat of the same (user, key) finds it.
pub fn gate_claim(product_id: i64, user_id: i64, key: &str) -> String {
    format!("gate:{{p{product_id}}}:claim:{user_id}:{key}")
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
}
