//! The mock provider itself: it books each charge, notifies the merchant in
//! the charge's channel and redelivers until it hears that channel's
//! "received", and answers trade queries and daily bills from its books.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;
use secrecy::SecretString;

use super::trade::{
    ChargeRequest, EventStatus, NotificationError, Outcome, ProviderEvent, PspBehaviour,
    Settlement, Trade, beijing_now, day_bounds,
};
use super::{alipay, keys, signature, wechatpay};
use crate::causes::Causes;
use crate::domain::Channel;
use crate::store::{Db, StoreError, mock_provider, now_ms};

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
                    tracing::error!(error = %Causes(&error), "mock provider: no HTTP client with a timeout; using the default client");
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
        let behaviour = self.behaviour();
        let provider = Arc::clone(self);
        let trade_no = trade.trade_no.clone();
        // Signing (RSA) happens off the request that paid.
        tokio::spawn(async move {
            let late_failure = behaviour.failed_after_success && behaviour.callbacks > 0;
            let (success, failure) = provider.messages(&charge, &trade, late_failure);
            tokio::time::sleep(Duration::from_millis(behaviour.delay_ms)).await;
            let Some(success) = success else { return };
            provider
                .deliver_copies(&success, behaviour.callbacks, behaviour.concurrent)
                .await;
            if let Some(failure) = failure {
                provider.deliver(&failure).await;
            }
        });
        Ok(trade_no)
    }

    /// The success notification of a charge and, when `late_failure`, the
    /// failure that follows it, in the charge's channel format (WeChat Pay
    /// notifies successes only; a channel whose private key the mock lacks
    /// sends nothing).
    fn messages(
        &self,
        charge: &ChargeRequest,
        trade: &Trade,
        late_failure: bool,
    ) -> (Option<Message>, Option<Message>) {
        match charge.channel {
            Channel::Card => {
                let event = |status| Message::Card(card_event(charge, &trade.trade_no, status));
                (
                    Some(event(EventStatus::Succeeded)),
                    late_failure.then(|| event(EventStatus::Failed)),
                )
            }
            Channel::Alipay => self.alipay_messages(trade, late_failure),
            Channel::Wechatpay => (self.wechatpay_message(trade), None),
        }
    }

    /// TRADE_SUCCESS and, when `late_failure`, TRADE_CLOSED, each signed once.
    fn alipay_messages(
        &self,
        trade: &Trade,
        late_failure: bool,
    ) -> (Option<Message>, Option<Message>) {
        let Some(key) = self.config.keys.alipay.private.as_ref() else {
            tracing::warn!("the mock Alipay has no private key: it sends no notification");
            return (None, None);
        };
        let signed = |status| {
            let mut params = alipay::notification(&self.config.alipay_app_id, trade, status);
            params.sign(key);
            Message::Alipay(params)
        };
        (
            Some(signed("TRADE_SUCCESS")),
            late_failure.then(|| signed("TRADE_CLOSED")),
        )
    }

    /// TRANSACTION.SUCCESS with the encrypted transaction (signed at each delivery).
    fn wechatpay_message(&self, trade: &Trade) -> Option<Message> {
        let keys = &self.config.keys;
        if keys.wechatpay.private.is_none() {
            tracing::warn!("the mock WeChat Pay has no private key: it sends no notification");
            return None;
        }
        let paid_at = beijing_now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        let transaction = wechatpay::Transaction::succeeded(trade, Some(paid_at));
        match wechatpay::notification(&transaction, &keys.apiv3_key) {
            Ok(body) => Some(Message::Wechatpay(body)),
            Err(error) => {
                tracing::error!(%error, "the mock WeChat Pay cannot build a notification");
                None
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
                if let Err(error) = task.await {
                    tracing::error!(error = %Causes(&error), "a notification's delivery task ended without finishing");
                }
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
        match message {
            Message::Card(event) => self.send_card(event).await,
            Message::Alipay(params) => self.send_alipay(params).await,
            Message::Wechatpay(body) => self.send_wechatpay(body).await,
        }
    }

    /// Where Alipay's and WeChat Pay's notifications go: `<base><path>`.
    fn notify_url(&self, path: &str) -> Result<String, String> {
        self.notify_base_url
            .get()
            .map(|base| format!("{base}{path}"))
            .ok_or_else(|| "the mock provider does not know where to send".to_string())
    }

    /// JSON signed with `PSP-Signature`; any 2xx is "received".
    async fn send_card(&self, event: &ProviderEvent) -> Result<bool, String> {
        let url = self
            .callback_url
            .get()
            .ok_or("the mock provider has no callback URL")?;
        let body = serde_json::to_string(event).map_err(|error| error.to_string())?;
        let header = signature::sign(&self.config.secret, signature::now_unix(), &body);
        let response = self
            .http
            .post(url)
            .header(signature::SIGNATURE_HEADER, header)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|error| Causes(&error).to_string())?;
        Ok(response.status().is_success())
    }

    /// The signed form; only the body `success` is "received".
    async fn send_alipay(&self, params: &alipay::Params) -> Result<bool, String> {
        let response = self
            .http
            .post(self.notify_url("/api/payments/callback/alipay")?)
            .header(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(params.to_form())
            .send()
            .await
            .map_err(|error| Causes(&error).to_string())?;
        // Only the first bytes matter: a merchant's long answer is not "received".
        let start = first_bytes(response, alipay::RECEIVED.len() + 1).await?;
        Ok(start == alipay::RECEIVED.as_bytes())
    }

    /// The body, signed now with the platform's private key; 200 or 204 is "received".
    async fn send_wechatpay(&self, body: &str) -> Result<bool, String> {
        let keys = &self.config.keys;
        let key = keys.wechatpay.private.as_ref().ok_or("no private key")?;
        let headers =
            wechatpay::signed_headers(key, &keys.wechatpay_serial, body, signature::now_unix());
        let mut request = self
            .http
            .post(self.notify_url("/api/payments/callback/wechatpay")?)
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request
            .body(body.to_string())
            .send()
            .await
            .map_err(|error| Causes(&error).to_string())?;
        Ok(matches!(response.status().as_u16(), 200 | 204))
    }

    /// The provider's answer to a trade query (主动查单), in the shape of the
    /// channel's API: Alipay's `alipay.trade.query` fields, WeChat Pay's
    /// `GET /v3/pay/transactions/out-trade-no/{no}` transaction, the card
    /// channel's event. `None`: the provider never heard of this payment.
    pub async fn query(&self, payment_no: &str) -> Result<Option<QueryAnswer>, StoreError> {
        let charge = mock_provider::find(self.db.pool(), payment_no).await?;
        Ok(charge.map(|charge| QueryAnswer::of(&charge)))
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

/// A trade query's answer, in its channel's own shape.
#[derive(Debug, Clone)]
pub enum QueryAnswer {
    Card(ProviderEvent),
    Alipay(alipay::Params),
    Wechatpay(wechatpay::Transaction),
}

impl QueryAnswer {
    /// What the provider answers about one charge of its books (all succeeded).
    fn of(charge: &mock_provider::Charge) -> Self {
        let trade = Trade {
            payment_no: charge.payment_no.clone(),
            trade_no: charge.trade_no.clone(),
            amount_cents: charge.amount_cents,
        };
        match Channel::parse(&charge.channel).unwrap_or_default() {
            Channel::Card => Self::Card(card_event(
                &ChargeRequest {
                    order_no: charge.order_no.clone(),
                    payment_no: charge.payment_no.clone(),
                    amount_cents: charge.amount_cents,
                    channel: Channel::Card,
                },
                &charge.trade_no,
                EventStatus::Succeeded,
            )),
            Channel::Alipay => Self::Alipay(alipay::trade_query_answer(&trade)),
            Channel::Wechatpay => Self::Wechatpay(wechatpay::Transaction::succeeded(&trade, None)),
        }
    }

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

/// At most the first `limit` bytes of a response body.
async fn first_bytes(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut start = Vec::with_capacity(limit);
    while start.len() < limit {
        match response
            .chunk()
            .await
            .map_err(|error| Causes(&error).to_string())?
        {
            Some(chunk) => start.extend_from_slice(&chunk[..chunk.len().min(limit - start.len())]),
            None => break,
        }
    }
    Ok(start)
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
