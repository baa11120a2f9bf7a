//! Limits at the door, before any handler runs: request rates (per IP on login,
//! per user and per IP on writes; `governor`'s GCRA), and the body of a write
//! read whole within a time limit (408) and a size limit (413). The lab's own
//! requests (it attacks this server over HTTP) carry the admin token in
//! `Flashguard-Lab` and are not limited. Every refusal is problem details.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::ResponseError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{AUTHORIZATION, CONTENT_LENGTH};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use sha2::{Digest, Sha256};

use crate::auth::AdminToken;
use crate::configuration::LimitSettings;
use crate::error::ApiError;
use crate::metrics;

/// The largest body a write may carry.
pub const BODY_LIMIT: usize = 64 * 1024;
/// The header with which the lab's own requests pass the limits.
pub const LAB_HEADER: &str = "flashguard-lab";

/// The limiters, shared by every worker (registered as `web::Data<Limits>`).
#[derive(Debug)]
pub struct Limits {
    login_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    writes_per_user: Option<DefaultKeyedRateLimiter<[u8; 16]>>,
    writes_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    body_timeout: Duration,
}

/// `per_second` with a burst of ten seconds' worth; `None` when 0 (off).
fn limiter<K: std::hash::Hash + Eq + Clone>(per_second: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(10)).unwrap_or(rate);
    Some(DefaultKeyedRateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            login_per_ip: limiter(settings.login_per_ip),
            writes_per_user: limiter(settings.writes_per_user),
            writes_per_ip: limiter(settings.writes_per_ip),
            body_timeout: settings.body_timeout,
        }
    }

    /// Forgets idle keys now and then (a limiter keeps one entry per key).
    pub fn retain_recent(&self) {
        for limiter in [&self.login_per_ip, &self.writes_per_ip]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
        }
        if let Some(limiter) = &self.writes_per_user {
            limiter.retain_recent();
        }
    }
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Middleware: rate limits, then the body read whole within its bounds.
pub async fn enforce(
    mut request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(limits) = request.app_data::<web::Data<Limits>>().cloned() else {
        return Ok(next.call(request).await?.map_into_left_body());
    };
    if !is_write(request.method()) {
        return Ok(next.call(request).await?.map_into_left_body());
    }
    let refusal = match rate_limited(&limits, &request) {
        Some(refusal) => Some(refusal),
        None => read_body(&limits, &mut request).await.err(),
    };
    match refusal {
        Some(error) => Ok(request
            .into_response(error.error_response())
            .map_into_right_body()),
        None => Ok(next.call(request).await?.map_into_left_body()),
    }
}

/// The first limit this request exceeds, if any.
fn rate_limited(limits: &Limits, request: &ServiceRequest) -> Option<ApiError> {
    if is_lab(request) {
        return None;
    }
    let ip = request.peer_addr().map(|address| address.ip())?;
    let is_login = request.path() == "/api/login";
    let checks: [(&'static str, Option<Result<(), Duration>>); 3] = [
        (
            "login_per_ip",
            is_login
                .then(|| check(limits.login_per_ip.as_ref(), &ip))
                .flatten(),
        ),
        (
            "writes_per_user",
            user_key(request).and_then(|key| check(limits.writes_per_user.as_ref(), &key)),
        ),
        (
            "writes_per_ip",
            (!is_login)
                .then(|| check(limits.writes_per_ip.as_ref(), &ip))
                .flatten(),
        ),
    ];
    checks.into_iter().find_map(|(limit, outcome)| {
        let wait = outcome?.err()?;
        metrics::count_labelled(metrics::RATE_LIMITED, "limit", limit);
        Some(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        })
    })
}

/// `Some(Err(wait))` when `key` is over its limit; `None` when the limit is off.
fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Option<Result<(), Duration>> {
    let limiter = limiter?;
    Some(
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
    )
}

/// The caller's bearer token (digested), as the key of the per-user limit.
fn user_key(request: &ServiceRequest) -> Option<[u8; 16]> {
    let header = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let digest = Sha256::digest(header.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    Some(key)
}

fn is_lab(request: &ServiceRequest) -> bool {
    let presented = request
        .headers()
        .get(LAB_HEADER)
        .and_then(|value| value.to_str().ok());
    let token = request.app_data::<web::Data<AdminToken>>();
    matches!((presented, token), (Some(presented), Some(token)) if token.matches(presented))
}

/// Reads the whole body within the time limit and the size limit, and puts it
/// back for the handler.
async fn read_body(limits: &Limits, request: &mut ServiceRequest) -> Result<(), ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > BODY_LIMIT) {
        return Err(ApiError::PayloadTooLarge {
            limit_bytes: BODY_LIMIT,
        });
    }
    let mut payload = request.take_payload();
    let body = tokio::time::timeout(limits.body_timeout, collect(&mut payload))
        .await
        .map_err(|_| ApiError::RequestTimeout)??;
    request.set_payload(Payload::from(body));
    Ok(())
}

async fn collect(payload: &mut Payload) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| ApiError::MalformedBody(error.to_string()))?;
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(ApiError::PayloadTooLarge {
                limit_bytes: BODY_LIMIT,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
