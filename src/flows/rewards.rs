//! At-least-once rewards: the "order paid" message and its consumer.
//!
//! 1. The PAID transition inserts the message into the `outbox` table in the same
//!    transaction (so it exists if and only if the order is paid).
//! 2. The relay publishes unpublished outbox rows to the bus, then marks them
//!    published (on RabbitMQ, once the broker confirmed). A crash in between
//!    publishes again later: at least once. A failed publish gives the rows
//!    back, for the next round.
//! 3. The rewards consumer awards loyalty points and records the message id in the
//!    same transaction (`message_dedup`), then acknowledges. A crash after the
//!    effect and before the ack means redelivery (the lab's fault injection makes
//!    that happen on demand). A delivery whose effect failed is delivered again
//!    later; after `MESSAGE_MAX_DELIVERIES` failures, or at once if it cannot
//!    be read, it goes to the dead-letter queue.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::JobError;
use crate::causes::Causes;
use crate::defenses::message_dedup;
use crate::metrics;
use crate::state::AppState;
use crate::store::bus::Delivery;
use crate::store::payments::Payment;
use crate::store::rewards::{self, NewReward};
use crate::store::{StoreError, Tx, commit, millis, now_ms, outbox, rollback};

pub const ORDER_PAID_TOPIC: &str = "order_paid";
pub const REWARDS_GROUP: &str = "rewards";
const BATCH: usize = 100;

/// The "order paid" message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPaid {
    pub order_no: String,
    pub user_id: i64,
    pub amount_cents: i64,
}

/// Points for a paid order: one per whole yuan.
pub fn points_for(amount_cents: i64) -> i64 {
    amount_cents / 100
}

/// Writes the message into the outbox inside the PAID transaction.
pub async fn enqueue_order_paid(tx: &mut Tx, payment: &Payment) -> Result<(), JobError> {
    let message = OrderPaid {
        order_no: payment.order_no.clone(),
        user_id: payment.user_id,
        amount_cents: payment.amount_cents,
    };
    let payload = serde_json::to_string(&message)?;
    outbox::insert(&mut **tx, ORDER_PAID_TOPIC, &message.order_no, &payload).await?;
    Ok(())
}

/// How long a relay holds the rows it claimed before another may take them.
const RELAY_LEASE: Duration = Duration::from_secs(10);

/// Claims what the outbox holds and publishes it; returns how many messages went
/// out. Relays on several instances claim different rows.
pub async fn relay_once(state: &AppState) -> Result<usize, JobError> {
    let lease_until = now_ms().saturating_add(millis(RELAY_LEASE));
    let owner = &state.instance_id;
    let rows = outbox::claim_batch(state.db.pool(), owner, lease_until, BATCH as i64).await?;
    for row in &rows {
        let published = state
            .bus
            .publish(&row.topic, &row.message_id, &row.payload)
            .await;
        if let Err(error) = published {
            outbox::release_claims(state.db.pool(), owner).await?;
            return Err(error.into());
        }
        outbox::mark_published(state.db.pool(), row.id, owner).await?;
    }
    Ok(rows.len())
}

/// The rewards' reconciliation: a PAID order still without its reward after the
/// settle time has its message published again (same id: `message_dedup` keeps
/// it to one reward).
pub async fn republish_missing(state: &AppState) -> Result<u64, JobError> {
    let settled_before = now_ms().saturating_sub(millis(state.settings.rewards.settle));
    let again = outbox::republish_unrewarded(state.db.pool(), settled_before).await?;
    if again > 0 {
        tracing::warn!(
            messages = again,
            "paid orders without their reward: published again"
        );
    }
    Ok(again)
}

/// Receives and handles one batch; returns how many deliveries were handled.
pub async fn consume_once(state: &AppState) -> Result<usize, JobError> {
    let deliveries = state
        .bus
        .receive(
            ORDER_PAID_TOPIC,
            REWARDS_GROUP,
            &state.instance_id,
            BATCH,
            state.switches.redeliver_after(),
        )
        .await?;
    let mut first_failure = None;
    for delivery in &deliveries {
        match consume(state, delivery).await {
            Ok(Consumed::Acked) => {}
            Ok(Consumed::Failed(error)) => {
                first_failure.get_or_insert(error);
            }
            Ok(Consumed::Crashed) => break,
            Err(error) => {
                // The bus failed mid-batch (an ack, a reject): let go of every
                // delivery this consumer holds, so that none waits unacknowledged.
                let bus = &state.bus;
                if let Err(also) = bus.drop_consumer(ORDER_PAID_TOPIC, REWARDS_GROUP).await {
                    tracing::warn!(error = %Causes(&also), "could not drop the consumer");
                }
                return Err(error);
            }
        }
    }
    match first_failure {
        Some(error) => Err(error),
        None => Ok(deliveries.len()),
    }
}

