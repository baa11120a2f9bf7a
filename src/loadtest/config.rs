//! What a load test runs: the scenario, its bounds and its targets.

use std::time::Duration;

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

/// Where the engine reports its progress: the command line draws a bar
/// (`src/bin/loadtest.rs`); a run without a terminal reports nothing
/// ([`Silent`]).
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// The load starts: `expected` requests, when the run is bounded by a count.
    fn start(&self, _expected: Option<u64>) {}
    /// One more request answered (or failed).
    fn advance(&self) {}
    /// Setup is over; the measured load starts now.
    fn restart(&self) {}
    /// The load is over.
    fn finish(&self) {}
}

/// No progress shown.
#[derive(Debug)]
pub struct Silent;

impl Progress for Silent {}

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
    pub progress: std::sync::Arc<dyn Progress>,
    /// Skip the audit (a target that is not flashguard, e.g. the HTTP baseline).
    pub skip_audit: bool,
    /// Reads the stock each tick; by default `GET /api/products/{id}` on the first target.
    pub probe: Option<std::sync::Arc<dyn super::series::StockProbe>>,
    /// Hears each tick as it is taken.
    pub sink: Option<std::sync::Arc<dyn super::series::TickSink>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadTestError {
    #[error("no --target given")]
    NoTarget,
    #[error("{0} needs --admin-token (it changes the sale or the provider)")]
    NeedsAdmin(&'static str),
    #[error("setup failed: {0}")]
    Setup(String),
    #[error("HTTP client")]
    Http(#[from] reqwest::Error),
}
