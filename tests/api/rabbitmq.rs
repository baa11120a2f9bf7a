//! The "order paid" message through RabbitMQ (docs/messaging.md): durable
//! topology, publisher confirms, manual acks, redelivery flagged
//! `redelivered`, the dead-letter queue, and the faults at-least-once is for —
//! a consumer's connection closed mid-message, the broker stopped and started.
//!
//! Each test has its own vhost on the machine's broker, or a broker node of
//! its own (tests/api/broker.rs), never the default vhost's queues. They need
//! RabbitMQ and `rabbitmqctl`, so they are `#[ignore]`d with that reason;
//! `.ci/run` runs them on every leg.

use std::time::{Duration, Instant};

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};

use crate::binary::{Server, start_with};
use crate::broker::{OwnRabbit, OwnVhost, rabbitmqctl};
use crate::callbacks::pending_payment;
use crate::helpers::{
    TestApp, check, create_test_database, database_server, redis_server, spawn_app_with,
};
use crate::rewards::pay_with_crashing_consumer;

const TOPIC: &str = "order_paid";
const GROUP: &str = "rewards";

/// An app whose bus is RabbitMQ at `url`.
async fn app_on(
    url: String,
    customize: impl FnOnce(&mut flashguard::configuration::Settings),
) -> TestApp {
    spawn_app_with(|settings| {
        settings.amqp_url = Some(url);
        customize(settings);
    })
    .await
}

/// Pays `count` orders; each becomes PAID through a signed callback.
async fn pay_orders(app: &TestApp, count: usize) {
    let alice = app.login("alice").await;
    for _ in 0..count {
        let event = pending_payment(app, &alice).await;
        assert_eq!(app.send_callback(&event).await.json()["result"], "applied");
    }
}

async fn messages(app: &TestApp) -> Value {
    app.get_admin_json("/api/admin/messages").await
}

async fn rewards(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM rewards").await
}

