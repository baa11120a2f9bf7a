//! The simulator (docs/design.md §2.6): a flash sale run by the load-test
//! engine inside this server, against itself, and watched while it runs. Like
//! an experiment it buys from a product of its own, sets the switches as asked
//! (those not named stay on), puts every switch back afterwards and reads the
//! audit; it holds the lab's one-at-a-time lock for the whole run. The run is
//! a task of its own, so a reader that goes away does not stop it; every tick
//! goes into the run's log, which any number of readers follow.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::experiments::{Attack, Experiment};
use super::{LabError, MAX_RACE_WINDOW_MS, Saved, quiesce};
use crate::flows::{audit, shared};
use crate::loadtest::{self, Scenario, StockProbe, StockSample, Tick, TickSink};
use crate::state::AppState;
use crate::store::products::NewProduct;
use crate::switches::Defense;
use crate::workbench::SimulationLog;

/// The bounds of a simulation: a lesson, not a benchmark.
pub const MAX_USERS: usize = 20_000;
pub const MAX_STOCK: i64 = 100_000;
pub const MAX_CONCURRENCY: usize = 256;
/// The longest a simulation's load may last.
const MAX_LOAD: Duration = Duration::from_secs(60);
/// The longest a whole simulation may last (the buyers' logins and the load);
/// past it the run ends as failed, and the switches are put back as always.
pub const MAX_RUN: Duration = Duration::from_secs(120);
/// The scenarios the simulator runs.
const SCENARIOS: [(&str, Scenario); 4] = [
    ("flash-sale", Scenario::FlashSale),
    ("double-click", Scenario::DoubleClick),
    ("retry-storm", Scenario::RetryStorm),
    ("mixed", Scenario::Mixed),
];

/// What was asked, as the client said it.
#[derive(Debug, Clone)]
pub struct Asked {
    pub users: usize,
    pub stock: i64,
    pub concurrency: usize,
    pub scenario: String,
    /// Switches by defense id; the ones not named stay on.
    pub defenses: BTreeMap<String, bool>,
    pub race_window_ms: Option<u64>,
}

/// A simulation checked and ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    users: usize,
    stock: i64,
    concurrency: usize,
    scenario: Scenario,
    switches: Vec<(Defense, bool)>,
    race_window_ms: u64,
}

/// Checks what was asked against the bounds and the names the server knows.
pub fn plan(asked: &Asked) -> Result<Plan, LabError> {
    within("users", asked.users as i64, 1, MAX_USERS as i64)?;
    within("stock", asked.stock, 1, MAX_STOCK)?;
    within(
        "concurrency",
        asked.concurrency as i64,
        1,
        MAX_CONCURRENCY as i64,
    )?;
    let race_window_ms = asked.race_window_ms.unwrap_or(0);
    within(
        "race_window_ms",
        race_window_ms as i64,
        0,
        MAX_RACE_WINDOW_MS as i64,
    )?;
    Ok(Plan {
        users: asked.users,
        stock: asked.stock,
        concurrency: asked.concurrency,
        scenario: scenario(&asked.scenario)?,
        switches: switches(&asked.defenses)?,
        race_window_ms,
    })
}

fn within(name: &str, value: i64, low: i64, high: i64) -> Result<(), LabError> {
    if (low..=high).contains(&value) {
        return Ok(());
    }
    Err(LabError::BadRequest(format!(
        "{name} must be {low} to {high}"
    )))
}

fn scenario(name: &str) -> Result<Scenario, LabError> {
    SCENARIOS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, scenario)| *scenario)
        .ok_or_else(|| {
            let names: Vec<&str> = SCENARIOS.iter().map(|(known, _)| *known).collect();
            LabError::BadRequest(format!("scenario must be one of {}", names.join(", ")))
        })
}

/// Every defense on, except those asked off.
fn switches(asked: &BTreeMap<String, bool>) -> Result<Vec<(Defense, bool)>, LabError> {
    if let Some(unknown) = asked.keys().find(|id| Defense::from_id(id).is_none()) {
        return Err(LabError::BadRequest(format!(
            "no defense {unknown:?} (GET /api/admin/defenses lists them)"
        )));
    }
    Ok(Defense::all()
        .map(|defense| (defense, asked.get(defense.id()).copied().unwrap_or(true)))
        .collect())
}

