//! `cargo run --release --bin loadtest -- --scenario flash-sale --reset --admin-token …`
//!
//! Drives one or several flashguard instances with a scenario, prints a report
//! (or JSON with `--json`), and exits non-zero when the audit fails afterwards.
//! `--report run.html` (charts, one self-contained file) and `--report run.json`
//! (the report with its series) keep the run; `--compare a.json b.json --report
//! ab.html` overlays two kept runs without running anything.

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
    /// Also write the report to this file: `.html` (charts) or `.json` (with the series). Repeatable.
    #[arg(long, value_name = "FILE")]
    report: Vec<String>,
    /// Overlay two reports written with `--report <file>.json` (no load is run); needs --report.
    #[arg(long, num_args = 2, value_names = ["A_JSON", "B_JSON"])]
    compare: Vec<String>,
    /// A name for this run in its report (e.g. "version_lock off").
    #[arg(long)]
    label: Option<String>,
    /// The language of the HTML report: zh or en.
    #[arg(long, default_value = "en", value_parser = ["zh", "en"])]
    lang: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args.compare.is_empty() {
        return compare(&args);
    }
    let (json, files, label, lang) = (
        args.json,
        args.report.clone(),
        args.label.clone(),
        args.lang.clone(),
    );
    match loadtest::run(config_from(args)).await {
        Ok(report) => {
            let kept = keep(&report, label.as_deref(), &lang, &files);
            let shown = show(&report, json);
            if kept { shown } else { ExitCode::from(2) }
        }
        Err(error) => {
            eprintln!("loadtest: {}", Causes(&error));
            ExitCode::from(2)
        }
    }
}

/// Writes the run's report to each `--report` file; false if one could not be written.
fn keep(report: &loadtest::Report, label: Option<&str>, lang: &str, files: &[String]) -> bool {
    if files.is_empty() {
        return true;
    }
    let mut run = match serde_json::to_value(report) {
        Ok(run) => run,
        Err(error) => {
            eprintln!("loadtest: cannot serialize the report: {}", Causes(&error));
            return false;
        }
    };
    if let Some(label) = label {
        run["label"] = label.into();
    }
    write_all(files, lang, &[run])
}

fn write_all(files: &[String], lang: &str, runs: &[serde_json::Value]) -> bool {
    let mut all_written = true;
    for file in files {
        match loadtest::html::write(file, lang, runs) {
            Ok(()) => eprintln!("loadtest: wrote {file}"),
            Err(error) => {
                eprintln!("loadtest: {}", Causes(&error));
                all_written = false;
            }
        }
    }
    all_written
}

/// `--compare a.json b.json --report ab.html`: two kept runs in one report.
fn compare(args: &Args) -> ExitCode {
    if args.report.is_empty() {
        eprintln!("loadtest: --compare writes its overlay to --report <file>.html");
        return ExitCode::from(2);
    }
    let mut runs = Vec::new();
    for path in &args.compare {
        match loadtest::html::read_report(path) {
            Ok(mut run) => {
                if run["label"].is_null() {
                    run["label"] = file_stem(path).into();
                }
                runs.push(run);
            }
            Err(error) => {
                eprintln!("loadtest: {}", Causes(&error));
                return ExitCode::from(2);
            }
        }
    }
    if write_all(&args.report, &args.lang, &runs) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn file_stem(path: &str) -> String {
    std::path::Path::new(path)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or(path)
        .to_string()
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
        probe: None,
        sink: None,
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
