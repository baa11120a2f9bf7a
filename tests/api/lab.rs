//! The lab's experiments over the API: each shows its anomaly with its defense
//! off (and the audit names the broken invariant), and none with it on (and the
//! audit is ok); runs are serialized, need the admin token, and put every switch
//! and setting back.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, check, spawn_app};

async fn run(app: &TestApp, id: &str, state: &str) -> Reply {
    let response = app
        .client
        .post(app.url(&format!("/api/lab/experiments/{id}/run")))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "defense": state }))
        .send()
        .await
        .expect("run request");
    Reply::read(response).await
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
