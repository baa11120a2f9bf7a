//! The lab's API: the experiments, running one, and the run-time lab settings.

use actix_web::{HttpResponse, get, post, put, web};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::flows::shared;
use crate::lab::{self, LabError, experiments};
use crate::state::AppState;

/// `{"experiments":[{"id","defense","title":{"zh","en"}}…]}`
#[get("/api/lab/experiments")]
async fn list() -> HttpResponse {
    let experiments: Vec<_> = experiments::EXPERIMENTS
        .iter()
        .map(|experiment| {
            json!({
                "id": experiment.id,
                "defense": experiment.defense.id(),
                "title": experiment.title,
                "anomaly": experiment.anomaly,
                "hidden": experiment.hidden.iter().map(|defense| defense.id()).collect::<Vec<_>>(),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "experiments": experiments }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Switch {
    On,
    Off,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    defense: Switch,
}

/// Runs an experiment with its defense on or off (admin).
#[post("/api/lab/experiments/{id}/run")]
async fn run(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
    body: web::Json<RunBody>,
) -> Result<HttpResponse, ApiError> {
    let on = matches!(body.defense, Switch::On);
    let report = lab::run(&state, &id, on).await.map_err(api_error)?;
    Ok(HttpResponse::Ok().json(report))
}

fn api_error(error: LabError) -> ApiError {
    match error {
        LabError::UnknownExperiment(_) => ApiError::NotFound,
        LabError::Running => ApiError::ExperimentRunning,
        LabError::Store(error) => ApiError::Database(error),
        other => ApiError::Internal(format!("lab: {other}")),
    }
}

#[get("/api/admin/lab")]
async fn get_settings(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    HttpResponse::Ok().json(state.switches.lab_settings())
}

/// The largest race window the lab accepts (ms): a teaching aid, not a stall.
const MAX_RACE_WINDOW_MS: u64 = 2_000;

#[put("/api/admin/lab")]
async fn put_settings(
    state: web::Data<AppState>,
    _admin: Admin,
    body: web::Json<LabSettingsPatch>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.into_inner();
    let mut settings = state.switches.lab_settings();
    if let Some(window) = patch.race_window_ms {
        if window > MAX_RACE_WINDOW_MS {
            return Err(ApiError::InvalidRequest(format!(
                "race_window_ms must be 0 to {MAX_RACE_WINDOW_MS}"
            )));
        }
        settings.race_window_ms = window;
    }
    if let Some(after) = patch.redeliver_after_ms {
        if !(50..=60_000).contains(&after) {
            return Err(ApiError::InvalidRequest(
                "redeliver_after_ms must be 50 to 60000".into(),
            ));
        }
        settings.redeliver_after_ms = after;
    }
    settings.trace = patch.trace.unwrap_or(settings.trace);
    shared::set_lab(&state, settings).await?;
    Ok(HttpResponse::Ok().json(settings))
}

/// A partial update of the lab settings; unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabSettingsPatch {
    race_window_ms: Option<u64>,
    trace: Option<bool>,
    redeliver_after_ms: Option<u64>,
}
