//! HTML pages (askama templates under templates/, one base layout). Pages know the
//! user from the session cookie; their JavaScript (static/app.js) calls the JSON
//! API, where the browser defenses `button_disable` and `popup_key` live.

use actix_web::{HttpResponse, get, web};
use askama::Template;

use crate::auth::AuthUser;
use crate::domain::{OrderNo, PaymentStatus};
use crate::error::ApiError;
use crate::problems::{ProblemCode, ProblemSpec};
use crate::state::AppState;
use crate::store::now_ms;
use crate::store::orders::{self, Order};
use crate::store::payments::{self, Payment};
use crate::store::products::{self, Product};
use crate::switches::{Defense, DefenseInfo};

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
    defenses: Vec<(&'static str, &'static str, DefenseInfo)>,
}

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemPage {
    viewer: Viewer,
    code: &'static str,
    spec: ProblemSpec,
    defense: Option<&'static str>,
}

fn render(template: &impl Template) -> Result<HttpResponse, ApiError> {
    let html = template.render()?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

async fn order_lines(state: &AppState, orders: Vec<Order>) -> Result<Vec<OrderLine>, ApiError> {
    let names: std::collections::HashMap<i64, String> = products::list(state.db.pool())
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
            status: order.status.to_string(),
        })
        .collect())
}

/// The sale page: the catalogue with live stock and the buy popup.
#[get("/")]
async fn index(
    state: web::Data<AppState>,
    user: Option<AuthUser>,
) -> Result<HttpResponse, ApiError> {
    let products = products::list(state.db.pool()).await?;
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
        Some(user) => orders::list_for_user(state.db.pool(), user.user_id).await?,
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
    let order = orders::find_for_user(state.db.pool(), viewer.user_id, &order_no)
        .await?
        .ok_or(ApiError::OrderNotFound)?;
    let payments = payments::list_for_order(state.db.pool(), order_no.as_str()).await?;
    let processing = payments
        .iter()
        .any(|payment| payment.status == PaymentStatus::Processing);
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
        defenses: Defense::all()
            .map(|defense| {
                let info = defense.info();
                (defense.id(), info.layer.into(), info)
            })
            .collect(),
    })
}

/// `/learn/problems/<code>`: the page every problem's `type` links to.
#[get("/learn/problems/{code}")]
async fn problem(
    code: web::Path<String>,
    user: Option<AuthUser>,
) -> Result<HttpResponse, ApiError> {
    let code = ProblemCode::from_code(&code).ok_or(ApiError::NotFound)?;
    let spec = code.spec();
    render(&ProblemPage {
        viewer: Viewer { user },
        code: code.as_str(),
        defense: spec.defense.map(Defense::id),
        spec,
    })
}
