//! `spawn_app()`: a server on a random port with its own freshly migrated
//! database (a new Postgres database, or a new SQLite file) and its own key-store
//! namespace (a Redis key prefix, or a new in-process store), plus typed helpers.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use flashguard::configuration::{ProviderSettings, Secrets, Settings};
use flashguard::flows::orders::batch::OrderBatches;
use flashguard::startup::Application;
use flashguard::state::AppState;
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::Connection;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub admin_token: String,
    pub psp_secret: SecretString,
    pub state: web::Data<AppState>,
    /// The group commit's queue (its batch counts).
    pub order_batches: web::Data<OrderBatches>,
    /// The settings it was built with (a twin instance starts from them).
    pub settings: Settings,
    _sqlite_dir: Option<std::sync::Arc<tempfile::TempDir>>,
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub token: String,
    pub user_id: i64,
}

/// The database server of a test that needs one (a cut connection, two
/// instances, the schema of a server engine): the run's `DATABASE_URL`, or in
/// the embedded run a Postgres on 127.0.0.1:5432 if one answers (each test
/// makes its own database on it). Such tests are `#[ignore = "needs …"]`: a
/// plain `cargo test` lists them as ignored, `cargo test -- --include-ignored`
/// (as `.ci/run`) runs them, and then a missing server fails the test, saying
/// what it needs.
pub fn database_server(test: &str) -> String {
    if let Some(url) = real_stack().0 {
        return url;
    }
    if answers(5432) {
        return "postgres://postgres@127.0.0.1:5432/postgres".to_string();
    }
    missing(
        test,
        "DATABASE_URL=postgres://… or mysql://…, or a Postgres on 127.0.0.1:5432",
    )
}

/// Like [`database_server`], for one Redis: `REDIS_URL`, or 127.0.0.1:6379.
pub fn redis_server(test: &str) -> String {
    if let Some(url) = real_stack().1 {
        return url;
    }
    if answers(6379) {
        return "redis://127.0.0.1:6379".to_string();
    }
    missing(test, "REDIS_URL=redis://…, or a Redis on 127.0.0.1:6379")
}

/// A port nothing listens on now (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// The tests that start their own Redis (an outage, a cluster) need the binary.
pub fn assert_redis_server_installed() {
    assert!(
        std::path::Path::new("/usr/bin/redis-server").exists(),
        "redis-server is not installed: apt-get install redis-server"
    );
}

fn answers(port: u16) -> bool {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300)).is_ok()
}

fn missing(test: &str, needs: &str) -> ! {
    panic!("{test} has no server: it needs {needs}")
}

