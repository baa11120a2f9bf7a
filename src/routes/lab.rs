//! The lab's API: the experiments, running one, and the run-time lab settings.

use actix_web::{HttpResponse, get, post, put, web};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Admin;
use crate::domain::Channel;
use crate::error::ApiError;
use crate::flows::shared;
use crate::lab::{self, LabError, MAX_RACE_WINDOW_MS, experiments};
use crate::state::AppState;
use crate::switches::{LabSettings, StockWrite};

/// `{"experiments":[{"id","defense","title":{"zh","en"},"anomaly","hidden","variants"?,"channels"?}…]}`
/// The lab's experiments: one per defense, each showing its anomaly, and
/// `hot_row`, which compares correct variants (`variants`: `[{"id","title"}]`).
#[utoipa::path(
    tag = "lab",
    operation_id = "list_experiments",
    responses((status = 200, description = "The experiments", body = Object)),
)]
#[get("/api/lab/experiments")]
async fn list() -> HttpResponse {
    let experiments: Vec<_> = experiments::EXPERIMENTS
        .iter()
        .map(|experiment| {
            let mut listed = json!({
                "id": experiment.id,
                "defense": experiment.defense.id(),
                "title": experiment.title,
                "anomaly": experiment.anomaly,
                "hidden": experiment.hidden.iter().map(|defense| defense.id()).collect::<Vec<_>>(),
            });
            if !experiment.engines.is_empty() {
                listed["engines"] = experiment.engines.iter().map(|b| b.name()).collect();
            }
            if experiment.channels.len() > 1 {
                listed["channels"] = experiment.channels.iter().map(|c| c.as_str()).collect();
            }
            if !experiment.variants.is_empty() {
                listed["variants"] = experiment
                    .variants
                    .iter()
                    .map(|variant| json!({ "id": variant.id, "title": variant.title }))
                    .collect();
            }
            listed
        })
        .collect();
    HttpResponse::Ok().json(json!({ "experiments": experiments }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum Switch {
    On,
    Off,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RunBody {
    /// Run with the defense under study `on` or `off` (the others as the experiment needs).
    defense: Option<Switch>,
    /// For an experiment that compares variants (`hot_row`): which one; the
    /// defense stays on.
    #[schema(example = "conditional_decrement")]
    variant: Option<String>,
    /// For an experiment that runs in several payment channels
    /// (`callback_redelivery`, `late_failed`): which one (default `card`).
    channel: Option<Channel>,
}

impl RunBody {
    fn asked(&self) -> Result<lab::Asked, ApiError> {
        match (&self.defense, &self.variant) {
            (None | Some(Switch::On), Some(variant)) => Ok(lab::Asked::Variant(variant.clone())),
            (Some(Switch::Off), Some(_)) => Err(ApiError::InvalidRequest(
                "a variant runs with the defense on".into(),
            )),
            (Some(switch), None) => Ok(lab::Asked::Defense {
                on: matches!(switch, Switch::On),
            }),
            (None, None) => Err(ApiError::InvalidRequest(
                "say {\"defense\":\"on\"|\"off\"} (or {\"variant\":…} for hot_row)".into(),
            )),
        }
    }
}

/// Runs an experiment with its defense on or off, or one of its variants (admin).
/// Runs one experiment on this instance's database and reports what the audit saw.
#[utoipa::path(
    tag = "lab",
    operation_id = "run_experiment",
    security(("admin" = [])),
    params(("id" = String, Path, description = "An experiment id from `GET /api/lab/experiments`", example = "double_submit_key")),
    request_body = RunBody,
    responses((status = 200, description = "The run's report", body = Object)),
)]
#[post("/api/lab/experiments/{id}/run")]
async fn run(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
    body: web::Json<RunBody>,
) -> Result<HttpResponse, ApiError> {
    let asked = body.asked()?;
    let report = lab::run(&state, &id, asked, body.channel)
        .await
        .map_err(api_error)?;
    Ok(HttpResponse::Ok().json(report))
}

pub(super) fn api_error(error: LabError) -> ApiError {
    match error {
        LabError::UnknownExperiment(_) => ApiError::NotFound,
        LabError::BadRequest(why) => ApiError::InvalidRequest(why),
        LabError::Running => ApiError::ExperimentRunning,
        LabError::SimulationRunning => ApiError::SimulationRunning,
        unavailable @ LabError::Unavailable { .. } => {
            ApiError::ExperimentUnavailable(unavailable.to_string())
        }
        LabError::Store(error) => ApiError::Database(error),
        other => ApiError::Internal(format!("lab: {other}")),
    }
}

/// The lab's run-time settings.
#[utoipa::path(
    tag = "lab",
    security(("admin" = [])),
    responses((status = 200, description = "The settings", body = LabSettings)),
)]
#[get("/api/admin/lab")]
async fn get_settings(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    HttpResponse::Ok().json(state.switches.lab_settings())
}

/// Changes the lab's run-time settings (every instance).
#[utoipa::path(
    tag = "lab",
    security(("admin" = [])),
    request_body = LabSettingsPatch,
    responses((status = 200, description = "The settings after the change", body = LabSettings)),
)]
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
    settings.stock_write = patch.stock_write.unwrap_or(settings.stock_write);
    settings.group_commit = patch.group_commit.unwrap_or(settings.group_commit);
    shared::set_lab(&state, settings).await?;
    Ok(HttpResponse::Ok().json(settings))
}

/// A partial update of the lab settings; unknown fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LabSettingsPatch {
    /// A pause between a read and its write where the closing defense is off (ms).
    #[schema(maximum = 2_000)]
    race_window_ms: Option<u64>,
    /// Answers carry `Flashguard-Trace`.
    trace: Option<bool>,
    /// Redelivery delay of an unacknowledged message (ms).
    #[schema(minimum = 50, maximum = 60_000)]
    redeliver_after_ms: Option<u64>,
    /// How a guarded order takes stock on its own: `version_check` or `conditional_decrement`.
    stock_write: Option<StockWrite>,
    /// Orders of the same moment share one transaction (with `version_check`).
    group_commit: Option<bool>,
}
