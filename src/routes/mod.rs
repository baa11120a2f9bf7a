//! HTTP routes. Handlers are thin: parse, authorize, call a flow, each defense
//! one visible step in the order it applies.

mod admin;
mod health;
mod lab;
mod learn;
mod orders;
mod pages;
mod payments;
mod products;
mod request;
mod session;
mod static_files;
mod viewer;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::state::AppState;
use crate::trace::{self, SEPARATOR, TRACE_HEADER};

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
        .service(learn::index)
        .service(learn::interview)
        .service(learn::lesson)
        .service(learn::problem)
        .service(lab::list)
        .service(lab::run)
        .service(lab::get_settings)
        .service(lab::put_settings)
        .service(static_files::asset)
        .default_service(web::to(not_found));
}

/// Middleware: while the lab traces, every answer carries the path it took
/// through the layers in `Flashguard-Trace`.
pub async fn trace_when_on(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let tracing = request
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.switches.is_tracing());
    if !tracing {
        return next.call(request).await;
    }
    let (response, steps) = trace::traced(next.call(request)).await;
    let mut response = response?;
    if let Ok(value) = HeaderValue::from_str(&steps.join(SEPARATOR))
        && !steps.is_empty()
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static(TRACE_HEADER), value);
    }
    Ok(response)
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
