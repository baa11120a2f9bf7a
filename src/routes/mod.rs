//! HTTP routes. Handlers are thin: parse, authorize, call a flow, each defense
//! one visible step in the order it applies.

mod admin;
mod answer;
pub mod deadline;
mod health;
mod lab;
mod learn;
mod notifications;
pub mod openapi;
mod orders;
mod pages;
mod payments;
mod products;
mod request;
mod session;
mod simulator;
mod static_files;
mod viewer;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{
    ALLOW, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use actix_web::cookie::{Cookie, SameSite};

use crate::error::ApiError;
use crate::problems::PROBLEM_CONTENT_TYPE;
use crate::state::AppState;
use crate::text::Lang;
use crate::trace::{self, SEPARATOR, TRACE_HEADER};

pub fn configure(config: &mut web::ServiceConfig) {
    configure_api(config);
    configure_operations(config);
    configure_pages(config);
    config.default_service(web::to(not_found));
}

/// The sale: session, catalogue, orders, payments.
fn configure_api(config: &mut web::ServiceConfig) {
    config
        .service(session::login)
        .service(session::me)
        .service(session::logout)
        .service(products::list)
        .service(products::show)
        .service(orders::create)
        .service(orders::list)
        .service(orders::show)
        .service(payments::issue_token)
        .service(payments::pay)
        .service(payments::callback)
        .service(notifications::alipay_notification)
        .service(notifications::wechatpay_notification)
        .service(admin::reconciliation)
        .service(admin::messages)
        .service(openapi::openapi_json)
        .service(openapi::docs_page);
}

/// Admin, lab and health.
fn configure_operations(config: &mut web::ServiceConfig) {
    config
        .service(admin::audit)
        .service(admin::public_defenses)
        .service(admin::get_defenses)
        .service(admin::put_defenses)
        .service(admin::reset)
        .service(admin::get_psp)
        .service(admin::put_psp)
        .service(admin::get_faults)
        .service(admin::put_faults)
        .service(lab::list)
        .service(lab::run)
        .service(lab::get_settings)
        .service(lab::put_settings)
        .service(simulator::start)
        .service(simulator::list)
        .service(simulator::show)
        .service(simulator::events)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics);
}

/// HTML pages and static files.
fn configure_pages(config: &mut web::ServiceConfig) {
    config
        .service(pages::index)
        .service(pages::orders_page)
        .service(pages::order_page)
        .service(pages::lab)
        .service(pages::simulator_page)
        .service(learn::index)
        .service(learn::interview)
        .service(learn::glossary)
        .service(learn::problems)
        .service(learn::topic)
        .service(learn::lesson)
        .service(learn::problem)
        .service(static_files::asset);
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

/// Middleware: a page asked for with `?lang=zh|en` remembers the choice in the
/// language cookie, so the pages reached from it stay in that language even
/// through a link that does not carry `?lang=`. Requests without a query pass
/// untouched.
pub async fn remember_lang(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let chosen = viewer::query_lang(request.query_string()).filter(|lang| {
        request
            .cookie(viewer::LANG_COOKIE)
            .is_none_or(|cookie| Lang::parse(cookie.value()) != Some(*lang))
    });
    let mut response = next.call(request).await?;
    if let Some(lang) = chosen {
        let cookie = Cookie::build(viewer::LANG_COOKIE, lang.code())
            .path("/")
            .max_age(actix_web::cookie::time::Duration::days(365))
            .same_site(SameSite::Lax)
            .finish();
        // A cookie that cannot be added leaves the page as it is.
        let _ = response.response_mut().add_cookie(&cookie);
    }
    Ok(response)
}

/// Every route and the methods it takes: what a 405 names in `Allow`
/// (`tests/api/hardening.rs`, `a_wrong_method_is_405_with_allow_on_every_route`,
/// asks every route with a method it does not take).
pub const ROUTES: &[(&str, &str)] = &[
    ("/api/login", "POST"),
    ("/api/logout", "POST"),
    ("/api/me", "GET"),
    ("/api/products", "GET"),
    ("/api/products/{id}", "GET"),
    ("/api/orders", "GET, POST"),
    ("/api/orders/{order_no}", "GET"),
    ("/api/orders/{order_no}/payment-token", "POST"),
    ("/api/orders/{order_no}/pay", "POST"),
    ("/api/payments/callback", "POST"),
    ("/api/payments/callback/alipay", "POST"),
    ("/api/payments/callback/wechatpay", "POST"),
    ("/api/admin/reconciliation", "GET"),
    ("/api/admin/messages", "GET"),
    ("/api/audit", "GET"),
    ("/api/defenses", "GET"),
    ("/api/admin/defenses", "GET, PUT"),
    ("/api/admin/reset", "POST"),
    ("/api/admin/psp", "GET, PUT"),
    ("/api/admin/faults", "GET, PUT"),
    ("/api/admin/lab", "GET, PUT"),
    ("/api/lab/experiments", "GET"),
    ("/api/lab/experiments/{id}/run", "POST"),
    ("/api/lab/simulations", "GET, POST"),
    ("/api/lab/simulations/{id}", "GET"),
    ("/api/lab/simulations/{id}/events", "GET"),
    ("/api/openapi.json", "GET"),
    ("/api/docs", "GET"),
    ("/healthz", "GET"),
    ("/readyz", "GET"),
    ("/metrics", "GET"),
    ("/", "GET"),
    ("/orders", "GET"),
    ("/orders/{order_no}", "GET"),
    ("/lab", "GET"),
    ("/lab/simulator", "GET"),
    ("/learn", "GET"),
    ("/learn/interview", "GET"),
    ("/learn/glossary", "GET"),
    ("/learn/problems", "GET"),
    ("/learn/topics/{id}", "GET"),
    ("/learn/defenses/{id}", "GET"),
    ("/learn/problems/{code}", "GET"),
    ("/static/{path:.*}", "GET"),
];

/// Nothing matched: 405 with `Allow` when the path exists under other methods,
/// else 404.
async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let path = request.path();
    let allowed = ROUTES
        .iter()
        .find(|(pattern, _)| ResourceDef::new(*pattern).is_match(path));
    match allowed {
        Some((_, methods)) => Err(ApiError::MethodNotAllowed {
            allow: (*methods).to_string(),
        }),
        None => learn::not_found_under_learn(&request).ok_or(ApiError::NotFound),
    }
}

