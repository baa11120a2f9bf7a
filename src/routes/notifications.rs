//! The payment channels' notifications, each answered in its provider's own
//! terms (docs/payments.md, "Channels"):
//! - `POST /api/payments/callback/alipay`: a form signed with RSA2; the body
//!   `success` when accepted (applied now, or seen before), problem details
//!   otherwise — anything but `success` makes Alipay send it again;
//! - `POST /api/payments/callback/wechatpay`: APIv3 JSON signed with
//!   SHA256-RSA, the payment encrypted; 204 with no body when accepted, a 4xx
//!   or 5xx with `{"code":"FAIL","message"}` otherwise.
//!
//! The signature is verified before anything in the body is believed; then
//! both go the way every callback goes (`flows::notifications`).

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, ResponseError, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Channel;
use crate::error::ApiError;
use crate::flows::notifications;
use crate::flows::payments::CallbackResult;
use crate::psp::signature::now_unix;
use crate::psp::{alipay, wechatpay};
use crate::routes::request::header;
use crate::state::AppState;
use crate::switches::{DEFENSE_HEADER, Defense};

/// Alipay's asynchronous notification (支付宝异步通知): the body `success` when
/// it was accepted (applied now or before); anything else, and Alipay sends it again.
#[utoipa::path(
    tag = "payments",
    operation_id = "alipay_notification",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "notify_id, app_id, out_trade_no, trade_no, trade_status, total_amount, sign_type=RSA2, sign, …"),
    responses((status = 200, description = "Accepted: the body is `success`", body = String, content_type = "text/plain")),
)]
#[post("/api/payments/callback/alipay")]
async fn alipay_notification(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    match read_alipay(&state, &body).await {
        Ok(result) => received(result, StatusCode::OK)
            .content_type("text/plain; charset=utf-8")
            .body(alipay::RECEIVED),
        Err(error) => error.error_response(),
    }
}

// [lesson alipay::receive]
/// Verify, check it is ours, then apply once.
async fn read_alipay(state: &AppState, body: &[u8]) -> Result<CallbackResult, ApiError> {
    let params = alipay::Params::from_form(body)?;
    params.verify(&state.provider_keys.alipay.public)?;
    let app_id = params.app_id()?;
    if app_id != state.settings.providers.alipay_app_id {
        return Err(ApiError::MerchantMismatch(app_id.to_string()));
    }
    let settlement = params.settlement()?;
    notifications::apply_settlement(state, Channel::Alipay, &settlement).await
}
// [/lesson]

/// WeChat Pay's payment notification (APIv3): 204 with no body when it was
/// accepted; a 4xx/5xx with `{"code":"FAIL","message"}` otherwise, and WeChat
/// Pay sends it again.
#[utoipa::path(
    tag = "payments",
    operation_id = "wechatpay_notification",
    params(
        ("Wechatpay-Timestamp" = String, Header, description = "Unix seconds; more than 5 minutes away is refused"),
        ("Wechatpay-Nonce" = String, Header),
        ("Wechatpay-Signature" = String, Header, description = "Base64 SHA256withRSA over timestamp, nonce and body"),
        ("Wechatpay-Serial" = String, Header, description = "The platform key's serial"),
    ),
    request_body = wechatpay::Notification,
    responses(
        (status = 204, description = "Accepted"),
        (status = 400, description = "Refused", body = WechatpayFailure),
        (status = 401, description = "Signature refused", body = WechatpayFailure),
        (status = 500, description = "The server failed: try again", body = WechatpayFailure),
        (status = 503, description = "A dependency is down: try again", body = WechatpayFailure),
    ),
)]
#[post("/api/payments/callback/wechatpay")]
async fn wechatpay_notification(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    match read_wechatpay(&state, &request, &body).await {
        Ok(result) => received(result, StatusCode::NO_CONTENT).finish(),
        Err(error) => HttpResponse::build(error.status_code())
            .insert_header((CONTENT_TYPE, "application/json"))
            .json(WechatpayFailure {
                code: "FAIL",
                // The problem's detail: never internals on a 5xx.
                message: error.problem().detail,
            }),
    }
}

/// What WeChat Pay expects when a notification was not accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct WechatpayFailure {
    /// Always `FAIL`.
    code: &'static str,
    message: String,
}

// [lesson wechatpay::receive]
/// Verify, decrypt, then apply once.
async fn read_wechatpay(
    state: &AppState,
    request: &HttpRequest,
    body: &[u8],
) -> Result<CallbackResult, ApiError> {
    let keys = &state.provider_keys;
    let headers = wechatpay::SignatureHeaders {
        timestamp: header(request, wechatpay::TIMESTAMP_HEADER),
        nonce: header(request, wechatpay::NONCE_HEADER),
        signature: header(request, wechatpay::SIGNATURE_HEADER),
        serial: header(request, wechatpay::SERIAL_HEADER),
    };
    wechatpay::verify(
        &keys.wechatpay.public,
        &keys.wechatpay_serial,
        &headers,
        body,
        (now_unix(), state.settings.payments.signature_tolerance),
    )?;
    let notification = wechatpay::Notification::from_json(body)?;
    if !notification.is_payment() {
        return Ok(CallbackResult::Ignored);
    }
    let transaction = notification.decrypt(&keys.apiv3_key)?;
    let settlement = transaction.settlement(format!("wechatpay:{}", notification.id));
    notifications::apply_settlement(state, Channel::Wechatpay, &settlement).await
}
// [/lesson]

/// An accepted notification's answer; a duplicate is marked with the defense
/// that recognised it.
fn received(result: CallbackResult, status: StatusCode) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    if result == CallbackResult::Duplicate {
        response.insert_header((DEFENSE_HEADER, Defense::CallbackDedup.id()));
    }
    response
}
