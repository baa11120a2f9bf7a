//! Defense `callback_dedup` (回调去重) — each provider event is applied once.
//!
//! **Without it** a redelivered callback (providers deliver at least once, and
//! retry on any timeout) is applied again.
//!
//! **How it prevents that**: the event id is inserted into `payment_events` in the
//! same transaction as the event's effect; the unique index
//! `payment_events_event_uniq` lets one insert win. A repeat is acknowledged with
//! 200 `{"result":"duplicate"}` and `Flashguard-Defense: callback_dedup`, so the
//! provider stops retrying, and changes nothing. Because the record and the
//! effect commit together, a failure rolls both back and the provider's retry
//! can still apply the event.
//!
//! **Switched off**, events are recorded with `guarded = FALSE` (outside the
//! partial index), so every delivery is applied and the audit counts events
//! applied more than once. Shown by `tests/api/payment_defenses.rs`:
//! `with_callback_dedup_the_repeats_are_duplicates` (on) and
//! `without_callback_dedup_an_event_is_applied_again` (off).

use super::unique_index::OnUniqueViolation;
use crate::store::payment_events::{self, EventRecord};
use crate::store::{StoreError, Tx};
use crate::switches::{Defense, SwitchBoard};

/// What the provider said, reduced to what the record needs.
#[derive(Debug)]
pub struct Event<'a> {
    pub event_id: &'a str,
    pub payment_no: &'a str,
    pub status: &'a str,
    /// Whether the event had an effect (`applied`) or not (`ignored`).
    pub applied: bool,
}

// [lesson callback_dedup::record_once]
/// Records the event inside `tx`; `false` when this event id was already recorded.
pub async fn record_once(
    tx: &mut Tx,
    switches: &SwitchBoard,
    event: &Event<'_>,
) -> Result<bool, StoreError> {
    let record = EventRecord {
        event_id: event.event_id,
        payment_no: event.payment_no,
        status: event.status,
        result: if event.applied {
            payment_events::APPLIED
        } else {
            payment_events::IGNORED
        },
        guarded: switches.is_on(Defense::CallbackDedup),
    };
    payment_events::insert(&mut **tx, &record)
        .await
        .map(|()| true)
        .on_unique_violation(|| false)
}
// [/lesson]