/// Middleware: every non-2xx answer is problem details. Answers the handlers
/// give already are; this catches the ones made elsewhere (an extractor's
/// default error, the framework's own refusals) and keeps their status.
pub async fn problems_everywhere(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let response = next.call(request).await?;
    let status = response.status();
    // A handler's own answer is kept as it is: JSON (a problem, or /readyz
    // naming what fails), or a page (a missing lesson, shown to a browser).
    let is_ours = response.headers().get(CONTENT_TYPE).is_some_and(|value| {
        let value = value.as_bytes();
        value.starts_with(PROBLEM_CONTENT_TYPE.as_bytes())
            || value.starts_with(b"application/json")
            || value.starts_with(b"text/html")
    });
    if status.as_u16() < 400 || is_ours {
        return Ok(response.map_into_left_body());
    }
    let mut problem = problem_for(status).error_response();
    *problem.status_mut() = status;
    for name in [ALLOW, RETRY_AFTER, WWW_AUTHENTICATE] {
        if let Some(value) = response.headers().get(&name) {
            problem.headers_mut().insert(name, value.clone());
        }
    }
    let (request, _) = response.into_parts();
    Ok(ServiceResponse::new(request, problem).map_into_right_body())
}

/// The problem that stands for a bare error status.
fn problem_for(status: StatusCode) -> ApiError {
    match status.as_u16() {
        401 => ApiError::Unauthorized,
        404 => ApiError::NotFound,
        405 => ApiError::MethodNotAllowed {
            allow: String::new(),
        },
        408 => ApiError::RequestTimeout,
        413 => ApiError::PayloadTooLarge {
            limit_bytes: crate::limits::BODY_LIMIT,
        },
        429 => ApiError::RateLimited {
            retry_after_secs: 1,
        },
        400..=499 => ApiError::InvalidRequest(format!("the request could not be read ({status})")),
        _ => ApiError::Internal(format!("answered {status} outside the handlers")),
    }
}

pub fn json_config() -> web::JsonConfig {
    // JSON bodies are read whatever their Content-Type says (curl users forget it).
    web::JsonConfig::default()
        .limit(crate::limits::BODY_LIMIT)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::ROUTES;

    /// The handlers' sources, whose route attributes (`#[get("/api/me")]`)
    /// are the routes actix serves.
    const HANDLER_SOURCES: [&str; 13] = [
        include_str!("admin.rs"),
        include_str!("health.rs"),
        include_str!("lab.rs"),
        include_str!("learn.rs"),
        include_str!("notifications.rs"),
        include_str!("openapi.rs"),
        include_str!("orders.rs"),
        include_str!("pages.rs"),
        include_str!("payments.rs"),
        include_str!("products.rs"),
        include_str!("session.rs"),
        include_str!("simulator.rs"),
        include_str!("static_files.rs"),
    ];

    fn declared_routes() -> BTreeSet<(String, String)> {
        let mut declared = BTreeSet::new();
        for line in HANDLER_SOURCES.iter().flat_map(|source| source.lines()) {
            for method in ["get", "post", "put", "delete", "patch"] {
                let attribute = format!("#[{method}(\"");
                if let Some(rest) = line.trim().strip_prefix(&attribute)
                    && let Some(path) = rest.split('"').next()
                {
                    declared.insert((path.to_string(), method.to_uppercase()));
                }
            }
        }
        declared
    }

    /// `ROUTES` is written by hand for the 405 answer; this keeps it equal to
    /// the routes the handlers declare (the OpenAPI test keeps the description
    /// equal to it).
    #[test]
    fn routes_lists_exactly_the_routes_the_handlers_declare() {
        let listed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .split(", ")
                    .map(|method| (path.to_string(), method.to_string()))
            })
            .collect();
        assert_eq!(listed, declared_routes());
    }
}
