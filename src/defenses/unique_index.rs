//! Defense `unique_index` (唯一索引) — the database refuses a second order for
//! one intent.
//!
//! **Without it** two requests that both get past the key check (a race, a lease
//! takeover, Redis down, or the `idempotency_key` defense switched off) insert two
//! orders for one (user, idempotency key).
//!
//! **How it prevents that**: the unique index `orders_user_key_uniq` on
//! `orders(user_id, idempotency_key)`. The loser's insert fails with a unique
//! violation; the flow rolls back its transaction (its stock returns), reads the
//! order that won and answers with it, marked `Flashguard-Defense: unique_index`.
//! A unique index, not a lookup before the insert: only the index is atomic. The
//! same partial index guards one active payment per order.
//!
//! **Switched off**, orders are inserted with `guarded = FALSE`; the index is
//! partial (`WHERE guarded`), so such rows bypass it and the audit can count the
//! duplicates that appear. Shown by `tests/api/defenses.rs`:
//! `the_unique_index_alone_stops_concurrent_duplicates` (on) and
//! `without_idempotency_key_and_unique_index_duplicates_appear` (off).

use crate::store::StoreError;
use crate::switches::{Defense, SwitchBoard};

/// Whether the next insert is covered by the unique index.
pub fn guards_insert(switches: &SwitchBoard) -> bool {
    switches.is_on(Defense::UniqueIndex)
}

/// Maps a unique violation to `on_violation()`, leaving other errors as they are:
/// `insert(...).await.on_unique_violation(|| Duplicate)?` reads as the rule it is.
pub trait OnUniqueViolation<T> {
    fn on_unique_violation(self, on_violation: impl FnOnce() -> T) -> Result<T, StoreError>;
}

// [lesson unique_index::on_violation]
impl<T> OnUniqueViolation<T> for Result<T, StoreError> {
    fn on_unique_violation(self, on_violation: impl FnOnce() -> T) -> Result<T, StoreError> {
        match self {
            Err(error) if error.is_unique_violation() => Ok(on_violation()),
            other => other,
        }
    }
}
// [/lesson]
