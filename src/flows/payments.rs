//! Paying for an order, and applying the provider's callbacks (docs/design.md §2.1).
//!
//! Pay, in the order the checks apply: the idempotency-key replay (in the
//! route), the one-time token (in the route), then here "一锁二判三更新": lock
//! the order (`order_lock`), check its state (`state_check`), create the payment
//! (`unique_index` on active payments), ask the provider to charge.
//!
//! Callback: verify the signature (in the route), then in one transaction apply
//! the effect with conditional updates (`state_check`) and record the event id
//! (`callback_dedup`); the PAID transition writes the "order paid" message to the
//! outbox in the same transaction.

use actix_web::http::StatusCode;
use serde::Serialize;

use crate::defenses::idempotency_key::Reply;
use crate::defenses::unique_index::{self, OnUniqueViolation};
use crate::defenses::{callback_dedup, state_check};
use crate::domain::{Channel, OrderNo, OrderStatus, PaymentStatus};
use crate::error::ApiError;
use crate::flows::rewards;
use crate::metrics;
use crate::psp::{ChargeRequest, EventStatus, ProviderEvent};
use crate::state::AppState;
use crate::store::orders::{self, Order};
use crate::store::payment_events;
use crate::store::payments::{self, NewPayment, Payment};
use crate::store::{StoreError, Tx, commit, rollback};
use crate::switches::{Defense, SwitchBoard};
use crate::trace;

/// The body of a pay answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentView<'a> {
    order_no: &'a str,
    payment_no: &'a str,
    provider_txn_id: Option<&'a str>,
    /// `PROCESSING` or `PAID`.
    status: &'static str,
}

/// 202 PROCESSING with `payment`, marked with the defense that answered, if any.
fn processing(payment: &Payment, defense: Option<Defense>) -> Result<Reply, ApiError> {
    payment_reply(
        StatusCode::ACCEPTED,
        payment,
        PaymentStatus::Processing.as_str(),
        defense,
    )
}

fn payment_reply(
    status: StatusCode,
    payment: &Payment,
    shown: &'static str,
    defense: Option<Defense>,
) -> Result<Reply, ApiError> {
    let view = PaymentView {
        order_no: &payment.order_no,
        payment_no: &payment.payment_no,
        provider_txn_id: payment.provider_txn_id.as_deref(),
        status: shown,
    };
    Ok(Reply::json(status, &view, defense)?)
}

// [lesson order_lock::pay]
/// Pays `order_no` for `user_id` through `channel`: 202 PROCESSING, or 200
/// PAID when already paid.
#[tracing::instrument(skip_all, fields(user_id, order_no = %order_no))]
pub async fn pay(
    state: &AppState,
    user_id: i64,
    order_no: &OrderNo,
    channel: Channel,
) -> Result<Reply, ApiError> {
    let lock = state.order_locks.acquire(order_no.as_str()).await?;
    let outcome = pay_under_lock(state, user_id, order_no, channel).await;
    state.order_locks.release(lock).await;
    outcome
}

async fn pay_under_lock(
    state: &AppState,
    user_id: i64,
    order_no: &OrderNo,
    channel: Channel,
) -> Result<Reply, ApiError> {
    let order = orders::find_for_user(state.db.pool(), user_id, order_no)
        .await?
        .ok_or(ApiError::OrderNotFound)?;
    if state_check::checks_before_charge(&state.switches)
        && let Some(reply) = answer_from_state(state, &order).await?
    {
        trace::step(format!(
            "state check: order {}, answered without a charge",
            order.status
        ));
        return Ok(reply);
    }
    state.order_locks.race_window().await;
    match create_payment(state, &order, channel).await? {
        Created::New(payment) => {
            trace::step("payment created, charge requested");
            charge(state, payment).await
        }
        // Another request created the active payment between our check and insert.
        Created::AlreadyActive(running) => processing(&running, Some(Defense::UniqueIndex)),
    }
}
// [/lesson]

enum Created {
    New(Payment),
    AlreadyActive(Payment),
}

/// Inserts the payment; the unique index allows one active payment per order.
async fn create_payment(
    state: &AppState,
    order: &Order,
    channel: Channel,
) -> Result<Created, ApiError> {
    let new_payment = NewPayment {
        order_no: &order.order_no,
        user_id: order.user_id,
        amount_cents: order.amount_cents,
        channel,
        guarded: unique_index::guards_insert(&state.switches),
    };
    let inserted = payments::insert(state.db.pool(), &new_payment)
        .await
        .map(Some)
        .on_unique_violation(|| None)?;
    if let Some(payment) = inserted {
        return Ok(Created::New(payment));
    }
    trace::step("unique index: a payment is already active");
    let running = payments::find_active(state.db.pool(), &order.order_no)
        .await?
        .ok_or_else(|| ApiError::Internal("unique violation without an active payment".into()))?;
    Ok(Created::AlreadyActive(running))
}

/// Asks the provider to charge; the outcome comes later, by callback.
async fn charge(state: &AppState, mut payment: Payment) -> Result<Reply, ApiError> {
    let txn_id = state
        .psp
        .charge(ChargeRequest {
            order_no: payment.order_no.clone(),
            payment_no: payment.payment_no.clone(),
            amount_cents: payment.amount_cents,
            channel: payment.channel,
        })
        .await?;
    payments::set_provider_txn_id(state.db.pool(), &payment.payment_no, &txn_id).await?;
    payment.provider_txn_id = Some(txn_id);
    processing(&payment, None)
}

