//! The API described as OpenAPI 3.1, generated from the handlers themselves
//! (`utoipa`): each handler's `#[utoipa::path]` gives its success answers and
//! bodies; the table below adds the problems each operation can answer with,
//! from the problem table (`problems.rs`), so status, title and `Retry-After`
//! are written once. Served at `/api/openapi.json`, rendered at `/api/docs`;
//! CI points schemathesis at it (docs/design.md §7).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::{HttpResponse, get};
use askama::Template;
use utoipa::openapi::link::{Link, LinkBuilder};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, header::HeaderBuilder};
use utoipa::{Modify, OpenApi};

use crate::auth::SESSION_COOKIE;
use crate::problems::{PROBLEM_CONTENT_TYPE, ProblemCode};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flashguard",
        description = "A flash-sale (秒杀) order and payment API that keeps every write idempotent \
            under concurrency. Every error is problem details (application/problem+json) with a \
            stable `code`; `/learn/problems/<code>` explains each.",
    ),
    paths(
        super::session::login,
        super::session::logout,
        super::session::me,
        super::products::list,
        super::products::show,
        super::orders::create,
        super::orders::list,
        super::orders::show,
        super::payments::issue_token,
        super::payments::pay,
        super::payments::callback,
        super::notifications::alipay_notification,
        super::notifications::wechatpay_notification,
        super::admin::reconciliation,
        super::admin::messages,
        super::admin::audit,
        super::admin::public_defenses,
        super::admin::get_defenses,
        super::admin::put_defenses,
        super::admin::reset,
        super::admin::get_psp,
        super::admin::put_psp,
        super::admin::get_faults,
        super::admin::put_faults,
        super::lab::get_settings,
        super::lab::put_settings,
        super::lab::list,
        super::lab::run,
        super::simulator::start,
        super::simulator::list,
        super::simulator::show,
        super::simulator::events,
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
    ),
    components(schemas(crate::error::Problem, ProblemCode)),
    modifiers(&Problems),
)]
pub struct ApiDoc;

/// Who may call an operation; it decides the 401s it can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    /// A login token (bearer) or the session cookie.
    User,
    /// Optional: without one, only the cookie is forgotten.
    MaybeUser,
    /// The admin token (bearer).
    Admin,
}

use Access::{Admin, MaybeUser, Public, User};
use ProblemCode as P;

const KEYED: &[ProblemCode] = &[
    P::IdempotencyKeyMissing,
    P::IdempotencyKeyInvalid,
    P::IdempotencyKeyReused,
    P::RequestInProgress,
];

