//! The audit, the defense switches and the sale reset.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, get, post, put, web};
use serde::{Deserialize, Serialize};

use crate::auth::{Admin, AdminToken};
use crate::causes::Causes;
use crate::defenses::stock_gate::Load;
use crate::error::ApiError;
use crate::flows::audit as audit_flow;
use crate::flows::audit::AuditReport;
use crate::flows::reconciliation::{self as bill, Reconciliation};
use crate::flows::{rewards, shared};
use crate::metrics;
use crate::psp::{PspBehaviour, PspBehaviourPatch};
use crate::routes::products::ProductList;
use crate::state::AppState;
use crate::store::products::{self, NewProduct};
use crate::switches::Defense;

/// The audit: fresh for the admin; for everyone else computed at most once per
/// `AUDIT_PUBLIC_MAX_AGE_MS` (it reads every table), so a crowd of readers
/// costs one run.
/// The invariants, checked on the database. With the admin bearer: run now;
/// without: a result at most `AUDIT_PUBLIC_MAX_AGE_MS` old (see `checked_at`).
#[utoipa::path(
    tag = "admin",
    security((), ("admin" = [])),
    responses((status = 200, description = "The audit", body = AuditReport)),
)]
#[get("/api/audit")]
async fn audit(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    if AdminToken::presented_by(&request) {
        metrics::count_labelled(metrics::AUDIT_RUNS, "view", "admin");
        return Ok(HttpResponse::Ok().json(audit_flow::run(&state).await?));
    }
    let mut cached = state.public_audit.lock().await;
    let body = match cached.as_ref() {
        Some((at, body)) if at.elapsed() < state.settings.audit_public_max_age => body.clone(),
        _ => {
            metrics::count_labelled(metrics::AUDIT_RUNS, "view", "public");
            let body = serde_json::to_string(&audit_flow::run(&state).await?)?;
            *cached = Some((Instant::now(), body.clone()));
            body
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((
            "Cache-Control",
            cache_control(state.settings.audit_public_max_age),
        ))
        .body(body))
}

fn cache_control(max_age: Duration) -> String {
    format!("max-age={}", max_age.as_secs())
}

/// Read-only view of the switches, for the pages.
/// Every defense and whether it is on.
#[utoipa::path(
    tag = "admin",
    responses((status = 200, description = "Defense id → on", body = DefenseBoard)),
)]
#[get("/api/defenses")]
async fn public_defenses(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.switches.snapshot())
}

/// Every defense and whether it is on (admin).
#[utoipa::path(
    tag = "admin",
    security(("admin" = [])),
    responses((status = 200, description = "Defense id → on", body = DefenseBoard)),
)]
#[get("/api/admin/defenses")]
async fn get_defenses(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    HttpResponse::Ok().json(state.switches.snapshot())
}

/// `{"version_lock": false}` switches one defense; every id must be known and
/// every value a boolean, or nothing changes.
/// Switches defenses on or off, on every instance (the lab's switch board).
#[utoipa::path(
    tag = "admin",
    security(("admin" = [])),
    request_body = DefenseBoard,
    responses((status = 200, description = "The board after the change", body = DefenseBoard)),
)]
#[put("/api/admin/defenses")]
async fn put_defenses(
    state: web::Data<AppState>,
    _admin: Admin,
    body: web::Json<BTreeMap<String, bool>>,
) -> Result<HttpResponse, ApiError> {
    let changes = body
        .into_inner()
        .into_iter()
        .map(|(id, on)| {
            Defense::from_id(&id)
                .map(|d| (d, on))
                .ok_or(ApiError::UnknownDefense(id))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Every instance follows within a second (the shared switch board).
    shared::set_defenses(&state, &changes).await?;
    Ok(HttpResponse::Ok().json(state.switches.snapshot()))
}

/// Defense id → on. Ids are those of `GET /api/defenses`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the JSON map only
struct DefenseBoard(BTreeMap<String, bool>);

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    #[schema(min_items = 1, max_items = 100)]
    products: Vec<NewProduct>,
}

/// Starts a clean sale: deletes orders and keys, creates the given products
/// (the seed catalogue when the body is empty).
/// Deletes every order, payment and key and creates the catalogue (an empty
/// body: the demo catalogue).
#[utoipa::path(
    tag = "admin",
    security(("admin" = [])),
    request_body(content = Option<ResetBody>, description = "The new catalogue; empty for the demo one"),
    responses((status = 200, description = "The products created", body = ProductList)),
)]
#[post("/api/admin/reset")]
async fn reset(
    state: web::Data<AppState>,
    _admin: Admin,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let catalogue = parse_catalogue(&body)?;
    let created = products::reset_sale(&state.db, &catalogue).await?;
    shared::announce_reset(&state).await?;
    reset_key_store(&state).await?;
    // Answers a request read from the key store while it was being cleared.
    state.keys.forget_local_answers();
    tracing::warn!(products = created.len(), "sale reset");
    Ok(HttpResponse::Ok().json(ProductList { products: created }))
}

