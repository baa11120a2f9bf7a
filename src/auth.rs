//! Demo authentication: `POST /api/login` hands out a signed, expiring JWT (HS256
//! with `SESSION_SECRET`, `jsonwebtoken`), so it cannot be forged or altered and
//! stops working after `LOGIN_TOKEN_TTL_SECS`. `POST /api/logout` revokes it: its
//! id goes to the `revoked_tokens` table, mirrored in each instance's memory
//! (refreshed with the shared switch board), so checking a token stays one HMAC.
//! A token once verified is remembered by its SHA-256 for the rest of its life
//! (a bounded cache): a repeat — every request of a flash-sale buyer carries
//! the same token — costs a digest and a lookup instead of the signature's
//! HMAC and the claims' decoding; expiry and revocation are checked on every
//! request all the same.
//! The API reads the token from `Authorization: Bearer …`, the pages from the
//! `flashguard_session` cookie. The admin API compares `ADMIN_TOKEN` in constant
//! time. Both keys are registered as their own `web::Data` ([`SessionKeys`],
//! [`AdminToken`]), so the extractors need nothing else.

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::RwLock;
use quick_cache::sync::Cache;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::causes::Causes;
use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "flashguard_session";

/// Signs and checks login tokens, and knows which were revoked.
pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
    /// Revoked token ids → when they expire anyway (epoch seconds).
    revoked: RwLock<HashMap<String, u64>>,
    /// Tokens whose signature was checked: SHA-256 of the token → its caller.
    verified: Cache<[u8; 32], Arc<AuthUser>>,
}

/// How many verified tokens are remembered (about 200 bytes each).
const VERIFIED_TOKENS: usize = 10_000;

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(***)")
    }
}

/// The caller, as proven by a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: i64,
    pub username: String,
    /// The token's id and expiry (epoch seconds), to revoke it on logout.
    pub token_id: String,
    pub expires_at: u64,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Invalid,
    Expired,
    Revoked,
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid => Self::Unauthorized,
            Refusal::Expired => Self::TokenExpired,
            Refusal::Revoked => Self::TokenRevoked,
        }
    }
}

/// What the token says.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    name: String,
    iat: u64,
    exp: u64,
    jti: String,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

impl SessionKeys {
    /// Keys from the session secret and the login token lifetime.
    pub fn from_settings(settings: &crate::configuration::Settings) -> Self {
        Self::new(&settings.secrets.session_secret, settings.login_token_ttl)
    }

    pub fn new(secret: &SecretString, ttl: Duration) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            ttl,
            revoked: RwLock::new(HashMap::new()),
            verified: Cache::new(VERIFIED_TOKENS),
        }
    }

    /// A fresh token for `user_id`; `None` only if signing failed.
    pub fn issue(&self, user_id: i64, username: &str) -> Option<String> {
        let now = now_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            name: username.to_string(),
            iat: now,
            exp: now.saturating_add(self.ttl.as_secs().max(1)),
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .inspect_err(
                |error| tracing::error!(error = %Causes(error), "cannot sign a login token"),
            )
            .ok()
    }

    pub fn verify(&self, token: &str) -> Result<AuthUser, Refusal> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let user = match self.verified.get(&digest) {
            Some(user) => user,
            None => {
                let user = Arc::new(self.verify_signature(token)?);
                self.verified.insert(digest, user.clone());
                user
            }
        };
        // As jsonwebtoken decides it, with no leeway: expired once `exp` is past.
        if user.expires_at < now_secs() {
            return Err(Refusal::Expired);
        }
        if self.revoked.read().contains_key(&user.token_id) {
            return Err(Refusal::Revoked);
        }
        Ok(AuthUser::clone(&user))
    }

    /// The signature and the claims, checked in full.
    fn verify_signature(&self, token: &str) -> Result<AuthUser, Refusal> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |error| match error.kind() {
                ErrorKind::ExpiredSignature => Refusal::Expired,
                _ => Refusal::Invalid,
            },
        )?;
        let claims = data.claims;
        Ok(AuthUser {
            user_id: claims.sub.parse().map_err(|_| Refusal::Invalid)?,
            username: claims.name,
            token_id: claims.jti,
            expires_at: claims.exp,
        })
    }

    /// Marks a token revoked here (the caller records it for the others).
    pub fn revoke(&self, token_id: &str, expires_at: u64) {
        self.revoked
            .write()
            .insert(token_id.to_string(), expires_at);
    }

    /// Replaces what this instance knows with the stored list (expired ones go).
    pub fn set_revoked(&self, revoked: impl IntoIterator<Item = (String, u64)>) {
        let now = now_secs();
        let live = revoked.into_iter().filter(|(_, expires)| *expires > now);
        *self.revoked.write() = live.collect();
    }
}

