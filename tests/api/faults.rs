//! Faults with real processes (docs/reliability.md): a Redis server of the
//! test's own, killed and started again; the database (Postgres or MySQL) cut by a TCP proxy inside the
//! harness; a claim stranded by a request that died; two instances on one
//! database and key store; resets under traffic; a reward whose message was
//! lost. Never the machine's shared services. Every wait here is bounded: a
//! client gives up after 4 s, and a request it gave up on counts as a failure.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{
    Reply, TestApp, assert_answered_database_unavailable, assert_redis_server_installed, check,
    concurrently, create_test_database, database_server, free_port, real_stack, spawn_app,
    spawn_app_with,
};

/// The longest a client waits for any answer while a dependency is down.
const CLIENT_BOUND: Duration = Duration::from_secs(4);

/// A `redis-server` of this test's own, on a free port.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        assert_redis_server_installed();
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port) and waits until it answers.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not listen on {}", self.port);
    }

    /// SIGKILL: Redis goes away with everything it held.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy in front of Postgres that the test can cut (every connection
/// closed, new ones refused) and restore.
struct Proxy {
    port: u16,
    open: watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy listens");
        let port = listener.local_addr().expect("proxy address").port();
        let (open, watching) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watching = watching.clone();
                if !*watching.borrow() {
                    continue; // cut: the connection is dropped at once
                }
                tokio::spawn(forward(client, target, watching));
            }
        });
        Self { port, open }
    }

    fn cut(&self) {
        let _ = self.open.send(false);
    }

    fn restore(&self) {
        let _ = self.open.send(true);
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr, mut open: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = open.wait_for(|open| !*open) => {}
    }
}

/// A request with the bound: `None` when the client had to give up.
async fn bounded(request: reqwest::RequestBuilder) -> Option<Reply> {
    match request.timeout(CLIENT_BOUND).send().await {
        Ok(response) => Some(Reply::read(response).await),
        Err(error) => {
            assert!(
                !error.is_timeout(),
                "a client waited longer than {CLIENT_BOUND:?}"
            );
            None
        }
    }
}

