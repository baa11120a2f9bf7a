//! WeChat Pay's APIv3 payment notification (微信支付回调通知), both ends of it:
//! the mock provider builds, encrypts and signs one; the server verifies,
//! decrypts and reads it.
//!
//! The body is JSON. The payment itself travels in `resource`, encrypted with
//! AEAD_AES_256_GCM under the merchant's APIv3 key (the nonce and the
//! associated data beside the ciphertext). The signature is SHA256withRSA
//! (PKCS#1 v1.5), Base64, over `"<Wechatpay-Timestamp>\n<Wechatpay-Nonce>\n<body>\n"`,
//! in `Wechatpay-Signature`; `Wechatpay-Serial` names the platform key that
//! verifies it. The merchant answers HTTP 200 or 204 with no body when it
//! accepted the notification, and a 4xx/5xx with `{"code":"FAIL","message"}`
//! otherwise; WeChat Pay then sends it again, 15 times over about 24 hours.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::trade::{NotificationError, Outcome, Settlement, Trade, beijing_now};

pub const TIMESTAMP_HEADER: &str = "Wechatpay-Timestamp";
pub const NONCE_HEADER: &str = "Wechatpay-Nonce";
pub const SIGNATURE_HEADER: &str = "Wechatpay-Signature";
pub const SERIAL_HEADER: &str = "Wechatpay-Serial";

/// The waits before each redelivery of a notification not answered 200/204, in seconds.
pub const REDELIVERY_SECS: [u64; 15] = [
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];

/// The headers that carry the signature, as received.
#[derive(Debug, Clone, Default)]
pub struct SignatureHeaders<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub serial: Option<&'a str>,
}

// [lesson wechatpay::signed_message]
/// What the platform key signs: timestamp, nonce and body, each line ended by `\n`.
pub fn signed_message(timestamp: &str, nonce: &str, body: &str) -> String {
    format!("{timestamp}\n{nonce}\n{body}\n")
}
// [/lesson]

pub fn sign(key: &RsaPrivateKey, message: &str) -> String {
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(message.as_bytes());
    BASE64.encode(signature.to_bytes())
}

/// The four `Wechatpay-*` headers of `body`, signed at `now` with the
/// platform's private key: what WeChat Pay sends with each delivery.
pub fn signed_headers(
    key: &RsaPrivateKey,
    serial: &str,
    body: &str,
    now: i64,
) -> [(&'static str, String); 4] {
    let (timestamp, nonce) = (now.to_string(), random_text(32));
    let signature = sign(key, &signed_message(&timestamp, &nonce, body));
    [
        (TIMESTAMP_HEADER, timestamp),
        (NONCE_HEADER, nonce),
        (SIGNATURE_HEADER, signature),
        (SERIAL_HEADER, serial.to_string()),
    ]
}

// [lesson wechatpay::verify]
/// Verifies a notification's signature with the platform key named by
/// `serial`, then its freshness, before the body is believed.
pub fn verify(
    key: &RsaPublicKey,
    serial: &str,
    headers: &SignatureHeaders<'_>,
    body: &[u8],
    (now, tolerance): (i64, std::time::Duration),
) -> Result<(), NotificationError> {
    let invalid = |why: &str| NotificationError::SignatureInvalid(why.to_string());
    let (Some(timestamp), Some(nonce), Some(signature), Some(named)) = (
        headers.timestamp,
        headers.nonce,
        headers.signature,
        headers.serial,
    ) else {
        return Err(invalid("a Wechatpay-* header is missing"));
    };
    if named != serial {
        return Err(invalid("Wechatpay-Serial names another platform key"));
    }
    let body = std::str::from_utf8(body).map_err(|_| invalid("the body is not UTF-8"))?;
    let signature = BASE64
        .decode(signature)
        .ok()
        .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| invalid("Wechatpay-Signature is not Base64"))?;
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(
            signed_message(timestamp, nonce, body).as_bytes(),
            &signature,
        )
        .map_err(|_| invalid("Wechatpay-Signature does not match"))?;
    let signed_at: i64 = timestamp
        .parse()
        .map_err(|_| invalid("Wechatpay-Timestamp is not a number"))?;
    if now.abs_diff(signed_at) > tolerance.as_secs() {
        return Err(NotificationError::SignatureExpired);
    }
    Ok(())
}
// [/lesson]

