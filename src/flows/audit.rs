//! The audit: the invariants of DESIGN §5 checked against the database.
//!
//! 1. stock conservation per product: initial = stock + units in orders not
//!    CLOSED, and stock ≥ 0 (version_lock);
//! 2. at most one order per (user, idempotency key) (idempotency_key, unique_index);
//! 3. at most one successful charge per order; every PAID order has exactly one,
//!    and no charged order was moved back (order_lock, payment_token, state_check);
//! 4. every provider event applied at most once (callback_dedup);
//! 5. at most one reward per paid order (message_dedup);
//! 6. no idempotency key left in progress past its lease;
//!
//! and that the stock gate's cached counters equal the database's stock (checked
//! while the gate is on; meaningful once the load has stopped).
//!
//! A defense switched off makes the matching check fail; that is the lab's proof.

use serde::Serialize;
use sqlx::FromRow;

use crate::defenses::{Defense, stock_gate};
use crate::domain::order_status;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::products;
use crate::store::{Db, now_ms};

#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub ok: bool,
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

pub async fn run(state: &AppState) -> Result<AuditReport, ApiError> {
    let db = &state.db;
    let checks = vec![
        stock_gate_matches_database(state).await?,
        stock_conserved(db).await?,
        one_order_per_key(db).await?,
        one_charge_per_order(db).await?,
        paid_orders_charged_once(db).await?,
        events_applied_once(db).await?,
        one_reward_per_order(db).await?,
        no_stale_key_in_progress(db).await?,
    ];
    Ok(AuditReport {
        ok: checks.iter().all(|check| check.ok),
        checks,
    })
}

#[derive(Debug, FromRow)]
struct StockLine {
    id: i64,
    initial_stock: i64,
    stock: i64,
    sold: i64,
}

async fn stock_conserved(db: &Db) -> Result<Check, sqlx::Error> {
    let lines = sqlx::query_as::<_, StockLine>(
        "SELECT p.id, p.initial_stock, p.stock,
                CAST(COALESCE((SELECT SUM(o.quantity) FROM orders o
                                WHERE o.product_id = p.id AND o.status <> $1), 0) AS BIGINT) AS sold
           FROM products p ORDER BY p.id",
    )
    .bind(order_status::CLOSED)
    .fetch_all(db.pool())
    .await?;
    let broken: Vec<String> = lines
        .iter()
        .filter(|line| line.stock < 0 || line.initial_stock != line.stock + line.sold)
        .map(|line| {
            format!(
                "product {}: initial {} but stock {} + sold {} = {} (oversold by {})",
                line.id,
                line.initial_stock,
                line.stock,
                line.sold,
                line.stock + line.sold,
                (line.sold - line.initial_stock).max(0)
            )
        })
        .collect();
    Ok(Check {
        name: "stock_conserved",
        ok: broken.is_empty(),
        detail: if broken.is_empty() {
            format!(
                "{} products: initial = stock + sold, stock >= 0",
                lines.len()
            )
        } else {
            broken.join("; ")
        },
    })
}

async fn one_order_per_key(db: &Db) -> Result<Check, sqlx::Error> {
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(n - 1), 0) AS BIGINT) FROM
           (SELECT COUNT(*) AS n FROM orders GROUP BY user_id, idempotency_key
            HAVING COUNT(*) > 1) AS groups",
    )
    .fetch_one(db.pool())
    .await?;
    Ok(Check {
        name: "one_order_per_key",
        ok: duplicates == 0,
        detail: format!("{duplicates} duplicate orders (same user, same idempotency key)"),
    })
}

async fn no_stale_key_in_progress(db: &Db) -> Result<Check, sqlx::Error> {
    let stale: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM idempotency_keys WHERE state = 'in_progress' AND lease_expires_at < $1",
    )
    .bind(now_ms())
    .fetch_one(db.pool())
    .await?;
    Ok(Check {
        name: "no_stale_key_in_progress",
        ok: stale == 0,
        detail: format!("{stale} idempotency keys in progress past their lease"),
    })
}

