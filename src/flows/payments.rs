//! Paying for an order, and applying the provider's callbacks.
//!
//! Pay, in the order the checks apply (DESIGN §2): the idempotency-key replay
//! (in the route), the one-time token (in the route), then here "一锁二判三更新":
//! lock the order (`order_lock`), check its state (`state_check`), create the
//! payment (`unique_index` on active payments), ask the provider to charge.
//!
//! Callback: verify the signature (in the route), then in one transaction apply
//! the effect with conditional updates (`state_check`) and record the event id
//! (`callback_dedup`); the PAID transition writes the "order paid" message to the
//! outbox in the same transaction.

use actix_web::http::StatusCode;
use serde::Serialize;
use sqlx::{Any, Transaction};

use crate::defenses::idempotency_key::Reply;
use crate::defenses::state_check::{self, Row};
use crate::defenses::unique_index::{self, OnUniqueViolation};
use crate::defenses::{Defense, callback_dedup, order_lock};
use crate::domain::{OrderNo, order_status};
use crate::error::ApiError;
use crate::flows::rewards;
use crate::metrics;
use crate::psp::{ChargeRequest, EventStatus, ProviderEvent};
use crate::startup::AppState;
use crate::store::orders::{self, Order};
use crate::store::payments::{self, FAILED, NewPayment, PROCESSING, Payment, SUCCEEDED};

/// The body of a pay answer.
#[derive(Debug, Serialize)]
struct PaymentView<'a> {
    order_no: &'a str,
    payment_no: &'a str,
    provider_txn_id: Option<&'a str>,
    status: &'a str,
}

fn payment_reply(
    status: StatusCode,
    payment: &Payment,
    shown: &str,
    defense: Option<Defense>,
) -> Reply {
    let view = PaymentView {
        order_no: &payment.order_no,
        payment_no: &payment.payment_no,
        provider_txn_id: payment.provider_txn_id.as_deref(),
        status: shown,
    };
    Reply::json(
        status,
        serde_json::to_string(&view).unwrap_or_default(),
        defense,
    )
}

/// Pays `order_no` for `user_id`: 202 PROCESSING, or 200 PAID when already paid.
#[tracing::instrument(skip_all, fields(user_id, order_no = %order_no))]
pub async fn pay(state: &AppState, user_id: i64, order_no: &OrderNo) -> Result<Reply, ApiError> {
    let lock = order_lock::acquire(state, order_no.as_str()).await?;
    let outcome = pay_under_lock(state, user_id, order_no).await;
    lock.release(state).await;
    outcome
}

async fn pay_under_lock(
    state: &AppState,
    user_id: i64,
    order_no: &OrderNo,
) -> Result<Reply, ApiError> {
    let order = orders::find_for_user(&state.db, user_id, order_no)
        .await?
        .ok_or(ApiError::OrderNotFound)?;
    if state_check::checks_before_charge(&state.switches)
        && let Some(reply) = answer_from_state(state, &order).await?
    {
        return Ok(reply);
    }
    order_lock::race_window(&state.switches, &state.settings).await;
    let new_payment = NewPayment {
        order_no: &order.order_no,
        user_id,
        amount_cents: order.amount_cents,
        guarded: unique_index::guards_insert(&state.switches),
    };
    let Some(mut payment) = payments::insert(&state.db, &new_payment)
        .await
        .map(Some)
        .on_unique_violation(|| None)?
    else {
        // Another request created the active payment between our check and insert.
        let existing = payments::find_active(&state.db, &order.order_no)
            .await?
            .ok_or_else(|| {
                ApiError::Internal("unique violation without an active payment".into())
            })?;
        return Ok(payment_reply(
            StatusCode::ACCEPTED,
            &existing,
            PROCESSING,
            Some(Defense::UniqueIndex),
        ));
    };
    let txn_id = state.psp.charge(ChargeRequest {
        order_no: payment.order_no.clone(),
        payment_no: payment.payment_no.clone(),
        amount_cents: payment.amount_cents,
    });
    payments::set_provider_txn_id(&state.db, &payment.payment_no, &txn_id).await?;
    payment.provider_txn_id = Some(txn_id);
    Ok(payment_reply(
        StatusCode::ACCEPTED,
        &payment,
        PROCESSING,
        None,
    ))
}

