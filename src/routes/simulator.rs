//! The simulator's API (docs/design.md §2.6): start a run, follow it as
//! Server-Sent Events, read it whole afterwards. All three need the admin
//! bearer (the page reads the stream with `fetch`, which can send it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::lab::simulator::{self, Asked};
use crate::state::AppState;
use crate::workbench::SimulationLog;

/// How long the stream stays silent before it sends a comment, so that a
/// reader that went away is noticed and a proxy keeps the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// What to simulate; every member has a default.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SimulationBody {
    /// Buyers (1 to 20,000; each logs in before the load).
    #[serde(default = "default_users")]
    #[schema(example = 2000, minimum = 1, maximum = 20_000)]
    users: usize,
    /// Units for sale (1 to 100,000).
    #[serde(default = "default_stock")]
    #[schema(example = 500, minimum = 1, maximum = 100_000)]
    stock: i64,
    /// Requests in flight at once (1 to 256).
    #[serde(default = "default_concurrency")]
    #[schema(example = 64, minimum = 1, maximum = 256)]
    concurrency: usize,
    /// `flash-sale`, `double-click`, `retry-storm` or `mixed`.
    #[serde(default = "default_scenario")]
    #[schema(example = "flash-sale")]
    scenario: String,
    /// Defense switches by id; the ones not named stay on.
    #[serde(default)]
    #[schema(example = json!({"version_lock": false, "stock_gate": false}))]
    defenses: BTreeMap<String, bool>,
    /// The lab's race window during the run (ms, 0 to 2,000; default 0).
    #[schema(maximum = 2_000)]
    race_window_ms: Option<u64>,
}

fn default_users() -> usize {
    2_000
}
fn default_stock() -> i64 {
    500
}
fn default_concurrency() -> usize {
    64
}
fn default_scenario() -> String {
    "flash-sale".to_string()
}

impl SimulationBody {
    fn asked(self) -> Asked {
        Asked {
            users: self.users,
            stock: self.stock,
            concurrency: self.concurrency,
            scenario: self.scenario,
            defenses: self.defenses,
            race_window_ms: self.race_window_ms,
        }
    }
}

/// Starts a simulation (admin): 202 with its id; 409 while a simulation or an
/// experiment runs.
#[utoipa::path(
    tag = "lab",
    operation_id = "start_simulation",
    security(("admin" = [])),
    request_body = SimulationBody,
    responses((status = 202, description = "Started: `{\"id\"}`", body = Object)),
)]
#[post("/api/lab/simulations")]
async fn start(
    state: web::Data<AppState>,
    _admin: Admin,
    body: web::Json<SimulationBody>,
) -> Result<HttpResponse, ApiError> {
    let plan = simulator::plan(&body.into_inner().asked()).map_err(super::lab::api_error)?;
    let log = simulator::start(state.into_inner(), plan).map_err(super::lab::api_error)?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/lab/simulations/{}", log.id)))
        .json(json!({ "id": log.id })))
}

/// The runs this instance keeps (admin), oldest first: `{"simulations":[{"id","state","request"}]}`.
/// A page that opens while a run goes on finds it here and follows it.
#[utoipa::path(
    tag = "lab",
    operation_id = "list_simulations",
    security(("admin" = [])),
    responses((status = 200, description = "The recent runs", body = Object)),
)]
#[get("/api/lab/simulations")]
async fn list(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    let runs: Vec<Value> = state
        .lab
        .simulations
        .all()
        .iter()
        .map(|log| json!({ "id": log.id, "state": log.state(), "request": log.request }))
        .collect();
    HttpResponse::Ok().json(json!({ "simulations": runs }))
}

fn find(state: &AppState, id: &str) -> Result<Arc<SimulationLog>, ApiError> {
    state.lab.simulations.find(id).ok_or(ApiError::NotFound)
}

/// A simulation as recorded so far (admin): `{"id","state","request","ticks","done"}`.
#[utoipa::path(
    tag = "lab",
    operation_id = "show_simulation",
    security(("admin" = [])),
    params(("id" = String, Path, description = "The id `POST /api/lab/simulations` answered")),
    responses((status = 200, description = "The run's series", body = Object)),
)]
#[get("/api/lab/simulations/{id}")]
async fn show(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let log = find(&state, &id)?;
    let written = log.everything();
    Ok(HttpResponse::Ok().json(json!({
        "id": log.id,
        "state": log.state(),
        "request": log.request,
        "ticks": written.ticks,
        "done": written.end,
    })))
}

/// The run as Server-Sent Events (admin): every tick from the first
/// (`event: tick`), then `event: done`, then the stream ends.
#[utoipa::path(
    tag = "lab",
    operation_id = "simulation_events",
    security(("admin" = [])),
    params(("id" = String, Path, description = "The id `POST /api/lab/simulations` answered")),
    responses((status = 200, description = "`text/event-stream`: `tick` events, then `done`", content_type = "text/event-stream", body = SimulationEvent)),
)]
#[get("/api/lab/simulations/{id}/events")]
async fn events(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let log = find(&state, &id)?;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(event_stream(log)))
}

/// One event of the stream as an SSE parser reads it (OpenAPI 3.1 describes
/// each event of a `text/event-stream` so): `event` is `tick` or `done`, `id` a
/// tick's index, `data` its JSON on one line.
#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "describes the stream for the OpenAPI document; never built"
)]
struct SimulationEvent {
    #[schema(example = "tick")]
    event: String,
    #[schema(example = "0")]
    id: Option<String>,
    data: String,
}

/// Where a reader is in the log.
struct Reader {
    log: Arc<SimulationLog>,
    changes: tokio::sync::watch::Receiver<u64>,
    cursor: usize,
    over: bool,
}

fn event_stream(
    log: Arc<SimulationLog>,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    let changes = log.changes();
    let reader = Reader {
        log,
        changes,
        cursor: 0,
        over: false,
    };
    futures_util::stream::unfold(reader, |mut reader| async move {
        let chunk = reader.next_chunk().await?;
        Some((Ok(Bytes::from(chunk)), reader))
    })
}

impl Reader {
    /// The next events to send (waiting for them, at most [`KEEP_ALIVE`]);
    /// `None` once `done` was sent.
    async fn next_chunk(&mut self) -> Option<String> {
        loop {
            if self.over {
                return None;
            }
            // Marked seen before reading: a write after the read wakes the wait.
            self.changes.borrow_and_update();
            let unread = self.log.unread(self.cursor);
            if !unread.ticks.is_empty() {
                return Some(self.ticks(&unread.ticks));
            }
            if let Some(end) = unread.end {
                self.over = true;
                return Some(event("done", None, &end));
            }
            match tokio::time::timeout(KEEP_ALIVE, self.changes.changed()).await {
                Err(_silence) => return Some(": keep-alive\n\n".to_string()),
                Ok(Err(_closed)) => self.over = true,
                Ok(Ok(())) => {}
            }
        }
    }

    fn ticks(&mut self, ticks: &[Value]) -> String {
        let mut chunk = String::new();
        for tick in ticks {
            chunk.push_str(&event("tick", Some(self.cursor), tick));
            self.cursor += 1;
        }
        chunk
    }
}

/// One Server-Sent Event: its type, its id (the tick's index), its JSON on one line.
fn event(kind: &str, id: Option<usize>, data: &Value) -> String {
    let id = id.map(|id| format!("id: {id}\n")).unwrap_or_default();
    format!("event: {kind}\n{id}data: {data}\n\n")
}
