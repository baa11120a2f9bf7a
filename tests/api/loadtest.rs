//! The load-test binary, run for real against a spawned app: small, bounded
//! scenarios whose JSON report must parse and agree with the database.

use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

async fn run_loadtest(app: &TestApp, args: &[&str]) -> (Value, bool) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "--target",
            &app.address,
            "--admin-token",
            &app.admin_token,
            "--json",
            "--duration",
            "60",
        ])
        .args(args)
        .output()
        .await
        .expect("the loadtest binary runs");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "the report is JSON ({error}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (report, output.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_flash_sale_reports_what_the_database_holds() {
    let app = spawn_app().await;

    let (report, success) = run_loadtest(
        &app,
        &[
            "--scenario",
            "flash-sale",
            "--reset",
            "--users",
            "60",
            "--stock",
            "15",
            "--concurrency",
            "16",
        ],
    )
    .await;

    assert!(success, "exit status 0: the audit passed");
    assert_eq!(report["audit_ok"], true);
    assert_eq!(report["outcome"]["orders_created"], 15);
    assert_eq!(report["replies"]["201"], 15);
    assert_eq!(report["replies"]["409 sold_out"], 45);
    assert!(
        report["latency_ms"]["p99"]
            .as_f64()
            .is_some_and(|p99| p99 > 0.0)
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_click_storm_leaves_one_order_per_user() {
    let app = spawn_app().await;

    let (report, success) = run_loadtest(
        &app,
        &[
            "--scenario",
            "double-click",
            "--reset",
            "--users",
            "20",
            "--duplicates",
            "4",
            "--stock",
            "100",
            "--concurrency",
            "16",
        ],
    )
    .await;

    assert!(success);
    assert_eq!(report["outcome"]["orders_created"], 20);
    assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 20);
    let stopped: u64 = report["defenses"]
        .as_object()
        .map_or(0, |d| d.values().filter_map(Value::as_u64).sum());
    assert_eq!(
        stopped, 60,
        "every extra click was answered by a defense: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_status_reports_a_failed_audit() {
    let app = spawn_app().await;
    app.set_defenses(
        serde_json::json!({ "idempotency_key": false, "unique_index": false, "stock_gate": false }),
    )
    .await;

    let (report, success) = run_loadtest(
        &app,
        &[
            "--scenario",
            "double-click",
            "--reset",
            "--users",
            "10",
            "--duplicates",
            "3",
            "--stock",
            "100",
            "--concurrency",
            "12",
        ],
    )
    .await;

    assert_eq!(
        report["audit_ok"], false,
        "duplicates appear with the defenses off"
    );
    assert!(!success, "non-zero exit when the audit fails");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_replay_and_callback_storm_stay_correct() {
    let app = spawn_app().await;

    let (replay, replay_ok) = run_loadtest(
        &app,
        &[
            "--scenario",
            "token-replay",
            "--reset",
            "--users",
            "10",
            "--stock",
            "100",
            "--concurrency",
            "8",
        ],
    )
    .await;
    let (storm, storm_ok) = run_loadtest(
        &app,
        &[
            "--scenario",
            "callback-storm",
            "--reset",
            "--users",
            "10",
            "--duplicates",
            "4",
            "--stock",
            "100",
            "--concurrency",
            "8",
        ],
    )
    .await;

    assert!(replay_ok && storm_ok, "{replay}\n{storm}");
    assert_eq!(
        replay["replies"]["403 payment_token_invalid"], 20,
        "{replay}"
    );
    assert_eq!(storm["outcome"]["orders_created"], 10);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM orders WHERE status = 'PAID'")
            .await,
        10
    );
}

/// Runs the binary for its files (no `--json`): its exit status and stderr.
async fn run_loadtest_quietly(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .output()
        .await
        .expect("the loadtest binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_kept_as_a_report_with_its_series_and_two_runs_compare() {
    let app = spawn_app().await;
    let directory = tempfile::tempdir().expect("a directory for the reports");
    let file = |name: &str| directory.path().join(name).display().to_string();
    let (json_file, html_file) = (file("run.json"), file("run.html"));

    let (report, success) = run_loadtest(
        &app,
        &[
            "--scenario",
            "flash-sale",
            "--reset",
            "--users",
            "80",
            "--stock",
            "20",
            "--concurrency",
            "16",
            "--report",
            &json_file,
            "--report",
            &html_file,
            "--label",
            "all on",
        ],
    )
    .await;

    assert!(success);
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).expect("run.json written"))
            .expect("run.json is JSON");
    assert_eq!(kept["label"], "all on");
    let series = kept["series"].as_array().expect("the series");
    let last = series.last().expect("at least the final tick");
    assert_eq!(
        last["requests"], report["requests"],
        "the last tick is the run"
    );
    assert_eq!(last["answers"]["201"], 20);
    assert_eq!(
        last["stock_row"], 0,
        "the product as GET /api/products/{{id}} shows it"
    );
    assert_eq!(last["stock"], 0, "initial minus the orders seen");
    assert!(
        !kept["latency_percentiles"]
            .as_array()
            .expect("percentiles")
            .is_empty()
    );
    let html = std::fs::read_to_string(&html_file).expect("run.html written");
    assert!(
        html.contains("uPlot") && html.contains("fgCharts"),
        "self-contained"
    );
    assert!(
        !html.contains("src=\"http"),
        "nothing loaded from elsewhere"
    );

    let overlay = file("ab.html");
    let (compared, _) =
        run_loadtest_quietly(&["--compare", &json_file, &json_file, "--report", &overlay]).await;
    assert!(compared);
    let html = std::fs::read_to_string(&overlay).expect("ab.html written");
    assert_eq!(
        html.matches("\"label\":\"all on\"").count(),
        2,
        "both runs inside"
    );

    let not_a_report = file("other.json");
    std::fs::write(&not_a_report, "{\"requests\": 3}").expect("written");
    let (refused, says) =
        run_loadtest_quietly(&["--compare", &json_file, &not_a_report, "--report", &overlay]).await;
    assert!(!refused);
    assert!(says.contains("not a report"), "{says}");
    let (refused, says) = run_loadtest_quietly(&["--compare", &json_file, &json_file]).await;
    assert!(!refused, "--compare needs --report");
    assert!(says.contains("--report"), "{says}");
}
