//! The built binary on its own: copied out of the source tree into an empty
//! directory, it starts on the embedded default, keeps its data in `./data/`
//! there, and serves the pages and the static files embedded in it. And killed
//! with SIGKILL in the middle of a sale, then started again: no key was left
//! half-done (one commit per order), every purchase retried with its key ends
//! as exactly one order, and the gate heals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{create_test_database, real_stack};

/// The server binary, started in `dir` on a free port; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` in `dir` and reads the URL from its start-up banner.
fn start(binary: &std::path::Path, dir: &std::path::Path) -> Server {
    start_with(binary, dir, &[])
}

/// Like [`start`], with these environment variables on top of the embedded default.
pub fn start_with(
    binary: &std::path::Path,
    dir: &std::path::Path,
    env: &[(&str, String)],
) -> Server {
    let mut child = Command::new(binary)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_URLS")
        .env_remove("AMQP_URL")
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        // As in `spawn_app`: a debug build under load may read a Redis reply
        // late; past 500 ms its orders would go around the gate.
        .env("REDIS_COMMAND_TIMEOUT_MS", "3000")
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let banner = lines.by_ref().find_map(|line| {
        line.strip_prefix("flashguard is listening on ")
            .map(str::to_string)
    });
    // Keep reading: the server goes on writing its log to standard output.
    std::thread::spawn(move || lines.for_each(drop));
    let url = banner.expect("the banner names the URL");
    Server { child, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_outside_the_source_tree() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let binary = dir.path().join("flashguard");
    std::fs::copy(env!("CARGO_BIN_EXE_flashguard"), &binary).expect("copy the binary");
    let server = tokio::task::spawn_blocking({
        let (binary, dir) = (binary.clone(), dir.path().to_path_buf());
        move || start(&binary, &dir)
    })
    .await
    .expect("start task");
    let client = reqwest::Client::new();

    let page = client.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let script = client
        .get(format!("{}/static/app.js", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let ready = client
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    assert!(
        dir.path().join("data/flashguard.db").is_file(),
        "the embedded database lives in ./data/ where the binary was started"
    );
    assert!(dir.path().join("data/generated-secrets.env").is_file());
    drop(server);
}

/// The stack the killed server runs on: this run's Postgres and Redis (own
/// database, own key prefix), or a SQLite file in `dir` and the in-process store.
async fn crash_env(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let (database, redis) = real_stack();
    let database_url = match database {
        Some(server) => create_test_database(&server, &run_id).await,
        None => format!("sqlite://{}/crash.db?mode=rwc", dir.display()),
    };
    let mut env = vec![
        ("DATABASE_URL", database_url),
        ("KV_PREFIX", format!("fgtest:{run_id}:")),
        ("ADMIN_TOKEN", format!("admin-{run_id}")),
        ("SESSION_SECRET", format!("session-{run_id}")),
        ("PSP_SECRET", format!("psp-{run_id}")),
        ("IDEMPOTENCY_LEASE_SECS", "2".into()),
        ("GATE_RECONCILE_SECS", "1".into()),
    ];
    if let Some(redis) = redis {
        env.push(("REDIS_URL", redis));
    }
    if let Some(cluster) = std::env::var("REDIS_CLUSTER_URLS")
        .ok()
        .filter(|urls| !urls.is_empty())
    {
        env.push(("REDIS_CLUSTER_URLS", cluster));
    }
    env
}

/// Sends `request` and reads its JSON answer.
pub async fn call(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("an answer");
    response.json().await.unwrap_or(Value::Null)
}

async fn order(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    key: &str,
    product: i64,
) -> Option<(u16, Value)> {
    let response = client
        .post(format!("{url}/api/orders"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({ "product_id": product, "quantity": 1 }))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_sale_loses_nothing_and_the_retries_make_one_order_each() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_flashguard"));
    let env = crash_env(dir.path()).await;
    let admin = env
        .iter()
        .find(|(name, _)| *name == "ADMIN_TOKEN")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let first = tokio::task::spawn_blocking({
        let (binary, dir, env) = (binary.clone(), dir.path().to_path_buf(), env.clone());
        move || start_with(&binary, &dir, &env)
    })
    .await
    .unwrap();
    let catalogue = json!({ "products": [{ "name": "crash", "price_cents": 100, "stock": 30 }] });
    let reset_url = format!("{}/api/admin/reset", first.url);
    let reset = call(client.post(reset_url).bearer_auth(&admin).json(&catalogue)).await;
    let product = reset["products"][0]["id"].as_i64().expect("product");
    let mut tokens = Vec::new();
    for i in 0..20 {
        let name = json!({ "username": format!("crash{i}") });
        let login = call(client.post(format!("{}/api/login", first.url)).json(&name)).await;
        tokens.push(login["token"].as_str().expect("token").to_string());
    }

    // Twenty purchases in flight, then SIGKILL.
    let in_flight: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let (client, url, token) = (client.clone(), first.url.clone(), token.clone());
            tokio::spawn(async move {
                order(&client, &url, &token, &format!("crash-{i}"), product).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(15)).await;
    drop(first); // SIGKILL
    for task in in_flight {
        let _ = task.await;
    }
    // One commit per order: the key row commits with its order or not at all,
    // so the killed server left no key "in progress" to wait out.
    let database_url = env
        .iter()
        .find(|(name, _)| *name == "DATABASE_URL")
        .map(|(_, url)| url.clone())
        .unwrap_or_default();
    assert_eq!(
        keys_in_progress(&database_url).await,
        0,
        "no half-done order"
    );

    let second = tokio::task::spawn_blocking({
        let (binary, dir, env) = (binary.clone(), dir.path().to_path_buf(), env.clone());
        move || start_with(&binary, &dir, &env)
    })
    .await
    .unwrap();
    for (i, token) in tokens.iter().enumerate() {
        let key = format!("crash-{i}");
        let mut answer = None;
        for _ in 0..100 {
            answer = order(&client, &second.url, token, &key, product).await;
            // A key whose request died is "in progress" until its lease ends.
            if answer
                .as_ref()
                .is_some_and(|(status, _)| *status != 409 && *status != 503)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, body) = answer.expect("the retry is answered");
        assert_eq!(status, 201, "{key}: {body}");
        let mine = call(
            client
                .get(format!("{}/api/orders", second.url))
                .bearer_auth(token),
        )
        .await;
        assert_eq!(
            mine["orders"].as_array().map(Vec::len),
            Some(1),
            "{key}: one order"
        );
    }
    let mut audit = Value::Null;
    for _ in 0..100 {
        audit = call(
            client
                .get(format!("{}/api/audit", second.url))
                .bearer_auth(&admin),
        )
        .await;
        if audit["ok"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        audit["ok"], true,
        "the gate heals within a lease and a reconciliation: {audit}"
    );
}

/// Idempotency keys left in progress, read straight from the database.
async fn keys_in_progress(database_url: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url)
        .await
        .expect("database");
    let count =
        sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys WHERE state = 'in_progress'")
            .fetch_one(&pool)
            .await
            .expect("count");
    pool.close().await;
    count
}

/// Waits (at most 30 s) for the process to exit; whether it did.
fn exited_within_30_s(child: &mut Child) -> bool {
    for _ in 0..300 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_simulation_puts_the_switches_back_before_it_exits() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_flashguard"));
    let env = vec![("ADMIN_TOKEN", "stop-test-admin-token".to_string())];
    let start_server = || {
        let (binary, dir, env) = (binary.clone(), dir.path().to_path_buf(), env.clone());
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
            start_with(&binary, &dir, &env)
        })
    };
    let mut server = start_server().await.expect("start task");
    let client = reqwest::Client::new();
    let admin = |request: reqwest::RequestBuilder| request.bearer_auth("stop-test-admin-token");
    // Many buyers: the run is still logging them in when the server is stopped.
    let started = admin(client.post(format!("{}/api/lab/simulations", server.url)))
        .json(&json!({"users": 20000, "stock": 100, "concurrency": 4,
                      "defenses": {"version_lock": false, "stock_gate": false}}))
        .send()
        .await
        .expect("start a simulation");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let defenses_url = format!("{}/api/admin/defenses", server.url);
    let mut switched = false;
    for _ in 0..100 {
        let now = call(admin(client.get(&defenses_url))).await;
        if now["version_lock"] == false {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "the run switched version_lock off");

    let pid = server.child.id().to_string();
    let signalled = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(
        signalled.is_ok_and(|status| status.success()),
        "SIGTERM sent"
    );
    let exited = tokio::task::spawn_blocking(move || {
        let exited = exited_within_30_s(&mut server.child);
        (exited, server)
    })
    .await
    .expect("wait task");
    assert!(exited.0, "the server exits after SIGTERM");
    drop(exited.1);

    let again = start_server().await.expect("start task");
    let now = call(admin(
        client.get(format!("{}/api/admin/defenses", again.url)),
    ))
    .await;
    assert_eq!(
        now["version_lock"], true,
        "the run's switches did not outlive it: {now}"
    );
    assert_eq!(now["stock_gate"], true, "{now}");
}
