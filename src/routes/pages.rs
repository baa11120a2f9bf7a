//! HTML pages (askama templates under templates/, one base layout). Pages know the
//! user from the session cookie; their JavaScript (static/app.js) calls the JSON
//! API, where the browser defenses `button_disable` and `popup_key` live.

use actix_web::{HttpResponse, get, web};
use askama::Template;

use crate::auth::AuthUser;
use crate::defenses::Defense;
use crate::domain::OrderNo;
use crate::error::{ApiError, problem_title};
use crate::startup::AppState;
use crate::store::now_ms;
use crate::store::orders::{self, Order};
use crate::store::payments::{self, Payment};
use crate::store::products::{self, Product};

/// What every page knows: who is logged in (from the session cookie).
struct Viewer {
    user: Option<AuthUser>,
}

impl Viewer {
    fn username(&self) -> &str {
        self.user.as_ref().map_or("", |user| user.username.as_str())
    }
}

#[derive(Template)]
#[template(path = "index.html")]
struct SalePage {
    viewer: Viewer,
    products: Vec<ProductCard>,
}

/// A product as the sale page shows it.
struct ProductCard {
    id: i64,
    name: String,
    price: String,
    stock: i64,
    initial_stock: i64,
    /// Epoch milliseconds of the sale start when it is still ahead, else 0.
    starts_at: i64,
}

impl From<Product> for ProductCard {
    fn from(product: Product) -> Self {
        let starts_at = product
            .sale_starts_at
            .filter(|at| *at > now_ms())
            .unwrap_or(0);
        Self {
            id: product.id,
            price: yuan(product.price_cents),
            name: product.name,
            stock: product.stock,
            initial_stock: product.initial_stock,
            starts_at,
        }
    }
}

/// 19900 → "¥199.00"
fn yuan(cents: i64) -> String {
    format!("¥{}.{:02}", cents / 100, cents % 100)
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    viewer: Viewer,
    orders: Vec<OrderLine>,
}

struct OrderLine {
    order_no: String,
    product: String,
    quantity: i64,
    amount: String,
    status: String,
    created_at: String,
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    viewer: Viewer,
    order: OrderLine,
    payments: Vec<Payment>,
    /// A payment is PROCESSING: the page shows it instead of a pay button.
    processing: bool,
}

#[derive(Template)]
#[template(path = "lab.html")]
struct LabPage {
    viewer: Viewer,
    defenses: Vec<(&'static str, &'static str)>,
}

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemPage<'a> {
    viewer: Viewer,
    code: &'a str,
    title: &'static str,
    explanation: &'static str,
}