/// Every paid order has exactly one reward, and the audit agrees.
async fn assert_one_reward_per_paid_order(app: &TestApp, paid: i64) {
    assert_eq!(rewards(app).await, paid);
    let orders = app
        .count("SELECT COUNT(DISTINCT order_no) FROM rewards")
        .await;
    assert_eq!(orders, paid, "one reward per order");
    let audit = app.audit().await;
    assert_eq!(check(&audit, "one_reward_per_order")["ok"], true, "{audit}");
    // It checks orders paid over REWARDS_SETTLE_SECS (30 s) ago: here it can
    // only fail on an order with two rewards, as the check above.
    let settled = check(&audit, "paid_orders_rewarded_once");
    assert_eq!(settled["ok"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ on 127.0.0.1:5672 and rabbitmqctl"]
async fn the_queue_is_durable_and_dead_letters_through_an_exchange_of_its_own() {
    let vhost = OwnVhost::create();
    let app = app_on(vhost.url(), |_| {}).await;

    assert!(
        messages(&app).await["bus"]
            .as_str()
            .is_some_and(|bus| bus.starts_with("RabbitMQ"))
    );
    let queue = format!("{TOPIC}.{GROUP}");
    assert_eq!(vhost.queue_column(&queue, "durable"), "true");
    let arguments = vhost.queue_column(&queue, "arguments");
    assert!(arguments.contains("x-dead-letter-exchange"), "{arguments}");
    assert_eq!(
        vhost.queue_column(&format!("{queue}.dead"), "durable"),
        "true"
    );
    let exchanges = rabbitmqctl(&["list_exchanges", "-q", "-p", &vhost.name, "name", "durable"]);
    assert!(
        exchanges
            .lines()
            .any(|line| line.contains("order_paid") && line.ends_with("true")),
        "{exchanges}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ on 127.0.0.1:5672 and rabbitmqctl"]
async fn a_message_redelivered_after_a_crash_is_rewarded_once() {
    let vhost = OwnVhost::create();
    let app = app_on(vhost.url(), |_| {}).await;

    // The crash closes the consumer's channel: RabbitMQ puts the message
    // back, flagged redelivered.
    pay_with_crashing_consumer(&app, 2, true).await;

    let seen = messages(&app).await;
    assert!(seen["redelivered_here"].as_u64() >= Some(2), "{seen}");
    assert_one_reward_per_paid_order(&app, 2).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM processed_messages").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ on 127.0.0.1:5672 and rabbitmqctl"]
async fn without_message_dedup_rabbitmq_s_redelivery_rewards_twice() {
    let vhost = OwnVhost::create();
    let app = app_on(vhost.url(), |_| {}).await;
    app.set_defenses(json!({ "message_dedup": false })).await;

    pay_with_crashing_consumer(&app, 2, false).await;

    let rewarded = rewards(&app).await;
    eprintln!("anomaly (message_dedup off, RabbitMQ): {rewarded} rewards for 2 paid orders");
    assert_eq!(rewarded, 4, "each crash's redelivery rewarded again");
    let audit = app.audit().await;
    assert_eq!(
        check(&audit, "one_reward_per_order")["ok"],
        false,
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ on 127.0.0.1:5672 and rabbitmqctl"]
async fn an_unreadable_message_goes_to_the_dead_letters_and_the_audit_warns() {
    let vhost = OwnVhost::create();
    let app = app_on(vhost.url(), |_| {}).await;

    publish_raw(
        &vhost.url(),
        &app.settings.kv_prefix,
        "MSGnot-json",
        b"not json",
    )
    .await;

    app.wait_until("the message is dead-lettered", || async {
        messages(&app).await["dead_letters"] == 1
    })
    .await;
    assert_eq!(
        vhost.queue_column(&format!("{TOPIC}.{GROUP}.dead"), "messages"),
        "1"
    );
    let audit = app.audit().await;
    let warning = check(&audit, "no_dead_letters");
    assert_eq!(
        (warning["ok"].clone(), warning["level"].clone()),
        (json!(false), json!("warning"))
    );
    assert_eq!(
        audit["ok"], true,
        "a warning does not fail the audit: {audit}"
    );
}

/// Publishes a message straight to the topic's exchange, as another service might.
async fn publish_raw(url: &str, prefix: &str, message_id: &str, payload: &[u8]) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("the test connects to RabbitMQ");
    let channel = connection.create_channel().await.expect("a channel");
    let properties = BasicProperties::default().with_message_id(message_id.into());
    let exchange = format!("{prefix}{TOPIC}");
    channel
        .basic_publish(
            exchange.as_str().into(),
            TOPIC.into(),
            BasicPublishOptions::default(),
            payload,
            properties,
        )
        .await
        .expect("published");
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ on 127.0.0.1:5672 and rabbitmqctl"]
async fn a_reward_that_keeps_failing_is_dead_lettered_then_rewarded_by_the_reconciliation() {
    let vhost = OwnVhost::create();
    let app = app_on(vhost.url(), |settings| {
        settings.rewards.max_deliveries = 3;
        settings.rewards.settle = Duration::from_secs(2);
    })
    .await;
    app.set_faults(json!({ "rewards_fail_effect": 3 })).await;

    pay_orders(&app, 1).await;

    app.wait_until("the message is dead-lettered after 3 failures", || async {
        messages(&app).await["dead_lettered_here"] == 1
    })
    .await;
    assert_eq!(
        app.state.faults.fail_effect(),
        0,
        "three tries, three failures"
    );
    app.wait_until(
        "the reconciliation publishes it again and it is rewarded",
        || async { rewards(&app).await == 1 },
    )
    .await;
    assert_one_reward_per_paid_order(&app, 1).await;
    let audit = app.audit().await;
    assert_eq!(check(&audit, "no_dead_letters")["ok"], false, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ (rabbitmq-server, rabbitmqctl)"]
async fn rabbitmq_stopped_and_started_loses_nothing_and_rewards_once() {
    let broker = tokio::task::spawn_blocking(OwnRabbit::start)
        .await
        .expect("the test's RabbitMQ node");
    let app = app_on(broker.url(), |settings| {
        settings.rewards.max_deliveries = 1000;
    })
    .await;
    pay_orders(&app, 2).await;
    app.wait_until("the first orders are rewarded", || async {
        rewards(&app).await == 2
    })
    .await;
    // Two more whose rewards fail: their messages stay in the queue, delivered
    // and not acknowledged, when the broker stops.
    app.set_faults(json!({ "rewards_fail_effect": 100_000 }))
        .await;
    pay_orders(&app, 2).await;
    app.wait_until("two messages held unacknowledged", || async {
        let queue = format!("{TOPIC}.{GROUP}");
        broker.queue_column(&queue, "messages_unacknowledged") == "2"
    })
    .await;

    let broker = tokio::task::spawn_blocking(move || {
        let mut broker = broker;
        broker.stop();
        broker
    })
    .await
    .expect("the node stops");
    pay_orders(&app, 3).await;
    assert_eq!(unpublished(&app).await, 3, "the outbox keeps them");
    let asked = app
        .client
        .get(app.url("/api/admin/messages"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("an answer");
    assert_eq!(asked.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = asked.json().await.expect("problem details");
    assert_eq!(problem["dependency"], "rabbitmq", "{problem}");
    assert_eq!(
        rewards(&app).await,
        2,
        "nothing rewarded while the broker is down"
    );

    app.set_faults(json!({ "rewards_fail_effect": 0 })).await;
    let started = Instant::now();
    let broker = tokio::task::spawn_blocking(move || {
        let mut broker = broker;
        broker.run();
        broker
    })
    .await
    .expect("the node starts again");
    let listening = started.elapsed();
    app.wait_until("every paid order is rewarded", || async {
        rewards(&app).await == 7
    })
    .await;
    let seen = messages(&app).await;
    eprintln!(
        "RabbitMQ restarted: listening after {} ms; the 2 held and the 3 unpublished messages rewarded {} ms after the start; {seen}",
        listening.as_millis(),
        started.elapsed().as_millis()
    );
    assert_eq!(unpublished(&app).await, 0);
    assert_one_reward_per_paid_order(&app, 7).await;
    drop(broker);
}

async fn unpublished(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a database server, Redis and RabbitMQ (rabbitmqctl)"]
async fn a_consumer_killed_mid_message_hands_it_to_another_flagged_redelivered() {
    let vhost = OwnVhost::create();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let database = create_test_database(&database_server("two consumers"), &run_id).await;
    // The run's Redis Cluster (CI's cluster leg), or one Redis.
    let redis = match std::env::var("REDIS_CLUSTER_URLS")
        .ok()
        .filter(|urls| !urls.is_empty())
    {
        Some(urls) => ("REDIS_CLUSTER_URLS", urls),
        None => ("REDIS_URL", redis_server("two consumers")),
    };
    // The app that pays does not consume (an API-only instance), so the
    // process killed below is the only consumer until the survivor starts.
    let (database_for_app, redis_for_app) = (database.clone(), redis.clone());
    let payer = app_on(vhost.url(), |settings| {
        settings.database_url = database_for_app;
        if redis_for_app.0 == "REDIS_URL" {
            settings.redis_url = Some(redis_for_app.1);
        }
        settings.rewards.consume = false;
    })
    .await;
    let doomed = start_consumer_process(&payer, &vhost, &database, &redis).await;
    call_admin_put(
        &doomed,
        &payer.admin_token,
        "/api/admin/faults",
        json!({ "rewards_fail_effect": 1000 }),
    )
    .await;

    pay_orders(&payer, 3).await;
    payer
        .wait_until(
            "the doomed consumer holds all three, unacknowledged",
            || async {
                let column =
                    vhost.queue_column(&format!("{TOPIC}.{GROUP}"), "messages_unacknowledged");
                column == "3"
            },
        )
        .await;

    let survivor = payer
        .twin_with(|settings| settings.rewards.consume = true)
        .await
        .expect("the survivor starts");
    let killed = Instant::now();
    drop(doomed); // SIGKILL: the OS closes its connection mid-message.
    survivor
        .wait_until("the survivor rewards what the dead one held", || async {
            rewards(&survivor).await == 3
        })
        .await;
    eprintln!(
        "consumer killed holding 3 messages: all 3 redelivered to the other consumer and rewarded {} ms later",
        killed.elapsed().as_millis()
    );
    let seen = messages(&survivor).await;
    assert_eq!(
        seen["redelivered_here"], 3,
        "each came flagged redelivered: {seen}"
    );
    assert_one_reward_per_paid_order(&survivor, 3).await;
}

/// A second flashguard process on the payer's database, key store and vhost,
/// which does not give up on a failing reward.
async fn start_consumer_process(
    payer: &TestApp,
    vhost: &OwnVhost,
    database: &str,
    redis: &(&'static str, String),
) -> Server {
    let settings = &payer.settings;
    let env = vec![
        ("DATABASE_URL", database.to_string()),
        redis.clone(),
        ("AMQP_URL", vhost.url()),
        ("KV_PREFIX", settings.kv_prefix.clone()),
        ("ADMIN_TOKEN", payer.admin_token.clone()),
        ("SESSION_SECRET", format!("session-{}", settings.kv_prefix)),
        ("PSP_SECRET", format!("psp-{}", settings.kv_prefix)),
        ("MESSAGE_MAX_DELIVERIES", "1000".into()),
    ];
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_flashguard"));
    let dir = tempfile::tempdir().expect("a directory for the process");
    let path = dir.path().to_path_buf();
    let server = tokio::task::spawn_blocking(move || start_with(&binary, &path, &env))
        .await
        .expect("the consumer process starts");
    std::mem::forget(dir);
    server
}

async fn call_admin_put(server: &Server, token: &str, path: &str, body: Value) {
    let response = reqwest::Client::new()
        .put(format!("{}{path}", server.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("an answer");
    assert!(response.status().is_success(), "PUT {path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ on 127.0.0.1:5672 and rabbitmqctl"]
async fn the_lab_s_message_redelivery_runs_on_rabbitmq() {
    let vhost = OwnVhost::create();
    let app = app_on(vhost.url(), |_| {}).await;

    let off = crate::lab::run(&app, "message_redelivery", "off")
        .await
        .json();
    let redelivered = messages(&app).await["redelivered_here"].as_u64();
    eprintln!(
        "message_redelivery on RabbitMQ, message_dedup off: {} extra rewards, {redelivered:?} deliveries flagged redelivered",
        off["anomalies"]
    );
    assert_eq!(off["anomalies"], 3, "{off}");
    assert!(redelivered >= Some(3), "RabbitMQ flagged each redelivery");
    assert_eq!(check(&off["audit"], "one_reward_per_order")["ok"], false);

    let on = crate::lab::run(&app, "message_redelivery", "on")
        .await
        .json();
    assert_eq!(on["anomalies"], 0, "{on}");
    assert_eq!(on["audit"]["ok"], true, "{}", on["audit"]);
}
