//! Orders: placing one (keyed, defended) and reading the caller's own.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::domain::OrderNo;
use crate::error::ApiError;
use crate::flows::orders::batch::OrderBatches;
use crate::flows::orders::{self as order_flow, OrderRequestBody};
use crate::routes::answer;
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
    batches: web::Data<OrderBatches>,
    user: AuthUser,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key_of(&request)?;
    let answered = order_flow::place(&state, &batches, user.user_id, &key, &body).await?;
    Ok(answer::respond(answered))
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