/// The state check before charging: paid, closed, or a payment already running.
async fn answer_from_state(state: &AppState, order: &Order) -> Result<Option<Reply>, ApiError> {
    match order.status.as_str() {
        order_status::PAID => {
            let paid = payments::find_succeeded(&state.db, &order.order_no)
                .await?
                .ok_or_else(|| {
                    ApiError::Internal("PAID order without a succeeded payment".into())
                })?;
            Ok(Some(payment_reply(
                StatusCode::OK,
                &paid,
                order_status::PAID,
                Some(Defense::StateCheck),
            )))
        }
        order_status::CLOSED => Err(ApiError::OrderClosed),
        _ => Ok(payments::find_active(&state.db, &order.order_no)
            .await?
            .map(|running| {
                payment_reply(
                    StatusCode::ACCEPTED,
                    &running,
                    PROCESSING,
                    Some(Defense::StateCheck),
                )
            })),
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
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

/// Applies one verified provider event.
#[tracing::instrument(skip_all, fields(event_id = %event.event_id, payment_no = %event.payment_no))]
pub async fn apply_callback(
    state: &AppState,
    event: &ProviderEvent,
) -> Result<CallbackResult, ApiError> {
    let payment = payments::find(&state.db, &event.payment_no).await?;
    let matching = payment
        .as_ref()
        .filter(|payment| event_matches(payment, event));
    let mut tx = state.db.pool().begin().await?;
    let effect = match matching {
        None => {
            tracing::warn!("callback does not match a payment of ours; ignored");
            CallbackResult::Ignored
        }
        Some(payment) => match event.status {
            EventStatus::Succeeded => apply_success(&mut tx, state, payment, event).await?,
            EventStatus::Failed => apply_failure(&mut tx, state, payment).await?,
        },
    };
    let record = callback_dedup::EventRecord {
        event_id: &event.event_id,
        payment_no: &event.payment_no,
        status: event.status.as_str(),
        result: if effect == CallbackResult::Applied {
            "applied"
        } else {
            "ignored"
        },
    };
    if !callback_dedup::record_once(&mut tx, &state.switches, &record).await? {
        tx.rollback().await?;
        metrics::count(metrics::CALLBACK_DUPLICATES);
        return Ok(CallbackResult::Duplicate);
    }
    tx.commit().await?;
    Ok(effect)
}

/// The event is for this payment: same order, same amount, same provider transaction.
fn event_matches(payment: &Payment, event: &ProviderEvent) -> bool {
    let same_txn = payment
        .provider_txn_id
        .as_deref()
        .is_none_or(|txn| txn == event.provider_txn_id);
    payment.order_no == event.order_no && payment.amount_cents == event.amount_cents && same_txn
}

/// PROCESSING → SUCCEEDED; the order PENDING_PAYMENT → PAID with its "order paid"
/// message; an order that is no longer payable keeps its state and the payment is
/// flagged for a refund.
async fn apply_success(
    tx: &mut Transaction<'static, Any>,
    state: &AppState,
    payment: &Payment,
    event: &ProviderEvent,
) -> Result<CallbackResult, ApiError> {
    let switches = &state.switches;
    if !state_check::transition(
        tx,
        switches,
        Row::Payment(&payment.payment_no),
        PROCESSING,
        SUCCEEDED,
    )
    .await?
    {
        return Ok(CallbackResult::Ignored);
    }
    sqlx::query("UPDATE payments SET provider_txn_id = $1 WHERE payment_no = $2 AND provider_txn_id IS NULL")
        .bind(&event.provider_txn_id)
        .bind(&payment.payment_no)
        .execute(&mut **tx)
        .await?;
    let order = Row::Order(&payment.order_no);
    if state_check::transition(
        tx,
        switches,
        order,
        order_status::PENDING_PAYMENT,
        order_status::PAID,
    )
    .await?
    {
        rewards::enqueue_order_paid(tx, &payment.order_no, payment.user_id, payment.amount_cents)
            .await?;
    } else {
        tracing::warn!(
            "payment succeeded for an order that is not awaiting payment: refund needed"
        );
        sqlx::query("UPDATE payments SET needs_refund = $1 WHERE payment_no = $2")
            .bind(true)
            .bind(&payment.payment_no)
            .execute(&mut **tx)
            .await?;
    }
    Ok(CallbackResult::Applied)
}

/// PROCESSING → FAILED, and the order waits for another attempt. A FAILED that
/// arrives after the SUCCEEDED finds the payment SUCCEEDED and changes nothing.
async fn apply_failure(
    tx: &mut Transaction<'static, Any>,
    state: &AppState,
    payment: &Payment,
) -> Result<CallbackResult, ApiError> {
    let switches = &state.switches;
    if !state_check::transition(
        tx,
        switches,
        Row::Payment(&payment.payment_no),
        PROCESSING,
        FAILED,
    )
    .await?
    {
        return Ok(CallbackResult::Ignored);
    }
    let order = Row::Order(&payment.order_no);
    let awaiting = order_status::PENDING_PAYMENT;
    state_check::transition(tx, switches, order, awaiting, awaiting).await?;
    Ok(CallbackResult::Applied)
}
