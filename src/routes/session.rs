//! `POST /api/login`: demo login, no password; creates the user on first use.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{AuthUser, SESSION_COOKIE, SessionKeys};
use crate::domain::Username;
use crate::error::ApiError;
use crate::flows::shared;
use crate::state::AppState;
use crate::store::users;

/// `{"username":"…"}`: a JSON object with exactly that field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// 1 to 64 visible characters, any script; NFC-normalised; no spaces,
    /// zero-width or bidi characters.
    #[schema(min_length = 1, max_length = 64, example = "alice")]
    username: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginReply {
    /// A signed login token (JWT, HS256) that expires; send it as `Authorization: Bearer …`.
    token: String,
    user_id: i64,
    username: String,
}

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    user_id: i64,
    username: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoggedOut {
    ok: bool,
}

impl LoginBody {
    /// An object with one field, `username`: an array or extra fields are refused.
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|error| ApiError::MalformedBody(error.to_string()))?;
        if !json.is_object() {
            return Err(ApiError::MalformedBody(
                "expected a JSON object {\"username\": …}".into(),
            ));
        }
        serde_json::from_value(json).map_err(|error| ApiError::MalformedBody(error.to_string()))
    }
}

/// Logs in (demo: no password; the user is created on first use). The token
/// is also set as an HttpOnly session cookie for the pages.
#[utoipa::path(
    tag = "session",
    request_body = LoginBody,
    responses((status = 200, description = "Logged in", body = LoginReply)),
)]
#[post("/api/login")]
async fn login(
    state: web::Data<AppState>,
    keys: web::Data<SessionKeys>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let username = Username::parse(&LoginBody::parse(&body)?.username)?;
    let user_id = users::find_or_create(&state.db, &username).await?;
    let token = keys
        .issue(user_id, username.as_str())
        .ok_or_else(|| ApiError::Internal("cannot sign a login token".into()))?;
    let cookie = Cookie::build(SESSION_COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .finish();
    Ok(HttpResponse::Ok().cookie(cookie).json(LoginReply {
        token,
        user_id,
        username: username.as_str().to_string(),
    }))
}

/// Who the caller is (from the bearer token or the session cookie).
#[utoipa::path(
    tag = "session",
    security(("login" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The caller", body = Me)),
)]
#[get("/api/me")]
async fn me(user: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(Me {
        user_id: user.user_id,
        username: user.username,
    })
}

/// Revokes the caller's token (on every instance) and forgets the cookie.
/// Without a token it only forgets the cookie.
#[utoipa::path(
    tag = "session",
    security((), ("login" = []), ("session_cookie" = [])),
    responses((status = 200, description = "Logged out", body = LoggedOut)),
)]
#[post("/api/logout")]
async fn logout(
    state: web::Data<AppState>,
    user: Option<AuthUser>,
) -> Result<HttpResponse, ApiError> {
    if let Some(user) = user {
        shared::revoke_token(&state, &user.token_id, user.expires_at).await?;
    }
    let mut cookie = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    cookie.make_removal();
    Ok(HttpResponse::Ok()
        .cookie(cookie)
        .json(LoggedOut { ok: true }))
}
