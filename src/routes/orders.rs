//! Orders: placing one (keyed, defended) and reading the caller's own.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde_json::json;

use crate::auth::AuthUser;
use crate::defenses::idempotency_key::{self, Admission, KeyedRequest, Reply};
use crate::defenses::stock_gate;
use crate::domain::{IdempotencyKey, OrderNo};
use crate::error::ApiError;
use crate::flows::orders::{self as order_flow, OrderRequest};
use crate::startup::AppState;
use crate::store::orders;

pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

pub(super) fn idempotency_key_of(request: &HttpRequest) -> Result<IdempotencyKey, ApiError> {
    let header = request.headers().get(IDEMPOTENCY_KEY_HEADER);
    Ok(IdempotencyKey::from_header(
        header.map(|value| value.as_bytes()),
    )?)
}

/// `POST /api/orders` with `Idempotency-Key`: one order per intent.
#[post("/api/orders")]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key_of(&request)?;
    let (order, canonical_body) = OrderRequest::parse(&body)?;
    let keyed = KeyedRequest {
        user_id: user.user_id,
        key: &key,
        fingerprint: idempotency_key::fingerprint("POST", "/api/orders", &canonical_body),
    };
    // 1. idempotency_key, fast path: a completed key's answer from the cache.
    if let Some(stored) = idempotency_key::cached_answer(&state, &keyed).await? {
        return Ok(stored.replay());
    }
    // 2. stock_gate, fast path: a sold-out product is answered from the key
    //    store, before any database work.
    if stock_gate::is_sold_out(&state, order.product_id, order.quantity.get()).await? {
        let sold_out = Reply::problem(&ApiError::SoldOutAtGate);
        return Ok(idempotency_key::remember(&state, &keyed, sold_out).await);
    }
    // 3. idempotency_key: the key row decides which request runs.
    let lease = match idempotency_key::admit_in_database(&state, &keyed).await? {
        Admission::Replay(stored) => return Ok(stored.replay()),
        Admission::Run(lease) => lease,
    };
    // 4. stock_gate (the unit), unique_index and version_lock act inside the flow.
    let outcome = order_flow::place_order(&state, user.user_id, &key, order).await;
    // 5. the outcome is stored with the key (or the key released).
    idempotency_key::finish(&state, lease, outcome).await
}

#[get("/api/orders")]
async fn list(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let orders = orders::list_for_user(&state.db, user.user_id).await?;
    let views: Vec<_> = orders.iter().map(|order| order.view()).collect();
    Ok(HttpResponse::Ok().json(json!({ "orders": views })))
}

#[get("/api/orders/{order_no}")]
async fn show(
    state: web::Data<AppState>,
    user: AuthUser,
    order_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order_no = OrderNo::parse(&order_no).ok_or(ApiError::OrderNotFound)?;
    let order = orders::find_for_user(&state.db, user.user_id, &order_no)
        .await?
        .ok_or(ApiError::OrderNotFound)?;
    Ok(HttpResponse::Ok().json(order.view()))
}
