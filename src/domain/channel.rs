//! How a payment is made: the card channel (a Stripe-style provider), Alipay
//! (支付宝) or WeChat Pay (微信支付). Each has its own notification format,
//! signature, answer and redelivery schedule (docs/payments.md, "Channels").

use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumString, IntoStaticStr};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    EnumIter,
    EnumString,
    IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Channel {
    /// The card channel: JSON events signed with a shared-secret HMAC.
    #[default]
    Card,
    /// Alipay's asynchronous notification: a form signed with RSA2.
    Alipay,
    /// WeChat Pay APIv3: JSON signed with SHA256-RSA, the payment encrypted.
    Wechatpay,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(value: &str) -> Option<Self> {
        value.parse().ok()
    }

    /// What a shopper calls it.
    pub fn name_zh(self) -> &'static str {
        match self {
            Self::Card => "银行卡",
            Self::Alipay => "支付宝",
            Self::Wechatpay => "微信支付",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            Self::Card => "Card",
            Self::Alipay => "Alipay",
            Self::Wechatpay => "WeChat Pay",
        }
    }
}

impl TryFrom<String> for Channel {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or_else(|| format!("unknown payment channel {value:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip() {
        for channel in [Channel::Card, Channel::Alipay, Channel::Wechatpay] {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(Channel::parse("paypal"), None);
        assert_eq!(Channel::default(), Channel::Card);
    }
}