/// Every operation: who may call it, and the problems of its own business
/// (beyond those of its door: 401, 408, 413, 429, 500, 503, added for all).
const OPERATIONS: &[(&str, &str, Access, &[&[ProblemCode]])] = &[
    (
        "/api/login",
        "post",
        Public,
        &[&[P::MalformedBody, P::InvalidUsername]],
    ),
    ("/api/logout", "post", MaybeUser, &[]),
    ("/api/me", "get", User, &[]),
    ("/api/products", "get", Public, &[]),
    (
        "/api/products/{id}",
        "get",
        Public,
        &[&[P::ProductNotFound, P::NotFound]],
    ),
    (
        "/api/orders",
        "post",
        User,
        &[
            KEYED,
            &[
                P::MalformedBody,
                P::InvalidQuantity,
                P::ProductNotFound,
                P::SoldOut,
                P::SaleNotStarted,
                P::BusyRetry,
            ],
        ],
    ),
    ("/api/orders", "get", User, &[]),
    (
        "/api/orders/{order_no}",
        "get",
        User,
        &[&[P::OrderNotFound]],
    ),
    (
        "/api/orders/{order_no}/payment-token",
        "post",
        User,
        &[&[P::OrderNotFound, P::OrderClosed]],
    ),
    (
        "/api/orders/{order_no}/pay",
        "post",
        User,
        &[
            KEYED,
            &[
                P::MalformedBody,
                P::InvalidRequest,
                P::OrderNotFound,
                P::PaymentTokenMissing,
                P::PaymentTokenInvalid,
                P::OrderLocked,
                P::OrderClosed,
                P::BusyRetry,
            ],
        ],
    ),
    (
        "/api/payments/callback",
        "post",
        Public,
        &[&[
            P::SignatureInvalid,
            P::SignatureExpired,
            P::MalformedBody,
            P::InvalidRequest,
            P::OrderNotFound,
        ]],
    ),
    (
        "/api/payments/callback/alipay",
        "post",
        Public,
        &[&[
            P::SignatureInvalid,
            P::MalformedBody,
            P::InvalidRequest,
            P::MerchantMismatch,
            P::AmountMismatch,
            P::PaymentUnknown,
        ]],
    ),
    // Refusals answer in WeChat Pay's own format, described by the handler.
    ("/api/payments/callback/wechatpay", "post", Public, &[]),
    (
        "/api/admin/reconciliation",
        "get",
        Admin,
        &[&[P::InvalidRequest]],
    ),
    ("/api/admin/messages", "get", Admin, &[]),
    ("/api/audit", "get", Public, &[]),
    ("/api/defenses", "get", Public, &[]),
    ("/api/admin/defenses", "get", Admin, &[]),
    (
        "/api/admin/defenses",
        "put",
        Admin,
        &[&[P::MalformedBody, P::UnknownDefense]],
    ),
    (
        "/api/admin/reset",
        "post",
        Admin,
        &[&[P::MalformedBody, P::InvalidRequest]],
    ),
    ("/api/admin/psp", "get", Admin, &[]),
    (
        "/api/admin/psp",
        "put",
        Admin,
        &[&[P::MalformedBody, P::InvalidRequest]],
    ),
    ("/api/admin/faults", "get", Admin, &[]),
    ("/api/admin/faults", "put", Admin, &[&[P::MalformedBody]]),
    ("/api/admin/lab", "get", Admin, &[]),
    (
        "/api/admin/lab",
        "put",
        Admin,
        &[&[P::MalformedBody, P::InvalidRequest]],
    ),
    ("/api/lab/experiments", "get", Public, &[]),
    (
        "/api/lab/experiments/{id}/run",
        "post",
        Admin,
        &[&[
            P::MalformedBody,
            P::InvalidRequest,
            P::NotFound,
            P::ExperimentRunning,
            P::ExperimentUnavailable,
        ]],
    ),
    (
        "/api/lab/simulations",
        "post",
        Admin,
        &[&[P::MalformedBody, P::InvalidRequest, P::SimulationRunning]],
    ),
    ("/api/lab/simulations", "get", Admin, &[]),
    ("/api/lab/simulations/{id}", "get", Admin, &[&[P::NotFound]]),
    (
        "/api/lab/simulations/{id}/events",
        "get",
        Admin,
        &[&[P::NotFound]],
    ),
    ("/healthz", "get", Public, &[]),
    ("/readyz", "get", Public, &[]),
    ("/metrics", "get", Admin, &[]),
];

/// Adds the security schemes and, to every operation, the problems it can answer.
struct Problems;

impl Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.license = None;
        add_security_schemes(openapi);
        add_links(openapi);
        for (path, method, access, codes) in OPERATIONS {
            let Some(operation) = openapi
                .paths
                .paths
                .get_mut(*path)
                .and_then(|item| operation_mut(item, method))
            else {
                continue;
            };
            let mut all: Vec<ProblemCode> = codes.iter().flat_map(|c| c.iter().copied()).collect();
            all.extend(door_problems(path, method, *access));
            add_problem_responses(operation, &all);
            add_answer_headers(operation, codes.contains(&KEYED));
        }
    }
}

/// `Flashguard-Defense` on every answer (the defense that produced it, when
/// one did); `Idempotent-Replayed` on every answer of a keyed operation (any
/// stored answer, 201 or a refusal, can be a replay).
fn add_answer_headers(operation: &mut Operation, keyed: bool) {
    let text_header = |description: &str| {
        HeaderBuilder::new()
            .schema(utoipa::openapi::schema::Object::with_type(
                utoipa::openapi::schema::Type::String,
            ))
            .description(Some(description))
            .build()
    };
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        response.headers.insert(
            "Flashguard-Defense".to_string(),
            text_header("The defense that produced this answer (an id of GET /api/defenses)"),
        );
        if keyed {
            response.headers.insert(
                "Idempotent-Replayed".to_string(),
                text_header("`true`: the stored answer of this Idempotency-Key, sent again"),
            );
        }
    }
}

