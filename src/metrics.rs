//! Prometheus metrics (`GET /metrics`), through the `metrics` facade and
//! `metrics-exporter-prometheus`. One recorder per process (tests share it).
//!
//! - `flashguard_http_request_duration_seconds{method,route,status}`: latency histogram
//! - `flashguard_duplicates_stopped_total{defense}`: replies that a defense produced
//! - counters for what each defense sees: replays, in-flight conflicts, version
//!   conflicts and exhausted retries, deadlocks retried, token refusals,
//!   order-lock waits, callback duplicates, message redeliveries, gate answers.
//! - `flashguard_rate_limited_total{limit}`: requests refused 429 at the door
//! - `flashguard_audit_runs_total{view}`: audits computed (`admin` fresh, `public` cached)

use std::sync::OnceLock;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::causes::Causes;
use crate::switches::DEFENSE_HEADER;

pub const REPLAYS: &str = "flashguard_idempotent_replays_total";
pub const IN_FLIGHT_CONFLICTS: &str = "flashguard_in_flight_conflicts_total";
pub const VERSION_CONFLICTS: &str = "flashguard_version_conflicts_total";
pub const RETRIES_EXHAUSTED: &str = "flashguard_version_retries_exhausted_total";
pub const DEADLOCK_RETRIES: &str = "flashguard_deadlock_retries_total";
pub const TOKEN_REFUSALS: &str = "flashguard_payment_token_refusals_total";
pub const LOCK_WAITS: &str = "flashguard_order_lock_waits_total";
pub const CALLBACK_DUPLICATES: &str = "flashguard_callback_duplicates_total";
pub const REDELIVERIES: &str = "flashguard_message_redeliveries_total";
pub const DUPLICATES_STOPPED: &str = "flashguard_duplicates_stopped_total";
pub const REQUEST_DURATION: &str = "flashguard_http_request_duration_seconds";
pub const RATE_LIMITED: &str = "flashguard_rate_limited_total";
pub const AUDIT_RUNS: &str = "flashguard_audit_runs_total";
/// Orders per group-commit transaction (docs/design.md §2.3).
pub const ORDER_BATCH_SIZE: &str = "flashguard_order_batch_size";

/// Batch-size buckets: 1, 2, 4 … 128 orders.
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once and returns the handle that renders `/metrics`.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(ORDER_BATCH_SIZE.into()),
                        &BATCH_BUCKETS,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => handle,
                Err(error) => {
                    tracing::warn!(error = %Causes(&error), "metrics recorder not installed; /metrics stays empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// Records the size of one group-commit batch.
pub fn observe_batch(size: usize) {
    metrics::histogram!(ORDER_BATCH_SIZE).record(size as f64);
}

/// Counts one event.
pub fn count(name: &'static str) {
    metrics::counter!(name).increment(1);
}

/// Counts one event with one label.
pub fn count_labelled(name: &'static str, label: &'static str, value: &'static str) {
    metrics::counter!(name, label => value).increment(1);
}

/// Middleware: the latency of every request, and every reply a defense produced.
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = request.method().to_string();
    let response = next.call(request).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let status = response.status().as_u16().to_string();
    metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    if let Some(defense) = response
        .headers()
        .get(DEFENSE_HEADER)
        .and_then(|value| value.to_str().ok())
    {
        metrics::counter!(DUPLICATES_STOPPED, "defense" => defense.to_string()).increment(1);
    }
    Ok(response)
}
