//! What the provider and the merchant talk about, in any channel: the
//! provider's behaviour switches, a charge, a trade, what a notification (or a
//! query) reports about it, and the amounts and days in the providers' terms.

use serde::{Deserialize, Serialize};

use crate::domain::Channel;

/// How the provider behaves; set with `PUT /api/admin/psp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PspBehaviour {
    /// How many times the SUCCEEDED callback is delivered (0: none, a test sends its own).
    pub callbacks: u32,
    /// Pause before the first delivery.
    pub delay_ms: u64,
    /// Deliver the copies all at once instead of one after another.
    pub concurrent: bool,
    /// After the successes, also deliver a FAILED event for the same payment (out of order).
    pub failed_after_success: bool,
}

impl Default for PspBehaviour {
    fn default() -> Self {
        Self {
            callbacks: 3,
            delay_ms: 200,
            concurrent: true,
            failed_after_success: false,
        }
    }
}

/// A partial update of the behaviour; unknown fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PspBehaviourPatch {
    /// How many times the SUCCEEDED callback is delivered (0: none).
    #[schema(maximum = 20)]
    pub callbacks: Option<u32>,
    /// Delay before the first callback (ms).
    #[schema(maximum = 60_000)]
    pub delay_ms: Option<u64>,
    /// Send the copies at once instead of one after another.
    pub concurrent: Option<bool>,
    /// After SUCCEEDED, send a late FAILED too.
    pub failed_after_success: Option<bool>,
}

pub const MAX_CALLBACKS: u32 = 20;
pub const MAX_DELAY_MS: u64 = 60_000;

impl PspBehaviour {
    /// Applies `patch`, or says which field is out of range.
    pub fn patched(&self, patch: PspBehaviourPatch) -> Result<Self, String> {
        let next = Self {
            callbacks: patch.callbacks.unwrap_or(self.callbacks),
            delay_ms: patch.delay_ms.unwrap_or(self.delay_ms),
            concurrent: patch.concurrent.unwrap_or(self.concurrent),
            failed_after_success: patch
                .failed_after_success
                .unwrap_or(self.failed_after_success),
        };
        if next.callbacks > MAX_CALLBACKS {
            return Err(format!("callbacks must be 0 to {MAX_CALLBACKS}"));
        }
        if next.delay_ms > MAX_DELAY_MS {
            return Err(format!("delay_ms must be 0 to {MAX_DELAY_MS}"));
        }
        Ok(next)
    }
}

/// The callback body (docs/design.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderEvent {
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]{1,64}$")]
    pub event_id: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]{1,64}$")]
    pub order_no: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]{1,64}$")]
    pub payment_no: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]{1,64}$")]
    pub provider_txn_id: String,
    pub status: EventStatus,
    pub amount_cents: i64,
}

/// The longest id a provider event may carry.
pub const MAX_EVENT_ID_LEN: usize = 64;

impl ProviderEvent {
    /// Every id is 1 to 64 visible ASCII characters: what a provider sends.
    /// Anything else (a NUL byte, which Postgres cannot store in text) is
    /// refused here, before a query sees it.
    pub fn check(&self) -> Result<(), String> {
        check_ids(&[
            ("event_id", &self.event_id),
            ("order_no", &self.order_no),
            ("payment_no", &self.payment_no),
            ("provider_txn_id", &self.provider_txn_id),
        ])
    }
}

/// Each id must be 1 to `MAX_EVENT_ID_LEN` visible ASCII characters.
fn check_ids(ids: &[(&str, &String)]) -> Result<(), String> {
    for (name, value) in ids {
        let visible = value.bytes().all(|b| b.is_ascii_graphic());
        if value.is_empty() || value.len() > MAX_EVENT_ID_LEN || !visible {
            return Err(format!(
                "{name} must be 1 to {MAX_EVENT_ID_LEN} visible ASCII characters"
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventStatus {
    Succeeded,
    Failed,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
        }
    }
}

/// What the merchant asks the provider to charge.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub order_no: String,
    pub payment_no: String,
    pub amount_cents: i64,
    pub channel: Channel,
}

/// A trade as the provider knows it: what a notification or a query reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    /// The merchant's payment number (`out_trade_no`).
    pub payment_no: String,
    /// The provider's transaction number (`trade_no`, `transaction_id`).
    pub trade_no: String,
    pub amount_cents: i64,
}

/// What a provider says happened to one payment, in any channel's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// What names this report once (the dedup key of `callback_dedup`): the
    /// notification's id, or the query's.
    pub id: String,
    pub payment_no: String,
    pub provider_txn_id: String,
    pub amount_cents: i64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Paid,
    /// The trade will not be paid (closed, failed).
    Failed,
    /// Nothing decided yet: acknowledged, nothing applied.
    Pending,
}

