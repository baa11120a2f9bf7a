//! HTML pages (askama templates under templates/, one base layout). Pages know the
//! user from the session cookie; their JavaScript (static/app.js) calls the JSON
//! API, where the browser defenses `button_disable` and `popup_key` live.

use std::collections::HashMap;

use actix_web::{HttpResponse, get, web};
use askama::Template;

use crate::domain::{Channel, OrderNo, PaymentStatus};
use crate::error::ApiError;
use crate::lab::experiments::{self, Experiment};
use crate::lab::simulator;
use crate::routes::viewer::Viewer;
use crate::state::AppState;
use crate::store::now_ms;
use crate::store::orders::{self, Order};
use crate::store::payments::{self, Payment};
use crate::store::products::{self, Product};
use crate::store::rewards;
use crate::switches::{Defense, DefenseInfo};
use crate::text::Text;

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
    total_points: i64,
}

impl OrderLine {
    fn path(&self) -> String {
        format!("/orders/{}", self.order_no)
    }
}

struct OrderLine {
    order_no: String,
    product: String,
    quantity: i64,
    amount: String,
    status: String,
    created_at: String,
    /// Loyalty points earned (0 until the reward arrives).
    points: i64,
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    viewer: Viewer,
    order: OrderLine,
    payments: Vec<Payment>,
    /// A payment is PROCESSING: the page shows it instead of a pay button.
    processing: bool,
    /// More than one payment succeeded: the damage of a defense switched off.
    charged_twice: bool,
    /// The ways to pay the popup offers.
    channels: [Channel; 3],
}

#[derive(Template)]
#[template(path = "lab.html")]
struct LabPage {
    viewer: Viewer,
    defenses: Vec<LabCard>,
}

#[derive(Template)]
#[template(path = "simulator.html")]
struct SimulatorPage {
    viewer: Viewer,
    /// Every defense: its id and name.
    defenses: Vec<(&'static str, Text)>,
    presets: Vec<Preset>,
    max_users: usize,
    max_stock: i64,
    max_concurrency: usize,
}

/// An experiment's switches as a starting point for the simulator: its
/// defense off with the layers that would hide it.
struct Preset {
    id: &'static str,
    title: Text,
    /// The defenses it switches off, comma-separated.
    off: String,
    /// The scenario that shows its anomaly.
    scenario: &'static str,
}

/// A defense on the lab page, with the experiments that show it.
struct LabCard {
    id: &'static str,
    layer: &'static str,
    info: DefenseInfo,
    experiments: Vec<&'static Experiment>,
    lesson_path: String,
    /// The sale page's guide, for a browser defense (no experiment).
    guide_path: String,
}

pub(super) fn render(template: &impl Template) -> Result<HttpResponse, ApiError> {
    let html = template.render()?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

async fn order_lines(
    state: &AppState,
    orders: Vec<Order>,
    points: &HashMap<String, i64>,
) -> Result<Vec<OrderLine>, ApiError> {
    let names: HashMap<i64, String> = products::list(state.db.pool())
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
            points: points.get(&order.order_no).copied().unwrap_or(0),
            order_no: order.order_no,
            quantity: order.quantity,
            status: order.status.to_string(),
        })
        .collect())
}

/// The sale page: the catalogue with live stock and the buy popup.
#[get("/")]
async fn index(state: web::Data<AppState>, viewer: Viewer) -> Result<HttpResponse, ApiError> {
    let products = products::list(state.db.pool()).await?;
    render(&SalePage {
        viewer,
        products: products.into_iter().map(ProductCard::from).collect(),
    })
}

/// My orders, with the loyalty points each paid order earned.
#[get("/orders")]
async fn orders_page(state: web::Data<AppState>, viewer: Viewer) -> Result<HttpResponse, ApiError> {
    let (orders, points) = match &viewer.user {
        Some(user) => (
            orders::list_for_user(state.db.pool(), user.user_id).await?,
            rewards::points_by_order(state.db.pool(), user.user_id).await?,
        ),
        None => Default::default(),
    };
    let total_points = points.values().sum();
    render(&OrdersPage {
        orders: order_lines(&state, orders, &points).await?,
        total_points,
        viewer,
    })
}

/// One order, with its payments and the pay popup.
#[get("/orders/{order_no}")]
async fn order_page(
    state: web::Data<AppState>,
    viewer: Viewer,
    order_no: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Some(user) = &viewer.user else {
        return Ok(HttpResponse::SeeOther()
            .insert_header(("Location", "/orders"))
            .finish());
    };
    let order_no = OrderNo::parse(&order_no).ok_or(ApiError::OrderNotFound)?;
    let order = orders::find_for_user(state.db.pool(), user.user_id, &order_no)
        .await?
        .ok_or(ApiError::OrderNotFound)?;
    let payments = payments::list_for_order(state.db.pool(), order_no.as_str()).await?;
    let has = |status| {
        payments
            .iter()
            .filter(|payment| payment.status == status)
            .count()
    };
    let (processing, succeeded) = (
        has(PaymentStatus::Processing) > 0,
        has(PaymentStatus::Succeeded),
    );
    let order = order_lines(&state, vec![order], &HashMap::new())
        .await?
        .remove(0);
    render(&OrderPage {
        viewer,
        order,
        payments,
        processing,
        charged_twice: succeeded > 1,
        channels: [Channel::Card, Channel::Alipay, Channel::Wechatpay],
    })
}

/// The simulator's presets: the experiments a sale can show.
fn presets() -> Vec<Preset> {
    experiments::EXPERIMENTS
        .iter()
        .filter_map(|experiment| {
            let scenario = simulator::preset_scenario(experiment)?;
            Some(Preset {
                id: experiment.id,
                title: experiment.title,
                off: simulator::preset_off(experiment).join(","),
                scenario,
            })
        })
        .collect()
}

/// The flash-sale simulator (docs/design.md §2.6): the form, the live charts,
/// the audit; the admin token is needed to start a run.
#[get("/lab/simulator")]
async fn simulator_page(viewer: Viewer) -> Result<HttpResponse, ApiError> {
    use simulator::{MAX_CONCURRENCY, MAX_STOCK, MAX_USERS};
    render(&SimulatorPage {
        viewer,
        defenses: Defense::all()
            .map(|defense| (defense.id(), defense.info().name))
            .collect(),
        presets: presets(),
        max_users: MAX_USERS,
        max_stock: MAX_STOCK,
        max_concurrency: MAX_CONCURRENCY,
    })
}

/// The lab: a card per defense with its experiment, the run-time settings, the
/// switches, the audit and the reset (admin token needed to change anything).
#[get("/lab")]
async fn lab(viewer: Viewer) -> Result<HttpResponse, ApiError> {
    render(&LabPage {
        viewer,
        defenses: Defense::all()
            .map(|defense| LabCard {
                id: defense.id(),
                layer: defense.info().layer.into(),
                info: defense.info(),
                experiments: experiments::for_defense(defense),
                lesson_path: format!("/learn/defenses/{}", defense.id()),
                guide_path: format!("/?guide={}", defense.id()),
            })
            .collect(),
    })
}
