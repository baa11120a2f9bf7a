//! Liveness (the process answers) and readiness (the database and the key store do).

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::state::AppState;

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Prometheus text format.
#[get("/metrics")]
async fn metrics(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}

#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state.db.ping().await.map_err(|e| e.to_string());
    let key_store = state.kv.ping().await.map_err(|e| e.to_string());
    let describe = |result: &Result<(), String>| match result {
        Ok(()) => "ok".to_string(),
        Err(error) => error.clone(),
    };
    let body = json!({
        "status": if database.is_ok() && key_store.is_ok() { "ready" } else { "not_ready" },
        "database": describe(&database),
        "key_store": describe(&key_store),
    });
    if database.is_ok() && key_store.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