impl Settlement {
    /// The ids are checked like a card event's before any query sees them.
    pub fn check(&self) -> Result<(), String> {
        check_ids(&[
            ("id", &self.id),
            ("out_trade_no", &self.payment_no),
            ("trade number", &self.provider_txn_id),
        ])
    }

    /// The event the idempotent step applies (an outcome that decides something).
    pub fn event(&self, order_no: &str) -> Option<ProviderEvent> {
        let status = match self.outcome {
            Outcome::Paid => EventStatus::Succeeded,
            Outcome::Failed => EventStatus::Failed,
            Outcome::Pending => return None,
        };
        Some(ProviderEvent {
            event_id: self.id.clone(),
            order_no: order_no.to_string(),
            payment_no: self.payment_no.clone(),
            provider_txn_id: self.provider_txn_id.clone(),
            status,
            amount_cents: self.amount_cents,
        })
    }
}

/// Why a channel's notification is refused: nothing of it is applied, and the
/// provider hears something other than its "received", so it sends it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("the notification's signature does not verify: {0}")]
    SignatureInvalid(String),
    #[error("the notification was signed too long before (or after) now")]
    SignatureExpired,
    #[error("the notification cannot be read: {0}")]
    Malformed(String),
    #[error("the notification's resource does not decrypt with the APIv3 key")]
    Undecryptable,
}

/// `12.34` (yuan, as Alipay writes amounts) → 1234 cents; anything else is refused.
pub fn yuan_to_cents(amount: &str) -> Result<i64, NotificationError> {
    let malformed =
        || NotificationError::Malformed(format!("total_amount {amount:?} is not a yuan amount"));
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole)
        || (amount.contains('.') && !digits(fraction))
        || fraction.len() > 2
        || whole.len() > 12
    {
        return Err(malformed());
    }
    let whole: i64 = whole.parse().map_err(|_| malformed())?;
    let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| malformed())?;
    Ok(whole * 100 + fraction)
}

/// 1234 cents → `12.34`.
pub fn cents_to_yuan(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Now, in Beijing time: the providers' clock, and their bill's day.
pub fn beijing_now() -> chrono::DateTime<chrono::FixedOffset> {
    chrono::Utc::now().with_timezone(&beijing())
}

pub fn beijing() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("UTC"))
}

/// The first and the last millisecond (exclusive) of `date` in Beijing time.
pub fn day_bounds(date: chrono::NaiveDate) -> (i64, i64) {
    let start = date
        .and_hms_opt(0, 0, 0)
        .and_then(|midnight| midnight.and_local_timezone(beijing()).single())
        .map_or(0, |start| start.timestamp_millis());
    (start, start + 24 * 3600 * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_amounts_are_read_exactly() {
        assert_eq!(yuan_to_cents("12.34"), Ok(1234));
        assert_eq!(yuan_to_cents("12.3"), Ok(1230));
        assert_eq!(yuan_to_cents("12"), Ok(1200));
        assert_eq!(yuan_to_cents("0.01"), Ok(1));
        for bad in ["", "1.234", "-1.00", "1e3", ".5", "1.", "１２"] {
            assert!(yuan_to_cents(bad).is_err(), "{bad}");
        }
        assert_eq!(cents_to_yuan(1234), "12.34");
        assert_eq!(cents_to_yuan(5), "0.05");
    }

    #[test]
    fn a_beijing_day_starts_at_16_00_utc_the_day_before() {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).expect("a date");
        let (from, to) = day_bounds(date);
        assert_eq!(from, 1_796_054_400_000); // 2026-11-30T16:00:00Z
        assert_eq!(to - from, 86_400_000);
    }
}
