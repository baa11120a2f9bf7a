//! The report: what was sent, how fast, what came back, and the audit's verdict.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::client::Snapshot;
use super::config::{Config, Scenario};
use super::scenarios::Outcome;
use super::series::Tick;

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub targets: Vec<String>,
    pub users: usize,
    pub concurrency: usize,
    pub requests: u64,
    pub transport_errors: u64,
    pub duration_secs: f64,
    pub throughput_per_sec: f64,
    pub latency_ms: Latency,
    /// Replies by status and problem code ("201", "409 sold_out", "201 replayed").
    pub replies: BTreeMap<String, u64>,
    /// Replies by the `Flashguard-Defense` that produced them.
    pub defenses: BTreeMap<String, u64>,
    pub outcome: Outcome,
    /// Orders per second until the last unit sold (flash sale).
    pub orders_per_sec: Option<f64>,
    /// Sold-out answers per second over the run (flash sale).
    pub sold_out_per_sec: Option<f64>,
    pub audit_ok: bool,
    pub audit: Value,
    /// The run every 100 ms (docs/design.md §2.6).
    pub series: Vec<Tick>,
    /// The latency distribution: HDR percentiles from 0 to 100.
    pub latency_percentiles: Vec<Percentile>,
}

/// One point of the latency distribution.
#[derive(Debug, Serialize)]
pub struct Percentile {
    pub percentile: f64,
    pub ms: f64,
}

/// The percentiles a report lists: from the median into the tail.
const PERCENTILES: [f64; 12] = [
    0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

impl Percentile {
    fn all(snapshot: &Snapshot) -> Vec<Self> {
        if snapshot.latencies.is_empty() {
            return Vec::new();
        }
        PERCENTILES
            .iter()
            .map(|&percentile| Self {
                percentile,
                ms: snapshot.latencies.value_at_percentile(percentile) as f64 / 1000.0,
            })
            .collect()
    }
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

fn print_table(title: &str, rows: &BTreeMap<String, u64>) {
    println!("{title}");
    for (label, count) in rows {
        println!("  {label:<32} {count}");
    }
}

impl Latency {
    /// Percentiles of the recorded latencies (microseconds) in milliseconds.
    fn of(snapshot: &Snapshot) -> Self {
        let ms = |quantile: f64| snapshot.latencies.value_at_quantile(quantile) as f64 / 1000.0;
        Self {
            p50: ms(0.50),
            p95: ms(0.95),
            p99: ms(0.99),
            max: snapshot.latencies.max() as f64 / 1000.0,
        }
    }
}

impl Report {
    pub(super) fn build(
        config: &Config,
        outcome: Outcome,
        audit: Value,
        snapshot: Snapshot,
        series: Vec<Tick>,
    ) -> Self {
        let seconds = snapshot.elapsed.as_secs_f64().max(1e-9);
        let sold_out: u64 = snapshot
            .by_reply
            .iter()
            .filter(|(reply, _)| reply.ends_with("sold_out"))
            .map(|(_, count)| count)
            .sum();
        let flash = config.scenario == Scenario::FlashSale;
        let sell_out_secs = outcome.sold_out_after_secs.filter(|s| *s > 0.0);
        Self {
            scenario: config.scenario,
            targets: config.targets.clone(),
            users: config.users,
            concurrency: config.concurrency,
            requests: snapshot.requests,
            transport_errors: snapshot.errors,
            duration_secs: seconds,
            throughput_per_sec: snapshot.requests as f64 / seconds,
            latency_ms: Latency::of(&snapshot),
            latency_percentiles: Percentile::all(&snapshot),
            replies: snapshot.by_reply,
            defenses: snapshot.by_defense,
            orders_per_sec: sell_out_secs
                .filter(|_| flash)
                .map(|s| outcome.orders_created as f64 / s),
            sold_out_per_sec: flash.then(|| sold_out as f64 / seconds),
            outcome,
            audit_ok: audit["ok"] == Value::Bool(true),
            audit,
            series,
        }
    }

    /// The human-readable report.
    pub fn print(&self) {
        self.print_figures();
        println!("orders created  {}", self.outcome.orders_created);
        print_table("replies", &self.replies);
        print_table("stopped by defense", &self.defenses);
        for note in &self.outcome.notes {
            println!("note            {note}");
        }
        self.print_audit();
    }

    fn print_figures(&self) {
        println!(
            "scenario        {:?} against {}",
            self.scenario,
            self.targets.join(", ")
        );
        println!(
            "users           {} (concurrency {})",
            self.users, self.concurrency
        );
        println!(
            "requests        {} in {:.2} s = {:.0}/s ({} transport errors)",
            self.requests, self.duration_secs, self.throughput_per_sec, self.transport_errors
        );
        let latency = &self.latency_ms;
        println!(
            "latency ms      p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
            latency.p50, latency.p95, latency.p99, latency.max
        );
        if let Some(after) = self.outcome.sold_out_after_secs {
            println!("sold out after  {after:.2} s");
        }
        if let Some(rate) = self.orders_per_sec {
            println!("orders/s        {rate:.0}");
        }
        if let Some(rate) = self.sold_out_per_sec {
            println!("sold-out/s      {rate:.0}");
        }
    }

    fn print_audit(&self) {
        println!(
            "audit           {}",
            if self.audit_ok { "OK" } else { "FAILED" }
        );
        for check in self.audit["checks"].as_array().into_iter().flatten() {
            let mark = if check["ok"] == Value::Bool(true) {
                "ok "
            } else {
                "BAD"
            };
            println!(
                "  {mark} {:<28} {}",
                check["name"].as_str().unwrap_or_default(),
                check["detail"].as_str().unwrap_or_default()
            );
        }
    }
}
