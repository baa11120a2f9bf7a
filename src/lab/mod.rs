//! The lab's experiments, run from the lab page or a lesson
//! (`POST /api/lab/experiments/{id}/run`): a bounded attack over real HTTP
//! against this very server, on a product of its own, with the defense under
//! study on or off and the layers that would hide it off; then every switch and
//! setting is put back and the audit is read. Runs are serialized, and so are
//! the simulator's runs (`simulator.rs`) with them.

pub mod attacks;
pub mod context;
pub mod experiments;
pub mod innodb;
pub mod notices;
pub mod simulator;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::defenses::stock_gate::GateError;
use crate::domain::Channel;
use crate::flows::audit::{self, AuditReport};
use crate::flows::{JobError, rewards, shared};
use crate::psp::PspBehaviour;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::products::NewProduct;
use crate::switches::{BoardState, Defense};
use crate::text::Text;
use experiments::{Experiment, Variant};

/// The largest race window the lab accepts (ms), in its settings and in a
/// simulation: a teaching aid, not a stall.
pub const MAX_RACE_WINDOW_MS: u64 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("no experiment {0:?}")]
    UnknownExperiment(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("another experiment or a simulation is running")]
    Running,
    #[error("a simulation or an experiment is running")]
    SimulationRunning,
    #[error("{experiment} runs on {engines} only; this server runs on {here}")]
    Unavailable {
        experiment: &'static str,
        engines: String,
        here: String,
    },
    #[error("the lab does not know this server's address yet")]
    NotListening,
    #[error("an attack request failed")]
    Http(#[from] reqwest::Error),
    #[error("an attack step failed: {0}")]
    Step(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error(transparent)]
    Shared(#[from] JobError),
    #[error("the audit failed: {0}")]
    Audit(String),
}

/// What a run was asked to do: the defense under study off or on, or (for an
/// experiment that compares correct variants) one variant, defense on.
#[derive(Debug, Clone)]
pub enum Asked {
    Defense { on: bool },
    Variant(String),
}

/// The answer of a run (the contract of docs/design.md §4).
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub experiment: &'static str,
    pub defense: &'static str,
    /// `on` or `off`: the defense under study.
    pub state: &'static str,
    /// The variant run, for an experiment that compares variants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<&'static str>,
    /// The payment channel, for an experiment that runs in several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'static str>,
    /// Every switch as it was during the run.
    pub switches: BTreeMap<&'static str, bool>,
    pub requests: u64,
    /// Answers by HTTP status.
    pub replies: BTreeMap<String, u64>,
    pub anomalies: i64,
    pub anomaly: Text,
    /// Figures particular to the experiment (e.g. `hot_row`: retries, units
    /// sold, stock left, 503 answers, the sale's duration in ms).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<&'static str, i64>,
    pub audit: AuditReport,
}

/// What an attack saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub requests: u64,
    pub replies: BTreeMap<String, u64>,
    pub anomalies: i64,
    pub counts: BTreeMap<&'static str, i64>,
}

/// How one run is staged: the defense under study on or off, the variant,
/// the payment channel.
#[derive(Debug, Clone, Copy)]
struct Stage {
    on: bool,
    variant: Option<&'static Variant>,
    channel: Channel,
}

/// Checks what was asked against what the experiment is.
fn stage(
    experiment: &'static Experiment,
    asked: Asked,
    channel: Option<Channel>,
) -> Result<Stage, LabError> {
    let channel = channel_of(experiment, channel)?;
    match (experiment.variants.is_empty(), asked) {
        (true, Asked::Defense { on }) => Ok(Stage {
            on,
            variant: None,
            channel,
        }),
        (false, Asked::Variant(id)) => match experiment.variant(&id) {
            Some(variant) => Ok(Stage {
                on: true,
                variant: Some(variant),
                channel,
            }),
            None => Err(LabError::BadRequest(format!(
                "{} has no variant {id:?}; its variants: {}",
                experiment.id,
                variant_ids(experiment)
            ))),
        },
        (true, Asked::Variant(_)) => Err(LabError::BadRequest(format!(
            "{} is run with {{\"defense\":\"off\"|\"on\"}}",
            experiment.id
        ))),
        (false, Asked::Defense { .. }) => Err(LabError::BadRequest(format!(
            "{} compares correct variants, each with the defense on: run it with {{\"variant\": one of {}}}",
            experiment.id,
            variant_ids(experiment)
        ))),
    }
}

/// The channel asked for, if the experiment runs in it; else its first.
fn channel_of(experiment: &Experiment, asked: Option<Channel>) -> Result<Channel, LabError> {
    match asked {
        None => Ok(experiment.channels.first().copied().unwrap_or_default()),
        Some(channel) if experiment.channels.contains(&channel) => Ok(channel),
        Some(channel) => Err(LabError::BadRequest(format!(
            "{} does not run in the {} channel",
            experiment.id,
            channel.as_str()
        ))),
    }
}

