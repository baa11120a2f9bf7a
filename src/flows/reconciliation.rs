//! 对账: the provider's bill for a day compared with flashguard's payments of
//! that day, payment by payment (docs/payments.md, "Channels").
//!
//! Three kinds of difference, each named with its ids:
//! - **charged but not paid** (掉单): the provider took the money, but our
//!   payment is not SUCCEEDED — its notification was lost and no query found it;
//! - **paid but not charged**: our payment is SUCCEEDED, but the provider has
//!   no charge for it — a forged or misapplied notification;
//! - **amounts differ** between the bill and the payment.
//!
//! A charge younger than twice `PSP_QUERY_AFTER_SECS` is still in flight (its
//! notification may come, or the query will find it): it is counted, not
//! reported. A day is a day in Beijing time, as the providers' bills are.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::domain::PaymentStatus;
use crate::psp;
use crate::state::AppState;
use crate::store::mock_provider::Charge;
use crate::store::payments::{self, Payment};
use crate::store::{StoreError, millis, now_ms};

/// One payment on which the two sides disagree.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Difference {
    pub channel: String,
    pub payment_no: String,
    pub order_no: String,
    /// The provider's transaction number, when it has the charge.
    pub trade_no: Option<String>,
    /// What the provider charged (cents), when it has the charge.
    pub provider_amount_cents: Option<i64>,
    /// What the payment says (cents) and its status, when flashguard has it.
    pub amount_cents: Option<i64>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    /// The day compared (YYYY-MM-DD, Beijing time).
    pub date: String,
    /// True when nothing differs.
    pub ok: bool,
    /// Charges on the provider's bill for the day.
    pub bill_charges: usize,
    /// flashguard's payments created that day.
    pub payments: usize,
    /// Charges and SUCCEEDED payments that agree.
    pub matched: usize,
    /// Charges too recent to judge yet.
    pub in_flight: usize,
    pub charged_not_paid: Vec<Difference>,
    pub paid_not_charged: Vec<Difference>,
    pub amounts_differ: Vec<Difference>,
}

/// Today, in Beijing time.
pub fn today() -> chrono::NaiveDate {
    psp::beijing_now().date_naive()
}

// [lesson reconciliation::reconcile]
/// Compares the provider's bill for `date` with the payments of that day.
pub async fn reconcile(
    state: &AppState,
    date: chrono::NaiveDate,
) -> Result<Reconciliation, StoreError> {
    let bill = state.psp.bill(date).await?;
    let (from, to) = psp::day_bounds(date);
    let ours = payments::created_between(state.db.pool(), from, to).await?;
    let strays = payments_of_other_days(state, &bill, &ours).await?;
    let settled_before = now_ms() - 2 * millis(state.settings.providers.query_after);
    let mut report = compare_bill(date, &bill, (&ours, &strays), settled_before);
    let billed: HashSet<&str> = bill
        .iter()
        .map(|charge| charge.payment_no.as_str())
        .collect();
    for paid in ours.iter().filter(|p| p.status == PaymentStatus::Succeeded) {
        // A charge on another day's bill (a payment just before midnight) is still a charge.
        if !billed.contains(paid.payment_no.as_str())
            && state.psp.query(&paid.payment_no).await?.is_none()
        {
            report.paid_not_charged.push(difference(None, Some(paid)));
        }
    }
    report.ok = report.charged_not_paid.is_empty()
        && report.paid_not_charged.is_empty()
        && report.amounts_differ.is_empty();
    Ok(report)
}

/// The payments of the bill's charges that were created on another day (a
/// payment just before midnight charged just after it).
async fn payments_of_other_days(
    state: &AppState,
    bill: &[Charge],
    ours: &[Payment],
) -> Result<Vec<Payment>, StoreError> {
    let known: HashSet<&str> = ours.iter().map(|p| p.payment_no.as_str()).collect();
    let mut strays = Vec::new();
    for charge in bill
        .iter()
        .filter(|c| !known.contains(c.payment_no.as_str()))
    {
        strays.extend(payments::find(state.db.pool(), &charge.payment_no).await?);
    }
    Ok(strays)
}

/// Every charge of the bill against the payment it is for (one of the day's,
/// `ours`, or of another day, `strays`): matched, in flight (younger than
/// `settled_before`), charged but not paid, or an amount that differs.
fn compare_bill(
    date: chrono::NaiveDate,
    bill: &[Charge],
    (ours, strays): (&[Payment], &[Payment]),
    settled_before: i64,
) -> Reconciliation {
    let by_payment: HashMap<&str, &Payment> = ours
        .iter()
        .chain(strays)
        .map(|p| (p.payment_no.as_str(), p))
        .collect();
    let mut report = Reconciliation {
        date: date.to_string(),
        ok: true,
        bill_charges: bill.len(),
        payments: ours.len(),
        matched: 0,
        in_flight: 0,
        charged_not_paid: Vec::new(),
        paid_not_charged: Vec::new(),
        amounts_differ: Vec::new(),
    };
    for charge in bill {
        let payment = by_payment.get(charge.payment_no.as_str()).copied();
        match payment.filter(|p| p.status == PaymentStatus::Succeeded) {
            Some(paid) if paid.amount_cents != charge.amount_cents => {
                report
                    .amounts_differ
                    .push(difference(Some(charge), Some(paid)));
            }
            Some(_) => report.matched += 1,
            None if charge.charged_at >= settled_before => report.in_flight += 1,
            None => report
                .charged_not_paid
                .push(difference(Some(charge), payment)),
        }
    }
    report
}
// [/lesson]

fn difference(charge: Option<&Charge>, payment: Option<&Payment>) -> Difference {
    Difference {
        channel: charge
            .map(|c| c.channel.clone())
            .or_else(|| payment.map(|p| p.channel.as_str().to_string()))
            .unwrap_or_default(),
        payment_no: charge
            .map(|c| c.payment_no.clone())
            .or_else(|| payment.map(|p| p.payment_no.clone()))
            .unwrap_or_default(),
        order_no: charge
            .map(|c| c.order_no.clone())
            .or_else(|| payment.map(|p| p.order_no.clone()))
            .unwrap_or_default(),
        trade_no: charge.map(|c| c.trade_no.clone()),
        provider_amount_cents: charge.map(|c| c.amount_cents),
        amount_cents: payment.map(|p| p.amount_cents),
        status: payment.map(|p| p.status.as_str().to_string()),
    }
}

impl Reconciliation {
    /// One line for the audit: counts only (the ids are in
    /// `GET /api/admin/reconciliation`).
    pub fn summary(&self) -> String {
        let counts = format!(
            "{}: {} charges on the provider's bill, {} matched, {} in flight",
            self.date, self.bill_charges, self.matched, self.in_flight
        );
        if self.ok {
            return counts;
        }
        format!(
            "{counts}; {} charged but not paid, {} paid but not charged, {} amounts differ (GET /api/admin/reconciliation names them)",
            self.charged_not_paid.len(),
            self.paid_not_charged.len(),
            self.amounts_differ.len()
        )
    }
}
