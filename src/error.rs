//! One error type for the whole API, rendered as RFC 9457 problem details.
//!
//! Each variant has a stable snake_case `code`; its `type` links to the page at
//! `/learn/problems/<code>` that explains it and the defense behind it. When a
//! defense produced the answer, the response also carries `Flashguard-Defense`.
//! Rendering has no side effects; the cause chain of server errors is logged once.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::defenses::Defense;
use crate::domain::{IdempotencyKeyError, QuantityError, UsernameError};
use crate::psp::signature::SignatureError;
use crate::store::KvError;

pub const DEFENSE_HEADER: &str = "Flashguard-Defense";
/// The same header name in the lower case that `HeaderName::from_static` wants.
pub const DEFENSE_HEADER_LOWER: &str = "flashguard-defense";
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    IdempotencyKey(#[from] IdempotencyKeyError),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    RequestInProgress { retry_after_secs: u64 },
    #[error("the request body is not valid JSON of the expected shape: {0}")]
    MalformedBody(String),
    #[error("{0}")]
    InvalidQuantity(#[from] QuantityError),
    #[error("{0}")]
    InvalidUsername(#[from] UsernameError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no product with id {0}")]
    ProductNotFound(i64),
    #[error("no such order")]
    OrderNotFound,
    #[error("no such resource")]
    NotFound,
    #[error("sold out: the stock gate has no units left")]
    SoldOutAtGate,
    #[error("this purchase already took its unit at the stock gate and is still being processed")]
    RepeatAtGate,
    #[error("the sale of this product has not started yet")]
    SaleNotStarted,
    #[error("sold out: not enough stock left for this order")]
    SoldOut,
    #[error("the stock row is contended; retry with the same Idempotency-Key")]
    BusyRetry { retry_after_secs: u64 },
    #[error("a valid bearer token (from POST /api/login) is required")]
    Unauthorized,
    #[error("the admin token is missing or wrong")]
    AdminUnauthorized,
    #[error("the Payment-Token header is missing: open the payment popup to get one")]
    PaymentTokenMissing,
    #[error("the payment token is used, expired, or not issued for this order and user")]
    PaymentTokenInvalid,
    #[error("another payment request holds this order's lock; retry shortly")]
    OrderLocked,
    #[error("the order is closed: its payment window has passed")]
    OrderClosed,
    #[error("{0}")]
    Signature(#[from] crate::psp::signature::SignatureError),
    #[error("unknown defense {0:?}")]
    UnknownDefense(String),
    #[error("the key store is unavailable")]
    KeyStore(#[from] KvError),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of every error (RFC 9457 plus our `code`).
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
}

impl ApiError {
    /// The stable, documented problem code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::IdempotencyKey(IdempotencyKeyError::Missing) => "idempotency_key_missing",
            Self::IdempotencyKey(IdempotencyKeyError::Invalid) => "idempotency_key_invalid",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::RequestInProgress { .. } => "request_in_progress",
            Self::MalformedBody(_) => "malformed_body",
            Self::InvalidQuantity(_) => "invalid_quantity",
            Self::InvalidUsername(_) => "invalid_username",
            Self::InvalidRequest(_) => "invalid_request",
            Self::ProductNotFound(_) => "product_not_found",
            Self::OrderNotFound => "order_not_found",
            Self::NotFound => "not_found",
            Self::SoldOut | Self::SoldOutAtGate => "sold_out",
            Self::RepeatAtGate => "request_in_progress",
            Self::SaleNotStarted => "sale_not_started",
            Self::BusyRetry { .. } => "busy_retry",
            Self::Unauthorized => "unauthorized",
            Self::AdminUnauthorized => "admin_unauthorized",
            Self::PaymentTokenMissing => "payment_token_missing",
            Self::PaymentTokenInvalid => "payment_token_invalid",
            Self::OrderLocked => "order_locked",
            Self::OrderClosed => "order_closed",
            Self::Signature(SignatureError::Invalid) => "signature_invalid",
            Self::Signature(SignatureError::Expired) => "signature_expired",
            Self::UnknownDefense(_) => "unknown_defense",
            Self::KeyStore(_) => "key_store_unavailable",
            Self::Database(_) | Self::Internal(_) => "internal_error",
        }
    }

    /// The defense that produced this answer, if one did.
    pub fn defense(&self) -> Option<Defense> {
        match self {
            Self::IdempotencyKeyReused | Self::RequestInProgress { .. } => {
                Some(Defense::IdempotencyKey)
            }
            Self::BusyRetry { .. } => Some(Defense::VersionLock),
            Self::PaymentTokenMissing | Self::PaymentTokenInvalid => Some(Defense::PaymentToken),
            Self::OrderLocked => Some(Defense::OrderLock),
            Self::OrderClosed => Some(Defense::StateCheck),
            Self::SoldOutAtGate | Self::RepeatAtGate => Some(Defense::StockGate),
            _ => None,
        }
    }

    /// Whether this outcome is a result of the business that the idempotency
    /// key stores and replays. Everything else (validation, 5xx, busy) stores
    /// nothing, so that the client's retry can succeed.
    pub fn is_business_outcome(&self) -> bool {
        matches!(
            self,
            Self::SoldOut | Self::SoldOutAtGate | Self::OrderClosed
        )
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RequestInProgress { retry_after_secs } | Self::BusyRetry { retry_after_secs } => {
                Some(*retry_after_secs)
            }
            Self::OrderLocked | Self::RepeatAtGate => Some(1),
            Self::KeyStore(_) => Some(1),
            _ => None,
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let detail = match self {
            // Never show internals to the client; they are in the log.
            Self::Database(_) | Self::Internal(_) => {
                "the server failed; nothing was stored, so the request can be retried".to_string()
            }
            other => other.to_string(),
        };
        Problem {
            type_uri: format!("/learn/problems/{}", self.code()),
            title: problem_title(self.code()),
            status: status.as_u16(),
            detail,
            code: self.code(),
        }
    }
}

/// A short human title per problem code (also shown on the learn pages).
pub fn problem_title(code: &str) -> &'static str {
    match code {
        "idempotency_key_missing" => "Idempotency-Key header missing",
        "idempotency_key_invalid" => "Idempotency-Key malformed",
        "idempotency_key_reused" => "Idempotency-Key reused with another request",
        "request_in_progress" => "Same request still in progress",
        "malformed_body" => "Malformed request body",
        "invalid_quantity" => "Invalid quantity",
        "invalid_username" => "Invalid username",
        "invalid_request" => "Invalid request",
        "product_not_found" => "Product not found",
        "order_not_found" => "Order not found",
        "not_found" => "Not found",
        "sold_out" => "Sold out",
        "sale_not_started" => "Sale not started",
        "busy_retry" => "Busy, retry",
        "unauthorized" => "Login required",
        "admin_unauthorized" => "Admin token required",
        "payment_token_missing" => "Payment token missing",
        "payment_token_invalid" => "Payment token refused",
        "order_locked" => "Order locked by another payment request",
        "order_closed" => "Order closed",
        "signature_invalid" => "Callback signature invalid",
        "signature_expired" => "Callback signature expired",
        "unknown_defense" => "Unknown defense",
        "key_store_unavailable" => "Key store unavailable",
        _ => "Internal error",
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::IdempotencyKey(_)
            | Self::MalformedBody(_)
            | Self::InvalidQuantity(_)
            | Self::InvalidUsername(_)
            | Self::InvalidRequest(_)
            | Self::UnknownDefense(_)
            | Self::PaymentTokenMissing => StatusCode::BAD_REQUEST,
            Self::PaymentTokenInvalid => StatusCode::FORBIDDEN,
            Self::OrderLocked | Self::OrderClosed => StatusCode::CONFLICT,
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RequestInProgress { .. }
            | Self::SoldOut
            | Self::SoldOutAtGate
            | Self::RepeatAtGate
            | Self::SaleNotStarted => StatusCode::CONFLICT,
            Self::ProductNotFound(_) | Self::OrderNotFound | Self::NotFound => {
                StatusCode::NOT_FOUND
            }
            Self::BusyRetry { .. } | Self::KeyStore(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized | Self::AdminUnauthorized => StatusCode::UNAUTHORIZED,
            Self::Database(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((CONTENT_TYPE, PROBLEM_CONTENT_TYPE));
        if let Some(seconds) = self.retry_after_secs() {
            response.insert_header((RETRY_AFTER, seconds.to_string()));
        }
        if let Some(defense) = self.defense() {
            response.insert_header((DEFENSE_HEADER, HeaderValue::from_static(defense.id())));
        }
        if matches!(self, Self::Unauthorized | Self::AdminUnauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.body(problem_body(&self.problem()))
    }
}

/// Serialises a problem; its fields are plain strings and numbers, so this cannot fail.
pub fn problem_body(problem: &Problem) -> String {
    serde_json::to_string(problem).unwrap_or_else(|_| "{}".to_string())
}
