//! The simulator's API (docs/design.md §2.6) over real HTTP: a run streamed as
//! Server-Sent Events, its record, one run at a time, and the switches put
//! back whatever the reader does. With version_lock (and the gate that would
//! hide it) off, the streamed stock falls below zero and the audit turns red;
//! with every defense on it never does.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn start(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/lab/simulations"))
        .bearer_auth(&app.admin_token)
        .json(body)
        .send()
        .await
        .expect("POST /api/lab/simulations")
}

async fn start_ok(app: &TestApp, body: &Value) -> String {
    let response = start(app, body).await;
    assert_eq!(response.status(), 202, "a simulation starts");
    let answer: Value = response.json().await.expect("JSON");
    answer["id"].as_str().expect("an id").to_string()
}

async fn open_events(app: &TestApp, id: &str) -> reqwest::Response {
    let response = app
        .client
        .get(app.url(&format!("/api/lab/simulations/{id}/events")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("the event stream opens");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap_or("");
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    response
}

/// One event of the stream: its type, its id and its data.
#[derive(Debug)]
struct Event {
    kind: String,
    id: Option<String>,
    data: Value,
}

fn parse_event(block: &str) -> Option<Event> {
    let (mut kind, mut id, mut data) = (String::from("message"), None, String::new());
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event: ") {
            kind = value.to_string();
        } else if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.to_string());
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push_str(value);
        }
    }
    (!data.is_empty()).then(|| Event {
        kind,
        id,
        data: serde_json::from_str(&data).expect("an event's data is JSON"),
    })
}

/// Reads the stream to its end (the server ends it after `done`).
async fn read_all_events(app: &TestApp, id: &str) -> Vec<Event> {
    let mut stream = open_events(app, id).await;
    let (mut buffer, mut events) = (String::new(), Vec::new());
    while let Some(chunk) = stream.chunk().await.expect("a chunk") {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(cut) = buffer.find("\n\n") {
            events.extend(parse_event(&buffer[..cut]));
            buffer.drain(..cut + 2);
        }
    }
    events
}

async fn record(app: &TestApp, id: &str) -> Value {
    app.get_admin_json(&format!("/api/lab/simulations/{id}"))
        .await
}

