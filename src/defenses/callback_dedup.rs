//! Defense `callback_dedup` — each provider event is applied once.
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
//! applied more than once. Shown by `tests/api/payment_defenses.rs`.

use sqlx::{Any, Transaction};

use super::unique_index::OnUniqueViolation;
use super::{Defense, SwitchBoard};
use crate::store::now_ms;

/// What the provider said, reduced to what the record needs.
#[derive(Debug)]
pub struct EventRecord<'a> {
    pub event_id: &'a str,
    pub payment_no: &'a str,
    pub status: &'a str,
    pub result: &'a str,
}

/// Records the event inside `tx`; `false` when this event id was already recorded.
pub async fn record_once(
    tx: &mut Transaction<'static, Any>,
    switches: &SwitchBoard,
    event: &EventRecord<'_>,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "INSERT INTO payment_events (event_id, payment_no, status, result, guarded, received_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event.event_id)
    .bind(event.payment_no)
    .bind(event.status)
    .bind(event.result)
    .bind(switches.is_on(Defense::CallbackDedup))
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map(|_| true)
    .on_unique_violation(|| false)
}