fn add_security_schemes(openapi: &mut utoipa::openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    let bearer = |format: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format(format)
                .build(),
        )
    };
    components.add_security_scheme("login", bearer("JWT"));
    components.add_security_scheme("admin", bearer("ADMIN_TOKEN"));
    components.add_security_scheme(
        "session_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))),
    );
}

/// A link: after `(path, method)` answered `status`, the client may call
/// `target` with these parameters (and body) taken from that answer.
struct LinkRow {
    from: (&'static str, &'static str, &'static str),
    name: &'static str,
    target: &'static str,
    parameters: &'static [(&'static str, &'static str)],
    body: Option<&'static str>,
}

/// The purchase as a client walks it, for readers and for the fuzzer's
/// stateful phase: buy a product of the list → read the order, get a payment
/// token → pay with it.
const LINKS: &[LinkRow] = &[
    LinkRow {
        from: ("/api/products", "get", "200"),
        name: "BuyTheFirst",
        target: "create_order",
        parameters: &[],
        body: Some(r#"{"product_id": "$response.body#/products/0/id", "quantity": 1}"#),
    },
    LinkRow {
        from: ("/api/orders", "post", "201"),
        name: "ReadTheOrder",
        target: "show_order",
        parameters: &[("path.order_no", "$response.body#/order_no")],
        body: None,
    },
    LinkRow {
        from: ("/api/orders", "post", "201"),
        name: "GetAPaymentToken",
        target: "issue_payment_token",
        parameters: &[("path.order_no", "$response.body#/order_no")],
        body: None,
    },
    LinkRow {
        from: ("/api/orders/{order_no}/payment-token", "post", "200"),
        name: "PayWithTheToken",
        target: "pay_order",
        parameters: &[
            ("path.order_no", "$request.path.order_no"),
            ("header.Payment-Token", "$response.body#/token"),
        ],
        body: None,
    },
];

fn add_links(openapi: &mut utoipa::openapi::OpenApi) {
    for row in LINKS {
        let (path, method, status) = row.from;
        let response = openapi
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| operation_mut(item, method))
            .and_then(|operation| operation.responses.responses.get_mut(status));
        if let Some(RefOr::T(response)) = response {
            response
                .links
                .insert(row.name.to_string(), RefOr::T(built(row)));
        }
    }
}

fn built(row: &LinkRow) -> Link {
    let body = row
        .body
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok());
    row.parameters
        .iter()
        .fold(LinkBuilder::new(), |link, (name, value)| {
            link.parameter(*name, *value)
        })
        .operation_id(row.target)
        .request_body(body)
        .build()
}

fn operation_mut<'a>(item: &'a mut PathItem, method: &str) -> Option<&'a mut Operation> {
    match method {
        "get" => item.get.as_mut(),
        "post" => item.post.as_mut(),
        "put" => item.put.as_mut(),
        _ => None,
    }
}

/// The problems of the door every request of this kind passes.
fn door_problems(path: &str, method: &str, access: Access) -> Vec<ProblemCode> {
    let mut codes = vec![P::InternalError];
    if path.starts_with("/api/") {
        codes.push(P::DependencyUnavailable);
    }
    match access {
        User | MaybeUser => codes.extend([P::Unauthorized, P::TokenExpired, P::TokenRevoked]),
        Admin => codes.push(P::AdminUnauthorized),
        Public => {}
    }
    if method != "get" {
        codes.extend([P::RequestTimeout, P::PayloadTooLarge, P::RateLimited]);
    }
    codes
}

/// One response per status, naming its codes; kept when the handler described it.
fn add_problem_responses(operation: &mut Operation, codes: &[ProblemCode]) {
    let mut by_status: BTreeMap<u16, Vec<ProblemCode>> = BTreeMap::new();
    for code in codes {
        let list = by_status.entry(code.spec().status).or_default();
        if !list.contains(code) {
            list.push(*code);
        }
    }
    for (status, codes) in by_status {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(problem_response(&codes)));
    }
}

