//! Closing unpaid orders: after the payment window a PENDING_PAYMENT order
//! becomes CLOSED and its units return to stock. Each close is one conditional
//! update (`state_check`) in one transaction with the stock return, so several
//! instances may run this at once and each order is closed, and restocked, once.
//! The returned units go back to the stock gate too.

use sqlx::FromRow;

use crate::defenses::state_check::{self, Row};
use crate::defenses::stock_gate;
use crate::domain::order_status;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::now_ms;

#[derive(Debug, FromRow)]
struct Unpaid {
    order_no: String,
    product_id: i64,
    quantity: i64,
}

/// Closes the orders whose payment window has passed; returns how many it closed.
pub async fn close_expired_orders(state: &AppState) -> Result<u64, ApiError> {
    let cutoff = now_ms() - state.settings.payments.payment_window.as_millis() as i64;
    let unpaid = sqlx::query_as::<_, Unpaid>(
        "SELECT order_no, product_id, quantity FROM orders
          WHERE status = $1 AND created_at <= $2 ORDER BY id LIMIT 500",
    )
    .bind(order_status::PENDING_PAYMENT)
    .bind(cutoff)
    .fetch_all(state.db.pool())
    .await?;
    let mut closed = 0;
    for order in unpaid {
        let mut tx = state.db.pool().begin().await?;
        let moved = state_check::transition(
            &mut tx,
            &state.switches,
            Row::Order(&order.order_no),
            order_status::PENDING_PAYMENT,
            order_status::CLOSED,
        )
        .await?;
        if moved {
            sqlx::query(
                "UPDATE products SET stock = stock + $1, version = version + 1 WHERE id = $2",
            )
            .bind(order.quantity)
            .bind(order.product_id)
            .execute(&mut *tx)
            .await?;
            closed += 1;
        }
        tx.commit().await?;
        if moved {
            stock_gate::returned(state, order.product_id, order.quantity).await?;
        }
    }
    Ok(closed)
}
