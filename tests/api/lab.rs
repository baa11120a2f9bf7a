//! The lab's experiments over the API: each shows its anomaly with its defense
//! off (and the audit names the broken invariant), and none with it on (and the
//! audit is ok); runs are serialized, need the admin token, and put every switch
//! and setting back.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, check, spawn_app};

/// Runs experiment `id` as `body` asks (`{"defense": …}` or `{"variant": …}`).
async fn run_with(app: &TestApp, id: &str, body: &Value) -> Reply {
    let response = app
        .client
        .post(app.url(&format!("/api/lab/experiments/{id}/run")))
        .bearer_auth(&app.admin_token)
        .json(body)
        .send()
        .await
        .expect("run request");
    Reply::read(response).await
}

pub async fn run(app: &TestApp, id: &str, state: &str) -> Reply {
    run_with(app, id, &json!({ "defense": state })).await
}

/// Runs `id` off, then on; `broken` is the audit check the anomaly breaks.
async fn off_then_on(id: &str, broken: Option<&str>) {
    let app = spawn_app().await;

    let off = run(&app, id, "off").await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    let off = off.json();
    eprintln!(
        "experiment {id} off: {} anomalies, replies {}",
        off["anomalies"], off["replies"]
    );
    assert_eq!(off["experiment"], id);
    assert_eq!(off["state"], "off");
    assert!(off["anomalies"].as_i64().unwrap_or(0) > 0, "{off}");
    assert!(off["requests"].as_u64().unwrap_or(0) > 0);
    assert!(off["anomaly"]["zh"].is_string() && off["anomaly"]["en"].is_string());
    assert_eq!(off["switches"][off["defense"].as_str().unwrap()], false);
    if let Some(name) = broken {
        assert_eq!(check(&off["audit"], name)["ok"], false, "{}", off["audit"]);
        assert_eq!(off["audit"]["ok"], false);
    }

    let on = run(&app, id, "on").await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    let on = on.json();
    assert_eq!(on["anomalies"], 0, "{on}");
    assert_eq!(on["audit"]["ok"], true, "{}", on["audit"]);
    assert_eq!(
        app.get_json("/api/defenses").await,
        json!({
            "button_disable": true, "callback_dedup": true, "idempotency_key": true,
            "message_dedup": true, "order_lock": true, "payment_token": true,
            "popup_key": true, "state_check": true, "stock_gate": true,
            "unique_index": true, "version_lock": true
        }),
        "every switch is back on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_double_submit_key() {
    off_then_on("double_submit_key", Some("one_order_per_key")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_double_submit_index() {
    off_then_on("double_submit_index", Some("one_order_per_key")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_oversell() {
    off_then_on("oversell", Some("stock_conserved")).await;
}

/// The gate's value is load, not data: no invariant breaks without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_losers_to_database() {
    off_then_on("losers_to_database", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_token_replay() {
    off_then_on("token_replay", Some("one_charge_per_order")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_two_tabs_pay() {
    off_then_on("two_tabs_pay", Some("one_charge_per_order")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_late_failed() {
    off_then_on("late_failed", Some("paid_orders_charged_once")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_callback_redelivery() {
    off_then_on("callback_redelivery", Some("events_applied_once")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_message_redelivery() {
    off_then_on("message_redelivery", Some("one_reward_per_order")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_defense_has_an_experiment() {
    let app = spawn_app().await;
    let listed = app.get_json("/api/lab/experiments").await;
    let experiments = listed["experiments"].as_array().expect("experiments");
    for defense in [
        "idempotency_key",
        "unique_index",
        "version_lock",
        "payment_token",
        "order_lock",
        "callback_dedup",
        "state_check",
        "message_dedup",
        "stock_gate",
    ] {
        let found = experiments.iter().find(|e| e["defense"] == defense);
        let experiment = found.unwrap_or_else(|| panic!("no experiment for {defense}"));
        assert!(experiment["id"].is_string());
        assert!(experiment["title"]["zh"].is_string() && experiment["title"]["en"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_needs_the_admin_token_and_a_known_experiment() {
    let app = spawn_app().await;
    let anonymous = app
        .client
        .post(app.url("/api/lab/experiments/oversell/run"))
        .json(&json!({ "defense": "off" }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let unknown = run(&app, "nope", "off").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad = app
        .client
        .post(app.url("/api/lab/experiments/oversell/run"))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "defense": "maybe" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_while_one_runs_is_409_and_settings_come_back() {
    let app = Arc::new(spawn_app().await);
    app.admin_put("/api/admin/lab", json!({ "race_window_ms": 50 }))
        .await;

    let runs: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { run(&app, "oversell", "off").await })
        })
        .collect();
    let mut replies = Vec::new();
    for run in runs {
        replies.push(run.await.expect("run task"));
    }

    let ran: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    let refused: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT)
        .collect();
    assert_eq!(
        (ran.len(), refused.len()),
        (1, 1),
        "one runs, one is refused"
    );
    assert_eq!(refused[0].code().as_deref(), Some("experiment_running"));
    assert!(refused[0].retry_after.is_some());
    let lab: Value = app.get_admin_json("/api/admin/lab").await;
    assert_eq!(
        lab["race_window_ms"], 50,
        "the lab's own setting is put back"
    );
    assert_eq!(app.get_json("/api/defenses").await["version_lock"], true);
}

async fn run_variant(app: &TestApp, id: &str, variant: &str) -> Value {
    let reply = run_with(app, id, &json!({ "variant": variant })).await;
    assert_eq!(reply.status, StatusCode::OK, "{variant}: {}", reply.body);
    reply.json()
}

/// Every variant is correct (the audit is green, nothing oversold); the
/// version check pays in retries, the conditional decrement never retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_hot_row() {
    let app = spawn_app().await;
    let mut retries = std::collections::BTreeMap::new();
    for variant in ["version_check", "conditional_decrement", "group_commit"] {
        let report = run_variant(&app, "hot_row", variant).await;
        eprintln!("hot_row {variant}: {}", report["counts"]);
        assert_eq!(report["variant"], variant);
        assert_eq!(report["state"], "on");
        assert_eq!(report["switches"]["version_lock"], true);
        assert_eq!(
            report["audit"]["ok"], true,
            "{variant}: {}",
            report["audit"]
        );
        let counts = &report["counts"];
        let (sold, left) = (counts["units_sold"].as_i64(), counts["stock_left"].as_i64());
        let (sold, left) = (sold.unwrap_or(-1), left.unwrap_or(-1));
        assert_eq!(sold + left, 50, "{variant}: every unit sold or still there");
        assert!((0..=50).contains(&sold), "{variant}: nothing oversold");
        assert_eq!(report["anomalies"], counts["retries"]);
        retries.insert(variant, report["anomalies"].as_i64().unwrap_or(-1));
    }
    assert!(
        retries["version_check"] > 0,
        "100 buyers on one row with the version check retry: {retries:?}"
    );
    assert_eq!(retries["conditional_decrement"], 0, "{retries:?}");
    let lab: Value = app.get_admin_json("/api/admin/lab").await;
    assert_eq!(
        lab["stock_write"], "version_check",
        "the setting is put back"
    );
    assert_eq!(lab["group_commit"], true);
}

/// The conditional decrement on its own path sells exactly the stock and
/// never answers busy_retry: nothing to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conditional_decrement_sells_exactly_the_stock() {
    let app = spawn_app().await;
    let report = run_variant(&app, "hot_row", "conditional_decrement").await;
    assert_eq!(report["counts"]["units_sold"], 50, "{report}");
    assert_eq!(report["counts"]["busy_retry"], 0, "{report}");
    assert_eq!(report["replies"]["201"], 50, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_must_ask_what_the_experiment_is() {
    let app = spawn_app().await;
    for (id, body) in [
        ("hot_row", json!({ "defense": "off" })),
        ("hot_row", json!({ "variant": "guesswork" })),
        (
            "hot_row",
            json!({ "defense": "off", "variant": "version_check" }),
        ),
        ("oversell", json!({ "variant": "version_check" })),
        ("oversell", json!({})),
    ] {
        let reply = run_with(&app, id, &body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{id} {body}: {}",
            reply.body
        );
        assert_eq!(reply.code().as_deref(), Some("invalid_request"));
    }
    let listed = app.get_json("/api/lab/experiments").await;
    let hot_row = listed["experiments"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["id"] == "hot_row"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(hot_row["defense"], "version_lock");
    assert_eq!(hot_row["variants"].as_array().map(Vec::len), Some(3));
}

/// The callback experiments run in the providers' own formats too: Alipay's
/// notification redelivered five times, WeChat Pay's, Alipay's late TRADE_CLOSED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_experiments_run_in_every_channel() {
    let app = spawn_app().await;
    for (id, channel, broken) in [
        ("callback_redelivery", "alipay", "events_applied_once"),
        ("callback_redelivery", "wechatpay", "events_applied_once"),
        ("late_failed", "alipay", "paid_orders_charged_once"),
    ] {
        let off = run_with(&app, id, &json!({ "defense": "off", "channel": channel })).await;
        assert_eq!(off.status, StatusCode::OK, "{}", off.body);
        let off = off.json();
        assert_eq!(off["channel"], channel);
        assert!(
            off["anomalies"].as_i64().unwrap_or(0) > 0,
            "{id} {channel}: {off}"
        );
        assert_eq!(
            check(&off["audit"], broken)["ok"],
            false,
            "{}",
            off["audit"]
        );
        let on = run_with(&app, id, &json!({ "defense": "on", "channel": channel })).await;
        assert_eq!(on.status, StatusCode::OK, "{}", on.body);
        assert_eq!(on.json()["anomalies"], 0, "{id} {channel}: {}", on.body);
        assert_eq!(on.json()["audit"]["ok"], true, "{}", on.body);
    }
    let refused = run_with(
        &app,
        "late_failed",
        &json!({ "defense": "on", "channel": "wechatpay" }),
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "WeChat Pay notifies successes only"
    );
}

/// The InnoDB experiments: on MySQL, check-then-insert deadlocks and the
/// unique index does not, an unindexed UPDATE blocks another product's and a
/// keyed one does not; on the other engines they are listed as MySQL's and
/// refused with 409 `experiment_unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_innodb_experiments_run_on_mysql_and_are_refused_elsewhere() {
    let app = spawn_app().await;
    let listed = app.get_json("/api/lab/experiments").await;
    for id in ["check_then_insert_deadlock", "update_without_index"] {
        let experiment = listed["experiments"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("{id} is listed"));
        assert_eq!(experiment["engines"], json!(["mysql"]), "{experiment}");
    }
    if app.state.db.backend() != flashguard::store::db::Backend::Mysql {
        let refused = run(&app, "check_then_insert_deadlock", "off").await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert_eq!(refused.code().as_deref(), Some("experiment_unavailable"));
        eprintln!("not MySQL: the InnoDB experiments are refused, as they should be");
        return;
    }
    innodb_check_then_insert(&app).await;
    innodb_update_without_index(&app).await;
}

async fn innodb_check_then_insert(app: &TestApp) {
    let off = run(app, "check_then_insert_deadlock", "off").await.json();
    eprintln!("check_then_insert_deadlock off: {}", off["counts"]);
    assert!(off["anomalies"].as_i64().unwrap_or(0) > 0, "{off}");
    assert_eq!(off["counts"]["deadlocks"], off["anomalies"]);
    assert_eq!(off["counts"]["rows"], 1, "one row in the end: {off}");
    assert_eq!(off["counts"]["inserted"], 1);
    let on = run(app, "check_then_insert_deadlock", "on").await.json();
    eprintln!("check_then_insert_deadlock on: {}", on["counts"]);
    assert_eq!(on["anomalies"], 0, "{on}");
    assert_eq!(on["counts"]["rows"], 1);
    assert_eq!(on["counts"]["inserted"], 1);
    assert_eq!(
        on["counts"]["read_the_winner"],
        on["counts"]["buyers"].as_i64().unwrap_or(0) - 1
    );
    assert_eq!(on["audit"]["ok"], true, "{}", on["audit"]);
}

async fn innodb_update_without_index(app: &TestApp) {
    let off = run(app, "update_without_index", "off").await.json();
    eprintln!("update_without_index off: {}", off["counts"]);
    assert_eq!(off["anomalies"], 1, "{off}");
    let locked = off["counts"]["rows_locked"].as_i64().unwrap_or(0);
    assert!(
        locked >= off["counts"]["rows_in_table"].as_i64().unwrap_or(i64::MAX),
        "{off}"
    );
    let on = run(app, "update_without_index", "on").await.json();
    eprintln!("update_without_index on: {}", on["counts"]);
    assert_eq!(on["anomalies"], 0, "{on}");
    assert_eq!(on["counts"]["rows_locked"], 1, "{on}");
    assert_eq!(on["audit"]["ok"], true, "{}", on["audit"]);
}