/// The key store's part of a reset: its keys, the stream, the gate reloaded.
/// After a failure the Redis breaker fails every command at once for 500 ms
/// (store::redis_connection); a reset is rare and its database part is done,
/// so it waits that out, twice at most, rather than leave the sale half reset.
async fn reset_key_store(state: &AppState) -> Result<(), ApiError> {
    let mut attempts_left = 2;
    loop {
        let attempt = async {
            state.kv.clear_namespace().await?;
            state.bus.clear(rewards::ORDER_PAID_TOPIC).await?;
            state.gate.load(Load::Overwrite).await?;
            Ok::<(), ApiError>(())
        };
        match attempt.await {
            Err(ApiError::KeyStore(error)) if attempts_left > 0 => {
                tracing::warn!(error = %Causes(&error), "reset: the key store failed; trying again");
                attempts_left -= 1;
                tokio::time::sleep(Duration::from_millis(600)).await;
            }
            outcome => return outcome,
        }
    }
}

fn parse_catalogue(body: &[u8]) -> Result<Vec<NewProduct>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(products::seed_catalogue());
    }
    let parsed: ResetBody =
        serde_json::from_slice(body).map_err(|error| ApiError::MalformedBody(error.to_string()))?;
    if parsed.products.is_empty() || parsed.products.len() > products::MAX_PRODUCTS {
        return Err(ApiError::InvalidRequest(format!(
            "products must hold 1 to {} products",
            products::MAX_PRODUCTS
        )));
    }
    for product in &parsed.products {
        product.check().map_err(ApiError::InvalidRequest)?;
    }
    Ok(parsed.products)
}

/// How the mock payment provider behaves.
/// How the simulated payment provider behaves.
#[utoipa::path(
    tag = "admin",
    security(("admin" = [])),
    responses((status = 200, description = "The behaviour", body = PspBehaviour)),
)]
#[get("/api/admin/psp")]
async fn get_psp(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    HttpResponse::Ok().json(state.psp.behaviour())
}

/// `{"callbacks":3,"delay_ms":200,"concurrent":true,"failed_after_success":false}`,
/// whole or in part.
/// Changes how the simulated payment provider behaves (duplicates, delays, a late FAILED).
#[utoipa::path(
    tag = "admin",
    security(("admin" = [])),
    request_body = PspBehaviourPatch,
    responses((status = 200, description = "The behaviour after the change", body = PspBehaviour)),
)]
#[put("/api/admin/psp")]
async fn put_psp(
    state: web::Data<AppState>,
    _admin: Admin,
    patch: web::Json<PspBehaviourPatch>,
) -> Result<HttpResponse, ApiError> {
    let behaviour = state
        .psp
        .behaviour()
        .patched(patch.into_inner())
        .map_err(ApiError::InvalidRequest)?;
    state.psp.set_behaviour(behaviour.clone());
    Ok(HttpResponse::Ok().json(behaviour))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FaultsBody {
    /// The next N reward deliveries crash after their effect, before the ack
    /// (0: never): the lab's redelivery.
    #[serde(default)]
    rewards_crash_after_effect: u64,
    /// The next N reward effects fail before they commit (0: never): each is
    /// delivered again, and after `MESSAGE_MAX_DELIVERIES` failures goes to
    /// the dead-letter queue.
    #[serde(default)]
    rewards_fail_effect: u64,
    /// Each order that took a unit at the stock gate pauses this long (ms, at
    /// most 60000; 0: never) before its database step: an instance frozen in
    /// the middle of its orders, to be killed (docs/scaling.md).
    #[serde(default)]
    #[schema(maximum = 60000)]
    orders_stall_after_gate_ms: u64,
}

impl FaultsBody {
    fn of(state: &AppState) -> Self {
        Self {
            rewards_crash_after_effect: state.faults.crash_after_effect(),
            rewards_fail_effect: state.faults.fail_effect(),
            orders_stall_after_gate_ms: state.faults.stall_after_gate_ms(),
        }
    }
}

/// The injected faults.
#[utoipa::path(
    tag = "admin",
    security(("admin" = [])),
    responses((status = 200, description = "The faults", body = FaultsBody)),
)]
#[get("/api/admin/faults")]
async fn get_faults(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    HttpResponse::Ok().json(FaultsBody::of(&state))
}

