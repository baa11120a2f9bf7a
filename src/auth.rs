//! Demo authentication: `POST /api/login` hands out a token signed by the server
//! (HMAC-SHA256 with `SESSION_SECRET`), so it cannot be forged or altered. The API
//! reads it from `Authorization: Bearer …`, the pages from the `flashguard_session`
//! cookie. The admin API compares `ADMIN_TOKEN` in constant time. Both keys are
//! registered as their own `web::Data` ([`SessionKeys`], [`AdminToken`]), so the
//! extractors need nothing else.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "flashguard_session";
const TOKEN_VERSION: &str = "v1";

/// Signs and checks login tokens.
#[derive(Clone)]
pub struct SessionKeys {
    secret: SecretString,
}

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
}

impl SessionKeys {
    pub fn new(secret: SecretString) -> Self {
        Self { secret }
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(payload.as_bytes());
        mac
    }

    /// `v1.<user id>.<base64url username>.<hex signature>`
    pub fn issue(&self, user: &AuthUser) -> String {
        let payload = format!(
            "{TOKEN_VERSION}.{}.{}",
            user.user_id,
            URL_SAFE_NO_PAD.encode(&user.username)
        );
        let signature = hex::encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    pub fn verify(&self, token: &str) -> Option<AuthUser> {
        let (payload, signature) = token.rsplit_once('.')?;
        let signature = hex::decode(signature).ok()?;
        self.mac(payload).verify_slice(&signature).ok()?;
        let mut parts = payload.split('.');
        let (Some(TOKEN_VERSION), Some(user_id), Some(username), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(AuthUser {
            user_id: user_id.parse().ok()?,
            username: String::from_utf8(URL_SAFE_NO_PAD.decode(username).ok()?).ok()?,
        })
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

    fn matches(&self, presented: &str) -> bool {
        bool::from(
            presented
                .as_bytes()
                .ct_eq(self.0.expose_secret().as_bytes()),
        )
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
            keys.verify(&token).ok_or(ApiError::Unauthorized)
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
        ready(registered::<AdminToken>(request).and_then(|admin_token| {
            let presented = bearer_token(request).ok_or(ApiError::AdminUnauthorized)?;
            if admin_token.matches(&presented) {
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
        SessionKeys::new(SecretString::from(secret.to_string()))
    }

    fn alice() -> AuthUser {
        AuthUser {
            user_id: 7,
            username: "alice".into(),
        }
    }

    #[test]
    fn a_token_verifies_with_its_key_only() {
        let token = keys("one").issue(&alice());
        assert_eq!(keys("one").verify(&token), Some(alice()));
        assert_eq!(keys("two").verify(&token), None);
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let token = keys("one").issue(&alice());
        let forged = token.replacen("v1.7.", "v1.8.", 1);
        assert_eq!(keys("one").verify(&forged), None);
        assert_eq!(keys("one").verify("garbage"), None);
        assert_eq!(keys("one").verify(""), None);
    }
}