/// The notification's body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    pub id: String,
    #[serde(default)]
    pub create_time: String,
    /// `TRANSACTION.SUCCESS` for a payment.
    pub event_type: String,
    #[serde(default)]
    pub resource_type: String,
    #[serde(default)]
    pub summary: String,
    pub resource: Resource,
}

/// The encrypted payment.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resource {
    /// `AEAD_AES_256_GCM`.
    pub algorithm: String,
    /// Base64 of the ciphertext followed by the 16-byte tag.
    pub ciphertext: String,
    pub nonce: String,
    /// Optional, possibly empty (authenticated, not encrypted).
    #[serde(default)]
    pub associated_data: String,
    #[serde(default)]
    pub original_type: String,
}

/// The payment, as the resource decrypts (and as the order query answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub out_trade_no: String,
    pub transaction_id: String,
    /// `SUCCESS`, `CLOSED`, `PAYERROR`, `NOTPAY`, …
    pub trade_state: String,
    pub amount: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// In fen (分), the smallest unit.
    pub total: i64,
    pub currency: String,
}

impl Transaction {
    /// A trade that succeeded, as WeChat Pay reports it.
    pub fn succeeded(trade: &Trade, success_time: Option<String>) -> Self {
        Self {
            out_trade_no: trade.payment_no.clone(),
            transaction_id: trade.trade_no.clone(),
            trade_state: "SUCCESS".into(),
            amount: Amount {
                total: trade.amount_cents,
                currency: "CNY".into(),
            },
            success_time,
        }
    }

    /// What it says happened to the payment; `id` names the notification.
    pub fn settlement(&self, id: String) -> Settlement {
        Settlement {
            id,
            payment_no: self.out_trade_no.clone(),
            provider_txn_id: self.transaction_id.clone(),
            amount_cents: self.amount.total,
            outcome: match self.trade_state.as_str() {
                "SUCCESS" => Outcome::Paid,
                "CLOSED" | "PAYERROR" | "REVOKED" => Outcome::Failed,
                _ => Outcome::Pending,
            },
        }
    }
}

impl Notification {
    /// Reads the body (after its signature was verified).
    pub fn from_json(body: &[u8]) -> Result<Self, NotificationError> {
        serde_json::from_slice(body)
            .map_err(|error| NotificationError::Malformed(error.to_string()))
    }

    /// Whether it reports a payment (other events are acknowledged, not applied).
    pub fn is_payment(&self) -> bool {
        self.event_type == "TRANSACTION.SUCCESS"
    }

    // [lesson wechatpay::decrypt]
    /// The payment inside: AES-256-GCM with the APIv3 key; a ciphertext or tag
    /// that was changed does not decrypt at all.
    pub fn decrypt(&self, apiv3_key: &[u8; 32]) -> Result<Transaction, NotificationError> {
        let resource = &self.resource;
        let nonce: [u8; 12] = match resource.nonce.as_bytes().try_into() {
            Ok(nonce) if resource.algorithm == "AEAD_AES_256_GCM" => nonce,
            _ => return Err(NotificationError::Undecryptable),
        };
        let ciphertext = BASE64
            .decode(&resource.ciphertext)
            .map_err(|_| NotificationError::Undecryptable)?;
        let plain = Aes256Gcm::new(apiv3_key.into())
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: resource.associated_data.as_bytes(),
                },
            )
            .map_err(|_| NotificationError::Undecryptable)?;
        serde_json::from_slice(&plain)
            .map_err(|error| NotificationError::Malformed(error.to_string()))
    }
    // [/lesson]
}