/// Injects faults: forces redelivery of "order paid" messages, or freezes
/// orders after the stock gate.
#[utoipa::path(
    tag = "admin",
    security(("admin" = [])),
    request_body = FaultsBody,
    responses((status = 200, description = "The faults", body = FaultsBody)),
)]
#[put("/api/admin/faults")]
async fn put_faults(
    state: web::Data<AppState>,
    _admin: Admin,
    body: web::Json<FaultsBody>,
) -> Result<HttpResponse, ApiError> {
    if body.orders_stall_after_gate_ms > crate::faults::MAX_STALL_MS {
        return Err(ApiError::InvalidRequest(format!(
            "orders_stall_after_gate_ms is at most {}",
            crate::faults::MAX_STALL_MS
        )));
    }
    state
        .faults
        .set_crash_after_effect(body.rewards_crash_after_effect);
    state.faults.set_fail_effect(body.rewards_fail_effect);
    state
        .faults
        .set_stall_after_gate(body.orders_stall_after_gate_ms);
    Ok(HttpResponse::Ok().json(FaultsBody::of(&state)))
}

/// The "order paid" messages on the bus.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct MessagesBody {
    /// Which bus carries them: `in-process`, `Redis stream …` or `RabbitMQ …`.
    bus: String,
    topic: &'static str,
    group: &'static str,
    /// Not yet acknowledged: a stream's pending entries (delivered to any
    /// consumer of the group); on RabbitMQ, the queued messages plus those
    /// this instance holds.
    pending: u64,
    /// In the group's dead-letter queue: given up on (unreadable, or failed
    /// `MESSAGE_MAX_DELIVERIES` times).
    dead_letters: u64,
    /// Deliveries this instance received flagged redelivered, since it
    /// started (a failed reward's retry included).
    redelivered_here: u64,
    /// Deliveries this instance sent to the dead letters, since it started.
    dead_lettered_here: u64,
    /// Deliveries this instance found already processed (`message_dedup`
    /// stopped them), since it started.
    duplicates_here: u64,
}

/// The message bus as the rewards consumer sees it: pending messages and dead letters.
#[utoipa::path(
    tag = "admin",
    security(("admin" = [])),
    responses((status = 200, description = "The bus's counts", body = MessagesBody)),
)]
#[get("/api/admin/messages")]
async fn messages(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let (topic, group) = (rewards::ORDER_PAID_TOPIC, rewards::REWARDS_GROUP);
    let (pending, dead_letters) = tokio::try_join!(
        state.bus.pending(topic, group),
        state.bus.dead_letters(topic, group)
    )?;
    Ok(HttpResponse::Ok().json(MessagesBody {
        bus: state.bus.describe(),
        topic,
        group,
        pending,
        dead_letters,
        redelivered_here: state.deliveries.redelivered(),
        dead_lettered_here: state.deliveries.dead_lettered(),
        duplicates_here: state.deliveries.duplicates(),
    }))
}

/// `?date=YYYY-MM-DD` (Beijing time; today when absent).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ReconciliationQuery {
    /// The day whose bill is compared, `YYYY-MM-DD` in Beijing time (default: today).
    #[param(example = "2026-12-01")]
    date: Option<String>,
}

/// 对账: the provider's bill for a day against that day's payments — charged
/// but not paid (掉单), paid but not charged, amounts that differ — each with
/// its ids.
#[utoipa::path(
    tag = "admin",
    security(("admin" = [])),
    params(ReconciliationQuery),
    responses((status = 200, description = "The comparison", body = Reconciliation)),
)]
#[get("/api/admin/reconciliation")]
async fn reconciliation(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<ReconciliationQuery>,
) -> Result<HttpResponse, ApiError> {
    let date = match query.date.as_deref() {
        None => bill::today(),
        Some(text) => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| ApiError::InvalidRequest(format!("date {text:?} is not YYYY-MM-DD")))?,
    };
    Ok(HttpResponse::Ok().json(bill::reconcile(&state, date).await?))
}
