//! `POST /api/login`: demo login, no password; creates the user on first use.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthUser, SESSION_COOKIE, SessionKeys};
use crate::domain::Username;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::users;

#[derive(Debug, Deserialize)]
struct LoginBody {
    username: String,
}

#[derive(Debug, Serialize)]
struct LoginReply {
    token: String,
    user_id: i64,
    username: String,
}

#[post("/api/login")]
async fn login(
    state: web::Data<AppState>,
    keys: web::Data<SessionKeys>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let username = Username::parse(&body.username)?;
    let user_id = users::find_or_create(&state.db, &username).await?;
    let user = AuthUser {
        user_id,
        username: username.as_str().to_string(),
    };
    let token = keys.issue(&user);
    let cookie = Cookie::build(SESSION_COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .finish();
    Ok(HttpResponse::Ok().cookie(cookie).json(LoginReply {
        token,
        user_id,
        username: user.username,
    }))
}

/// Who the caller is (from the bearer token or the session cookie).
#[get("/api/me")]
async fn me(user: AuthUser) -> HttpResponse {
    HttpResponse::Ok()
        .json(serde_json::json!({ "user_id": user.user_id, "username": user.username }))
}

/// Forgets the session cookie.
#[post("/api/logout")]
async fn logout() -> HttpResponse {
    let mut cookie = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    cookie.make_removal();
    HttpResponse::Ok()
        .cookie(cookie)
        .json(serde_json::json!({ "ok": true }))
}