fn problem_response(codes: &[ProblemCode]) -> Response {
    let names: Vec<String> = codes
        .iter()
        .map(|code| format!("`{}` ({})", code.as_str(), code.spec().title.en))
        .collect();
    let mut response = ResponseBuilder::new()
        .description(format!("Problem details: {}", names.join("; ")))
        .content(
            PROBLEM_CONTENT_TYPE,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        );
    if codes
        .iter()
        .any(|code| code.spec().retry_after_secs.is_some())
    {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(utoipa::openapi::schema::Object::with_type(
                    utoipa::openapi::schema::Type::Integer,
                ))
                .description(Some("Seconds to wait before the retry"))
                .build(),
        );
    }
    response.build()
}

/// The description, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// The description as JSON, serialised once. utoipa 5.5 writes a link's
/// fields in snake_case (`operation_id`), where OpenAPI says `operationId`;
/// they are renamed here.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut value = serde_json::to_value(document()).unwrap_or_default();
        rename_link_fields(&mut value);
        value.to_string()
    })
}

fn rename_link_fields(value: &mut serde_json::Value) {
    let Some(paths) = value.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (from, to) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(field) = link.remove(from) {
                link.insert(to.to_string(), field);
            }
        }
    }
}

#[get("/api/openapi.json")]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}

#[derive(Template)]
#[template(path = "api_docs.html")]
struct ApiDocsPage {
    operations: Vec<OperationCard>,
}

/// One operation as `/api/docs` shows it.
struct OperationCard {
    method: String,
    path: String,
    summary: String,
    description: String,
    headers: Vec<String>,
    responses: Vec<(String, String)>,
}