/// A payment the provider charged: one of its SUCCEEDED events was applied.
const CHARGED: &str = "EXISTS (SELECT 1 FROM payment_events e
                               WHERE e.payment_no = p.payment_no AND e.status = 'SUCCEEDED'
                                 AND e.result = 'applied')";

async fn count(db: &Db, sql: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(sql).fetch_one(db.pool()).await
}

async fn one_charge_per_order(db: &Db) -> Result<Check, sqlx::Error> {
    let doubled = count(
        db,
        &format!(
            "SELECT COUNT(*) FROM (SELECT p.order_no FROM payments p WHERE {CHARGED}
                                   GROUP BY p.order_no HAVING COUNT(*) > 1) AS doubled"
        ),
    )
    .await?;
    Ok(Check {
        name: "one_charge_per_order",
        ok: doubled == 0,
        detail: format!("{doubled} orders charged more than once"),
    })
}

async fn paid_orders_charged_once(db: &Db) -> Result<Check, sqlx::Error> {
    let paid_wrongly = count(
        db,
        &format!(
            "SELECT COUNT(*) FROM orders o WHERE o.status = 'PAID'
               AND (SELECT COUNT(*) FROM payments p WHERE p.order_no = o.order_no AND {CHARGED}) <> 1"
        ),
    )
    .await?;
    let moved_back = count(
        db,
        &format!(
            "SELECT COUNT(*) FROM payments p JOIN orders o ON o.order_no = p.order_no
              WHERE {CHARGED} AND o.status <> 'PAID' AND p.needs_refund = FALSE"
        ),
    )
    .await?;
    Ok(Check {
        name: "paid_orders_charged_once",
        ok: paid_wrongly == 0 && moved_back == 0,
        detail: format!(
            "{paid_wrongly} PAID orders without exactly one charge; \
             {moved_back} charged orders no longer PAID (moved back)"
        ),
    })
}

async fn events_applied_once(db: &Db) -> Result<Check, sqlx::Error> {
    let repeated = count(
        db,
        "SELECT COUNT(*) FROM (SELECT event_id FROM payment_events WHERE result = 'applied'
                               GROUP BY event_id HAVING COUNT(*) > 1) AS repeated",
    )
    .await?;
    Ok(Check {
        name: "events_applied_once",
        ok: repeated == 0,
        detail: format!("{repeated} provider events applied more than once"),
    })
}

async fn one_reward_per_order(db: &Db) -> Result<Check, sqlx::Error> {
    let extra = count(
        db,
        "SELECT CAST(COALESCE(SUM(n - 1), 0) AS BIGINT) FROM
           (SELECT COUNT(*) AS n FROM rewards GROUP BY order_no HAVING COUNT(*) > 1) AS doubled",
    )
    .await?;
    Ok(Check {
        name: "one_reward_per_order",
        ok: extra == 0,
        detail: format!("{extra} extra rewards (the same paid order rewarded again)"),
    })
}

async fn stock_gate_matches_database(state: &AppState) -> Result<Check, ApiError> {
    if !state.switches.is_on(Defense::StockGate) {
        return Ok(Check {
            name: "stock_gate_matches_database",
            ok: true,
            detail: "stock_gate is off: not compared (it is reloaded when switched on)".into(),
        });
    }
    let mut differences = Vec::new();
    for product in products::list(&state.db).await? {
        let cached = state.kv.get(&stock_gate::stock_key(product.id)).await?;
        if let Some(cached) = cached
            && cached.parse::<i64>().ok() != Some(product.stock)
        {
            differences.push(format!(
                "product {}: gate {cached}, database {}",
                product.id, product.stock
            ));
        }
    }
    Ok(Check {
        name: "stock_gate_matches_database",
        ok: differences.is_empty(),
        detail: if differences.is_empty() {
            "every loaded gate counter equals the database's stock".into()
        } else {
            differences.join("; ")
        },
    })
}