fn render(template: &impl Template) -> Result<HttpResponse, ApiError> {
    let html = template
        .render()
        .map_err(|error| ApiError::Internal(format!("template: {error}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

async fn order_lines(state: &AppState, orders: Vec<Order>) -> Result<Vec<OrderLine>, ApiError> {
    let names: std::collections::HashMap<i64, String> = products::list(&state.db)
        .await?
        .into_iter()
        .map(|product| (product.id, product.name))
        .collect();
    Ok(orders
        .into_iter()
        .map(|order| OrderLine {
            product: names
                .get(&order.product_id)
                .cloned()
                .unwrap_or_else(|| "—".into()),
            created_at: order.view().created_at,
            amount: yuan(order.amount_cents),
            order_no: order.order_no,
            quantity: order.quantity,
            status: order.status,
        })
        .collect())
}

/// The sale page: the catalogue with live stock and the buy popup.
#[get("/")]
async fn index(
    state: web::Data<AppState>,
    user: Option<AuthUser>,
) -> Result<HttpResponse, ApiError> {
    let products = products::list(&state.db).await?;
    render(&SalePage {
        viewer: Viewer { user },
        products: products.into_iter().map(ProductCard::from).collect(),
    })
}

#[get("/orders")]
async fn orders_page(
    state: web::Data<AppState>,
    user: Option<AuthUser>,
) -> Result<HttpResponse, ApiError> {
    let orders = match &user {
        Some(user) => orders::list_for_user(&state.db, user.user_id).await?,
        None => Vec::new(),
    };
    render(&OrdersPage {
        orders: order_lines(&state, orders).await?,
        viewer: Viewer { user },
    })
}

/// One order, with its payments and the pay popup.
#[get("/orders/{order_no}")]
async fn order_page(
    state: web::Data<AppState>,
    user: Option<AuthUser>,
    order_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Some(viewer) = user.clone() else {
        return Ok(HttpResponse::SeeOther()
            .insert_header(("Location", "/orders"))
            .finish());
    };
    let order_no = OrderNo::parse(&order_no).ok_or(ApiError::OrderNotFound)?;
    let order = orders::find_for_user(&state.db, viewer.user_id, &order_no)
        .await?
        .ok_or(ApiError::OrderNotFound)?;
    let payments = payments::list_for_order(&state.db, order_no.as_str()).await?;
    let processing = payments.iter().any(|p| p.status == payments::PROCESSING);
    let order = order_lines(&state, vec![order]).await?.remove(0);
    render(&OrderPage {
        viewer: Viewer { user },
        order,
        payments,
        processing,
    })
}

/// The lab: switch defenses, reset the sale, read the audit (admin token needed).
#[get("/lab")]
async fn lab(user: Option<AuthUser>) -> Result<HttpResponse, ApiError> {
    render(&LabPage {
        viewer: Viewer { user },
        defenses: Defense::ALL
            .into_iter()
            .map(|defense| (defense.id(), defense.layer()))
            .collect(),
    })
}

/// `/learn/problems/<code>`: the page every problem's `type` links to.
#[get("/learn/problems/{code}")]
async fn problem(
    code: web::Path<String>,
    user: Option<AuthUser>,
) -> Result<HttpResponse, ApiError> {
    let explanation = problem_explanation(&code).ok_or(ApiError::NotFound)?;
    render(&ProblemPage {
        viewer: Viewer { user },
        code: &code,
        title: problem_title(&code),
        explanation,
    })
}

fn problem_explanation(code: &str) -> Option<&'static str> {
    Some(match code {
        "idempotency_key_missing" => {
            "Every POST that changes state must carry an Idempotency-Key header: one key per business action (one opening of the confirm popup). Without it the server cannot tell a retry from a new intent."
        }
        "idempotency_key_invalid" => {
            "An idempotency key is 1 to 255 visible ASCII characters. A UUID is a good choice."
        }
        "idempotency_key_reused" => {
            "The idempotency_key defense stores a fingerprint of the first request sent with a key. The same key with a different body is a client bug: a new intent needs a new key."
        }
        "request_in_progress" => {
            "The idempotency_key defense saw this key while its first request was still running. Wait for Retry-After seconds and retry with the same key: you will get the stored answer."
        }
        "malformed_body" => {
            "The body is not JSON of the expected shape. Nothing was stored, so the same key can be used again with a correct body."
        }
        "invalid_quantity" => {
            "Quantity must be a whole number from 1 to 10 per order in this flash sale."
        }
        "invalid_username" => "A demo username is 1 to 64 visible characters, without spaces.",
        "invalid_request" => "A field of the request is out of range; the detail says which.",
        "product_not_found" => "There is no product with this id. Nothing was stored with the key.",
        "order_not_found" => {
            "There is no such order among yours. Other users' orders are not visible."
        }
        "not_found" => "There is nothing at this address.",
        "sold_out" => {
            "The stock is gone. This is an outcome of the business: it is stored with the idempotency key and replayed to every retry of the same key."
        }
        "busy_retry" => {
            "The version_lock defense lost the optimistic-lock race too many times on a hot stock row. Nothing was stored: retry with the same key after Retry-After."
        }
        "unauthorized" => {
            "Log in with POST /api/login and send the token as 'Authorization: Bearer <token>'. Tokens are signed by the server and cannot be forged."
        }
        "admin_unauthorized" => {
            "The admin API needs 'Authorization: Bearer <ADMIN_TOKEN>'. When ADMIN_TOKEN is unset the server generates one and writes it to the log at start."
        }
        "unknown_defense" => {
            "The admin API only knows the defenses listed by GET /api/admin/defenses."
        }
        "key_store_unavailable" => "Redis did not answer. Retry shortly.",
        "internal_error" => {
            "The server failed. Nothing was stored with the key, so a retry can succeed."
        }
        _ => return None,
    })
}
