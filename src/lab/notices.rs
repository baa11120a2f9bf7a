//! The provider's notifications the lab sends by hand, in the format of the
//! payment's channel, signed with the mock provider's keys: a card event
//! (`PSP-Signature`), an Alipay form (RSA2), a WeChat Pay notification
//! (SHA256-RSA headers, encrypted resource). A notice is built once and may be
//! delivered several times — a redelivery is the same notification.

use super::LabError;
use super::context::{Answer, Context};
use crate::domain::Channel;
use crate::psp::{EventStatus, ProviderEvent, Trade, alipay, signature, wechatpay};

/// A paid order as the provider knows it.
#[derive(Debug, Clone)]
pub struct Paid {
    pub order_no: String,
    pub trade: Trade,
}

/// One notification, ready to be sent (again).
#[derive(Debug, Clone)]
pub enum Notice {
    Card(String),
    Alipay(String),
    Wechatpay(String),
}

/// The notification that reports `paid` as succeeded, or (`succeeded` false)
/// as failed: FAILED, TRADE_CLOSED. WeChat Pay notifies successes only.
pub fn notice(
    context: &Context<'_>,
    channel: Channel,
    paid: &Paid,
    succeeded: bool,
) -> Result<Notice, LabError> {
    let keys = &context.state.provider_keys;
    match channel {
        Channel::Card => card_notice(paid, succeeded).map(Notice::Card),
        Channel::Alipay => {
            let key = keys.alipay.private.as_ref().ok_or_else(no_key)?;
            let status = if succeeded {
                "TRADE_SUCCESS"
            } else {
                "TRADE_CLOSED"
            };
            let app_id = &context.state.settings.providers.alipay_app_id;
            let mut params = alipay::notification(app_id, &paid.trade, status);
            params.sign(key);
            Ok(Notice::Alipay(params.to_form()))
        }
        Channel::Wechatpay if succeeded => {
            let transaction = wechatpay::Transaction::succeeded(&paid.trade, None);
            wechatpay::notification(&transaction, &keys.apiv3_key)
                .map(Notice::Wechatpay)
                .map_err(LabError::Step)
        }
        Channel::Wechatpay => Err(LabError::Step("WeChat Pay notifies successes only".into())),
    }
}

/// The card channel's event, as JSON.
fn card_notice(paid: &Paid, succeeded: bool) -> Result<String, LabError> {
    let event = ProviderEvent {
        event_id: format!("EVT-lab-{}", uuid::Uuid::new_v4().simple()),
        order_no: paid.order_no.clone(),
        payment_no: paid.trade.payment_no.clone(),
        provider_txn_id: paid.trade.trade_no.clone(),
        status: if succeeded {
            EventStatus::Succeeded
        } else {
            EventStatus::Failed
        },
        amount_cents: paid.trade.amount_cents,
    };
    serde_json::to_string(&event).map_err(|error| LabError::Step(error.to_string()))
}

fn no_key() -> LabError {
    LabError::Step("the mock provider has no private key for this channel".into())
}

/// Sends `notice` to its channel's endpoint.
pub async fn deliver(context: &Context<'_>, notice: &Notice) -> Result<Answer, LabError> {
    let http = context.http;
    let request = match notice {
        Notice::Card(body) => {
            let secret = &context.state.settings.secrets.psp_secret;
            http.post(context.url("/api/payments/callback"))
                .header(
                    signature::SIGNATURE_HEADER,
                    signature::sign(secret, signature::now_unix(), body),
                )
                .header("Content-Type", "application/json")
                .body(body.clone())
        }
        Notice::Alipay(form) => http
            .post(context.url("/api/payments/callback/alipay"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.clone()),
        Notice::Wechatpay(body) => {
            let keys = &context.state.provider_keys;
            let key = keys.wechatpay.private.as_ref().ok_or_else(no_key)?;
            let headers =
                wechatpay::signed_headers(key, &keys.wechatpay_serial, body, signature::now_unix());
            let request = http
                .post(context.url("/api/payments/callback/wechatpay"))
                .header("Content-Type", "application/json");
            headers
                .into_iter()
                .fold(request, |request, (name, value)| {
                    request.header(name, value)
                })
                .body(body.clone())
        }
    };
    context.send(request).await
}
