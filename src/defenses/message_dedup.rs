//! Defense `message_dedup` — a redelivered message has no second effect.
//!
//! **Without it** the rewards consumer of the at-least-once "order paid" message
//! awards the points again each time the message is redelivered (a consumer that
//! crashed after its effect but before its acknowledgement, a relay that published
//! twice).
//!
//! **How it prevents that**: the consumer inserts `(consumer, message_id)` into
//! `processed_messages` in the same transaction as the points. A second delivery
//! finds the id (`ON CONFLICT DO NOTHING` inserts nothing) and only acknowledges.
//! Same transaction: either both the record and the points commit, or neither, so
//! nothing is lost and nothing is doubled.
//!
//! **Switched off**, the record is skipped and every delivery awards points.
//! Shown by `tests/api/rewards.rs`.

use sqlx::{Any, Transaction};

use super::{Defense, SwitchBoard};
use crate::store::now_ms;

/// Records `message_id` for `consumer` inside `tx`; `false` if it was processed before.
pub async fn first_delivery(
    tx: &mut Transaction<'static, Any>,
    switches: &SwitchBoard,
    consumer: &str,
    message_id: &str,
) -> Result<bool, sqlx::Error> {
    if !switches.is_on(Defense::MessageDedup) {
        return Ok(true);
    }
    let inserted = sqlx::query(
        "INSERT INTO processed_messages (consumer, message_id, processed_at) VALUES ($1, $2, $3)
         ON CONFLICT (consumer, message_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(message_id)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}
