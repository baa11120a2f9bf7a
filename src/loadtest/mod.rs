//! The load-test engine behind `cargo run --release --bin loadtest`, usable as a
//! library (the lab can call [`run`]). Each scenario models a real source of
//! duplicates; every run is bounded in time and in requests, and only talks to
//! the URLs it is given. After the load it fetches `/api/audit`: the verdict.

mod client;
mod config;
mod report;
mod scenarios;

pub use config::{Config, LoadTestError, Progress, Scenario, Silent};
pub use report::Report;

/// Runs the scenario and returns its report (the audit included).
pub async fn run(config: Config) -> Result<Report, LoadTestError> {
    if config.targets.is_empty() {
        return Err(LoadTestError::NoTarget);
    }
    let client = client::LoadClient::new(&config)?;
    let outcome = scenarios::run(&client, &config).await?;
    let snapshot = client.recorder.finish();
    let audit = if config.skip_audit {
        serde_json::json!({ "ok": true, "checks": [], "skipped": true })
    } else {
        client.audit().await
    };
    Ok(Report::build(&config, outcome, audit, snapshot))
}
