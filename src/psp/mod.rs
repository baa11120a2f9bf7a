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
mod provider;
pub mod signature;
mod trade;
pub mod wechatpay;

pub use provider::{MockProvider, ProviderConfig, QueryAnswer};
pub use trade::{
    ChargeRequest, EventStatus, MAX_CALLBACKS, MAX_DELAY_MS, MAX_EVENT_ID_LEN, NotificationError,
    Outcome, ProviderEvent, PspBehaviour, PspBehaviourPatch, Settlement, Trade, beijing,
    beijing_now, cents_to_yuan, day_bounds, yuan_to_cents,
};
