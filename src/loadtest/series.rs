//! The run as a time series (docs/design.md §2.6): every 100 ms the engine
//! writes down what it has seen so far — requests, answers by status and by the
//! defense that gave them, orders — with the stock as the server sees it and
//! the latency of that 100 ms. Counts are cumulative, so the last tick equals
//! the run's summary; a chart draws their differences.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// How often the engine samples its run (`sampler.rs`).
pub const TICK: Duration = Duration::from_millis(100);

/// What the run had seen `t_ms` after its load started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Milliseconds since the load started (setup is not on the clock).
    pub t_ms: u64,
    /// Requests answered (or failed) so far.
    pub requests: u64,
    /// Answers so far by HTTP status ("201", "409", …; "timeout" and
    /// "transport error" for requests that got none).
    pub answers: BTreeMap<String, u64>,
    /// Answers so far by the `Flashguard-Defense` that gave them.
    pub by_defense: BTreeMap<String, u64>,
    /// Orders so far: the units in the product's orders as the server counts
    /// them, or, when it cannot be asked, the new orders this client saw.
    pub orders: u64,
    /// What the sale has left by its orders: initial stock minus `orders`.
    /// Below zero when more units were sold than there were.
    pub stock: Option<i64>,
    /// The product row's stock column.
    pub stock_row: Option<i64>,
    /// The stock gate's counter, when the gate is on.
    pub gate: Option<i64>,
    /// Latency of the answers of this 100 ms.
    pub latency_ms: TickLatency,
}

/// The median and the 99th percentile of one tick's answers (none: no answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TickLatency {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// The stock of the product under load, as the server sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct StockSample {
    pub initial: i64,
    pub row: i64,
    pub gate: Option<i64>,
    /// Units in the product's orders (not closed), when the probe can count them.
    pub units_sold: Option<i64>,
}

/// Reads the stock of the product under load once per tick.
#[async_trait]
pub trait StockProbe: Send + Sync + std::fmt::Debug {
    async fn sample(&self, product_id: i64) -> Option<StockSample>;
}

/// Hears every tick as it is made (the simulator streams them to the page).
pub trait TickSink: Send + Sync + std::fmt::Debug {
    fn tick(&self, tick: &Tick);
}
