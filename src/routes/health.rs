//! Liveness (the process answers) and readiness (the database and the key store do).

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use serde_json::json;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Admin;
use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(
    tag = "health",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))),
)]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Prometheus text format.
/// Prometheus metrics (admin bearer).
#[utoipa::path(
    tag = "health",
    security(("admin" = [])),
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")),
)]
#[get("/metrics")]
async fn metrics(handle: web::Data<PrometheusHandle>, _admin: Admin) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}

/// How long readiness waits for each dependency.
const READINESS_BOUND: Duration = Duration::from_millis(800);

/// Ready when the database and the key store both answer within the bound
/// (checked together); otherwise 503 naming the one that did not.
/// Readiness: the database and the key store answer, each within 800 ms.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: `failing` names the dependencies", body = Readiness),
    ),
)]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (database, key_store) = tokio::join!(
        within(READINESS_BOUND, async {
            state.db.ping().await.map_err(|e| e.to_string())
        }),
        within(READINESS_BOUND, async {
            state.kv.ping().await.map_err(|e| e.to_string())
        }),
    );
    let ready = database.is_ok() && key_store.is_ok();
    let failing = [("database", &database), ("redis", &key_store)]
        .into_iter()
        .filter(|(_, result)| result.is_err())
        .map(|(name, _)| name)
        .collect::<Vec<_>>();
    let describe = |result: &Result<(), String>| match result {
        Ok(()) => "ok".to_string(),
        Err(error) => error.clone(),
    };
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        database: describe(&database),
        key_store: describe(&key_store),
        failing,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(body)
    }
}

/// `check`, or an error when it takes longer than `bound`.
/// What `/readyz` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    /// `ok`, or why the database does not answer.
    database: String,
    /// `ok`, or why the key store does not answer.
    key_store: String,
    /// The dependencies that do not answer (`database`, `redis`).
    failing: Vec<&'static str>,
}

async fn within(
    bound: Duration,
    check: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(bound, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", bound.as_millis())))
}