impl Plan {
    /// The request as the log keeps it: every switch spelled out.
    fn describe(&self) -> Value {
        let switches: BTreeMap<&str, bool> = self
            .switches
            .iter()
            .map(|(defense, on)| (defense.id(), *on))
            .collect();
        json!({
            "users": self.users,
            "stock": self.stock,
            "concurrency": self.concurrency,
            "scenario": scenario_name(self.scenario),
            "defenses": switches,
            "race_window_ms": self.race_window_ms,
        })
    }
}

fn scenario_name(scenario: Scenario) -> Value {
    serde_json::to_value(scenario).unwrap_or(Value::Null)
}

/// The defenses a sale can show broken: those on the way to an order.
const ORDER_SIDE: [Defense; 4] = [
    Defense::IdempotencyKey,
    Defense::UniqueIndex,
    Defense::VersionLock,
    Defense::StockGate,
];

/// The scenario that shows `experiment`'s anomaly in a sale, if one does: the
/// experiment is then a preset of the simulator (its switches, that scenario).
pub fn preset_scenario(experiment: &Experiment) -> Option<&'static str> {
    let shown_by_a_sale = ORDER_SIDE.contains(&experiment.defense)
        && experiment.variants.is_empty()
        // The InnoDB experiments show locks of one engine, not a sale's damage.
        && experiment.engines.is_empty();
    if !shown_by_a_sale {
        return None;
    }
    Some(match experiment.attack {
        Attack::DoubleSubmit => "double-click",
        _ => "flash-sale",
    })
}

/// A preset's switches: the experiment's defense off with the layers that hide it.
pub fn preset_off(experiment: &Experiment) -> Vec<&'static str> {
    std::iter::once(experiment.defense)
        .chain(experiment.hidden.iter().copied())
        .map(Defense::id)
        .collect()
}

/// Starts a simulation in a task of its own; answers at once with its log.
pub fn start(state: Arc<AppState>, plan: Plan) -> Result<Arc<SimulationLog>, LabError> {
    let turn = state
        .lab
        .try_start_owned()
        .ok_or(LabError::SimulationRunning)?;
    let base_url = state
        .lab
        .base_url()
        .ok_or(LabError::NotListening)?
        .to_string();
    let log = state.lab.simulations.open(plan.describe());
    let run_log = log.clone();
    let lab_runtime = state.clone();
    lab_runtime.lab.spawn(async move {
        let end = run(&state, &plan, &run_log, base_url).await;
        // The lab is free before the run says it is over: a reader that
        // starts the next run on `done` is not refused.
        drop(turn);
        run_log.end(end);
    });
    Ok(log)
}

/// The whole run: the sale, then the switches put back, then the audit; what
/// it returns is the `done` event.
async fn run(
    state: &Arc<AppState>,
    plan: &Plan,
    log: &Arc<SimulationLog>,
    base_url: String,
) -> Value {
    let saved = Saved::take(state);
    let report = bounded_sale(state, plan, log, base_url).await;
    // The run's messages are consumed under the run's switches.
    let quiet = quiesce(state).await;
    let switches = state.switches.snapshot();
    let restored = saved.put_back(state).await;
    let audit = audit::run(state).await;
    let failure = [
        report.as_ref().err().map(ToString::to_string),
        quiet.err().map(|error| error.to_string()),
        restored
            .err()
            .map(|error| format!("the switches were not put back: {error}")),
        audit
            .as_ref()
            .err()
            .map(|error| format!("the audit failed: {error}")),
    ]
    .into_iter()
    .flatten()
    .next();
    let mut done = json!({
        "state": if failure.is_some() { "failed" } else { "done" },
        "switches": switches,
        "summary": report.as_ref().ok().map(summary),
        "audit": audit.ok(),
    });
    if let Some(error) = failure {
        tracing::warn!(simulation = %log.id, %error, "the simulation failed");
        done["error"] = error.into();
    }
    done
}

/// The sale in a task of its own (a panic in it is a failed run, not a lost
/// one), ended early when the server stops or the run outlasts [`MAX_RUN`].
async fn bounded_sale(
    state: &Arc<AppState>,
    plan: &Plan,
    log: &Arc<SimulationLog>,
    base_url: String,
) -> Result<loadtest::Report, LabError> {
    let sale = state
        .lab
        .spawn(sale(state.clone(), plan.clone(), log.clone(), base_url));
    let abort = sale.abort_handle();
    let ended_early = |why: String| {
        abort.abort();
        Err(LabError::Step(why))
    };
    tokio::select! {
        joined = sale => joined.unwrap_or_else(|error| Err(LabError::Step(format!("the run stopped: {error}")))),
        () = state.lab.stopping() => ended_early("the server is stopping".to_string()),
        () = tokio::time::sleep(MAX_RUN) => ended_early(format!("the run took longer than {} s", MAX_RUN.as_secs())),
    }
}

