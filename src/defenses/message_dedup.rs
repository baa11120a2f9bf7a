//! Defense `message_dedup` (消息去重, 防重复消费) — a redelivered message has no
//! second effect.
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
//! Shown by `tests/api/rewards.rs`: `each_paid_order_is_rewarded_once_despite_redelivery`
//! (on) and `without_message_dedup_a_redelivery_rewards_twice` (off).

use crate::store::{StoreError, Tx, rewards};
use crate::switches::{Defense, SwitchBoard};

// [lesson message_dedup::first_delivery]
/// Records `message_id` for `consumer` inside `tx`; `false` if it was processed before.
pub async fn first_delivery(
    tx: &mut Tx,
    switches: &SwitchBoard,
    consumer: &str,
    message_id: &str,
) -> Result<bool, StoreError> {
    if !switches.is_on(Defense::MessageDedup) {
        return Ok(true);
    }
    rewards::record_processed(&mut **tx, consumer, message_id).await
}
// [/lesson]
