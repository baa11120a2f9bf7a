//! One error type for the whole API, rendered as RFC 9457 problem details.
//!
//! Each variant maps to one [`ProblemCode`] (the only match on variants that
//! matters); status, title, `Retry-After`, the defense behind it and whether the
//! idempotency key stores it all come from the problem table in `problems.rs`,
//! except where a method below names a variant that differs (a rate limit's
//! own `Retry-After`, a "sold out for now" that is not stored).
//! Defenses return their own error types, converted here. Rendering has no side
//! effects; the cause chain of server errors is logged once, by the request
//! logger (tracing-actix-web).

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::causes::Causes;
use crate::defenses::idempotency_key::{KeyError, Reply, StoredResponse};
use crate::defenses::order_lock::LockError;
use crate::defenses::payment_token::TokenError;
use crate::defenses::stock_gate::GateError;
use crate::domain::{IdempotencyKeyError, QuantityError, UsernameError};
use crate::problems::{PROBLEM_CONTENT_TYPE, ProblemCode};
use crate::psp::NotificationError;
use crate::psp::signature::SignatureError;
use crate::store::{KvError, StoreError};
use crate::switches::{DEFENSE_HEADER, Defense};

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    IdempotencyKey(#[from] IdempotencyKeyError),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    RequestInProgress,
    #[error("the request body is not valid JSON of the expected shape: {0}")]
    MalformedBody(String),
    #[error(transparent)]
    InvalidQuantity(#[from] QuantityError),
    #[error(transparent)]
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
    /// The gate is empty but some units are held by orders still being placed:
    /// if one fails, its unit comes back. Not stored with the key (a retry may
    /// buy); sent with `Retry-After` (docs/design.md §2.1).
    #[error(
        "sold out for now: the last units are held by orders still being placed, and come back if one fails; retry after Retry-After"
    )]
    SoldOutForNow,
    #[error("this purchase already took its unit at the stock gate and is still being processed")]
    RepeatAtGate,
    #[error("the sale of this product has not started yet")]
    SaleNotStarted,
    #[error("sold out: not enough stock left for this order")]
    SoldOut,
    #[error("the stock row is contended; retry with the same Idempotency-Key")]
    BusyRetry,
    #[error("a valid bearer token (from POST /api/login) is required")]
    Unauthorized,
    #[error("the login token has expired: log in again")]
    TokenExpired,
    #[error("the login token was revoked by a logout: log in again")]
    TokenRevoked,
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
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Notification(#[from] NotificationError),
    #[error("the notification is for app {0:?}, not this merchant's")]
    MerchantMismatch(String),
    #[error("the notification reports {reported} cents, the payment is {expected} cents")]
    AmountMismatch { reported: i64, expected: i64 },
    #[error("no payment {0:?} of this channel")]
    PaymentUnknown(String),
    #[error("payment {payment_no:?} is trade {expected:?} at the provider, not {reported:?}")]
    TradeMismatch {
        payment_no: String,
        reported: String,
        expected: String,
    },
    #[error("unknown defense {0:?}")]
    UnknownDefense(String),
    #[error("another experiment or a simulation is running; try again when it ends")]
    ExperimentRunning,
    #[error("a simulation or an experiment is running; try again when it ends")]
    SimulationRunning,
    #[error("{0}")]
    ExperimentUnavailable(String),
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("this address takes {allow}")]
    MethodNotAllowed { allow: String },
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("the request's deadline passed while it waited on {dependency}")]
    DeadlinePassed { dependency: &'static str },
    #[error("the database did not answer this order's group-commit batch")]
    BatchFoundDatabaseUnavailable,
    #[error("the request body is larger than {} KiB", limit_bytes / 1024)]
    PayloadTooLarge { limit_bytes: usize },
    #[error(transparent)]
    KeyStore(#[from] KvError),
    #[error(transparent)]
    MessageBus(#[from] crate::store::bus::BusError),
    #[error(transparent)]
    Database(#[from] StoreError),
    #[error("cannot serialise an answer")]
    Serialize(#[from] serde_json::Error),
    #[error("cannot render a page")]
    Template(#[from] askama::Error),
    /// `KeyError::Corrupt`, kept whole (its message says what is unreadable).
    #[error(transparent)]
    StoredAnswerUnreadable(KeyError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of every error (RFC 9457 plus our `code`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// The page that explains this problem (`/learn/problems/<code>`).
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What happened to this request.
    pub detail: String,
    /// The stable code to branch on (docs/design.md §4).
    #[schema(value_type = ProblemCode)]
    pub code: &'static str,
    /// For `dependency_unavailable`: `database` or `redis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependency: Option<&'static str>,
}

impl ApiError {
    /// The stable, documented problem code of this error.
    #[expect(
        clippy::too_many_lines,
        reason = "the error-to-code table: one arm per error variant; one match keeps the compiler's exhaustiveness check"
    )]
    pub fn code(&self) -> ProblemCode {
        use ProblemCode as P;
        match self {
            Self::IdempotencyKey(IdempotencyKeyError::Missing) => P::IdempotencyKeyMissing,
            Self::IdempotencyKey(IdempotencyKeyError::Invalid | IdempotencyKeyError::Repeated) => {
                P::IdempotencyKeyInvalid
            }
            Self::IdempotencyKeyReused => P::IdempotencyKeyReused,
            Self::RequestInProgress | Self::RepeatAtGate => P::RequestInProgress,
            Self::MalformedBody(_) => P::MalformedBody,
            Self::InvalidQuantity(_) => P::InvalidQuantity,
            Self::InvalidUsername(_) => P::InvalidUsername,
            Self::InvalidRequest(_) => P::InvalidRequest,
            Self::ProductNotFound(_) => P::ProductNotFound,
            Self::OrderNotFound => P::OrderNotFound,
            Self::NotFound => P::NotFound,
            Self::SoldOut | Self::SoldOutAtGate | Self::SoldOutForNow => P::SoldOut,
            Self::SaleNotStarted => P::SaleNotStarted,
            Self::BusyRetry => P::BusyRetry,
            Self::Unauthorized => P::Unauthorized,
            Self::TokenExpired => P::TokenExpired,
            Self::TokenRevoked => P::TokenRevoked,
            Self::AdminUnauthorized => P::AdminUnauthorized,
            Self::PaymentTokenMissing => P::PaymentTokenMissing,
            Self::PaymentTokenInvalid => P::PaymentTokenInvalid,
            Self::OrderLocked => P::OrderLocked,
            Self::OrderClosed => P::OrderClosed,
            Self::Signature(SignatureError::Invalid) => P::SignatureInvalid,
            Self::Signature(SignatureError::Expired) => P::SignatureExpired,
            Self::Notification(NotificationError::SignatureInvalid(_)) => P::SignatureInvalid,
            Self::Notification(NotificationError::SignatureExpired) => P::SignatureExpired,
            Self::Notification(NotificationError::Malformed(_)) => P::MalformedBody,
            Self::Notification(NotificationError::Undecryptable) => P::ResourceUndecryptable,
            Self::MerchantMismatch(_) => P::MerchantMismatch,
            Self::AmountMismatch { .. } => P::AmountMismatch,
            Self::PaymentUnknown(_) | Self::TradeMismatch { .. } => P::PaymentUnknown,
            Self::UnknownDefense(_) => P::UnknownDefense,
            Self::ExperimentRunning => P::ExperimentRunning,
            Self::SimulationRunning => P::SimulationRunning,
            Self::ExperimentUnavailable(_) => P::ExperimentUnavailable,
            Self::RateLimited { .. } => P::RateLimited,
            Self::MethodNotAllowed { .. } => P::MethodNotAllowed,
            Self::RequestTimeout => P::RequestTimeout,
            Self::PayloadTooLarge { .. } => P::PayloadTooLarge,
            Self::KeyStore(_)
            | Self::MessageBus(_)
            | Self::DeadlinePassed { .. }
            | Self::BatchFoundDatabaseUnavailable => P::DependencyUnavailable,
            Self::Database(error) if error.is_unavailable() => P::DependencyUnavailable,
            Self::Database(_)
            | Self::Serialize(_)
            | Self::Template(_)
            | Self::StoredAnswerUnreadable(_)
            | Self::Internal(_) => P::InternalError,
        }
    }

    /// The defense that produced this answer, if one did (`Flashguard-Defense`).
    /// The problem table says which defense stands behind each code; two
    /// variants differ from it: the database's own sold out (no gate involved),
    /// and the gate's answer to a repeat still in progress.
    pub fn defense(&self) -> Option<Defense> {
        match self {
            Self::SoldOut => None,
            Self::RepeatAtGate | Self::SoldOutAtGate | Self::SoldOutForNow => {
                Some(Defense::StockGate)
            }
            other => other.code().spec().defense,
        }
    }

    /// The dependency that did not answer, for `dependency_unavailable`.
    pub fn dependency(&self) -> Option<&'static str> {
        match self {
            Self::KeyStore(_) => Some("redis"),
            Self::MessageBus(error) => Some(error.dependency()),
            Self::Database(error) if error.is_unavailable() => Some("database"),
            Self::DeadlinePassed { dependency } => Some(dependency),
            Self::BatchFoundDatabaseUnavailable => Some("database"),
            _ => None,
        }
    }

    /// An outcome of the business that the idempotency key stores and replays.
    /// Everything else (validation, 5xx, busy) stores nothing, so that the
    /// client's retry can succeed.
    /// One variant differs from the problem table: a "sold out" while units
    /// are still held by orders being placed is not final, so not stored.
    pub fn is_stored_with_key(&self) -> bool {
        !matches!(self, Self::SoldOutForNow) && self.code().spec().stored_with_key
    }

    /// `Retry-After` (s): the problem table's, or this answer's own.
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::SoldOutForNow => Some(1),
            _ => self.code().spec().retry_after_secs,
        }
    }

    pub fn problem(&self) -> Problem {
        let code = self.code();
        let spec = code.spec();
        let detail = match (code, self.dependency()) {
            // Never show internals to the client; they are in the log.
            (ProblemCode::InternalError, _) => {
                "the server failed; nothing was stored, so the request can be retried".to_string()
            }
            (_, Some(dependency)) => format!(
                "{dependency} did not answer in time; nothing was stored, retry after Retry-After"
            ),
            _ => self.to_string(),
        };
        Problem {
            type_uri: code.type_uri(),
            title: spec.title.en,
            status: spec.status,
            detail,
            code: code.as_str(),
            dependency: self.dependency(),
        }
    }

    /// This error as an answer the idempotency key can store and replay.
    pub fn to_reply(&self) -> Result<Reply, serde_json::Error> {
        Ok(Reply {
            stored: StoredResponse {
                status: self.status_code(),
                content_type: PROBLEM_CONTENT_TYPE.to_string(),
                body: serde_json::to_string(&self.problem())?,
            },
            defense: self.defense(),
        })
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().spec().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((CONTENT_TYPE, PROBLEM_CONTENT_TYPE));
        if let Some(seconds) = self.retry_after_secs() {
            response.insert_header((RETRY_AFTER, seconds.to_string()));
        }
        if let Self::MethodNotAllowed { allow } = self {
            response.insert_header((actix_web::http::header::ALLOW, allow.as_str()));
        }
        if let Some(defense) = self.defense() {
            response.insert_header((DEFENSE_HEADER, defense.id()));
        }
        if matches!(
            self,
            Self::Unauthorized | Self::AdminUnauthorized | Self::TokenExpired | Self::TokenRevoked
        ) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.body(problem_body(&self.problem()))
    }
}

/// Serialises a problem. Its fields are plain strings and numbers, so this does
/// not fail; if it ever did, the client still gets a problem body, and the log says why.
pub fn problem_body(problem: &Problem) -> String {
    serde_json::to_string(problem).unwrap_or_else(|error| {
        tracing::error!(error = %Causes(&error), "cannot serialise a problem body");
        format!(
            r#"{{"type":"/learn/problems/internal_error","title":"Internal error","status":{},"detail":"","code":"internal_error"}}"#,
            problem.status
        )
    })
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Reused => Self::IdempotencyKeyReused,
            KeyError::InProgress => Self::RequestInProgress,
            corrupt @ KeyError::Corrupt(_) => Self::StoredAnswerUnreadable(corrupt),
            KeyError::Store(error) => Self::Database(error),
        }
    }
}

impl From<GateError> for ApiError {
    fn from(error: GateError) -> Self {
        match error {
            GateError::SoldOut => Self::SoldOutAtGate,
            GateError::SoldOutForNow => Self::SoldOutForNow,
            GateError::KeyStore(error) => Self::KeyStore(error),
            GateError::Store(error) => Self::Database(error),
        }
    }
}

impl From<LockError> for ApiError {
    fn from(error: LockError) -> Self {
        match error {
            LockError::Locked => Self::OrderLocked,
            LockError::KeyStore(error) => Self::KeyStore(error),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Missing => Self::PaymentTokenMissing,
            TokenError::Invalid => Self::PaymentTokenInvalid,
            TokenError::KeyStore(error) => Self::KeyStore(error),
        }
    }
}
