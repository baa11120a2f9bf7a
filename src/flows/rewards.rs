//! At-least-once rewards: the "order paid" message and its consumer.
//!
//! 1. The PAID transition inserts the message into the `outbox` table in the same
//!    transaction (so it exists if and only if the order is paid).
//! 2. The relay publishes unpublished outbox rows to the bus, then marks them
//!    published. A crash in between publishes again later: at least once.
//! 3. The rewards consumer awards loyalty points and records the message id in the
//!    same transaction (`message_dedup`), then acknowledges. A crash after the
//!    effect and before the ack means redelivery (the lab's fault injection makes
//!    that happen on demand).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::JobError;
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
        state
            .bus
            .publish(&row.topic, &row.message_id, &row.payload)
            .await?;
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
    for delivery in &deliveries {
        if delivery.redelivered {
            metrics::count(metrics::REDELIVERIES);
        }
        award_points(state, delivery).await?;
        if state.faults.take_crash() {
            tracing::warn!(message_id = %delivery.message_id, "fault injection: crashed after the effect, before the ack");
            continue;
        }
        state
            .bus
            .ack(ORDER_PAID_TOPIC, REWARDS_GROUP, &delivery.delivery_id)
            .await?;
    }
    Ok(deliveries.len())
}

// [lesson message_dedup::award]
/// The consumer's effect and its dedup record, in one transaction.
async fn award_points(state: &AppState, delivery: &Delivery) -> Result<(), StoreError> {
    let Ok(message) = serde_json::from_str::<OrderPaid>(&delivery.payload) else {
        tracing::error!(message_id = %delivery.message_id, "unreadable order_paid message; skipped");
        return Ok(());
    };
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
        tracing::info!(message_id = %delivery.message_id, "duplicate delivery: already rewarded");
        return Ok(());
    }
    let reward = NewReward {
        order_no: &message.order_no,
        user_id: message.user_id,
        points: points_for(message.amount_cents),
        message_id: &delivery.message_id,
    };
    rewards::insert(&mut *tx, &reward).await?;
    commit(tx).await
}
// [/lesson]