fn variant_ids(experiment: &Experiment) -> String {
    let ids: Vec<&str> = experiment.variants.iter().map(|v| v.id).collect();
    ids.join(", ")
}

/// Runs experiment `id` as asked, in `channel` (default: its first).
pub async fn run(
    state: &AppState,
    id: &str,
    asked: Asked,
    channel: Option<Channel>,
) -> Result<RunReport, LabError> {
    let experiment =
        experiments::find(id).ok_or_else(|| LabError::UnknownExperiment(id.to_string()))?;
    available_here(state, experiment)?;
    let stage = stage(experiment, asked, channel)?;
    let _only_one = state.lab.try_start().ok_or(LabError::Running)?;
    let saved = Saved::take(state);
    let outcome = attack(state, experiment, stage).await;
    // The run's messages are consumed under the run's switches.
    let quiet = quiesce(state).await;
    let switches = state.switches.snapshot();
    saved.put_back(state).await?;
    let outcome = outcome?;
    quiet?;
    let audit = audit::run(state)
        .await
        .map_err(|error| LabError::Audit(error.to_string()))?;
    Ok(RunReport {
        experiment: experiment.id,
        defense: experiment.defense.id(),
        state: if stage.on { "on" } else { "off" },
        variant: stage.variant.map(|variant| variant.id),
        channel: (experiment.channels.len() > 1).then(|| stage.channel.as_str()),
        switches,
        requests: outcome.requests,
        replies: outcome.replies,
        anomalies: outcome.anomalies,
        anomaly: experiment.anomaly,
        counts: outcome.counts,
        audit,
    })
}

/// An experiment for one engine (the InnoDB ones) runs only there.
fn available_here(state: &AppState, experiment: &Experiment) -> Result<(), LabError> {
    let here = state.db.backend();
    if experiment.runs_on(here) {
        return Ok(());
    }
    let names: Vec<&str> = experiment.engines.iter().map(|b| b.name()).collect();
    Err(LabError::Unavailable {
        experiment: experiment.id,
        engines: names.join(", "),
        here: here.name().to_string(),
    })
}

/// Waits (at most 4 s) until every "order paid" message is published and
/// handled, so that nothing of this run lands during the next one.
async fn quiesce(state: &AppState) -> Result<(), LabError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    loop {
        let unpublished = crate::store::outbox::count_unpublished(state.db.pool()).await?;
        let pending = state
            .bus
            .pending(rewards::ORDER_PAID_TOPIC, rewards::REWARDS_GROUP)
            .await
            .unwrap_or(0);
        if (unpublished == 0 && pending == 0) || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything an experiment changes, to put back afterwards.
struct Saved {
    board: BoardState,
    psp: PspBehaviour,
    crashes: u64,
}

impl Saved {
    fn take(state: &AppState) -> Self {
        Self {
            board: state.switches.save(),
            psp: state.psp.behaviour(),
            crashes: state.faults.crash_after_effect(),
        }
    }

    async fn put_back(self, state: &AppState) -> Result<(), LabError> {
        state.psp.set_behaviour(self.psp);
        state.faults.set_crash_after_effect(self.crashes);
        // Every instance follows; the gate reloads if it comes back on.
        shared::restore(state, &self.board).await?;
        Ok(())
    }
}

/// Sets the stage (a fresh product, the switches) and runs the attack.
async fn attack(
    state: &AppState,
    experiment: &Experiment,
    stage: Stage,
) -> Result<Outcome, LabError> {
    let base_url = state.lab.base_url().ok_or(LabError::NotListening)?;
    crate::store::lab::purge(&state.db).await?;
    let product = NewProduct {
        name: format!("lab: {}", experiment.id),
        price_cents: 19_900,
        stock: attacks::stock_for(experiment.attack),
        starts_in_secs: None,
    };
    let product = crate::store::lab::create_product(&state.db, experiment.id, &product).await?;
    configure(state, experiment, stage).await?;
    let context = context::Context {
        state,
        http: state.lab.http(),
        base_url,
        product_id: product.id,
        initial_stock: product.initial_stock,
        prefix: format!("lab-{}", experiment.id),
        channel: stage.channel,
    };
    attacks::run(&context, experiment.attack).await
}

/// All defenses on, the hiding layers off, the one under study as asked; a
/// variant sets how stock is written.
async fn configure(
    state: &AppState,
    experiment: &Experiment,
    stage: Stage,
) -> Result<(), LabError> {
    let switches: Vec<(Defense, bool)> = Defense::all()
        .map(|defense| {
            let wanted = if defense == experiment.defense {
                stage.on
            } else {
                !experiment.hidden.contains(&defense)
            };
            (defense, wanted)
        })
        .collect();
    shared::set_defenses(state, &switches).await?;
    let mut lab = state.switches.lab_settings();
    lab.race_window_ms = experiment.race_window_ms;
    lab.redeliver_after_ms = 300;
    if let Some(variant) = stage.variant {
        lab.stock_write = variant.stock_write;
        lab.group_commit = variant.group_commit;
    }
    shared::set_lab(state, lab).await?;
    Ok(())
}