/// What became of one delivery.
enum Consumed {
    /// Rewarded (or a duplicate, or dead-lettered) and acknowledged.
    Acked,
    /// Its effect failed: given back to be delivered again (or dead-lettered).
    Failed(JobError),
    /// The injected crash: the consumer is gone with the rest of the batch.
    Crashed,
}

/// The effect, then the ack — or the way a failed or crashed consumer ends.
async fn consume(state: &AppState, delivery: &Delivery) -> Result<Consumed, JobError> {
    if delivery.redelivered {
        metrics::count(metrics::REDELIVERIES);
        state.deliveries.saw_redelivery();
    }
    match handle(state, delivery).await {
        Ok(Awarded::Done) => {}
        Ok(Awarded::Unreadable) => {
            dead_letter(state, delivery, "unreadable").await?;
            return Ok(Consumed::Acked);
        }
        Err(error) => {
            give_back(state, delivery).await?;
            return Ok(Consumed::Failed(error));
        }
    }
    state.deliveries.settled(&delivery.message_id);
    let bus = &state.bus;
    if state.faults.take_crash() {
        tracing::warn!(message_id = %delivery.message_id, "fault injection: crashed after the effect, before the ack");
        bus.drop_consumer(ORDER_PAID_TOPIC, REWARDS_GROUP).await?;
        return Ok(Consumed::Crashed);
    }
    bus.ack(ORDER_PAID_TOPIC, REWARDS_GROUP, &delivery.delivery_id)
        .await?;
    Ok(Consumed::Acked)
}

/// A delivery whose effect failed: delivered again after `redeliver_after`,
/// or, after `MESSAGE_MAX_DELIVERIES` failures, sent to the dead letters.
async fn give_back(state: &AppState, delivery: &Delivery) -> Result<(), JobError> {
    let failures = state.deliveries.failed(&delivery.message_id);
    if failures >= state.settings.rewards.max_deliveries {
        return dead_letter(state, delivery, "failed too often").await;
    }
    let after = state.switches.redeliver_after();
    let bus = &state.bus;
    bus.retry_later(ORDER_PAID_TOPIC, REWARDS_GROUP, delivery, after)
        .await?;
    Ok(())
}

/// Gives up on a delivery: to the dead-letter queue, where the admin view and
/// the audit show it (the reconciliation publishes a paid order's message
/// again after the settle time, so the reward itself is not lost).
async fn dead_letter(state: &AppState, delivery: &Delivery, why: &str) -> Result<(), JobError> {
    tracing::warn!(message_id = %delivery.message_id, why, "order_paid message sent to the dead letters");
    state.deliveries.gave_up(&delivery.message_id);
    state
        .bus
        .dead_letter(ORDER_PAID_TOPIC, REWARDS_GROUP, delivery)
        .await?;
    Ok(())
}

/// The effect, unless the lab injected its failure.
async fn handle(state: &AppState, delivery: &Delivery) -> Result<Awarded, JobError> {
    if state.faults.take_effect_failure() {
        tracing::warn!(message_id = %delivery.message_id, "fault injection: the reward's transaction failed");
        return Err(JobError::Injected("the reward's transaction failed"));
    }
    Ok(award_points(state, delivery).await?)
}

/// What became of a delivery.
enum Awarded {
    /// Rewarded now, or before (a duplicate).
    Done,
    /// Not an `OrderPaid` message, or without a message id: no retry helps.
    Unreadable,
}

// [lesson message_dedup::award]
/// The consumer's effect and its dedup record, in one transaction.
async fn award_points(state: &AppState, delivery: &Delivery) -> Result<Awarded, StoreError> {
    let Ok(message) = serde_json::from_str::<OrderPaid>(&delivery.payload) else {
        return Ok(Awarded::Unreadable);
    };
    if delivery.message_id.is_empty() {
        return Ok(Awarded::Unreadable);
    }
    let mut tx = state.db.begin().await?;
    let first = message_dedup::first_delivery(
        &mut tx,
        &state.switches,
        REWARDS_GROUP,
        &delivery.message_id,
    )
    .await?;
    if !first {
        rollback(tx).await?;
        state.deliveries.saw_duplicate();
        tracing::info!(message_id = %delivery.message_id, "duplicate delivery: already rewarded");
        return Ok(Awarded::Done);
    }
    let reward = NewReward {
        order_no: &message.order_no,
        user_id: message.user_id,
        points: points_for(message.amount_cents),
        message_id: &delivery.message_id,
    };
    rewards::insert(&mut *tx, &reward).await?;
    commit(tx).await?;
    Ok(Awarded::Done)
}
// [/lesson]
