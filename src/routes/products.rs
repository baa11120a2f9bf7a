//! The catalogue with live stock. Naturally idempotent (GET): no defense needed.

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::products;

#[get("/api/products")]
async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let products = products::list(state.db.pool()).await?;
    Ok(HttpResponse::Ok().json(json!({ "products": products })))
}

#[get("/api/products/{id}")]
async fn show(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let product = products::find(state.db.pool(), id)
        .await?
        .ok_or(ApiError::ProductNotFound(id))?;
    Ok(HttpResponse::Ok().json(product))
}