/// Which stack this run tests, from the environment.
pub fn real_stack() -> (Option<String>, Option<String>) {
    let non_empty = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    (non_empty("DATABASE_URL"), non_empty("REDIS_URL"))
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns an app after `customize` has adjusted its settings.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        flashguard::telemetry::init();
    } else {
        // Errors only, through the test's captured output: a failing test
        // shows the server-side cause of a 500 beside its assertion.
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::ERROR)
            .with_test_writer()
            .try_init();
    }
    let (database_url, redis_url) = real_stack();
    // The RabbitMQ leg of `.ci/run`: the run's vhost, this app's own queues
    // (named after its key prefix).
    let amqp_url = std::env::var("AMQP_URL").ok().filter(|url| !url.is_empty());
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let (database_url, sqlite_dir) = match database_url {
        Some(server_url) => (create_test_database(&server_url, &run_id).await, None),
        None => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!("sqlite://{}/flashguard.db?mode=rwc", dir.path().display());
            (url, Some(dir))
        }
    };
    let mut settings = Settings::defaults().expect("the default settings parse");
    settings.database_url = database_url;
    settings.redis_url = redis_url;
    settings.amqp_url = amqp_url;
    // CI's cluster run: REDIS_CLUSTER_URLS instead of REDIS_URL.
    settings.redis_cluster_urls = std::env::var("REDIS_CLUSTER_URLS")
        .ok()
        .filter(|urls| !urls.is_empty());
    settings.bind_addr = "127.0.0.1:0".into();
    settings.secrets = Secrets {
        admin_token: SecretString::from(format!("admin-{run_id}")),
        psp_secret: SecretString::from(format!("psp-{run_id}")),
        session_secret: SecretString::from(format!("session-{run_id}")),
        generated: Vec::new(),
    };
    settings.kv_prefix = format!("fgtest:{run_id}:");
    settings.db_max_connections = Some(8);
    // Background jobs a test does not start itself stay out of its way.
    settings.idempotency.sweep_every = Duration::from_secs(3600);
    settings.payments.close_every = Duration::from_secs(3600);
    settings.gate_reconcile_every = Duration::from_secs(3600);
    // Many concurrent buyers on one row in a debug build: more retries, longer
    // waits for the order lock than production needs.
    settings.version_lock.max_retries = 50;
    settings.payments.lock_wait = Duration::from_secs(10);
    // Alipay's schedule (4 min first) becomes 24 ms.
    settings.payments.psp_retry_scale = 0.0001;
    set_test_keys(&mut settings.providers, &run_id);
    settings.rewards.poll_every = Duration::from_millis(20);
    settings.rewards.redeliver_after = Duration::from_millis(200);
    // Generous: debug builds on two shared cores, four suites in a row
    // (tests/api/deadline.rs sets its own).
    settings.request_deadline = Duration::from_secs(10);
    // A debug build beside other tests can leave a Redis reply unread for
    // over 500 ms; past the bound the breaker would send every order around
    // the gate for 500 ms (a CI run saw 100 of 180 losers answered by the
    // database). The fault tests kill Redis, which is refused at once.
    settings.redis_command_timeout = Duration::from_secs(3);
    // Off in tests (the rate-limit tests switch them on).
    settings.limits.login_per_ip = 0;
    settings.limits.writes_per_user = 0;
    settings.limits.writes_per_ip = 0;
    settings.switches_refresh_every = Duration::from_millis(100);
    customize(&mut settings);
    start(settings, sqlite_dir.map(std::sync::Arc::new))
        .await
        .expect("the app builds")
}

/// The payment channels' keys of a test app: one RSA pair per channel for the
/// whole test binary (generating them is the slow part), a fresh APIv3 key per app.
fn set_test_keys(providers: &mut ProviderSettings, run_id: &str) {
    let [
        (alipay_public, alipay_private),
        (wechat_public, wechat_private),
    ] = test_key_pairs();
    providers.alipay_public_key = alipay_public;
    providers.mock_alipay_private_key = SecretString::from(alipay_private);
    providers.wechatpay_platform_public_key = wechat_public;
    providers.mock_wechatpay_private_key = SecretString::from(wechat_private);
    // 32 characters: the run id is 32 hex digits.
    providers.wechatpay_apiv3_key = SecretString::from(run_id.to_string());
}

/// (public PEM, private PEM) for Alipay and for WeChat Pay.
pub fn test_key_pairs() -> [(String, String); 2] {
    static PAIRS: std::sync::OnceLock<[(String, String); 2]> = std::sync::OnceLock::new();
    PAIRS
        .get_or_init(|| {
            let pair = || {
                let pair = flashguard::psp::keys::generate().expect("an RSA key pair");
                flashguard::psp::keys::pem_pair(&pair).expect("PEM")
            };
            [pair(), pair()]
        })
        .clone()
}

/// Builds and runs an application from `settings`.
async fn start(
    settings: Settings,
    sqlite_dir: Option<std::sync::Arc<tempfile::TempDir>>,
) -> Result<TestApp, flashguard::startup::StartupError> {
    let application = Application::build(settings.clone()).await?;
    let address = application.url();
    let state = application.state();
    let order_batches = application.order_batches();
    tokio::spawn(application.run_until_stopped());
    Ok(TestApp {
        address,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client"),
        admin_token: settings.secrets.admin_token.expose_secret().to_string(),
        psp_secret: settings.secrets.psp_secret.clone(),
        state,
        order_batches,
        settings,
        _sqlite_dir: sqlite_dir,
    })
}

