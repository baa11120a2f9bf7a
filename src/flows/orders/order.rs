//! What every step of placing an order shares: the request as parsed, the
//! buyer, the [`Outcome`] both transaction paths end in, the order row to
//! insert and its 201 answer.

use actix_web::http::StatusCode;
use serde::Deserialize;

use crate::defenses::idempotency_key::{InFlight, KeyedRequest, Reply};
use crate::domain::{IdempotencyKey, Quantity};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::orders::{NewOrder, Order};
use crate::store::products::StockSnapshot;
use crate::switches::Defense;

/// The body of `POST /api/orders`, as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequestBody {
    /// A product of `GET /api/products`.
    #[schema(example = 1)]
    pub product_id: i64,
    /// A flash sale sells 1 to 10 units per order.
    #[schema(minimum = 1, maximum = 10)]
    pub quantity: i64,
}

/// A parsed order request: only valid values.
#[derive(Debug, Clone, Copy)]
pub struct OrderRequest {
    pub product_id: i64,
    pub quantity: Quantity,
}

impl OrderRequest {
    /// Parses the raw body; returns the canonical JSON (for the fingerprint) too.
    pub fn parse(body: &[u8]) -> Result<(Self, serde_json::Value), ApiError> {
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|error| ApiError::MalformedBody(error.to_string()))?;
        let raw = OrderRequestBody::deserialize(&json)
            .map_err(|error| ApiError::MalformedBody(error.to_string()))?;
        let request = Self {
            product_id: raw.product_id,
            quantity: Quantity::parse(raw.quantity)?,
        };
        Ok((request, json))
    }
}

/// Who places the order, and under which key.
#[derive(Debug, Clone, Copy)]
pub struct Buyer<'a> {
    pub keyed: &'a KeyedRequest<'a>,
    pub flight: &'a InFlight,
}

/// What one order's transaction did, alone or in a batch.
#[derive(Debug)]
pub enum Outcome {
    /// Committed: the order, its units, the key row with this answer.
    Placed(Reply),
    /// Committed: the key row with this refusal (too little stock left).
    Refused(Reply),
    /// The unique index already holds an order for this (user, key); nothing
    /// of this request was kept.
    Duplicate,
    /// Another request committed this key first; nothing of this request was kept.
    KeyTakenBefore,
}

/// The order row to insert, priced from the stock row that was read.
pub(super) fn new_order<'a>(
    state: &AppState,
    user_id: i64,
    key: &'a IdempotencyKey,
    read: &StockSnapshot,
    quantity: i64,
) -> Result<NewOrder<'a>, ApiError> {
    let amount_cents = read
        .price_cents
        .checked_mul(quantity)
        .ok_or_else(|| ApiError::InvalidRequest("the order's amount is too large".into()))?;
    Ok(NewOrder {
        user_id,
        product_id: read.id,
        quantity,
        amount_cents,
        idempotency_key: key.as_str(),
        guarded: crate::defenses::unique_index::guards_insert(&state.switches),
    })
}

/// The 201 answer: the order.
pub(super) fn created(order: &Order, defense: Option<Defense>) -> Result<Reply, ApiError> {
    Ok(Reply::json(StatusCode::CREATED, &order.view(), defense)?)
}
