//! What a payment channel reports, applied once (docs/payments.md, "Channels"):
//! an Alipay or WeChat Pay notification whose signature the route verified, or
//! the provider's answer to a query (主动查单) for a payment whose notification
//! never came. Every report ends in the same idempotent step as the card
//! channel's callback (`payments::apply_callback`): the report's id recorded
//! under a unique index (`callback_dedup`), the effect as conditional updates
//! (`state_check`) — so a notification that arrives after the query, or a
//! second notification of the same success, changes nothing.

use crate::causes::Causes;
use crate::domain::Channel;
use crate::error::ApiError;
use crate::flows::JobError;
use crate::flows::payments::{CallbackResult, apply_callback};
use crate::psp::{Outcome, Settlement};
use crate::state::AppState;
use crate::store::payments::{self, Payment};
use crate::store::{millis, now_ms};

/// How many unsettled payments one round of queries asks about.
const QUERIES_PER_ROUND: i64 = 100;

// [lesson notifications::apply_settlement]
/// Applies what `channel` reported about one of its payments: the payment must
/// be ours and of that channel, the trade number the one the provider gave it,
/// the amount the payment's; then the same idempotent step as every callback.
pub async fn apply_settlement(
    state: &AppState,
    channel: Channel,
    settlement: &Settlement,
) -> Result<CallbackResult, ApiError> {
    settlement.check().map_err(ApiError::InvalidRequest)?;
    let payment = payments::find(state.db.pool(), &settlement.payment_no)
        .await?
        .filter(|payment| payment.channel == channel)
        .ok_or_else(|| ApiError::PaymentUnknown(settlement.payment_no.clone()))?;
    check_reported(&payment, settlement)?;
    match settlement.event(&payment.order_no) {
        Some(event) => apply_callback(state, &event).await,
        // Nothing decided yet (WAIT_BUYER_PAY, NOTPAY): acknowledged, nothing applied.
        None => Ok(CallbackResult::Ignored),
    }
}

/// The report must be about this payment's trade (when the charge already
/// named it) and for this payment's amount.
fn check_reported(payment: &Payment, settlement: &Settlement) -> Result<(), ApiError> {
    if let Some(expected) = payment.provider_txn_id.as_ref()
        && *expected != settlement.provider_txn_id
    {
        return Err(ApiError::TradeMismatch {
            payment_no: payment.payment_no.clone(),
            reported: settlement.provider_txn_id.clone(),
            expected: expected.clone(),
        });
    }
    if payment.amount_cents != settlement.amount_cents {
        return Err(ApiError::AmountMismatch {
            reported: settlement.amount_cents,
            expected: payment.amount_cents,
        });
    }
    Ok(())
}
// [/lesson]

// [lesson notifications::query_unsettled]
/// 主动查单: asks the provider about every payment still PROCESSING
/// `PSP_QUERY_AFTER_SECS` after it was created (those asked least recently
/// first), and applies the answer as if it were a notification. A payment the
/// provider never heard of is failed once twice that time has passed (its
/// order can be paid again).
pub async fn query_unsettled(state: &AppState) -> Result<u64, JobError> {
    let after = millis(state.settings.providers.query_after);
    let now = now_ms();
    let waiting =
        payments::processing_before(state.db.pool(), now - after, QUERIES_PER_ROUND).await?;
    let mut settled = 0;
    for payment in waiting {
        let answer = ask_provider(state, &payment, now - 2 * after).await?;
        payments::mark_queried(state.db.pool(), &payment.payment_no, now).await?;
        let Some(settlement) = answer else { continue };
        match apply_settlement(state, payment.channel, &settlement).await {
            Ok(CallbackResult::Applied) => settled += 1,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %Causes(&error), payment_no = %payment.payment_no, "a query's answer was not applied")
            }
        }
    }
    Ok(settled)
}
// [/lesson]

/// The provider's answer about `payment` as a settlement, named by the query
/// and what it found (so that a later, different answer is not a duplicate).
async fn ask_provider(
    state: &AppState,
    payment: &Payment,
    give_up_before: i64,
) -> Result<Option<Settlement>, JobError> {
    let answer = state.psp.query(&payment.payment_no).await?;
    let settlement = match answer {
        Some(answer) => answer.settlement(String::new()),
        None if payment.created_at < give_up_before => Ok(Settlement {
            id: String::new(),
            payment_no: payment.payment_no.clone(),
            provider_txn_id: payment
                .provider_txn_id
                .clone()
                .unwrap_or_else(|| "none".into()),
            amount_cents: payment.amount_cents,
            outcome: Outcome::Failed,
        }),
        None => return Ok(None),
    };
    match settlement {
        Ok(mut settlement) => {
            settlement.id = format!("query:{}:{:?}", payment.payment_no, settlement.outcome);
            Ok(Some(settlement))
        }
        Err(error) => {
            tracing::warn!(error = %Causes(&error), payment_no = %payment.payment_no, "the provider's query answer cannot be read");
            Ok(None)
        }
    }
}
