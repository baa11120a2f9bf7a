//! The mock payment provider (in-process), behaving the way real providers do:
//! it accepts a charge at once and reports the result later, by notification,
//! at least once — possibly duplicated, concurrent, delayed and out of order (a
//! failure after the success) — in the format of the payment's channel
//! (docs/payments.md, "Channels"):
//! - `card`: a Stripe-style webhook, JSON signed with an HMAC over timestamp and
//!   body with the shared `PSP_SECRET` ([`signature`]); any 2xx is "received";
//! - `alipay`: Alipay's asynchronous notification, a form signed with RSA2
//!   ([`alipay`]); only the body `success` is "received";
//! - `wechatpay`: WeChat Pay's APIv3 notification, the payment encrypted with
//!   AES-256-GCM and the body signed with SHA256-RSA ([`wechatpay`]); 200 or
//!   204 is "received".
//!
//! A notification that is not "received" is sent again along its channel's
//! schedule (Alipay's intervals for the card channel too), each wait multiplied
//! by `PSP_RETRY_SCALE`. The provider keeps its own books (`store::mock_provider`)
//! and answers queries about them: the trade query (主动查单) and the daily bill
//! (对账).

pub mod alipay;
pub mod keys;
pub mod signature;
pub mod wechatpay;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::domain::Channel;
use crate::store::{Db, StoreError, mock_provider, now_ms};

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
        let fields = [
            ("event_id", &self.event_id),
            ("order_no", &self.order_no),
            ("payment_no", &self.payment_no),
            ("provider_txn_id", &self.provider_txn_id),
        ];
        for (name, value) in fields {
            let visible = value.bytes().all(|b| b.is_ascii_graphic());
            if value.is_empty() || value.len() > MAX_EVENT_ID_LEN || !visible {
                return Err(format!(
                    "{name} must be 1 to {MAX_EVENT_ID_LEN} visible ASCII characters"
                ));
            }
        }
        Ok(())
    }
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
    #[error("the notification was signed more than 5 minutes away from now")]
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

/// One message on its way to the merchant.
#[derive(Debug, Clone)]
enum Message {
    Card(ProviderEvent),
    /// Signed once: a redelivery is the same notification.
    Alipay(alipay::Params),
    /// The body; each delivery is signed afresh (its timestamp must be recent).
    Wechatpay(String),
}

/// What the mock needs to sign, and where it sends.
#[derive(Debug)]
pub struct ProviderConfig {
    pub secret: SecretString,
    pub keys: keys::ProviderKeys,
    pub alipay_app_id: String,
    pub retry_scale: f64,
}

#[derive(Debug)]
pub struct MockProvider {
    behaviour: RwLock<PspBehaviour>,
    config: ProviderConfig,
    db: Db,
    http: reqwest::Client,
    /// The card channel's callback URL.
    callback_url: OnceLock<String>,
    /// Where Alipay and WeChat Pay notifications go (`<base>/api/payments/callback/<channel>`).
    notify_base_url: OnceLock<String>,
}

impl MockProvider {
    pub fn new(config: ProviderConfig, db: Db) -> Self {
        Self {
            behaviour: RwLock::new(PspBehaviour::default()),
            config: ProviderConfig {
                retry_scale: config.retry_scale.max(0.0),
                ..config
            },
            db,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_else(|error| {
                    tracing::error!(%error, "mock provider: no HTTP client with a timeout; using the default client");
                    reqwest::Client::new()
                }),
            callback_url: OnceLock::new(),
            notify_base_url: OnceLock::new(),
        }
    }

    /// Where callbacks go; set once the server knows its address.
    pub fn set_callback_url(&self, url: String) {
        let _ = self.callback_url.set(url);
    }

    /// Where Alipay and WeChat Pay notifications go; set once the server knows its address.
    pub fn set_notify_base_url(&self, url: String) {
        let _ = self
            .notify_base_url
            .set(url.trim_end_matches('/').to_string());
    }

    pub fn behaviour(&self) -> PspBehaviour {
        self.behaviour.read().clone()
    }