/// Creates `fg_test_<run id>` on the server of `server_url` (Postgres or
/// MySQL) and returns its URL. `.ci/run` drops them after the suite.
pub async fn create_test_database(server_url: &str, run_id: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("fg_test_{run_id}");
    let mut connection = sqlx::AnyConnection::connect(server_url)
        .await
        .expect("the database server of DATABASE_URL answers");
    let create = if server_url.starts_with("mysql") || server_url.starts_with("mariadb") {
        format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    } else {
        format!("CREATE DATABASE {name}")
    };
    sqlx::query(&create)
        .execute(&mut connection)
        .await
        .expect("a test database can be created");
    let mut url = reqwest::Url::parse(server_url).expect("DATABASE_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

impl TestApp {
    /// A second instance on the same database and key store (several instances
    /// behind a load balancer).
    pub async fn twin(&self) -> Result<TestApp, flashguard::startup::StartupError> {
        start(self.settings.clone(), self._sqlite_dir.clone()).await
    }

    /// Like [`Self::twin`], with settings adjusted by `customize`.
    pub async fn twin_with(
        &self,
        customize: impl FnOnce(&mut Settings),
    ) -> Result<TestApp, flashguard::startup::StartupError> {
        let mut settings = self.settings.clone();
        customize(&mut settings);
        start(settings, self._sqlite_dir.clone()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// `GET path` (no credentials), which must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("JSON body")
    }

    pub async fn login(&self, username: &str) -> TestUser {
        let response = self
            .client
            .post(self.url("/api/login"))
            .json(&json!({ "username": username }))
            .send()
            .await
            .expect("login request");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("login JSON");
        TestUser {
            token: body["token"].as_str().expect("token").to_string(),
            user_id: body["user_id"].as_i64().expect("user_id"),
        }
    }

    /// The request of `POST /api/orders`, not yet sent.
    pub fn post_order_request(
        &self,
        user: &TestUser,
        key: &str,
        product_id: i64,
        quantity: i64,
    ) -> reqwest::RequestBuilder {
        self.client
            .post(self.url("/api/orders"))
            .bearer_auth(&user.token)
            .header("Idempotency-Key", key)
            .json(&json!({ "product_id": product_id, "quantity": quantity }))
    }

    /// The request of `POST /api/orders/{order_no}/payment-token`, not yet sent.
    pub fn payment_token_request(
        &self,
        user: &TestUser,
        order_no: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(&format!("/api/orders/{order_no}/payment-token")))
            .bearer_auth(&user.token)
    }

    /// `POST /api/orders` with a raw body and an optional key.
    pub async fn post_order_raw(&self, user: &TestUser, key: Option<&str>, body: &str) -> Response {
        let mut request = self
            .client
            .post(self.url("/api/orders"))
            .bearer_auth(&user.token)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("order request")
    }

    pub async fn post_order(
        &self,
        user: &TestUser,
        key: &str,
        product_id: i64,
        quantity: i64,
    ) -> Response {
        let body = json!({ "product_id": product_id, "quantity": quantity }).to_string();
        self.post_order_raw(user, Some(key), &body).await
    }

    /// Like a well-behaved client: retries `503 busy_retry` with the same key.
    pub async fn post_order_retrying(
        &self,
        user: &TestUser,
        key: &str,
        product_id: i64,
        quantity: i64,
    ) -> Reply {
        loop {
            let reply = Reply::read(self.post_order(user, key, product_id, quantity).await).await;
            if reply.status != StatusCode::SERVICE_UNAVAILABLE {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn set_defenses(&self, switches: Value) {
        let response = self
            .client
            .put(self.url("/api/admin/defenses"))
            .bearer_auth(&self.admin_token)
            .json(&switches)
            .send()
            .await
            .expect("defenses request");
        assert_eq!(response.status(), StatusCode::OK, "switching {switches}");
    }

    /// Starts a clean sale with one product of `stock` units; returns its id.
    pub async fn reset_with_one_product(&self, stock: i64) -> i64 {
        let body =
            json!({ "products": [{ "name": "test item", "price_cents": 100, "stock": stock }] });
        let response = self
            .client
            .post(self.url("/api/admin/reset"))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .expect("reset request");
        let reply = Reply::read(response).await;
        assert_eq!(reply.status, StatusCode::OK, "reset: {}", reply.body);
        let body = reply.json();
        body["products"][0]["id"].as_i64().expect("product id")
    }

    /// `GET path` with the admin token, which must answer 200 with JSON.
    pub async fn get_admin_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("admin GET");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("JSON body")
    }

    pub async fn admin_put(&self, path: &str, body: Value) {
        let response = self
            .client
            .put(self.url(path))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .expect("admin request");
        assert_eq!(response.status(), StatusCode::OK, "PUT {path} {body}");
    }

    /// Sets how the mock payment provider behaves.
    pub async fn set_psp(&self, behaviour: Value) {
        self.admin_put("/api/admin/psp", behaviour).await;
    }

    pub async fn set_faults(&self, faults: Value) {
        self.admin_put("/api/admin/faults", faults).await;
    }

    /// Places an order (which must succeed) and returns its number.
    pub async fn place_order(&self, user: &TestUser, product_id: i64) -> String {
        let key = uuid::Uuid::new_v4().to_string();
        let reply = self.post_order_retrying(user, &key, product_id, 1).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.json()["order_no"]
            .as_str()
            .expect("order_no")
            .to_string()
    }

    pub async fn payment_token(&self, user: &TestUser, order_no: &str) -> String {
        let response = self
            .client
            .post(self.url(&format!("/api/orders/{order_no}/payment-token")))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("token request");
        let reply = Reply::read(response).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.json()["token"].as_str().expect("token").to_string()
    }

    pub async fn pay(
        &self,
        user: &TestUser,
        order_no: &str,
        key: &str,
        token: Option<&str>,
    ) -> Reply {
        let mut request = self
            .client
            .post(self.url(&format!("/api/orders/{order_no}/pay")))
            .bearer_auth(&user.token)
            .header("Idempotency-Key", key);
        if let Some(token) = token {
            request = request.header("Payment-Token", token);
        }
        Reply::read(request.send().await.expect("pay request")).await
    }

    /// Opens the pay popup (fetches a token) and pays with a fresh key.
    pub async fn pay_fresh(&self, user: &TestUser, order_no: &str) -> Reply {
        let token = self.payment_token(user, order_no).await;
        self.pay(
            user,
            order_no,
            &uuid::Uuid::new_v4().to_string(),
            Some(&token),
        )
        .await
    }

    /// Posts a callback signed with the provider's secret at `timestamp`.
    pub async fn send_callback_at(&self, body: &str, timestamp: i64) -> Reply {
        let signature = flashguard::psp::signature::sign(&self.psp_secret, timestamp, body);
        self.send_callback_signed(body, Some(&signature)).await
    }

    pub async fn send_callback(&self, event: &Value) -> Reply {
        let now = flashguard::psp::signature::now_unix();
        self.send_callback_at(&event.to_string(), now).await
    }

    pub async fn send_callback_signed(&self, body: &str, signature: Option<&str>) -> Reply {
        let mut request = self
            .client
            .post(self.url("/api/payments/callback"))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(signature) = signature {
            request = request.header("PSP-Signature", signature);
        }
        Reply::read(request.send().await.expect("callback request")).await
    }

    /// `text` in this app's dialect (`$n` → `?` on MySQL).
    pub fn sql<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        flashguard::store::sql(self.state.db.backend(), text)
    }

    pub async fn order_status(&self, order_no: &str) -> String {
        sqlx::query_scalar(&self.sql("SELECT status FROM orders WHERE order_no = $1"))
            .bind(order_no)
            .fetch_one(self.state.db.pool())
            .await
            .expect("order status")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.state.db.pool())
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// Waits until `condition` holds (background work: callbacks, the relay, the
    /// consumer). Not a timing assertion: the deadline only stops a hung test.
    pub async fn wait_until<F, Fut>(&self, what: &str, condition: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !condition().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The audit, fresh (the admin's view; the public one may be a second old).
    pub async fn audit(&self) -> Value {
        self.get_admin_json("/api/audit").await
    }

    pub async fn order_count(&self, product_id: i64) -> i64 {
        sqlx::query_scalar(&self.sql("SELECT COUNT(*) FROM orders WHERE product_id = $1"))
            .bind(product_id)
            .fetch_one(self.state.db.pool())
            .await
            .expect("count orders")
    }

    pub async fn stock(&self, product_id: i64) -> i64 {
        sqlx::query_scalar(&self.sql("SELECT stock FROM products WHERE id = $1"))
            .bind(product_id)
            .fetch_one(self.state.db.pool())
            .await
            .expect("read stock")
    }
}

/// The parts of a response the tests look at, read once.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: String,
    pub replayed: bool,
    pub defense: Option<String>,
    pub retry_after: Option<String>,
    pub content_type: Option<String>,
}

impl Reply {
    pub async fn read(response: Response) -> Self {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let replayed = header("Idempotent-Replayed").as_deref() == Some("true");
        let defense = header("Flashguard-Defense");
        let retry_after = header("Retry-After");
        let content_type = header("Content-Type");
        let status = response.status();
        let body = response.text().await.expect("response body");
        Self {
            status,
            body,
            replayed,
            defense,
            retry_after,
            content_type,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The problem `code`, when the body is a problem.
    pub fn code(&self) -> Option<String> {
        self.json()["code"].as_str().map(str::to_string)
    }
}

/// Runs `count` copies of `make(i)` as separate tasks, all at once, and collects their replies.
pub async fn concurrently<F, Fut>(count: usize, make: F) -> Vec<Reply>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    let tasks: Vec<_> = (0..count).map(|i| tokio::spawn(make(i))).collect();
    let mut replies = Vec::with_capacity(count);
    for task in tasks {
        replies.push(task.await.expect("request task"));
    }
    replies
}

pub fn check<'a>(audit: &'a Value, name: &str) -> &'a Value {
    audit["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|check| check["name"] == name))
        .unwrap_or_else(|| panic!("audit has no check {name}: {audit}"))
}

/// A crowd: `count` users (`<name>0`, `<name>1`, …) log in, then each buys
/// one unit of `product` with its own key (`<name>-<i>`), all at once.
pub async fn crowd_buys(
    app: &Arc<TestApp>,
    count: usize,
    name: &str,
    product: i64,
) -> (Arc<Vec<TestUser>>, Vec<Reply>) {
    let mut users = Vec::with_capacity(count);
    for i in 0..count {
        users.push(app.login(&format!("{name}{i}")).await);
    }
    let users = Arc::new(users);
    let replies = concurrently(count, |i| {
        let (app, users, key) = (app.clone(), users.clone(), format!("{name}-{i}"));
        async move { app.post_order_retrying(&users[i], &key, product, 1).await }
    })
    .await;
    (users, replies)
}

/// The replies counted by status, problem code and answering defense, e.g.
/// `"409 sold_out stock_gate": 180`: the message of an assertion on them.
pub fn answered_by(replies: &[Reply]) -> std::collections::BTreeMap<String, usize> {
    let mut tally = std::collections::BTreeMap::new();
    for reply in replies {
        let code = reply.code().unwrap_or_default();
        let defense = reply.defense.as_deref().unwrap_or("-");
        let line = format!("{} {code} {defense}", reply.status.as_u16());
        *tally.entry(line).or_insert(0) += 1;
    }
    tally
}

/// How many replies created an order, and how many are `sold_out` answered
/// by the stock gate (without database work).
pub fn created_and_sold_out_at_gate(replies: &[Reply]) -> (usize, usize) {
    let created = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let at_gate = replies
        .iter()
        .filter(|r| {
            r.code().as_deref() == Some("sold_out") && r.defense.as_deref() == Some("stock_gate")
        })
        .count();
    (created, at_gate)
}

/// 503 `dependency_unavailable` naming the database, with `Retry-After`.
pub fn assert_answered_database_unavailable(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.code().as_deref(), Some("dependency_unavailable"));
    assert_eq!(reply.json()["dependency"], "database", "{}", reply.body);
    assert!(reply.retry_after.is_some(), "says when to retry");
}
