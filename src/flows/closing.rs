//! Closing unpaid orders: after the payment window a PENDING_PAYMENT order
//! becomes CLOSED and its units return to stock. Each close is one conditional
//! update (`state_check`) in one transaction with the stock return, so several
//! instances may run this at once and each order is closed, and restocked, once.
//! The returned units go back to the stock gate too.

use super::JobError;
use crate::defenses::state_check;
use crate::domain::OrderStatus;
use crate::state::AppState;
use crate::store::orders::{self, Unpaid};
use crate::store::{commit, millis, now_ms, products};

/// How many orders one round closes at most.
const BATCH: i64 = 500;

/// Closes the orders whose payment window has passed; returns how many it closed.
pub async fn close_expired_orders(state: &AppState) -> Result<u64, JobError> {
    let cutoff = now_ms().saturating_sub(millis(state.settings.payments.payment_window));
    let unpaid = orders::unpaid_since(state.db.pool(), cutoff, BATCH).await?;
    let mut closed = 0;
    for order in unpaid {
        if close(state, &order).await? {
            closed += 1;
        }
    }
    Ok(closed)
}

/// Closes one order and returns its units, if nobody moved it meanwhile.
async fn close(state: &AppState, order: &Unpaid) -> Result<bool, JobError> {
    let mut tx = state.db.begin().await?;
    let moved = state_check::move_order(
        &mut tx,
        &state.switches,
        &order.order_no,
        OrderStatus::CLOSE,
    )
    .await?;
    if moved {
        products::restock(&mut *tx, order.product_id, order.quantity).await?;
    }
    commit(tx).await?;
    if moved {
        state.gate.restock(order.product_id, order.quantity).await?;
    }
    Ok(moved)
}
