//! Alipay's asynchronous notification (支付宝异步通知), both ends of it: the
//! mock provider builds and signs one, the server verifies and reads it.
//!
//! The notification is a form (`application/x-www-form-urlencoded`, UTF-8).
//! Its `sign` is RSA2 = SHA256withRSA, PKCS#1 v1.5, Base64, over every other
//! non-empty parameter except `sign` and `sign_type`, sorted by name and
//! joined as `name=value` with `&` (values as received, not URL-encoded).
//! It verifies with Alipay's public key. The merchant answers the plain body
//! `success` when it accepted the notification; anything else and Alipay sends
//! it again, at 4m, 10m, 10m, 1h, 2h, 6h and 15h.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

use super::trade::{
    NotificationError, Outcome, Settlement, Trade, beijing_now, cents_to_yuan, yuan_to_cents,
};

/// The answer that tells Alipay the notification was received (7 bytes).
pub const RECEIVED: &str = "success";

/// The waits before each redelivery of a notification not answered `success`, in seconds.
pub const REDELIVERY_SECS: [u64; 7] = [
    4 * 60,
    10 * 60,
    10 * 60,
    3600,
    2 * 3600,
    6 * 3600,
    15 * 3600,
];

/// A notification's parameters, by name (a name given twice is refused).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// Reads the form body.
    pub fn from_form(body: &[u8]) -> Result<Self, NotificationError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|error| NotificationError::Malformed(error.to_string()))?;
        let mut params = BTreeMap::new();
        for (name, value) in pairs {
            if params.insert(name.clone(), value).is_some() {
                return Err(NotificationError::Malformed(format!(
                    "the parameter {name} is given twice"
                )));
            }
        }
        Ok(Self(params))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn required(&self, name: &str) -> Result<&str, NotificationError> {
        self.get(name)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| NotificationError::Malformed(format!("{name} is missing")))
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(name.to_string(), value.into());
    }

    /// The form body, URL-encoded.
    pub fn to_form(&self) -> String {
        serde_urlencoded::to_string(&self.0).unwrap_or_default()
    }

    // [lesson alipay::signed_string]
    /// What RSA2 signs: every non-empty parameter but `sign` and `sign_type`,
    /// sorted by name (a `BTreeMap` is), `name=value` joined with `&`.
    pub fn signed_string(&self) -> String {
        self.0
            .iter()
            .filter(|(name, value)| *name != "sign" && *name != "sign_type" && !value.is_empty())
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("&")
    }
    // [/lesson]

    /// Signs as Alipay does: `sign_type=RSA2` and `sign`.
    pub fn sign(&mut self, key: &RsaPrivateKey) {
        let signature =
            SigningKey::<Sha256>::new(key.clone()).sign(self.signed_string().as_bytes());
        self.set("sign_type", "RSA2");
        self.set("sign", BASE64.encode(signature.to_bytes()));
    }

    // [lesson alipay::verify]
    /// Verifies `sign` with Alipay's public key, before anything is believed.
    pub fn verify(&self, key: &RsaPublicKey) -> Result<(), NotificationError> {
        if self.get("sign_type") != Some("RSA2") {
            return Err(NotificationError::SignatureInvalid(
                "sign_type is not RSA2".into(),
            ));
        }
        let sign = self
            .get("sign")
            .ok_or_else(|| NotificationError::SignatureInvalid("sign is missing".into()))?;
        let signature = BASE64
            .decode(sign)
            .ok()
            .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
            .ok_or_else(|| NotificationError::SignatureInvalid("sign is not Base64".into()))?;
        VerifyingKey::<Sha256>::new(key.clone())
            .verify(self.signed_string().as_bytes(), &signature)
            .map_err(|_| {
                NotificationError::SignatureInvalid("sign does not match the parameters".into())
            })
    }
    // [/lesson]

    /// The merchant's app id the notification is for.
    pub fn app_id(&self) -> Result<&str, NotificationError> {
        self.required("app_id")
    }

    /// What the notification says happened to the payment (`out_trade_no`);
    /// its `notify_id` (the same in every resend of it) names it once.
    pub fn settlement(&self) -> Result<Settlement, NotificationError> {
        let id = format!("alipay:{}", self.required("notify_id")?);
        self.trade_settlement(id)
    }

    /// What the trade's fields say (a notification's, or a query's), named `id`.
    pub fn trade_settlement(&self, id: String) -> Result<Settlement, NotificationError> {
        Ok(Settlement {
            id,
            payment_no: self.required("out_trade_no")?.to_string(),
            provider_txn_id: self.required("trade_no")?.to_string(),
            amount_cents: yuan_to_cents(self.required("total_amount")?)?,
            outcome: outcome(self.required("trade_status")?)?,
        })
    }
}

