//! `cargo run --release --bin loadtest -- --scenario flash-sale --reset --admin-token …`
//!
//! Drives one or several flashguard instances with a scenario, prints a report
//! (or JSON with `--json`), and exits non-zero when the audit fails afterwards.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use flashguard::causes::Causes;
use flashguard::loadtest::{self, Config, Scenario};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Load tests for flashguard: duplicates under concurrency, then the audit"
)]
struct Args {
    /// Base URL of an instance; repeat (or separate with commas) for several, used round robin.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    target: Vec<String>,
    #[arg(long, value_enum, default_value_t = Scenario::FlashSale)]
    scenario: Scenario,
    /// Distinct users (each logs in once before the load).
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Units for sale (with --reset).
    #[arg(long, default_value_t = 1_000)]
    stock: i64,
    /// Copies per click (double-click) or callbacks per success (callback-storm).
    #[arg(long, default_value_t = 3)]
    duplicates: usize,
    /// Upper bound of the run, in seconds.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Upper bound on the number of requests.
    #[arg(long)]
    requests: Option<u64>,
    /// ADMIN_TOKEN of the target (needed by --reset and callback-storm).
    #[arg(long, env = "ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Start a clean sale first (POST /api/admin/reset).
    #[arg(long)]
    reset: bool,
    /// The product to buy without --reset.
    #[arg(long, default_value_t = 1)]
    product: i64,
    /// Path for the ping scenario.
    #[arg(long, default_value = "/healthz")]
    path: String,
    /// Client timeout of the retry-storm scenario, in milliseconds.
    #[arg(long, default_value_t = 20)]
    client_timeout_ms: u64,
    /// Do not fetch /api/audit (for a target that is not flashguard).
    #[arg(long)]
    no_audit: bool,
    /// Machine-readable report on standard output.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.json;
    match loadtest::run(config_from(args)).await {
        Ok(report) => show(&report, json),
        Err(error) => {
            eprintln!("loadtest: {}", Causes(&error));
            ExitCode::from(2)
        }
    }
}

/// The run's bounds, with every count at least 1.
fn config_from(args: Args) -> Config {
    Config {
        targets: args
            .target
            .into_iter()
            .filter(|t| !t.trim().is_empty())
            .collect(),
        scenario: args.scenario,
        users: args.users.max(1),
        concurrency: args.concurrency.max(1),
        stock: args.stock.max(0),
        duplicates: args.duplicates.max(1),
        duration: Duration::from_secs(args.duration.max(1)),
        requests: args.requests,
        admin_token: args.admin_token.filter(|t| !t.is_empty()),
        reset: args.reset,
        path: args.path,
        product: args.product,
        client_timeout: Duration::from_millis(args.client_timeout_ms.max(1)),
        progress: if args.json {
            Arc::new(loadtest::Silent)
        } else {
            Arc::new(Bar(indicatif::ProgressBar::no_length()))
        },
        skip_audit: args.no_audit,
    }
}

/// Prints the report; the exit status is the audit's verdict.
fn show(report: &loadtest::Report, json: bool) -> ExitCode {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(json) => println!("{json}"),
            Err(error) => eprintln!("cannot write the report: {}", Causes(&error)),
        }
    } else {
        report.print();
    }
    if report.audit_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The terminal's progress bar (indicatif): requests so far and their rate.
#[derive(Debug)]
struct Bar(indicatif::ProgressBar);

impl loadtest::Progress for Bar {
    fn start(&self, expected: Option<u64>) {
        if let Some(total) = expected {
            self.0.set_length(total);
        }
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:30}] {pos} requests, {per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        self.0.set_style(style.progress_chars("=> "));
    }

    fn advance(&self) {
        self.0.inc(1);
    }

    fn restart(&self) {
        self.0.reset_elapsed();
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