/// Encrypts `transaction` as WeChat Pay does, with a fresh 12-character nonce.
pub fn encrypt(transaction: &Transaction, apiv3_key: &[u8; 32]) -> Result<Resource, String> {
    let nonce = random_text(12);
    let nonce_bytes: [u8; 12] = nonce
        .as_bytes()
        .try_into()
        .map_err(|_| "a nonce of 12 bytes".to_string())?;
    let associated_data = "transaction";
    let plain = serde_json::to_vec(transaction).map_err(|error| error.to_string())?;
    let sealed = Aes256Gcm::new(apiv3_key.into())
        .encrypt(
            &Nonce::from(nonce_bytes),
            Payload {
                msg: &plain,
                aad: associated_data.as_bytes(),
            },
        )
        .map_err(|error| error.to_string())?;
    Ok(Resource {
        algorithm: "AEAD_AES_256_GCM".into(),
        ciphertext: BASE64.encode(sealed),
        nonce,
        associated_data: associated_data.into(),
        original_type: "transaction".into(),
    })
}

/// The notification the mock provider sends for `transaction`: its body.
pub fn notification(transaction: &Transaction, apiv3_key: &[u8; 32]) -> Result<String, String> {
    let now = beijing_now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let notification = Notification {
        id: format!("EV-{}", uuid::Uuid::new_v4().simple()),
        create_time: now,
        event_type: "TRANSACTION.SUCCESS".into(),
        resource_type: "encrypt-resource".into(),
        summary: "支付成功".into(),
        resource: encrypt(transaction, apiv3_key)?,
    };
    serde_json::to_string(&notification).map_err(|error| error.to_string())
}

/// `length` random letters and digits.
pub fn random_text(length: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..length)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transaction() -> Transaction {
        Transaction {
            out_trade_no: "PAY1".into(),
            transaction_id: "4200000000202612010000000001".into(),
            trade_state: "SUCCESS".into(),
            amount: Amount {
                total: 1234,
                currency: "CNY".into(),
            },
            success_time: None,
        }
    }

    #[test]
    fn a_resource_decrypts_with_the_apiv3_key_and_not_once_changed() {
        let key = *b"0123456789abcdef0123456789abcdef";
        let body = notification(&transaction(), &key).expect("a notification");
        let received = Notification::from_json(body.as_bytes()).expect("JSON");
        assert_eq!(received.decrypt(&key).expect("decrypts"), transaction());
        let mut tampered = received.clone();
        let mut bytes = BASE64
            .decode(&tampered.resource.ciphertext)
            .expect("Base64");
        bytes[0] ^= 1;
        tampered.resource.ciphertext = BASE64.encode(bytes);
        assert_eq!(
            tampered.decrypt(&key),
            Err(NotificationError::Undecryptable)
        );
        let other = *b"ffffffffffffffffffffffffffffffff";
        assert_eq!(
            received.decrypt(&other),
            Err(NotificationError::Undecryptable)
        );
    }

    #[test]
    fn the_signature_covers_timestamp_nonce_and_body_and_must_be_fresh() {
        let pair = crate::psp::keys::generate().expect("a key pair");
        let private = pair.private.clone().expect("the private key");
        let (timestamp, nonce, body) = ("1764547200", "n0nce", "{\"id\":\"EV-1\"}");
        let signature = sign(&private, &signed_message(timestamp, nonce, body));
        let headers = SignatureHeaders {
            timestamp: Some(timestamp),
            nonce: Some(nonce),
            signature: Some(&signature),
            serial: Some("SERIAL"),
        };
        let tolerance = std::time::Duration::from_secs(300);
        let now = (1_764_547_200, tolerance);
        assert_eq!(
            verify(&pair.public, "SERIAL", &headers, body.as_bytes(), now),
            Ok(())
        );
        assert!(verify(&pair.public, "OTHER", &headers, body.as_bytes(), now).is_err());
        assert!(verify(&pair.public, "SERIAL", &headers, b"{\"id\":\"EV-2\"}", now).is_err());
        assert_eq!(
            verify(
                &pair.public,
                "SERIAL",
                &headers,
                body.as_bytes(),
                (1_764_547_501, tolerance)
            ),
            Err(NotificationError::SignatureExpired)
        );
    }
}
