//! Placing an order in the flash sale.
//!
//! The stock gate answers repeats and losers from Redis; winners read the stock
//! row, then in one transaction insert the order (the
//! `unique_index` defense catches a duplicate here, before the hot row is
//! touched) and takes the stock (`version_lock`). A version conflict rolls back
//! and retries with jitter; a sold-out product is a business outcome.

use actix_web::http::StatusCode;
use serde::Deserialize;

use crate::defenses::Defense;
use crate::defenses::idempotency_key::Reply;
use crate::defenses::stock_gate::{self, Decision};
use crate::defenses::unique_index::{self, OnUniqueViolation};
use crate::defenses::version_lock::{self, Take};
use crate::domain::{IdempotencyKey, Quantity};
use crate::error::ApiError;
use crate::metrics;
use crate::startup::AppState;
use crate::store::now_ms;
use crate::store::orders::{self, NewOrder, Order};
use crate::store::products::{self, StockSnapshot};

/// The body of `POST /api/orders`, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequestBody {
    pub product_id: i64,
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
        let raw: OrderRequestBody = serde_json::from_value(json.clone())
            .map_err(|error| ApiError::MalformedBody(error.to_string()))?;
        let request = Self {
            product_id: raw.product_id,
            quantity: Quantity::parse(raw.quantity)?,
        };
        Ok((request, json))
    }
}

/// Places the order for (user, key) and renders the reply (201 + the order).
#[tracing::instrument(skip_all, fields(user_id, product_id = request.product_id))]
pub async fn place_order(
    state: &AppState,
    user_id: i64,
    key: &IdempotencyKey,
    request: OrderRequest,
) -> Result<Reply, ApiError> {
    let quantity = request.quantity.get();
    // stock_gate: a repeat of this (user, key) or a loser stops here; a winner
    // takes its unit and goes on.
    let pass = match stock_gate::admit(state, request.product_id, user_id, key, quantity).await? {
        Decision::Pass(pass) => pass,
        Decision::Repeat => return repeat_at_gate(state, user_id, key).await,
    };
    let outcome = place_in_database(state, user_id, key, request).await;
    if let Some(pass) = pass
        && !matches!(
            outcome,
            Ok(Placed {
                new_order: true,
                ..
            })
        )
    {
        stock_gate::give_back(state, pass).await;
    }
    outcome.map(|placed| placed.reply)
}

/// The database's answer, and whether it created an order (else the gate's
/// unit goes back).
struct Placed {
    reply: Reply,
    new_order: bool,
}

/// The gate saw this (user, key) before: its order, or "still in progress".
async fn repeat_at_gate(
    state: &AppState,
    user_id: i64,
    key: &IdempotencyKey,
) -> Result<Reply, ApiError> {
    match orders::find_by_key(&state.db, user_id, key.as_str()).await? {
        Some(order) => Ok(created(&order, Some(Defense::StockGate))),
        None => Err(ApiError::RepeatAtGate),
    }
}

/// Reads the stock row and places the order under the version lock, with retries.
async fn place_in_database(
    state: &AppState,
    user_id: i64,
    key: &IdempotencyKey,
    request: OrderRequest,
) -> Result<Placed, ApiError> {
    let quantity = request.quantity.get();
    let settings = &state.settings.version_lock;
    for attempt in 0..=settings.max_retries {
        if attempt > 0 {
            version_lock::back_off(settings, attempt - 1).await;
        }
        // Few writers per stock row at once: read and write inside the permit.
        let _writer = state
            .row_admission
            .enter(request.product_id, settings.per_product_writers)
            .await;
        let snapshot = products::stock_snapshot(&state.db, request.product_id)
            .await?
            .ok_or(ApiError::ProductNotFound(request.product_id))?;
        if snapshot
            .sale_starts_at
            .is_some_and(|starts| starts > now_ms())
        {
            return Err(ApiError::SaleNotStarted);
        }
        if snapshot.stock < quantity {
            return Err(ApiError::SoldOut);
        }
        version_lock::race_window(&state.switches, &state.settings).await;
        match try_place(state, user_id, key, &snapshot, quantity).await? {
            Attempt::Placed(order) => {
                return Ok(Placed {
                    reply: created(&order, None),
                    new_order: true,
                });
            }
            Attempt::Duplicate => {
                return Ok(Placed {
                    reply: existing_order(state, user_id, key).await?,
                    new_order: false,
                });
            }
            Attempt::Conflict => {
                metrics::count(metrics::VERSION_CONFLICTS);
                continue;
            }
        }
    }
    tracing::warn!("version-lock retry budget exhausted");
    metrics::count(metrics::RETRIES_EXHAUSTED);
    Err(ApiError::BusyRetry {
        retry_after_secs: 1,
    })
}

enum Attempt {
    Placed(Order),
    /// The unique index refused the insert: this intent already has an order.
    Duplicate,
    /// The stock row changed since we read it.
    Conflict,
}

/// One transaction: insert the order, then take the stock.
async fn try_place(
    state: &AppState,
    user_id: i64,
    key: &IdempotencyKey,
    snapshot: &StockSnapshot,
    quantity: i64,
) -> Result<Attempt, ApiError> {
    let mut tx = state.db.pool().begin().await?;
    let new_order = NewOrder {
        user_id,
        product_id: snapshot.id,
        quantity,
        amount_cents: snapshot.price_cents * quantity,
        idempotency_key: key.as_str(),
        guarded: unique_index::guards_insert(&state.switches),
    };
    let Some(order) = orders::insert(&mut tx, &new_order)
        .await
        .map(Some)
        .on_unique_violation(|| None)?
    else {
        tx.rollback().await?;
        return Ok(Attempt::Duplicate);
    };
    match version_lock::take_stock(&mut tx, &state.switches, snapshot, quantity).await? {
        Take::Taken => {
            tx.commit().await?;
            Ok(Attempt::Placed(order))
        }
        Take::VersionConflict => {
            tx.rollback().await?;
            Ok(Attempt::Conflict)
        }
    }
}

/// The answer for a duplicate caught by the unique index: the order that won.
async fn existing_order(
    state: &AppState,
    user_id: i64,
    key: &IdempotencyKey,
) -> Result<Reply, ApiError> {
    let order = orders::find_guarded_by_key(&state.db, user_id, key.as_str())
        .await?
        .ok_or_else(|| ApiError::Internal("unique violation without a winning order".into()))?;
    Ok(created(&order, Some(Defense::UniqueIndex)))
}

fn created(order: &Order, defense: Option<Defense>) -> Reply {
    let body = serde_json::to_string(&order.view()).unwrap_or_default();
    Reply::json(StatusCode::CREATED, body, defense)
}
