//! The catalogue with live stock. Naturally idempotent (GET): no defense needed.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::products::{self, Product};

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductList {
    pub products: Vec<Product>,
}

/// Every product with its live stock.
#[utoipa::path(
    tag = "catalogue",
    operation_id = "list_products",
    responses((status = 200, description = "The catalogue", body = ProductList)),
)]
#[get("/api/products")]
async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let products = products::list(state.db.pool()).await?;
    Ok(HttpResponse::Ok().json(ProductList { products }))
}

/// One product with its live stock.
#[utoipa::path(
    tag = "catalogue",
    operation_id = "show_product",
    responses((status = 200, description = "The product", body = Product)),
)]
#[get("/api/products/{id}")]
async fn show(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let product = products::find(state.db.pool(), id)
        .await?
        .ok_or(ApiError::ProductNotFound(id))?;
    Ok(HttpResponse::Ok().json(product))
}
