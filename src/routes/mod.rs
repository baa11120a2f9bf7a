//! HTTP routes. Handlers are thin: parse, authorize, call a flow, each defense
//! one visible step in the order it applies.

mod admin;
mod health;
mod orders;
mod pages;
mod payments;
mod products;
mod request;
mod session;
mod static_files;

use actix_web::{HttpResponse, web};

use crate::error::ApiError;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(session::login)
        .service(products::list)
        .service(products::show)
        .service(orders::create)
        .service(orders::list)
        .service(orders::show)
        .service(payments::issue_token)
        .service(payments::pay)
        .service(payments::callback)
        .service(admin::audit)
        .service(admin::public_defenses)
        .service(admin::get_defenses)
        .service(admin::put_defenses)
        .service(admin::reset)
        .service(admin::get_psp)
        .service(admin::put_psp)
        .service(admin::get_faults)
        .service(admin::put_faults)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(pages::index)
        .service(pages::orders_page)
        .service(pages::order_page)
        .service(pages::lab)
        .service(session::me)
        .service(session::logout)
        .service(pages::problem)
        .service(static_files::asset)
        .default_service(web::to(not_found));
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

pub fn json_config() -> web::JsonConfig {
    // JSON bodies are read whatever their Content-Type says (curl users forget it).
    web::JsonConfig::default()
        .limit(64 * 1024)
        .content_type_required(false)
        .error_handler(|error, _| ApiError::MalformedBody(error.to_string()).into())
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into())
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|error, _| ApiError::InvalidRequest(error.to_string()).into())
}
