//! Defense `state_check` (状态机校验) — state moves only along allowed transitions.
//!
//! **Without it** a late or duplicated callback moves an order backwards (a
//! FAILED arriving after the SUCCEEDED turns a PAID order back into an unpaid
//! one), resurrects a CLOSED order, or pays an order twice; and a pay request for
//! an order that is already paid or being paid starts another charge.
//!
//! **How it prevents that**: the allowed transitions are a table
//! ([`crate::domain::OrderStatus::TRANSITIONS`], [`crate::domain::PaymentStatus::TRANSITIONS`]),
//! and each is applied as one conditional update,
//! `UPDATE orders SET status = 'PAID' WHERE order_no = $1 AND status = 'PENDING_PAYMENT'`:
//! the database checks and changes in one step, and `rows_affected = 0` means
//! "not allowed from the current state", which is answered without effect.
//! Before charging, the pay flow checks the order: PAID → 200 PAID; a payment
//! PROCESSING → that payment, no second charge.
//!
//! **Switched off**, the updates are unconditional (the naive code: "payment
//! failed → the order is unpaid again") and the pay flow skips its check.
//! Shown by `tests/api/payment_defenses.rs`:
//! `with_state_check_a_late_failed_changes_nothing` (on) and
//! `without_state_check_a_late_failed_moves_a_paid_order_back` (off).

use crate::domain::{OrderStatus, PaymentStatus, Transition};
use crate::store::{StoreError, Tx, orders, payments};
use crate::switches::{Defense, SwitchBoard};

/// Whether the pay flow checks the order's state before charging.
pub fn checks_before_charge(switches: &SwitchBoard) -> bool {
    switches.is_on(Defense::StateCheck)
}

// [lesson state_check::move_order]
/// Moves an order along `transition`; returns whether it moved.
pub async fn move_order(
    tx: &mut Tx,
    switches: &SwitchBoard,
    order_no: &str,
    transition: Transition<OrderStatus>,
) -> Result<bool, StoreError> {
    if switches.is_on(Defense::StateCheck) {
        orders::move_status(&mut **tx, order_no, transition).await
    } else {
        orders::overwrite_status(&mut **tx, order_no, transition.to).await
    }
}
// [/lesson]

/// Moves a payment along `transition`; returns whether it moved.
pub async fn move_payment(
    tx: &mut Tx,
    switches: &SwitchBoard,
    payment_no: &str,
    transition: Transition<PaymentStatus>,
) -> Result<bool, StoreError> {
    if switches.is_on(Defense::StateCheck) {
        payments::move_status(&mut **tx, payment_no, transition).await
    } else {
        payments::overwrite_status(&mut **tx, payment_no, transition.to).await
    }
}

/// A failed payment leaves its order awaiting payment. With the state machine
/// nothing moves: the order already awaits payment, and no transition leads
/// back from PAID. Without it, the naive code writes "unpaid" anyway — the very
/// write that lets a late FAILED turn a PAID order back.
pub async fn after_failed_payment(
    tx: &mut Tx,
    switches: &SwitchBoard,
    order_no: &str,
) -> Result<(), StoreError> {
    if !switches.is_on(Defense::StateCheck) {
        orders::overwrite_status(&mut **tx, order_no, OrderStatus::PendingPayment).await?;
    }
    Ok(())
}