/// The sale itself: a fresh product, the switches, the load.
async fn sale(
    state: Arc<AppState>,
    plan: Plan,
    log: Arc<SimulationLog>,
    base_url: String,
) -> Result<loadtest::Report, LabError> {
    let (state, plan, log) = (&state, &plan, &log);
    crate::store::lab::purge(&state.db).await?;
    let product = NewProduct {
        name: "lab: simulator".to_string(),
        price_cents: 19_900,
        stock: plan.stock,
        starts_in_secs: None,
    };
    let product = crate::store::lab::create_product(&state.db, "simulator", &product).await?;
    shared::set_defenses(state, &plan.switches).await?;
    let mut lab = state.switches.lab_settings();
    lab.race_window_ms = plan.race_window_ms;
    shared::set_lab(state, lab).await?;
    let config = load_config(state, plan, log, base_url, product.id);
    loadtest::run(config)
        .await
        .map_err(|error| LabError::Step(format!("the load: {error}")))
}

fn load_config(
    state: &Arc<AppState>,
    plan: &Plan,
    log: &Arc<SimulationLog>,
    base_url: String,
    product_id: i64,
) -> loadtest::Config {
    use secrecy::ExposeSecret;
    loadtest::Config {
        targets: vec![base_url],
        scenario: plan.scenario,
        users: plan.users,
        concurrency: plan.concurrency,
        stock: plan.stock,
        duplicates: 3,
        duration: MAX_LOAD,
        requests: None,
        // Past the rate limits, and allowed to set the provider (mixed).
        admin_token: Some(
            state
                .settings
                .secrets
                .admin_token
                .expose_secret()
                .to_string(),
        ),
        reset: false,
        path: "/healthz".to_string(),
        product: product_id,
        client_timeout: Duration::from_millis(50),
        progress: Arc::new(loadtest::Silent),
        // The audit comes after the switches are put back.
        skip_audit: true,
        probe: Some(Arc::new(DatabaseProbe {
            state: state.clone(),
        })),
        sink: Some(Arc::new(LogSink(log.clone()))),
    }
}

/// `done.summary`: the run's figures; its counts are the last tick's.
fn summary(report: &loadtest::Report) -> Value {
    let last = report.series.last().cloned().unwrap_or_default();
    json!({
        "requests": last.requests,
        "answers": last.answers,
        "by_defense": last.by_defense,
        "orders": last.orders,
        "stock": last.stock,
        "stock_row": last.stock_row,
        "gate": last.gate,
        "orders_created": report.outcome.orders_created,
        "replies": report.replies,
        "duration_secs": report.duration_secs,
        "throughput_per_sec": report.throughput_per_sec,
        "latency_ms": report.latency_ms,
        "sold_out_after_secs": report.outcome.sold_out_after_secs,
        "ticks": report.series.len(),
    })
}

/// Each tick goes into the run's log.
#[derive(Debug)]
struct LogSink(Arc<SimulationLog>);

impl TickSink for LogSink {
    fn tick(&self, tick: &Tick) {
        match serde_json::to_value(tick) {
            Ok(tick) => self.0.push_tick(tick),
            Err(error) => tracing::warn!(%error, "a simulation tick was not kept"),
        }
    }
}

/// The stock as this server sees it: the row, the units in orders, the gate.
#[derive(Debug)]
struct DatabaseProbe {
    state: Arc<AppState>,
}

#[async_trait]
impl StockProbe for DatabaseProbe {
    async fn sample(&self, product_id: i64) -> Option<StockSample> {
        let state = &self.state;
        let pool = state.db.pool();
        let product = crate::store::products::find(pool, product_id)
            .await
            .ok()??;
        let units = crate::store::lab::units_ordered(pool, product_id)
            .await
            .ok();
        let gate = match state.gate.is_on() {
            true => state.gate.counter(product_id).await.ok().flatten(),
            false => None,
        };
        Some(StockSample {
            initial: product.initial_stock,
            row: product.stock,
            gate,
            units_sold: units,
        })
    }
}