fn bearer_token(request: &HttpRequest) -> Option<String> {
    let header = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))?;
    Some(token.trim().to_string())
}

/// The `ADMIN_TOKEN`, registered as its own `web::Data`.
#[derive(Clone)]
pub struct AdminToken(SecretString);

impl AdminToken {
    pub fn new(token: SecretString) -> Self {
        Self(token)
    }

    pub fn matches(&self, presented: &str) -> bool {
        bool::from(
            presented
                .as_bytes()
                .ct_eq(self.0.expose_secret().as_bytes()),
        )
    }

    /// Whether `request` carries the admin bearer.
    pub fn presented_by(request: &HttpRequest) -> bool {
        let token = request.app_data::<web::Data<AdminToken>>();
        match (token, bearer_token(request)) {
            (Some(token), Some(presented)) => token.matches(&presented),
            _ => false,
        }
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// A `web::Data<T>` registered at start-up.
fn registered<T: 'static>(request: &HttpRequest) -> Result<&web::Data<T>, ApiError> {
    request
        .app_data::<web::Data<T>>()
        .ok_or_else(|| ApiError::Internal(format!("{} not registered", std::any::type_name::<T>())))
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(registered::<SessionKeys>(request).and_then(|keys| {
            let token = bearer_token(request)
                .or_else(|| {
                    request
                        .cookie(SESSION_COOKIE)
                        .map(|c| c.value().to_string())
                })
                .ok_or(ApiError::Unauthorized)?;
            Ok(keys.verify(&token)?)
        }))
    }
}

/// Proof that the caller presented `ADMIN_TOKEN`.
#[derive(Debug)]
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(registered::<AdminToken>(request).and_then(|_| {
            if AdminToken::presented_by(request) {
                Ok(Admin)
            } else {
                Err(ApiError::AdminUnauthorized)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> SessionKeys {
        SessionKeys::new(
            &SecretString::from(secret.to_string()),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn a_token_verifies_with_its_key_only() {
        let token = keys("one").issue(7, "alice").expect("signed");
        let user = keys("one").verify(&token).expect("valid");
        assert_eq!((user.user_id, user.username.as_str()), (7, "alice"));
        assert_eq!(keys("two").verify(&token), Err(Refusal::Invalid));
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let token = keys("one").issue(7, "alice").expect("signed");
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = keys("one").issue(8, "bob").expect("signed");
        parts[1] = other.split('.').nth(1).unwrap_or_default();
        assert_eq!(keys("one").verify(&parts.join(".")), Err(Refusal::Invalid));
        assert_eq!(keys("one").verify("garbage"), Err(Refusal::Invalid));
        assert_eq!(keys("one").verify(""), Err(Refusal::Invalid));
    }

    #[test]
    fn an_expired_or_revoked_token_is_refused_as_such() {
        let short = SessionKeys::new(&SecretString::from("k".to_string()), Duration::from_secs(1));
        let token = short.issue(7, "alice").expect("signed");
        let user = short.verify(&token).expect("valid");
        short.revoke(&user.token_id, user.expires_at);
        assert_eq!(short.verify(&token), Err(Refusal::Revoked));
        short.set_revoked(Vec::new());
        std::thread::sleep(Duration::from_millis(2_100));
        assert_eq!(short.verify(&token), Err(Refusal::Expired));
    }
}
