//! Two instances of the built binary on one database and one key store, and
//! one of them killed (SIGKILL) while its orders hold units at the stock gate
//! (docs/scaling.md, "A crashed instance costs seconds").
//!
//! With heartbeats, the survivor notices the lapse and releases the dead
//! instance's claims: the units are buyable again long before their lease (600 s
//! here) ends — and a buyer who was told "sold out for now" while they were held
//! buys with the same key. With heartbeats off, the units stay held.
//!
//! Two instances need a shared database and key store: these tests run on the
//! run's `DATABASE_URL` and `REDIS_URL`/`REDIS_CLUSTER_URLS`, or, in the
//! embedded run, on a Postgres and a Redis on their usual local ports (own
//! database, own prefix). So they are `#[ignore]`d with that reason;
//! `cargo test -- --include-ignored` runs them (as `.ci/run` does).

use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};

use crate::binary::{Server, call, start_with};
use crate::helpers::{create_test_database, database_server, redis_server, spawn_app_with};
use flashguard::startup::Application;
use flashguard::store::KeyStore;
use flashguard::store::key_layout;
use flashguard::store::redis_kv::RedisKv;
use flashguard::store::redis_kv::RedisTarget;

const STOCK: usize = 6;
const STALLED: usize = 2;

struct Shared {
    env: Vec<(&'static str, String)>,
    redis: RedisTarget,
    prefix: String,
    admin: String,
}

async fn shared_stack(heartbeat_ms: u64) -> Shared {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let server = database_server("two instances on one database");
    let prefix = format!("fgtest:{run_id}:");
    let admin = format!("admin-{run_id}");
    let mut env = vec![
        ("DATABASE_URL", create_test_database(&server, &run_id).await),
        ("KV_PREFIX", prefix.clone()),
        ("ADMIN_TOKEN", admin.clone()),
        ("SESSION_SECRET", format!("session-{run_id}")),
        ("PSP_SECRET", format!("psp-{run_id}")),
        // No lease and no periodic reconciliation ends a claim during the test.
        ("IDEMPOTENCY_LEASE_SECS", "600".into()),
        ("GATE_RECONCILE_SECS", "3600".into()),
        ("INSTANCE_HEARTBEAT_MS", heartbeat_ms.to_string()),
        // A frozen instance answers nothing: no deadline cuts its stalled orders.
        ("REQUEST_DEADLINE_MS", "0".into()),
    ];
    let cluster = std::env::var("REDIS_CLUSTER_URLS")
        .ok()
        .filter(|urls| !urls.is_empty());
    let redis = match cluster {
        Some(urls) => {
            env.push(("REDIS_CLUSTER_URLS", urls.clone()));
            RedisTarget::Cluster(urls.split(',').map(str::to_string).collect())
        }
        None => {
            let url = redis_server("two instances on one key store");
            env.push(("REDIS_URL", url.clone()));
            RedisTarget::Node(url)
        }
    };
    Shared {
        env,
        redis,
        prefix,
        admin,
    }
}

async fn start(stack: &Shared, dir: &std::path::Path) -> Server {
    let (binary, dir, env) = (
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_flashguard")),
        dir.to_path_buf(),
        stack.env.clone(),
    );
    tokio::task::spawn_blocking(move || start_with(&binary, &dir, &env))
        .await
        .expect("the server starts")
}

/// One purchase: status, `Retry-After`, body.
async fn buy(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    key: &str,
    product: i64,
) -> (u16, Option<String>, Value) {
    let response = client
        .post(format!("{url}/api/orders"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({ "product_id": product, "quantity": 1 }))
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    (
        status,
        retry_after,
        response.json().await.unwrap_or_default(),
    )
}

/// What is left after the kill: the survivor, the buyers' tokens (the last is
/// the late buyer's), the product.
struct AfterKill {
    survivor: Server,
    tokens: Vec<String>,
    product: i64,
    client: reqwest::Client,
}

/// The sale up to the kill: A's first orders stall after taking their units,
/// B sells the rest, a late buyer is told "sold out for now", A is killed.
async fn kill_an_instance_mid_sale(stack: &Shared, dir: &std::path::Path) -> AfterKill {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(70))
        .build()
        .expect("a client");
    let (doomed, survivor) = (start(stack, dir).await, start(stack, dir).await);
    let catalogue =
        json!({ "products": [{ "name": "crash", "price_cents": 100, "stock": STOCK }] });
    let reset = client
        .post(format!("{}/api/admin/reset", survivor.url))
        .bearer_auth(&stack.admin)
        .json(&catalogue);
    let product = call(reset).await["products"][0]["id"]
        .as_i64()
        .expect("product");
    let mut tokens = Vec::new();
    for i in 0..=STOCK {
        let name = json!({ "username": format!("inst{i}") });
        let login = call(
            client
                .post(format!("{}/api/login", survivor.url))
                .json(&name),
        )
        .await;
        tokens.push(login["token"].as_str().expect("token").to_string());
    }
    let stall = json!({ "rewards_crash_after_effect": 0, "orders_stall_after_gate_ms": 60000 });
    let faults = client
        .put(format!("{}/api/admin/faults", doomed.url))
        .bearer_auth(&stack.admin)
        .json(&stall);
    assert_eq!(call(faults).await["orders_stall_after_gate_ms"], 60000);

    // A's orders take their units and freeze.
    let mut frozen = Vec::new();
    for (i, token) in tokens.iter().take(STALLED).enumerate() {
        let (client, url, token) = (client.clone(), doomed.url.clone(), token.clone());
        frozen.push(tokio::spawn(async move {
            buy(&client, &url, &token, &format!("k{i}"), product).await
        }));
    }
    let kv = RedisKv::connect(&stack.redis, &stack.prefix, Duration::from_secs(2))
        .await
        .expect("the key store");
    let counter = key_layout::gate_stock(product);
    let left = (STOCK - STALLED).to_string();
    // Bounded at 30 s: on a loaded two-core machine the other instance's
    // process may wait a while for a core.
    for _ in 0..600 {
        if kv.get(&counter).await.ok().flatten().as_deref() == Some(left.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counted = kv.get(&counter).await.unwrap();
    if counted.as_deref() != Some(left.as_str()) {
        // What the frozen orders were answered, if anything: the reason they took no unit.
        let mut answers = Vec::new();
        for order in frozen {
            answers.push(
                match tokio::time::timeout(Duration::from_secs(1), order).await {
                    Ok(answer) => format!("{answer:?}"),
                    Err(_) => "still waiting".to_string(),
                },
            );
        }
        panic!("gate counter {counted:?}, expected {left}; A's orders: {answers:?}");
    }
    // B sells the rest.
    for (i, token) in tokens.iter().enumerate().take(STOCK).skip(STALLED) {
        let (status, _, body) = buy(&client, &survivor.url, token, &format!("k{i}"), product).await;
        assert_eq!(status, 201, "k{i}: {body}");
    }
    // The late buyer: the gate is empty, but two units are only held.
    let late = &tokens[STOCK];
    let (status, retry_after, body) = buy(&client, &survivor.url, late, "late", product).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("sold_out")),
        "{body}"
    );
    assert_eq!(
        retry_after.as_deref(),
        Some("1"),
        "not final while units are held: {body}"
    );
    drop(doomed); // SIGKILL
    AfterKill {
        survivor,
        tokens,
        product,
        client,
    }
}

/// The late buyer's retries with the same key, 100 ms apart (at most 10 s).
async fn late_buyer_retries(sale: &AfterKill, attempts: usize) -> (u16, Value) {
    let late = &sale.tokens[STOCK];
    let mut last = (0, Value::Null);
    for _ in 0..attempts {
        let (status, _, body) =
            buy(&sale.client, &sale.survivor.url, late, "late", sale.product).await;
        last = (status, body);
        if status != 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a database server and a Redis (127.0.0.1:5432 and :6379, or DATABASE_URL and REDIS_URL); cargo test -- --include-ignored"]
async fn a_killed_instance_s_units_come_back_when_its_heartbeat_lapses() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let stack = shared_stack(200).await;
    let sale = kill_an_instance_mid_sale(&stack, dir.path()).await;

    let (status, body) = late_buyer_retries(&sale, 100).await;
    assert_eq!(
        status, 201,
        "the same key buys a unit the dead instance held: {body}"
    );
    let audit = call(
        sale.client
            .get(format!("{}/api/audit", sale.survivor.url))
            .bearer_auth(&stack.admin),
    )
    .await;
    assert_eq!(audit["ok"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a database server and a Redis (127.0.0.1:5432 and :6379, or DATABASE_URL and REDIS_URL); cargo test -- --include-ignored"]
async fn without_heartbeats_a_killed_instance_s_units_stay_held() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let stack = shared_stack(0).await;
    let sale = kill_an_instance_mid_sale(&stack, dir.path()).await;

    // Three seconds — many times what the survivor needs with 200 ms beats —
    // and the units are still held.
    let (status, body) = late_buyer_retries(&sale, 30).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("sold_out")),
        "the units wait for their 600 s lease: {body}"
    );
}

/// Without Redis an instance keeps its gate and key cache in its own memory:
/// a second one on the same database is refused at start, saying what to do
/// (store::instance_lock). On Postgres an instance on Redis is refused beside
/// it too (the lock's shared mode; MySQL's named locks have none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a database server and a Redis (127.0.0.1:5432 and :6379, or DATABASE_URL and REDIS_URL); cargo test -- --include-ignored"]
async fn a_second_instance_without_redis_on_one_database_is_refused() {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let server = database_server("two instances on one database");
    let database_url = create_test_database(&server, &run_id).await;
    let first = spawn_app_with(|settings| {
        settings.database_url = database_url.clone();
        settings.redis_url = None;
        settings.redis_cluster_urls = None;
    })
    .await;

    let refused = Application::build(first.settings.clone()).await.err();
    let message = refused.map(|error| error.to_string()).unwrap_or_default();
    assert!(
        message.contains("without Redis") && message.contains("REDIS_URL"),
        "a second in-process instance is refused: {message:?}"
    );

    let mut on_redis = first.settings.clone();
    let redis = redis_server("an instance on Redis beside one without");
    on_redis.redis_url = Some(redis);
    let beside = Application::build(on_redis).await.err();
    if server.starts_with("postgres") {
        let message = beside.map(|error| error.to_string()).unwrap_or_default();
        assert!(
            message.contains("without Redis already runs"),
            "an instance on Redis beside it is refused: {message:?}"
        );
    } else {
        assert!(beside.is_none(), "MySQL: a named lock has no shared mode");
    }
}
