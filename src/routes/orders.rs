//! Orders: placing one (keyed, defended) and reading the caller's own.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::defenses::idempotency_key::{self, Entry, KeyedRequest};
use crate::domain::OrderNo;
use crate::error::ApiError;
use crate::flows::front_door::{self, FrontDoor};
use crate::flows::keyed;
use crate::flows::orders::{self as order_flow, Buyer, OrderRequest, OrderRequestBody};
use crate::routes::request::{IdempotencyKeyHeader, idempotency_key_of};
use crate::state::AppState;
use crate::store::orders::{self, OrderView};

/// `POST /api/orders` with `Idempotency-Key`: one order per intent. A retry
/// with the same key and body gets the first answer again (`Idempotent-Replayed:
/// true`), whether that was the order or a refusal such as `sold_out`.
#[utoipa::path(
    tag = "orders",
    operation_id = "create_order",
    security(("login" = []), ("session_cookie" = [])),
    params(IdempotencyKeyHeader),
    request_body = OrderRequestBody,
    responses(
        (status = 201, description = "The order (first answer or replay)", body = OrderView),
    ),
)]
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
    // 1+2. One round trip to the key store: idempotency_key's cached answer
    //      (a replay), and stock_gate's sold-out fast path (a loser never
    //      touches the database; its answer is cached for its retry).
    match front_door::check(&state, &keyed, order).await? {
        FrontDoor::Replay(stored) => return Ok(stored.replay()),
        FrontDoor::SoldOut(reply) => return Ok(reply.into_response()),
        FrontDoor::SoldOutForNow => return Err(ApiError::SoldOutForNow),
        FrontDoor::Open => {}
    }
    // 3. idempotency_key: a concurrent duplicate is told 409 (in-flight mark),
    //    a committed one is replayed (key row), a new one runs.
    let flight = match state.keys.enter(&keyed).await? {
        Entry::Replay(stored) => return Ok(stored.replay()),
        Entry::Run(flight) => flight,
    };
    // 4. stock_gate (the unit), then one transaction: the key row,
    //    unique_index, version_lock, the answer stored with the key.
    let buyer = Buyer {
        keyed: &keyed,
        flight: &flight,
    };
    let outcome = order_flow::place_order(&state, buyer, order).await;
    // 5. the answer is sent (and recorded, when the transaction did not).
    keyed::finish_in_one_commit(&state.keys, &keyed, flight, outcome).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList<'a> {
    orders: Vec<OrderView<'a>>,
}

/// The caller's orders, newest first.
#[utoipa::path(
    tag = "orders",
    security(("login" = []), ("session_cookie" = [])),
    operation_id = "list_orders",
    responses((status = 200, description = "The caller's orders", body = OrderList)),
)]
#[get("/api/orders")]
async fn list(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let orders = orders::list_for_user(state.db.pool(), user.user_id).await?;
    let orders = orders.iter().map(|order| order.view()).collect();
    Ok(HttpResponse::Ok().json(OrderList { orders }))
}

/// One of the caller's orders (another user's is `order_not_found`).
#[utoipa::path(
    tag = "orders",
    security(("login" = []), ("session_cookie" = [])),
    operation_id = "show_order",
    responses((status = 200, description = "The order", body = OrderView)),
)]
#[get("/api/orders/{order_no}")]
async fn show(
    state: web::Data<AppState>,
    user: AuthUser,
    order_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order_no = OrderNo::parse(&order_no).ok_or(ApiError::OrderNotFound)?;
    let order = orders::find_for_user(state.db.pool(), user.user_id, &order_no)
        .await?
        .ok_or(ApiError::OrderNotFound)?;
    Ok(HttpResponse::Ok().json(order.view()))
}
