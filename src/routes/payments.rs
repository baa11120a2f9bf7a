//! Payments: the one-time token, pay, and the provider's callback.

use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::defenses::idempotency_key::{self, Admission, KeyedRequest};
use crate::defenses::payment_token::PAYMENT_TOKEN_HEADER;
use crate::domain::{Channel, OrderNo};
use crate::error::ApiError;
use crate::flows::keyed;
use crate::flows::payments::{self as payment_flow, CallbackResult, PaymentView};
use crate::psp::ProviderEvent;
use crate::psp::signature::{self, SIGNATURE_HEADER};
use crate::routes::answer;
use crate::routes::request::{
    IdempotencyKeyHeader, PaymentTokenHeader, SignatureHeader, header, idempotency_key_of,
};
use crate::state::AppState;
use crate::store::orders;
use crate::switches::{DEFENSE_HEADER, Defense};

/// `POST /api/orders/{order_no}/payment-token`: called when the pay popup opens.
/// The token (一次性令牌) is good for one pay of this order by this user.
#[utoipa::path(
    tag = "payments",
    operation_id = "issue_payment_token",
    security(("login" = []), ("session_cookie" = [])),
    responses((status = 200, description = "A one-time payment token", body = PaymentTokenReply)),
)]
#[post("/api/orders/{order_no}/payment-token")]
async fn issue_token(
    state: web::Data<AppState>,
    user: AuthUser,
    order_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order_no = OrderNo::parse(&order_no).ok_or(ApiError::OrderNotFound)?;
    orders::find_for_user(state.db.pool(), user.user_id, &order_no)
        .await?
        .ok_or(ApiError::OrderNotFound)?;
    let (token, ttl) = state
        .payment_tokens
        .issue(user.user_id, order_no.as_str())
        .await?;
    Ok(HttpResponse::Ok().json(PaymentTokenReply {
        token,
        expires_in: ttl.as_secs(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentTokenReply {
    /// Send it once, in `Payment-Token`, with the pay request.
    token: String,
    /// Seconds until it expires.
    expires_in: u64,
}

/// `POST /api/orders/{order_no}/pay` with `Idempotency-Key` and `Payment-Token`.
/// 202 PROCESSING starts the payment; the provider's callback makes it PAID.
#[utoipa::path(
    tag = "payments",
    operation_id = "pay_order",
    security(("login" = []), ("session_cookie" = [])),
    params(IdempotencyKeyHeader, PaymentTokenHeader),
    request_body(content = Option<PayRequestBody>, description = "Optional; when present, JSON (it is part of the key's fingerprint)"),
    responses(
        (status = 202, description = "The payment is processing", body = PaymentView),
        (status = 200, description = "The order is already paid", body = PaymentView),
    ),
)]
#[post("/api/orders/{order_no}/pay")]
async fn pay(
    state: web::Data<AppState>,
    user: AuthUser,
    request: HttpRequest,
    order_no: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let order_no = OrderNo::parse(&order_no).ok_or(ApiError::OrderNotFound)?;
    let key = idempotency_key_of(&request)?;
    let path = format!("/api/orders/{order_no}/pay");
    let body = optional_json(&body)?;
    let channel = channel_of(&body)?;
    let keyed = KeyedRequest {
        user_id: user.user_id,
        key: &key,
        fingerprint: idempotency_key::fingerprint("POST", &path, &body),
    };
    // 1. idempotency_key: a retry of a pay that was answered gets that answer.
    let lease = match state.keys.admit(&keyed).await? {
        Admission::Replay(stored) => return Ok(answer::replay(stored)),
        Admission::Run(lease) => lease,
    };
    // 2. payment_token: consumed once, atomically.
    let presented = header(&request, PAYMENT_TOKEN_HEADER);
    let consumed = state
        .payment_tokens
        .consume(presented, user.user_id, order_no.as_str())
        .await;
    let outcome = match consumed {
        // 3–5. order_lock, state_check, unique_index inside the flow.
        Ok(()) => payment_flow::pay(&state, user.user_id, &order_no, channel).await,
        Err(refused) => Err(refused.into()),
    };
    // 6. the answer is stored with the key (or the key released).
    let answered = keyed::finish(&state.keys, lease, outcome).await?;
    Ok(answer::respond(answered))
}

/// The body of a pay request (optional).
#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct PayRequestBody {
    /// How to pay: `card` (default), `alipay` or `wechatpay`; the provider
    /// then notifies in that channel's own format.
    channel: Option<Channel>,
}

/// The channel a pay body names (`card` when it names none).
fn channel_of(body: &serde_json::Value) -> Result<Channel, ApiError> {
    let read = serde_json::from_value::<Option<PayRequestBody>>(body.clone()).map_err(|error| {
        ApiError::InvalidRequest(format!(
            "the pay body: {error} (channel: card, alipay or wechatpay)"
        ))
    })?;
    Ok(read.and_then(|body| body.channel).unwrap_or_default())
}

/// The pay body is optional; when present it must be JSON (it is fingerprinted).
fn optional_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|error| ApiError::MalformedBody(error.to_string()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackReply {
    /// `applied`, or `duplicate` (an event seen before: nothing changed).
    result: &'static str,
}

/// `POST /api/payments/callback`: the signature is checked before anything is parsed.
/// The provider may send an event several times; each is applied once (回调去重).
#[utoipa::path(
    tag = "payments",
    operation_id = "provider_callback",
    params(SignatureHeader),
    request_body = ProviderEvent,
    responses((status = 200, description = "Applied, or recognised as a duplicate", body = CallbackReply)),
)]
#[post("/api/payments/callback")]
async fn callback(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    signature::verify(
        &state.settings.secrets.psp_secret,
        header(&request, SIGNATURE_HEADER),
        &body,
        signature::now_unix(),
        state.settings.payments.signature_tolerance,
    )?;
    let event: ProviderEvent = serde_json::from_slice(&body)
        .map_err(|error| ApiError::MalformedBody(error.to_string()))?;
    event.check().map_err(ApiError::InvalidRequest)?;
    let result = payment_flow::apply_callback(&state, &event).await?;
    let mut response = HttpResponse::Ok();
    if result == CallbackResult::Duplicate {
        response.insert_header((DEFENSE_HEADER, Defense::CallbackDedup.id()));
    }
    Ok(response.json(CallbackReply {
        result: result.as_str(),
    }))
}