async fn wait_ready(app: &TestApp, what: &str) {
    app.wait_until(what, || async {
        bounded(app.client.get(app.url("/readyz")))
            .await
            .is_some_and(|reply| reply.status == StatusCode::OK)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server installed (apt-get install redis-server); cargo test -- --include-ignored"]
async fn a_redis_outage_serves_orders_refuses_pay_and_recovers_in_seconds() {
    let mut redis = OwnRedis::start();
    let redis_url = redis.url();
    let app = spawn_app_with(|settings| {
        settings.redis_url = Some(redis_url);
        settings.redis_cluster_urls = None;
        settings.rewards.settle = Duration::from_secs(1);
    })
    .await;
    let alice = app.login("alice").await;
    let paid_before = app.place_order(&alice, 1).await;
    app.pay_fresh(&alice, &paid_before).await;

    redis.kill();
    let order = bounded(app.post_order_request(&alice, "during-outage", 1, 1))
        .await
        .expect("an order is answered");
    let token = bounded(app.payment_token_request(&alice, &paid_before))
        .await
        .expect("the token request is answered");
    let ready = bounded(app.client.get(app.url("/readyz")))
        .await
        .expect("readiness");

    assert_eq!(
        order.status,
        StatusCode::CREATED,
        "orders degrade to the database: {}",
        order.body
    );
    assert_eq!(
        token.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        token.body
    );
    assert_eq!(token.code().as_deref(), Some("dependency_unavailable"));
    assert_eq!(token.json()["dependency"], "redis");
    assert!(token.retry_after.is_some());
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["failing"], json!(["redis"]));

    tokio::time::sleep(Duration::from_secs(2)).await; // an outage longer than a second
    redis.restart();
    wait_ready(&app, "ready again within seconds of Redis coming back").await;
    let bob = app.login("bob").await;
    let after = app.place_order(&bob, 1).await;
    assert_eq!(
        app.pay_fresh(&bob, &after).await.status,
        StatusCode::ACCEPTED
    );
    // The restarted Redis lost the reward stream: the reconciliation publishes again.
    app.wait_until("every paid order is rewarded", || async {
        app.count("SELECT COUNT(*) FROM rewards").await == 2
    })
    .await;
    app.state
        .gate
        .reconcile_all()
        .await
        .expect("reconciliation");
    assert_eq!(app.audit().await["ok"], true, "{}", app.audit().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Postgres on 127.0.0.1:5432 or DATABASE_URL to a server; cargo test -- --include-ignored"]
async fn a_database_cut_is_answered_503_within_the_bound_and_recovers() {
    let server_url = database_server("the database cut");
    let server = reqwest::Url::parse(&server_url).expect("DATABASE_URL is a URL");
    let default_port = if server.scheme() == "mysql" {
        3306
    } else {
        5432
    };
    let target: SocketAddr = format!(
        "{}:{}",
        server.host_str().expect("the database URL names a host"),
        server.port().unwrap_or(default_port)
    )
    .parse()
    .expect("the database server's address");
    let proxy = Proxy::start(target).await;
    let port = proxy.port;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut through_proxy =
        reqwest::Url::parse(&create_test_database(&server_url, &run_id).await).expect("URL");
    let _ = through_proxy.set_port(Some(port));
    let app = spawn_app_with(|settings| settings.database_url = through_proxy.to_string()).await;
    let alice = app.login("alice").await;

    proxy.cut();
    let products = bounded(app.client.get(app.url("/api/products")))
        .await
        .expect("answered");
    let order = bounded(app.post_order_request(&alice, "cut", 1, 1))
        .await
        .expect("answered");
    let ready = bounded(app.client.get(app.url("/readyz")))
        .await
        .expect("readiness");

    for reply in [&products, &order] {
        assert_answered_database_unavailable(reply);
    }
    assert_eq!(ready.json()["failing"], json!(["database"]));

    proxy.restore();
    wait_ready(&app, "ready again once the database is back").await;
    let retried = app.post_order_retrying(&alice, "cut", 1, 1).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.body);
    assert_eq!(app.audit().await["ok"], true);
}

/// A request that took a unit at the gate and died before its order committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_stranded_by_a_dead_request_comes_back_after_one_lease() {
    let app = spawn_app_with(|settings| settings.idempotency.lease = Duration::from_secs(1)).await;
    let product = app.reset_with_one_product(10).await;
    let key = flashguard::domain::IdempotencyKey::from_header(Some(b"dead-request")).expect("key");
    let pass = app
        .state
        .gate
        .admit(product, 4242, &key, 3)
        .await
        .expect("the gate answers");
    assert!(matches!(
        pass,
        flashguard::defenses::stock_gate::Decision::Pass(Some(_))
    ));
    app.state
        .gate
        .reconcile_all()
        .await
        .expect("reconciliation");
    assert_eq!(
        app.state.gate.counter(product).await.unwrap(),
        Some(7),
        "the claim is still live"
    );
    let audit = app.audit().await;
    assert_eq!(
        check(&audit, "stock_gate_matches_database")["ok"],
        true,
        "{audit}"
    );

    drop(pass); // the request died: nobody gives the units back
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    app.state
        .gate
        .reconcile_all()
        .await
        .expect("reconciliation");

    assert_eq!(
        app.state.gate.counter(product).await.unwrap(),
        Some(10),
        "the units came back"
    );
    assert_eq!(app.audit().await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_switches_and_sell_the_stock_exactly_once() {
    let app = Arc::new(spawn_app().await);
    let twin = match app.twin().await {
        Ok(twin) => Arc::new(twin),
        Err(error) => {
            // The embedded default: one instance per SQLite file, by design.
            assert!(real_stack().1.is_none(), "{error}");
            assert!(
                error
                    .to_string()
                    .contains("another flashguard is already using"),
                "{error}"
            );
            return;
        }
    };
    app.set_defenses(json!({ "stock_gate": false })).await;
    twin.wait_until("the twin follows the switch", || async {
        !twin
            .state
            .switches
            .is_on(flashguard::switches::Defense::StockGate)
    })
    .await;
    app.set_defenses(json!({ "stock_gate": true })).await;
    let product = app.reset_with_one_product(20).await;
    let mut users = Vec::new();
    for i in 0..60 {
        users.push(app.login(&format!("twin{i}")).await);
    }
    let (users, instances) = (Arc::new(users), [app.clone(), twin.clone()]);
    let instances = Arc::new(instances);

    concurrently(60, |i| {
        let (users, instances) = (users.clone(), instances.clone());
        async move {
            instances[i % 2]
                .post_order_retrying(&users[i], &format!("t{i}"), product, 1)
                .await
        }
    })
    .await;

    assert_eq!(app.order_count(product).await, 20);
    pay_through_both(&instances, &users).await;
    for instance in [&app, &twin] {
        instance
            .state
            .gate
            .reconcile_all()
            .await
            .expect("reconciliation");
    }
    assert_eq!(app.audit().await["ok"], true, "{}", app.audit().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_under_concurrent_buyers_all_succeed_and_the_audit_holds() {
    let app = Arc::new(spawn_app().await);
    app.reset_with_one_product(1_000).await;
    let mut users = Vec::new();
    for i in 0..10 {
        users.push(app.login(&format!("reset{i}")).await);
    }
    let users = Arc::new(users);
    let buyers = tokio::spawn({
        let (app, users) = (app.clone(), users.clone());
        async move {
            concurrently(200, |i| {
                let (app, users) = (app.clone(), users.clone());
                async move {
                    Reply::read(app.post_order(&users[i % 10], &format!("r{i}"), 1, 1).await).await
                }
            })
            .await
        }
    });

    let mut statuses = Vec::new();
    for _ in 0..20 {
        let response = app
            .client
            .post(app.url("/api/admin/reset"))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .expect("reset");
        statuses.push(response.status());
    }
    let replies = buyers.await.expect("buyers");

    assert!(
        statuses.iter().all(|status| *status == StatusCode::OK),
        "{statuses:?}"
    );
    assert!(
        replies.iter().all(|reply| reply.status.as_u16() < 500),
        "no 5xx for a buyer: {:?}",
        replies
            .iter()
            .filter(|r| r.status.as_u16() >= 500)
            .map(|r| &r.body)
            .collect::<Vec<_>>()
    );
    app.state
        .gate
        .reconcile_all()
        .await
        .expect("reconciliation");
    assert_eq!(app.audit().await["ok"], true, "{}", app.audit().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reward_whose_message_was_lost_is_published_again() {
    let app = spawn_app_with(|settings| settings.rewards.settle = Duration::from_secs(1)).await;
    app.set_psp(json!({ "callbacks": 1, "delay_ms": 0 })).await;
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 1).await;
    app.pay_fresh(&alice, &order_no).await;
    app.wait_until("the reward", || async {
        app.count("SELECT COUNT(*) FROM rewards").await == 1
    })
    .await;

    // The message and its effect are lost, as if the stream entry had been.
    for table in ["rewards", "processed_messages"] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(app.state.db.pool())
            .await
            .expect("delete");
    }

    app.wait_until("the reward is awarded again", || async {
        app.count("SELECT COUNT(*) FROM rewards").await == 1
    })
    .await;
    assert_eq!(
        check(&app.audit().await, "paid_orders_rewarded_once")["ok"],
        true
    );
}

/// Pays the orders through both instances; both relays run, and each "order
/// paid" message reaches the stream once (on RabbitMQ: each order is rewarded once).
async fn pay_through_both(instances: &[Arc<TestApp>; 2], users: &[crate::helpers::TestUser]) {
    let app = &instances[0];
    for instance in instances {
        instance
            .set_psp(json!({ "callbacks": 1, "delay_ms": 0 }))
            .await;
    }
    let orders: Vec<(String, i64)> = sqlx::query_as("SELECT order_no, user_id FROM orders")
        .fetch_all(app.state.db.pool())
        .await
        .expect("orders");
    for (i, (order_no, user_id)) in orders.iter().enumerate() {
        let user = users
            .iter()
            .find(|u| u.user_id == *user_id)
            .expect("the buyer");
        instances[i % 2].pay_fresh(user, order_no).await;
    }
    app.wait_until("every order rewarded", || async {
        app.count("SELECT COUNT(*) FROM rewards").await == orders.len() as i64
    })
    .await;
    let Some(redis_url) = real_stack().1 else {
        return;
    };
    if app.settings.amqp_url.is_some() {
        // On RabbitMQ the consumed messages are gone from the queue: the
        // rewards above (one per order) are the check.
        assert_eq!(
            app.count("SELECT COUNT(DISTINCT order_no) FROM rewards")
                .await,
            orders.len() as i64
        );
        return;
    }
    let client = redis::Client::open(redis_url).expect("Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let stream = format!("{}stream:order_paid", app.settings.kv_prefix);
    let entries: i64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut connection)
        .await
        .expect("XLEN");
    assert_eq!(
        entries,
        orders.len() as i64,
        "each message published once, by one of the two relays"
    );
}