/// The state check before charging: paid, closed, or a payment already running.
async fn answer_from_state(state: &AppState, order: &Order) -> Result<Option<Reply>, ApiError> {
    match order.status {
        OrderStatus::Paid => {
            let paid = payments::find_succeeded(state.db.pool(), &order.order_no)
                .await?
                .ok_or_else(|| {
                    ApiError::Internal("PAID order without a succeeded payment".into())
                })?;
            let shown = OrderStatus::Paid.as_str();
            Ok(Some(payment_reply(
                StatusCode::OK,
                &paid,
                shown,
                Some(Defense::StateCheck),
            )?))
        }
        OrderStatus::Closed => Err(ApiError::OrderClosed),
        OrderStatus::PendingPayment => {
            let running = payments::find_active(state.db.pool(), &order.order_no).await?;
            running
                .map(|payment| processing(&payment, Some(Defense::StateCheck)))
                .transpose()
        }
    }
}

/// What a callback did; the provider stops retrying on any of them (all 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackResult {
    Applied,
    Duplicate,
    Ignored,
}

impl CallbackResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => payment_events::APPLIED,
            Self::Duplicate => "duplicate",
            Self::Ignored => payment_events::IGNORED,
        }
    }
}

// [lesson callback_dedup::apply]
/// Applies one verified provider event.
#[tracing::instrument(skip_all, fields(event_id = %event.event_id, payment_no = %event.payment_no))]
pub async fn apply_callback(
    state: &AppState,
    event: &ProviderEvent,
) -> Result<CallbackResult, ApiError> {
    let payment = payments::find(state.db.pool(), &event.payment_no).await?;
    let matching = payment.filter(|payment| event_matches(payment, event));
    let mut tx = state.db.begin().await?;
    let effect = match &matching {
        None => {
            tracing::warn!("callback does not match a payment of ours; ignored");
            CallbackResult::Ignored
        }
        Some(payment) => apply_effect(&mut tx, &state.switches, payment, event).await?,
    };
    let record = callback_dedup::Event {
        event_id: &event.event_id,
        payment_no: &event.payment_no,
        status: event.status.as_str(),
        applied: effect == CallbackResult::Applied,
    };
    if !callback_dedup::record_once(&mut tx, &state.switches, &record).await? {
        rollback(tx).await?;
        metrics::count(metrics::CALLBACK_DUPLICATES);
        return Ok(CallbackResult::Duplicate);
    }
    commit(tx).await?;
    Ok(effect)
}
// [/lesson]

/// The event is for this payment: same order, same amount, same provider transaction.
fn event_matches(payment: &Payment, event: &ProviderEvent) -> bool {
    let same_txn = payment
        .provider_txn_id
        .as_deref()
        .is_none_or(|txn| txn == event.provider_txn_id);
    payment.order_no == event.order_no && payment.amount_cents == event.amount_cents && same_txn
}

async fn apply_effect(
    tx: &mut Tx,
    switches: &SwitchBoard,
    payment: &Payment,
    event: &ProviderEvent,
) -> Result<CallbackResult, ApiError> {
    match event.status {
        EventStatus::Succeeded => apply_success(tx, switches, payment, event).await,
        EventStatus::Failed => Ok(apply_failure(tx, switches, payment).await?),
    }
}

/// PROCESSING → SUCCEEDED; the order PENDING_PAYMENT → PAID with its "order paid"
/// message; an order that is no longer payable keeps its state and the payment is
/// flagged for a refund.
async fn apply_success(
    tx: &mut Tx,
    switches: &SwitchBoard,
    payment: &Payment,
    event: &ProviderEvent,
) -> Result<CallbackResult, ApiError> {
    let succeed = PaymentStatus::SUCCEED;
    if !state_check::move_payment(tx, switches, &payment.payment_no, succeed).await? {
        return Ok(CallbackResult::Ignored);
    }
    payments::set_provider_txn_id(&mut **tx, &payment.payment_no, &event.provider_txn_id).await?;
    if state_check::move_order(tx, switches, &payment.order_no, OrderStatus::PAY).await? {
        rewards::enqueue_order_paid(tx, payment).await?;
    } else {
        tracing::warn!(
            "payment succeeded for an order that is not awaiting payment: refund needed"
        );
        payments::flag_for_refund(&mut **tx, &payment.payment_no).await?;
    }
    Ok(CallbackResult::Applied)
}

/// PROCESSING → FAILED, and the order waits for another attempt. A FAILED that
/// arrives after the SUCCEEDED finds the payment SUCCEEDED and changes nothing.
async fn apply_failure(
    tx: &mut Tx,
    switches: &SwitchBoard,
    payment: &Payment,
) -> Result<CallbackResult, StoreError> {
    if !state_check::move_payment(tx, switches, &payment.payment_no, PaymentStatus::FAIL).await? {
        return Ok(CallbackResult::Ignored);
    }
    state_check::after_failed_payment(tx, switches, &payment.order_no).await?;
    Ok(CallbackResult::Applied)
}