/// `TRADE_SUCCESS` and `TRADE_FINISHED` mean paid, `TRADE_CLOSED` that the
/// trade will not be paid, `WAIT_BUYER_PAY` nothing yet.
pub fn outcome(trade_status: &str) -> Result<Outcome, NotificationError> {
    match trade_status {
        "TRADE_SUCCESS" | "TRADE_FINISHED" => Ok(Outcome::Paid),
        "TRADE_CLOSED" => Ok(Outcome::Failed),
        "WAIT_BUYER_PAY" => Ok(Outcome::Pending),
        other => Err(NotificationError::Malformed(format!(
            "unknown trade_status {other:?}"
        ))),
    }
}

/// `alipay.trade.query`'s answer about a trade that succeeded (its
/// `alipay_trade_query_response` fields; `code` 10000 is success).
pub fn trade_query_answer(trade: &Trade) -> Params {
    let mut params = Params::default();
    params.set("code", "10000");
    params.set("trade_no", trade.trade_no.clone());
    params.set("out_trade_no", trade.payment_no.clone());
    params.set("trade_status", "TRADE_SUCCESS");
    params.set("total_amount", cents_to_yuan(trade.amount_cents));
    params
}

/// The notification the mock provider sends for one trade (not yet signed).
pub fn notification(app_id: &str, trade: &Trade, trade_status: &str) -> Params {
    let now = beijing_now();
    let mut params = Params::default();
    for (name, value) in [
        ("notify_time", now.format("%Y-%m-%d %H:%M:%S").to_string()),
        ("notify_type", "trade_status_sync".to_string()),
        ("notify_id", uuid::Uuid::new_v4().simple().to_string()),
        ("app_id", app_id.to_string()),
        ("charset", "utf-8".to_string()),
        ("version", "1.0".to_string()),
        ("trade_no", trade.trade_no.clone()),
        ("out_trade_no", trade.payment_no.clone()),
        ("trade_status", trade_status.to_string()),
        ("total_amount", cents_to_yuan(trade.amount_cents)),
        ("gmt_payment", now.format("%Y-%m-%d %H:%M:%S").to_string()),
    ] {
        params.set(name, value);
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_string_leaves_out_sign_sign_type_and_empty_values_in_name_order() {
        let mut params = Params::default();
        for (name, value) in [
            ("trade_status", "TRADE_SUCCESS"),
            ("app_id", "2021000000000000"),
            ("sign", "xyz"),
            ("sign_type", "RSA2"),
            ("buyer_memo", ""),
            ("subject", "a b&c"),
        ] {
            params.set(name, value);
        }
        assert_eq!(
            params.signed_string(),
            "app_id=2021000000000000&subject=a b&c&trade_status=TRADE_SUCCESS"
        );
    }

    #[test]
    fn a_signed_notification_verifies_and_any_change_breaks_it() {
        let pair = crate::psp::keys::generate().expect("a key pair");
        let private = pair.private.clone().expect("the private key");
        let trade = Trade {
            payment_no: "PAY1".into(),
            trade_no: "2026120122001".into(),
            amount_cents: 1234,
        };
        let mut params = notification("2021000000000000", &trade, "TRADE_SUCCESS");
        params.sign(&private);
        let received = Params::from_form(params.to_form().as_bytes()).expect("the form");
        assert_eq!(received.verify(&pair.public), Ok(()));
        assert_eq!(received.settlement().map(|s| s.amount_cents), Ok(1234));
        let mut tampered = received.clone();
        tampered.set("total_amount", "0.01");
        assert!(tampered.verify(&pair.public).is_err());
        let other = crate::psp::keys::generate().expect("another pair");
        assert!(received.verify(&other.public).is_err());
        assert!(Params::from_form(b"a=1&a=2").is_err());
    }
}