    pub fn set_behaviour(&self, behaviour: PspBehaviour) {
        *self.behaviour.write() = behaviour;
    }

    /// Accepts a charge: records it in the provider's books, returns the
    /// provider's transaction number at once, and notifies the outcome later.
    pub async fn charge(self: &Arc<Self>, charge: ChargeRequest) -> Result<String, StoreError> {
        let trade = Trade {
            payment_no: charge.payment_no.clone(),
            trade_no: trade_no(charge.channel),
            amount_cents: charge.amount_cents,
        };
        let booked = mock_provider::Charge {
            payment_no: charge.payment_no.clone(),
            order_no: charge.order_no.clone(),
            channel: charge.channel.as_str().to_string(),
            trade_no: trade.trade_no.clone(),
            amount_cents: charge.amount_cents,
            status: "SUCCESS".into(),
            charged_at: now_ms(),
        };
        mock_provider::record(self.db.pool(), &booked).await?;
        let (success, failure) = self.messages(&charge, &trade);
        let behaviour = self.behaviour();
        let provider = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(behaviour.delay_ms)).await;
            let Some(success) = success else { return };
            provider
                .deliver_copies(&success, behaviour.callbacks, behaviour.concurrent)
                .await;
            if let Some(failure) =
                failure.filter(|_| behaviour.failed_after_success && behaviour.callbacks > 0)
            {
                provider.deliver(&failure).await;
            }
        });
        Ok(trade.trade_no)
    }

    /// The success notification and the late failure of a charge, in its
    /// channel's format (WeChat Pay notifies successes only; a channel whose
    /// private key the mock lacks sends nothing).
    fn messages(
        &self,
        charge: &ChargeRequest,
        trade: &Trade,
    ) -> (Option<Message>, Option<Message>) {
        let keys = &self.config.keys;
        match charge.channel {
            Channel::Card => {
                let event = |status| Message::Card(card_event(charge, &trade.trade_no, status));
                (
                    Some(event(EventStatus::Succeeded)),
                    Some(event(EventStatus::Failed)),
                )
            }
            Channel::Alipay => {
                let Some(key) = keys.alipay.private.as_ref() else {
                    tracing::warn!("the mock Alipay has no private key: it sends no notification");
                    return (None, None);
                };
                let signed = |status| {
                    let mut params =
                        alipay::notification(&self.config.alipay_app_id, trade, status);
                    params.sign(key);
                    Message::Alipay(params)
                };
                (Some(signed("TRADE_SUCCESS")), Some(signed("TRADE_CLOSED")))
            }
            Channel::Wechatpay => {
                let transaction = wechatpay::Transaction {
                    out_trade_no: trade.payment_no.clone(),
                    transaction_id: trade.trade_no.clone(),
                    trade_state: "SUCCESS".into(),
                    amount: wechatpay::Amount {
                        total: trade.amount_cents,
                        currency: "CNY".into(),
                    },
                    success_time: Some(
                        beijing_now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
                    ),
                };
                match wechatpay::notification(&transaction, &keys.apiv3_key) {
                    Ok(body) if keys.wechatpay.private.is_some() => {
                        (Some(Message::Wechatpay(body)), None)
                    }
                    Ok(_) => {
                        tracing::warn!(
                            "the mock WeChat Pay has no private key: it sends no notification"
                        );
                        (None, None)
                    }
                    Err(error) => {
                        tracing::error!(%error, "the mock WeChat Pay cannot build a notification");
                        (None, None)
                    }
                }
            }
        }
    }

    /// The same message, `copies` times: the provider's at-least-once delivery.
    async fn deliver_copies(self: &Arc<Self>, message: &Message, copies: u32, concurrent: bool) {
        if concurrent {
            let tasks: Vec<_> = (0..copies)
                .map(|_| {
                    let (provider, message) = (Arc::clone(self), message.clone());
                    tokio::spawn(async move { provider.deliver(&message).await })
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        } else {
            for _ in 0..copies {
                self.deliver(message).await;
            }
        }
    }

    /// Delivers until the merchant says "received", pausing along the
    /// channel's (scaled) redelivery schedule.
    async fn deliver(&self, message: &Message) {
        let schedule: &[u64] = match message {
            Message::Card(_) | Message::Alipay(_) => &alipay::REDELIVERY_SECS,
            Message::Wechatpay(_) => &wechatpay::REDELIVERY_SECS,
        };
        for (attempt, pause) in std::iter::once(0)
            .chain(schedule.iter().copied())
            .enumerate()
        {
            let wait = Duration::from_secs_f64(pause as f64 * self.config.retry_scale);
            tokio::time::sleep(wait).await;
            match self.send_once(message).await {
                Ok(true) => return,
                Ok(false) => {
                    tracing::warn!(attempt, "notification not received; will send it again")
                }
                Err(error) => {
                    tracing::warn!(attempt, %error, "notification failed; will send it again")
                }
            }
        }
        tracing::error!("mock provider gave up on a notification");
    }

    /// One delivery; whether the merchant answered its channel's "received".
    async fn send_once(&self, message: &Message) -> Result<bool, String> {
        let url = |path: &str| match (message, self.notify_base_url.get(), self.callback_url.get())
        {
            (Message::Card(_), _, Some(url)) => Ok(url.clone()),
            (_, Some(base), _) if !path.is_empty() => Ok(format!("{base}{path}")),
            _ => Err("the mock provider does not know where to send".to_string()),
        };
        let failed = |error: reqwest::Error| error.to_string();
        match message {
            Message::Card(event) => {
                let body = serde_json::to_string(event).map_err(|error| error.to_string())?;
                let header = signature::sign(&self.config.secret, signature::now_unix(), &body);
                let response = self
                    .http
                    .post(url("")?)
                    .header(signature::SIGNATURE_HEADER, header)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(failed)?;
                Ok(response.status().is_success())
            }
            Message::Alipay(params) => {
                let response = self
                    .http
                    .post(url("/api/payments/callback/alipay")?)
                    .header(
                        "Content-Type",
                        "application/x-www-form-urlencoded; charset=utf-8",
                    )
                    .body(params.to_form())
                    .send()
                    .await
                    .map_err(failed)?;
                Ok(response.text().await.map_err(failed)? == alipay::RECEIVED)
            }
            Message::Wechatpay(body) => {
                let key = self
                    .config
                    .keys
                    .wechatpay
                    .private
                    .as_ref()
                    .ok_or("no private key")?;
                let (timestamp, nonce) = (
                    signature::now_unix().to_string(),
                    wechatpay::random_text(32),
                );
                let signed =
                    wechatpay::sign(key, &wechatpay::signed_message(&timestamp, &nonce, body));
                let response = self
                    .http
                    .post(url("/api/payments/callback/wechatpay")?)
                    .header("Content-Type", "application/json")
                    .header(wechatpay::TIMESTAMP_HEADER, timestamp)
                    .header(wechatpay::NONCE_HEADER, nonce)
                    .header(wechatpay::SIGNATURE_HEADER, signed)
                    .header(wechatpay::SERIAL_HEADER, &self.config.keys.wechatpay_serial)
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(failed)?;
                Ok(matches!(response.status().as_u16(), 200 | 204))
            }
        }
    }

    /// The provider's answer to a trade query (主动查单), in the shape of the
    /// channel's API: Alipay's `alipay.trade.query` fields, WeChat Pay's
    /// `GET /v3/pay/transactions/out-trade-no/{no}` transaction, the card
    /// channel's event. `None`: the provider never heard of this payment.
    pub async fn query(&self, payment_no: &str) -> Result<Option<QueryAnswer>, StoreError> {
        let Some(charge) = mock_provider::find(self.db.pool(), payment_no).await? else {
            return Ok(None);
        };
        let trade = Trade {
            payment_no: charge.payment_no.clone(),
            trade_no: charge.trade_no.clone(),
            amount_cents: charge.amount_cents,
        };
        Ok(Some(
            match Channel::parse(&charge.channel).unwrap_or_default() {
                Channel::Card => QueryAnswer::Card(card_event(
                    &ChargeRequest {
                        order_no: charge.order_no,
                        payment_no: charge.payment_no,
                        amount_cents: charge.amount_cents,
                        channel: Channel::Card,
                    },
                    &charge.trade_no,
                    EventStatus::Succeeded,
                )),
                Channel::Alipay => {
                    let mut params = alipay::Params::default();
                    params.set("code", "10000");
                    params.set("trade_no", trade.trade_no);
                    params.set("out_trade_no", trade.payment_no);
                    params.set("trade_status", "TRADE_SUCCESS");
                    params.set("total_amount", cents_to_yuan(trade.amount_cents));
                    QueryAnswer::Alipay(params)
                }
                Channel::Wechatpay => QueryAnswer::Wechatpay(wechatpay::Transaction {
                    out_trade_no: trade.payment_no,
                    transaction_id: trade.trade_no,
                    trade_state: "SUCCESS".into(),
                    amount: wechatpay::Amount {
                        total: trade.amount_cents,
                        currency: "CNY".into(),
                    },
                    success_time: None,
                }),
            },
        ))
    }

    /// The provider's bill for the day `date` (Beijing time): every charge it made.
    pub async fn bill(
        &self,
        date: chrono::NaiveDate,
    ) -> Result<Vec<mock_provider::Charge>, StoreError> {
        let (from, to) = day_bounds(date);
        mock_provider::between(self.db.pool(), from, to).await
    }
}

/// The first and the last millisecond (exclusive) of `date` in Beijing time.
pub fn day_bounds(date: chrono::NaiveDate) -> (i64, i64) {
    let start = date
        .and_hms_opt(0, 0, 0)
        .and_then(|midnight| midnight.and_local_timezone(beijing()).single())
        .map_or(0, |start| start.timestamp_millis());
    (start, start + 24 * 3600 * 1000)
}

/// A trade query's answer, in its channel's own shape.
#[derive(Debug, Clone)]
pub enum QueryAnswer {
    Card(ProviderEvent),
    Alipay(alipay::Params),
    Wechatpay(wechatpay::Transaction),
}

impl QueryAnswer {
    /// What the answer says, read by the same code as a notification; `id`
    /// names this query's report (the dedup key).
    pub fn settlement(&self, id: String) -> Result<Settlement, NotificationError> {
        match self {
            Self::Card(event) => Ok(Settlement {
                id,
                payment_no: event.payment_no.clone(),
                provider_txn_id: event.provider_txn_id.clone(),
                amount_cents: event.amount_cents,
                outcome: match event.status {
                    EventStatus::Succeeded => Outcome::Paid,
                    EventStatus::Failed => Outcome::Failed,
                },
            }),
            Self::Alipay(params) => params.trade_settlement(id),
            Self::Wechatpay(transaction) => Ok(transaction.settlement(id)),
        }
    }
}

fn card_event(charge: &ChargeRequest, provider_txn_id: &str, status: EventStatus) -> ProviderEvent {
    ProviderEvent {
        event_id: format!("EVT{}", uuid::Uuid::new_v4().simple()),
        order_no: charge.order_no.clone(),
        payment_no: charge.payment_no.clone(),
        provider_txn_id: provider_txn_id.to_string(),
        status,
        amount_cents: charge.amount_cents,
    }
}

/// The provider's transaction number, in the channel's style: Alipay's
/// `trade_no` and WeChat Pay's `transaction_id` are 28 digits.
fn trade_no(channel: Channel) -> String {
    use rand::Rng;
    let date = beijing_now().format("%Y%m%d").to_string();
    let random_digits = |count: usize| -> String {
        let mut rng = rand::rng();
        (0..count)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect()
    };
    match channel {
        Channel::Card => format!("PSP{}", uuid::Uuid::now_v7().simple()),
        Channel::Alipay => format!("{date}22001{}", random_digits(15)),
        Channel::Wechatpay => format!("4200000{date}{}", random_digits(13)),
    }
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
