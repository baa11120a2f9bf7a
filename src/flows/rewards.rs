//! At-least-once rewards: the "order paid" message and its consumer.
//!
//! 1. The PAID transition inserts the message into the `outbox` table in the same
//!    transaction (so it exists if and only if the order is paid).
//! 2. The relay publishes unpublished outbox rows to the bus, then marks them
//!    published. A crash in between publishes again later: at least once.
//! 3. The rewards consumer awards loyalty points and records the message id in the
//!    same transaction (`message_dedup`), then acknowledges. A crash after the
//!    effect and before the ack means redelivery (the fault injection below makes
//!    that happen on demand).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sqlx::{Any, FromRow, Transaction};

use crate::defenses::message_dedup;
use crate::metrics;
use crate::startup::AppState;
use crate::store::bus::Delivery;
use crate::store::now_ms;

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
pub async fn enqueue_order_paid(
    tx: &mut Transaction<'static, Any>,
    order_no: &str,
    user_id: i64,
    amount_cents: i64,
) -> Result<(), sqlx::Error> {
    let message = OrderPaid {
        order_no: order_no.to_string(),
        user_id,
        amount_cents,
    };
    sqlx::query(
        "INSERT INTO outbox (message_id, topic, payload, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(format!("MSG{}", uuid::Uuid::now_v7().simple()))
    .bind(ORDER_PAID_TOPIC)
    .bind(serde_json::to_string(&message).unwrap_or_default())
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, FromRow)]
struct OutboxRow {
    id: i64,
    message_id: String,
    topic: String,
    payload: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] crate::store::KvError),
}

/// Publishes what the outbox holds; returns how many messages went out.
pub async fn relay_once(state: &AppState) -> Result<usize, RelayError> {
    let rows = sqlx::query_as::<_, OutboxRow>(
        "SELECT id, message_id, topic, payload FROM outbox
          WHERE published_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(BATCH as i64)
    .fetch_all(state.db.pool())
    .await?;
    for row in &rows {
        state
            .bus
            .publish(&row.topic, &row.message_id, &row.payload)
            .await?;
        sqlx::query("UPDATE outbox SET published_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(row.id)
            .execute(state.db.pool())
            .await?;
    }
    Ok(rows.len())
}

/// Fault injection: the next N deliveries "crash" after their effect, before the ack.
#[derive(Debug, Default)]
pub struct Faults {
    crash_after_effect: AtomicU64,
}

impl Faults {
    pub fn set_crash_after_effect(&self, count: u64) {
        self.crash_after_effect.store(count, Ordering::SeqCst);
    }

    pub fn crash_after_effect(&self) -> u64 {
        self.crash_after_effect.load(Ordering::SeqCst)
    }

    fn take_crash(&self) -> bool {
        self.crash_after_effect
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}

/// Receives and handles one batch; returns how many deliveries were handled.
pub async fn consume_once(state: &AppState) -> Result<usize, RelayError> {
    let deliveries = state
        .bus
        .receive(
            ORDER_PAID_TOPIC,
            REWARDS_GROUP,
            &state.instance_id,
            BATCH,
            state.settings.rewards.redeliver_after,
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

/// The consumer's effect and its dedup record, in one transaction.
async fn award_points(state: &AppState, delivery: &Delivery) -> Result<(), sqlx::Error> {
    let Ok(message) = serde_json::from_str::<OrderPaid>(&delivery.payload) else {
        tracing::error!(message_id = %delivery.message_id, "unreadable order_paid message; skipped");
        return Ok(());
    };
    let mut tx = state.db.pool().begin().await?;
    if !message_dedup::first_delivery(
        &mut tx,
        &state.switches,
        REWARDS_GROUP,
        &delivery.message_id,
    )
    .await?
    {
        tx.rollback().await?;
        tracing::info!(message_id = %delivery.message_id, "duplicate delivery: already rewarded");
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO rewards (order_no, user_id, points, message_id, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&message.order_no)
    .bind(message.user_id)
    .bind(points_for(message.amount_cents))
    .bind(&delivery.message_id)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