/// Polls the record until the run is over (bounded).
async fn wait_until_over(app: &TestApp, id: &str) -> Value {
    for _ in 0..600 {
        let run = record(app, id).await;
        if run["state"] != "running" {
            return run;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("the simulation did not end within 2 minutes");
}

fn stock_values(ticks: &[Value]) -> Vec<i64> {
    ticks
        .iter()
        .filter_map(|tick| tick["stock"].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_streams_ordered_ticks_whose_last_equals_the_summary() {
    let app = spawn_app().await;
    let id = start_ok(
        &app,
        &json!({"users": 600, "stock": 100, "concurrency": 32, "scenario": "flash-sale"}),
    )
    .await;

    let events = read_all_events(&app, &id).await;
    let (done, ticks) = events.split_last().expect("events");
    assert_eq!(done.kind, "done", "the stream ends with done");
    assert!(ticks.iter().all(|event| event.kind == "tick"));
    assert!(!ticks.is_empty(), "at least the final tick");
    let ids: Vec<String> = (0..ticks.len()).map(|i| i.to_string()).collect();
    let sent: Vec<String> = ticks.iter().filter_map(|e| e.id.clone()).collect();
    assert_eq!(sent, ids, "tick ids count up from 0");
    for pair in ticks.windows(2) {
        let (a, b) = (&pair[0].data, &pair[1].data);
        assert!(
            a["t_ms"].as_u64() <= b["t_ms"].as_u64(),
            "time runs forward"
        );
        assert!(
            a["requests"].as_u64() <= b["requests"].as_u64(),
            "counts are cumulative"
        );
        assert!(a["orders"].as_u64() <= b["orders"].as_u64());
    }

    let last = &ticks.last().expect("a tick").data;
    let summary = &done.data["summary"];
    assert_eq!(done.data["state"], "done", "{}", done.data);
    for count in [
        "requests",
        "answers",
        "by_defense",
        "orders",
        "stock",
        "gate",
    ] {
        assert_eq!(last[count], summary[count], "{count}: last tick = summary");
    }
    assert_eq!(summary["requests"], 600, "one request per buyer, all on");
    assert_eq!(last["orders"], 100, "the stock, sold exactly");
    assert_eq!(last["stock"], 0);
    let stock: Vec<Value> = ticks.iter().map(|e| e.data.clone()).collect();
    assert!(stock_values(&stock).iter().all(|units| *units >= 0));
    assert_eq!(done.data["audit"]["ok"], true, "{}", done.data["audit"]);

    let run = record(&app, &id).await;
    assert_eq!(run["state"], "done");
    assert_eq!(
        run["ticks"],
        Value::Array(stock),
        "the record holds the streamed ticks"
    );
    assert_eq!(run["request"]["defenses"]["version_lock"], true);
    let kept = app.get_admin_json("/api/lab/simulations").await;
    assert_eq!(kept["simulations"][0]["id"], id.as_str());
    assert_eq!(kept["simulations"][0]["state"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_version_lock_off_the_streamed_stock_falls_below_zero_and_the_audit_turns_red() {
    let app = spawn_app().await;
    let id = start_ok(
        &app,
        &json!({"users": 600, "stock": 100, "concurrency": 64, "scenario": "flash-sale",
                "defenses": {"version_lock": false, "stock_gate": false}, "race_window_ms": 5}),
    )
    .await;

    let run = wait_until_over(&app, &id).await;
    let ticks = run["ticks"].as_array().expect("ticks");
    let lowest = stock_values(ticks).into_iter().min().expect("stock ticks");
    assert!(lowest < 0, "more units sold than there were: {lowest}");
    let rows: Vec<i64> = ticks
        .iter()
        .filter_map(|t| t["stock_row"].as_i64())
        .collect();
    assert!(
        rows.iter().all(|row| *row >= 0),
        "while the row never shows it"
    );
    assert_eq!(run["done"]["audit"]["ok"], false);
    let broken: Vec<&Value> = run["done"]["audit"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|check| check["ok"] == false)
        .map(|check| &check["name"])
        .collect();
    assert!(broken.contains(&&json!("stock_conserved")), "{broken:?}");
    assert_eq!(
        run["done"]["switches"]["version_lock"], false,
        "the run's switches"
    );
    let now = app.get_admin_json("/api/admin/defenses").await;
    assert_eq!(now["version_lock"], true, "put back afterwards");
    assert_eq!(now["stock_gate"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_at_a_time_a_simulation_or_an_experiment() {
    let app = spawn_app().await;
    let id = start_ok(
        &app,
        &json!({"users": 600, "stock": 200, "concurrency": 16, "scenario": "double-click"}),
    )
    .await;

    let second = start(&app, &json!({"users": 10, "stock": 5})).await;
    assert_eq!(second.status(), 409);
    let problem: Value = second.json().await.expect("problem JSON");
    assert_eq!(problem["code"], "simulation_running");
    let experiment = app
        .client
        .post(app.url("/api/lab/experiments/oversell/run"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"defense": "off"}))
        .send()
        .await
        .expect("experiment request");
    assert_eq!(experiment.status(), 409);
    let problem: Value = experiment.json().await.expect("problem JSON");
    assert_eq!(problem["code"], "experiment_running");
    wait_until_over(&app, &id).await;

    // The other way round: while an experiment holds the lab, no simulation starts.
    let experiment_turn = app.state.lab.try_start().expect("the lab is free again");
    let refused = start(&app, &json!({"users": 10, "stock": 5})).await;
    assert_eq!(refused.status(), 409);
    drop(experiment_turn);
    let after = start(&app, &json!({"users": 10, "stock": 5})).await;
    assert_eq!(after.status(), 202, "free once the experiment ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switches_come_back_when_the_reader_goes_away_mid_run() {
    let app = spawn_app().await;
    // A board that is not "all on", to see it restored as it was.
    app.set_defenses(json!({"popup_key": false})).await;
    let before = app.get_admin_json("/api/admin/defenses").await;
    let id = start_ok(
        &app,
        &json!({"users": 600, "stock": 100, "concurrency": 32,
                "defenses": {"version_lock": false, "idempotency_key": false}}),
    )
    .await;

    let mut stream = open_events(&app, &id).await;
    // Keep-alive comments may come first while the buyers log in.
    loop {
        let chunk = stream
            .chunk()
            .await
            .expect("bytes")
            .expect("a chunk before the end");
        if String::from_utf8_lossy(&chunk).contains("event: tick") {
            break;
        }
    }
    drop(stream);

    let run = wait_until_over(&app, &id).await;
    assert_eq!(run["state"], "done", "{}", run["done"]);
    assert_eq!(run["done"]["switches"]["idempotency_key"], false);
    assert_eq!(
        run["done"]["switches"]["popup_key"], true,
        "named ones only: the rest on"
    );
    let after = app.get_admin_json("/api/admin/defenses").await;
    assert_eq!(after, before, "every switch as it was before the run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_simulations_are_refused_with_the_reason() {
    let app = spawn_app().await;
    for (body, says) in [
        (json!({"users": 0}), "users"),
        (json!({"users": 20_001}), "users"),
        (json!({"stock": 0}), "stock"),
        (json!({"concurrency": 1000}), "concurrency"),
        (json!({"scenario": "stampede"}), "scenario"),
        (json!({"defenses": {"moat": false}}), "moat"),
        (json!({"race_window_ms": 5000}), "race_window_ms"),
    ] {
        let response = start(&app, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let problem: Value = response.json().await.expect("problem JSON");
        assert_eq!(problem["code"], "invalid_request", "{body}");
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(says),
            "{problem}"
        );
    }
    let unknown_member = start(&app, &json!({"buyers": 10})).await;
    assert_eq!(unknown_member.status(), 400);

    let without_admin = app
        .client
        .post(app.url("/api/lab/simulations"))
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(without_admin.status(), 401);
    let missing = app
        .client
        .get(app.url("/api/lab/simulations/no-such-run/events"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
}