#[get("/api/docs")]
async fn docs_page() -> Result<HttpResponse, crate::error::ApiError> {
    let page = ApiDocsPage {
        operations: operation_cards(document()),
    };
    let html = page
        .render()
        .map_err(|error| crate::error::ApiError::Internal(format!("api docs: {error}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

fn operation_cards(document: &utoipa::openapi::OpenApi) -> Vec<OperationCard> {
    let mut cards = Vec::new();
    for (path, item) in &document.paths.paths {
        for (method, operation) in [("GET", &item.get), ("POST", &item.post), ("PUT", &item.put)] {
            if let Some(operation) = operation {
                cards.push(card(method, path, operation));
            }
        }
    }
    cards
}

fn card(method: &str, path: &str, operation: &Operation) -> OperationCard {
    let headers = operation
        .parameters
        .iter()
        .flatten()
        .filter(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Header)
        .map(|p| p.name.clone())
        .collect();
    let responses = operation
        .responses
        .responses
        .iter()
        .map(|(status, response)| {
            let description = match response {
                RefOr::T(response) => response.description.clone(),
                RefOr::Ref(reference) => reference.ref_location.clone(),
            };
            (status.clone(), description)
        })
        .collect();
    OperationCard {
        method: method.to_string(),
        path: path.to_string(),
        summary: operation.summary.clone().unwrap_or_default(),
        description: operation.description.clone().unwrap_or_default(),
        headers,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation<'a>(path: &str, method: &str) -> Option<&'a Operation> {
        let item = document().paths.paths.get(path)?;
        match method {
            "GET" => item.get.as_ref(),
            "POST" => item.post.as_ref(),
            "PUT" => item.put.as_ref(),
            _ => None,
        }
    }

    #[test]
    fn every_api_route_and_method_is_described() {
        for (path, methods) in super::super::ROUTES {
            let itself = ["/api/openapi.json", "/api/docs"].contains(path);
            let described = (path.starts_with("/api/") && !itself)
                || ["/healthz", "/readyz", "/metrics"].contains(path);
            if !described {
                continue;
            }
            for method in methods.split(", ") {
                assert!(
                    operation(path, method).is_some(),
                    "{method} {path} is not in the description"
                );
            }
        }
    }

    #[test]
    fn every_described_operation_is_a_route() {
        for (path, item) in &document().paths.paths {
            let methods = [("GET", &item.get), ("POST", &item.post), ("PUT", &item.put)];
            for (method, operation) in methods {
                if operation.is_some() {
                    assert!(
                        super::super::ROUTES
                            .iter()
                            .any(|(route, allowed)| route == path
                                && allowed.split(", ").any(|m| m == method)),
                        "{method} {path} is described but not in ROUTES"
                    );
                }
            }
        }
    }

    #[test]
    fn the_problem_table_names_only_described_operations() {
        for (path, method, _, _) in OPERATIONS {
            assert!(
                operation(path, &method.to_uppercase()).is_some(),
                "{method} {path}"
            );
        }
        let described: usize = document()
            .paths
            .paths
            .values()
            .map(|item| {
                [&item.get, &item.post, &item.put]
                    .iter()
                    .filter(|o| o.is_some())
                    .count()
            })
            .sum();
        assert_eq!(described, OPERATIONS.len(), "every operation has its row");
    }

    #[test]
    fn links_name_their_target_as_openapi_spells_it() {
        let json: serde_json::Value = serde_json::from_str(document_json()).expect("JSON");
        let link =
            &json["paths"]["/api/orders"]["post"]["responses"]["201"]["links"]["ReadTheOrder"];
        assert_eq!(link["operationId"], "show_order", "{link}");
        assert!(link.get("operation_id").is_none());
    }

    #[test]
    fn documented_bounds_are_the_ones_the_code_checks() {
        use crate::store::products::{
            MAX_NAME_CHARS, MAX_PRICE_CENTS, MAX_STARTS_IN_SECS, MAX_STOCK,
        };
        let json: serde_json::Value = serde_json::from_str(document_json()).expect("JSON");
        let schemas = &json["components"]["schemas"];
        let product = &schemas["NewProduct"]["properties"];
        assert_eq!(product["name"]["maxLength"], MAX_NAME_CHARS);
        assert_eq!(product["price_cents"]["maximum"], MAX_PRICE_CENTS);
        assert_eq!(product["stock"]["maximum"], MAX_STOCK);
        assert_eq!(product["starts_in_secs"]["maximum"], MAX_STARTS_IN_SECS);
        let psp = &schemas["PspBehaviourPatch"]["properties"];
        assert_eq!(psp["callbacks"]["maximum"], crate::psp::MAX_CALLBACKS);
        assert_eq!(psp["delay_ms"]["maximum"], crate::psp::MAX_DELAY_MS);
        let event = &schemas["ProviderEvent"]["properties"];
        assert_eq!(
            event["payment_no"]["maxLength"],
            crate::psp::MAX_EVENT_ID_LEN
        );
        let order = &schemas["OrderRequestBody"]["properties"]["quantity"];
        assert_eq!(order["maximum"], crate::domain::Quantity::MAX);
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut ids: Vec<_> = document()
            .paths
            .paths
            .values()
            .flat_map(|item| [&item.get, &item.post, &item.put])
            .flatten()
            .filter_map(|operation| operation.operation_id.clone())
            .collect();
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "{ids:?}");
        assert_eq!(count, OPERATIONS.len(), "every operation has an id");
    }

    #[test]
    fn keyed_operations_document_the_key_and_its_problems() {
        for path in ["/api/orders", "/api/orders/{order_no}/pay"] {
            let operation = operation(path, "POST").expect("described");
            let names: Vec<_> = operation
                .parameters
                .iter()
                .flatten()
                .map(|p| p.name.as_str())
                .collect();
            assert!(names.contains(&"Idempotency-Key"), "{path}: {names:?}");
            let created = operation.responses.responses.values().next();
            let Some(RefOr::T(answer)) = created else {
                panic!("{path}: a described answer");
            };
            assert!(answer.headers.contains_key("Idempotent-Replayed"), "{path}");
            assert!(answer.headers.contains_key("Flashguard-Defense"), "{path}");
            for status in ["400", "409", "422", "429", "503"] {
                assert!(
                    operation.responses.responses.contains_key(status),
                    "{path} {status}"
                );
            }
        }
    }

    #[test]
    fn the_docs_page_lists_every_operation() {
        let html = ApiDocsPage {
            operations: operation_cards(document()),
        }
        .render()
        .expect("renders");
        assert!(html.contains("/api/orders/{order_no}/pay"));
        assert!(html.contains("Idempotency-Key"));
        assert!(html.contains("sold_out"));
    }
}
