//! The load-test engine behind `cargo run --release --bin loadtest`, usable as a
//! library (the lab can call [`run`]). Each scenario models a real source of
//! duplicates; every run is bounded in time and in requests, and only talks to
//! the URLs it is given. After the load it fetches `/api/audit`: the verdict.

mod client;
mod report;
mod scenarios;

use std::time::Duration;

pub use report::Report;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// U users race for S units of one product.
    FlashSale,
    /// Each user sends k identical requests at once with one key.
    DoubleClick,
    /// Clients time out early and retry with the same key, with jitter.
    RetryStorm,
    /// Pay requests replaying used and foreign payment tokens.
    TokenReplay,
    /// The provider sends many duplicated, concurrent, out-of-order callbacks.
    CallbackStorm,
    /// All of the above at once.
    Mixed,
    /// One request repeated with one key: the replay path (benchmarks).
    Replay,
    /// Orders spread over many products: no hot row (benchmarks).
    Spread,
    /// GET of `--path` in a loop: the HTTP baseline (benchmarks).
    Ping,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub targets: Vec<String>,
    pub scenario: Scenario,
    pub users: usize,
    pub concurrency: usize,
    pub stock: i64,
    pub duplicates: usize,
    pub duration: Duration,
    pub requests: Option<u64>,
    pub admin_token: Option<String>,
    pub reset: bool,
    pub path: String,
    /// The product to buy when not resetting.
    pub product: i64,
    pub client_timeout: Duration,
    pub show_progress: bool,
    /// Skip the audit (a target that is not flashguard, e.g. the HTTP baseline).
    pub skip_audit: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadTestError {
    #[error("no --target given")]
    NoTarget,
    #[error("{0} needs --admin-token (it changes the sale or the provider)")]
    NeedsAdmin(&'static str),
    #[error("setup failed: {0}")]
    Setup(String),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

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
