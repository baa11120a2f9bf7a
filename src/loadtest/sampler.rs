//! Takes the run's ticks (docs/design.md §2.6): a sampler beside the load,
//! every [`TICK`], reading the recorder and the stock probe.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::client::LoadClient;
use super::series::{StockProbe, StockSample, TICK, Tick, TickSink};

/// Runs `load` and samples it every [`TICK`] until it ends, then once more:
/// returns the load's result and the series.
pub(super) async fn record_while<F: Future>(
    client: &LoadClient,
    probe: &dyn StockProbe,
    sink: Option<&Arc<dyn TickSink>>,
    load: F,
) -> (F::Output, Vec<Tick>) {
    let finished = AtomicBool::new(false);
    let wake = tokio::sync::Notify::new();
    let series = Mutex::new(Vec::new());
    let load = async {
        let output = load.await;
        finished.store(true, Ordering::Release);
        wake.notify_one();
        output
    };
    let sampler = async {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = wake.notified() => {}
            }
            let last = finished.load(Ordering::Acquire);
            if client.recorder.loading() {
                let tick = sample(client, probe).await;
                if let Some(sink) = sink {
                    sink.tick(&tick);
                }
                series.lock().push(tick);
            }
            if last {
                return;
            }
        }
    };
    let (output, ()) = futures_util::future::join(load, sampler).await;
    (output, series.into_inner())
}

/// One tick: the recorder's counts and the probe's stock.
async fn sample(client: &LoadClient, probe: &dyn StockProbe) -> Tick {
    let stock = match client.recorder.product() {
        Some(product_id) => probe.sample(product_id).await,
        None => None,
    };
    client.recorder.tick(stock)
}

/// The probe of a load test run from the command line: the product as
/// `GET /api/products/{id}` shows it (no gate, no count of orders).
#[derive(Debug)]
pub(super) struct HttpProbe {
    http: reqwest::Client,
    base_url: String,
}

impl HttpProbe {
    /// Reads from the client's first target.
    pub(super) fn of(client: &LoadClient) -> Self {
        Self {
            http: client.http().clone(),
            base_url: client.first_url(""),
        }
    }
}

#[async_trait]
impl StockProbe for HttpProbe {
    async fn sample(&self, product_id: i64) -> Option<StockSample> {
        let url = format!("{}/api/products/{product_id}", self.base_url);
        let response = self.http.get(url).send().await.ok()?;
        let product: serde_json::Value = response.json().await.ok()?;
        Some(StockSample {
            initial: product["initial_stock"].as_i64()?,
            row: product["stock"].as_i64()?,
            gate: None,
            units_sold: None,
        })
    }
}
