//! The callback signature: `PSP-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`
//! over `"<t>.<raw body>"` with the shared `PSP_SECRET` (the scheme Stripe uses).
//! The server verifies it before it parses anything else, compares in constant
//! time, and refuses timestamps more than the tolerance (300 s) away from now,
//! so a captured callback cannot be replayed later.
//!
//! By hand: `t=$(date +%s); sig=$(printf '%s.%s' "$t" "$body" | openssl dgst
//! -sha256 -hmac "$PSP_SECRET" -hex | sed 's/^.* //')` then
//! `-H "PSP-Signature: t=$t,v1=$sig"`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "PSP-Signature";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the PSP-Signature header is missing, malformed or does not match the body")]
    Invalid,
    #[error("the PSP-Signature timestamp is outside the tolerance")]
    Expired,
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
}

fn mac(secret: &SecretString, timestamp: i64, body: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac
}

/// The header value for `body` signed at `timestamp`.
pub fn sign(secret: &SecretString, timestamp: i64, body: &str) -> String {
    let signature = hex::encode(mac(secret, timestamp, body).finalize().into_bytes());
    format!("t={timestamp},v1={signature}")
}

/// Checks `header` against the raw `body`: signature first, then freshness.
pub fn verify(
    secret: &SecretString,
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Invalid)?;
    let (timestamp, signature) = parse_header(header).ok_or(SignatureError::Invalid)?;
    let body = std::str::from_utf8(body).map_err(|_| SignatureError::Invalid)?;
    mac(secret, timestamp, body)
        .verify_slice(&signature)
        .map_err(|_| SignatureError::Invalid)?;
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(SignatureError::Expired);
    }
    Ok(())
}

/// `t=<digits>,v1=<hex>` → (timestamp, signature bytes).
fn parse_header(header: &str) -> Option<(i64, Vec<u8>)> {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.trim().split_once('=')? {
            ("t", value) => timestamp = Some(value.parse().ok()?),
            ("v1", value) => signature = Some(hex::decode(value).ok()?),
            _ => {}
        }
    }
    Some((timestamp?, signature?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(300);

    fn secret() -> SecretString {
        SecretString::from("whsec_test".to_string())
    }

    #[test]
    fn a_signed_body_verifies() {
        let header = sign(&secret(), 1_000, "{}");
        assert_eq!(
            verify(&secret(), Some(&header), b"{}", 1_000, TOLERANCE),
            Ok(())
        );
        assert_eq!(
            verify(&secret(), Some(&header), b"{}", 1_300, TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn another_body_secret_or_garbage_is_invalid() {
        let header = sign(&secret(), 1_000, "{}");
        let other = SecretString::from("other".to_string());
        assert_eq!(
            verify(&secret(), Some(&header), b"{ }", 1_000, TOLERANCE),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(&other, Some(&header), b"{}", 1_000, TOLERANCE),
            Err(SignatureError::Invalid)
        );
        for garbage in ["", "t=1", "v1=00", "t=x,v1=00", "t=1000,v1=zz"] {
            assert_eq!(
                verify(&secret(), Some(garbage), b"{}", 1_000, TOLERANCE),
                Err(SignatureError::Invalid)
            );
        }
        assert_eq!(
            verify(&secret(), None, b"{}", 1_000, TOLERANCE),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn an_old_signature_is_expired() {
        let header = sign(&secret(), 1_000, "{}");
        assert_eq!(
            verify(&secret(), Some(&header), b"{}", 1_301, TOLERANCE),
            Err(SignatureError::Expired)
        );
    }
}
