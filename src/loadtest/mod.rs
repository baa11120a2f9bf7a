//! The load-test engine behind `cargo run --release --bin loadtest`, usable as a
//! library (the lab can call [`run`]). Each scenario models a real source of
//! duplicates; every run is bounded in time and in requests, and only talks to
//! the URLs it is given. After the load it fetches `/api/audit`: the verdict.

mod client;
mod config;
pub mod html;
mod report;
mod sampler;
mod scenarios;
pub mod series;

pub use config::{Config, LoadTestError, Progress, Scenario, Silent};
pub use report::{Latency, Report};
pub use series::{StockProbe, StockSample, Tick, TickSink};

/// Runs the scenario and returns its report (the audit included).
pub async fn run(config: Config) -> Result<Report, LoadTestError> {
    if config.targets.is_empty() {
        return Err(LoadTestError::NoTarget);
    }
    let client = client::LoadClient::new(&config)?;
    let http_probe = sampler::HttpProbe::of(&client);
    let probe: &dyn StockProbe = match &config.probe {
        Some(probe) => probe.as_ref(),
        None => &http_probe,
    };
    let load = scenarios::run(&client, &config);
    let (outcome, series) = sampler::record_while(&client, probe, config.sink.as_ref(), load).await;
    let outcome = outcome?;
    let snapshot = client.recorder.finish();
    let audit = if config.skip_audit {
        serde_json::json!({ "ok": true, "checks": [], "skipped": true })
    } else {
        client.audit().await
    };
    Ok(Report::build(&config, outcome, audit, snapshot, series))
}
