//! Defense `state_check` — state moves only along allowed transitions.
//!
//! **Without it** a late or duplicated callback moves an order backwards (a
//! FAILED arriving after the SUCCEEDED turns a PAID order back into an unpaid
//! one), resurrects a CLOSED order, or pays an order twice; and a pay request for
//! an order that is already paid or being paid starts another charge.
//!
//! **How it prevents that**: every transition is one conditional update,
//! `UPDATE … SET status = 'PAID' WHERE order_no = $1 AND status = 'PENDING_PAYMENT'`:
//! the database checks and changes in one step, and `rows_affected = 0` means
//! "not allowed from the current state", which is answered without effect.
//! Before charging, the pay flow checks the order: PAID → 200 PAID; a payment
//! PROCESSING → that payment, no second charge.
//!
//! **Switched off**, the updates are unconditional and the pay flow skips its
//! check. Shown by `tests/api/payment_defenses.rs`.

use sqlx::{Any, Transaction};

use super::{Defense, SwitchBoard};
use crate::store::now_ms;

/// Whether the pay flow checks the order's state before charging.
pub fn checks_before_charge(switches: &SwitchBoard) -> bool {
    switches.is_on(Defense::StateCheck)
}

/// Moves `table.status` of the row `key_column = key` from `from` to `to`.
/// With the defense on, only if the row is in `from`; off, whatever it is in.
/// Returns whether a row moved.
pub async fn transition(
    tx: &mut Transaction<'static, Any>,
    switches: &SwitchBoard,
    row: Row<'_>,
    from: &str,
    to: &str,
) -> Result<bool, sqlx::Error> {
    let (table, key_column) = row.table_and_key();
    let now = now_ms();
    let updated = if switches.is_on(Defense::StateCheck) {
        let sql = format!(
            "UPDATE {table} SET status = $1, updated_at = $2 WHERE {key_column} = $3 AND status = $4"
        );
        sqlx::query(&sql)
            .bind(to)
            .bind(now)
            .bind(row.key())
            .bind(from)
            .execute(&mut **tx)
            .await?
    } else {
        let sql =
            format!("UPDATE {table} SET status = $1, updated_at = $2 WHERE {key_column} = $3");
        sqlx::query(&sql)
            .bind(to)
            .bind(now)
            .bind(row.key())
            .execute(&mut **tx)
            .await?
    };
    Ok(updated.rows_affected() > 0)
}

/// The rows whose state this defense guards.
#[derive(Debug, Clone, Copy)]
pub enum Row<'a> {
    Order(&'a str),
    Payment(&'a str),
}

impl Row<'_> {
    fn table_and_key(self) -> (&'static str, &'static str) {
        match self {
            Row::Order(_) => ("orders", "order_no"),
            Row::Payment(_) => ("payments", "payment_no"),
        }
    }

    fn key(self) -> String {
        match self {
            Row::Order(key) | Row::Payment(key) => key.to_string(),
        }
    }
}
