//! HTTP calls of the load test, each measured into the recorder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::config::{Config, LoadTestError, Progress, Scenario};
use super::series::{StockSample, Tick, TickLatency};

/// One measured answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub defense: Option<String>,
    pub replayed: bool,
}

impl Answer {
    pub fn code(&self) -> Option<&str> {
        self.body["code"].as_str()
    }
}

/// Latencies and tallies shared by every worker.
pub struct Recorder {
    tallies: Mutex<Tallies>,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    started: Mutex<Instant>,
    /// The load has started (the clock runs from then; ticks are taken from then).
    loading: AtomicBool,
    /// Milliseconds since start of the last 201 seen (the flash sale's sell-out time).
    pub last_created_ms: AtomicU64,
    /// New orders seen (201, neither replayed nor found by a defense).
    created: AtomicU64,
    /// The product under load (0: none), whose stock the ticks follow.
    product: AtomicI64,
    /// The most units in orders the probe has counted (-1: it never could).
    units_counted: AtomicI64,
    progress: Arc<dyn Progress>,
}

/// What the answers were, in one place (one lock per answer).
struct Tallies {
    /// The whole run's latencies.
    latencies: Histogram<u64>,
    /// The latencies of the current tick.
    this_tick: Histogram<u64>,
    by_reply: BTreeMap<String, u64>,
    by_status: BTreeMap<String, u64>,
    by_defense: BTreeMap<String, u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

/// A percentile of `histogram` in milliseconds; none when it is empty.
fn percentile_ms(histogram: &Histogram<u64>, quantile: f64) -> Option<f64> {
    (!histogram.is_empty()).then(|| histogram.value_at_quantile(quantile) as f64 / 1000.0)
}

impl Recorder {
    fn new(progress: Arc<dyn Progress>, expected: Option<u64>) -> Self {
        progress.start(expected);
        Self {
            tallies: Mutex::new(Tallies {
                latencies: histogram(),
                this_tick: histogram(),
                by_reply: BTreeMap::new(),
                by_status: BTreeMap::new(),
                by_defense: BTreeMap::new(),
            }),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            started: Mutex::new(Instant::now()),
            loading: AtomicBool::new(false),
            last_created_ms: AtomicU64::new(0),
            created: AtomicU64::new(0),
            product: AtomicI64::new(0),
            units_counted: AtomicI64::new(-1),
            progress,
        }
    }

    fn record(&self, latency: Duration, answer: &Answer) {
        let micros = (latency.as_micros() as u64).clamp(1, 120_000_000);
        let reply = match answer.code() {
            Some(code) => format!("{} {code}", answer.status),
            None if answer.replayed => format!("{} replayed", answer.status),
            None => answer.status.to_string(),
        };
        {
            let mut tallies = self.tallies.lock();
            tallies.latencies.saturating_record(micros);
            tallies.this_tick.saturating_record(micros);
            *tallies.by_reply.entry(reply).or_default() += 1;
            *tallies
                .by_status
                .entry(answer.status.to_string())
                .or_default() += 1;
            if let Some(defense) = &answer.defense {
                *tallies.by_defense.entry(defense.clone()).or_default() += 1;
            }
        }
        if answer.status == 201 && !answer.replayed {
            let at = self.elapsed().as_millis() as u64;
            self.last_created_ms.fetch_max(at, Ordering::Relaxed);
            if answer.defense.is_none() {
                self.created.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.progress.advance();
    }

    fn record_error(&self, error: &reqwest::Error) {
        let kind = if error.is_timeout() {
            "timeout"
        } else {
            "transport error"
        };
        {
            let mut tallies = self.tallies.lock();
            *tallies.by_reply.entry(kind.to_string()).or_default() += 1;
            *tallies.by_status.entry(kind.to_string()).or_default() += 1;
        }
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.progress.advance();
    }

    /// The load starts now (setup is not measured). Once per run: the parts
    /// of a mixed run share one clock.
    pub fn restart_clock(&self) {
        if self.loading.swap(true, Ordering::AcqRel) {
            return;
        }
        *self.started.lock() = Instant::now();
        self.last_created_ms.store(0, Ordering::Relaxed);
        self.progress.restart();
    }

    pub fn loading(&self) -> bool {
        self.loading.load(Ordering::Acquire)
    }

    /// The ticks follow this product's stock.
    pub fn follow(&self, product_id: i64) {
        self.product.store(product_id, Ordering::Relaxed);
    }

    pub fn product(&self) -> Option<i64> {
        Some(self.product.load(Ordering::Relaxed)).filter(|id| *id != 0)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.lock().elapsed()
    }

    /// Seconds from the start to the last order created.
    pub fn finish_peek_last_created(&self) -> f64 {
        self.last_created_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// What the run has seen so far, with the stock as the probe read it; the
    /// tick's latencies start afresh.
    pub fn tick(&self, stock: Option<StockSample>) -> Tick {
        let t_ms = self.elapsed().as_millis() as u64;
        let mut tallies = self.tallies.lock();
        let latency_ms = TickLatency {
            p50: percentile_ms(&tallies.this_tick, 0.50),
            p99: percentile_ms(&tallies.this_tick, 0.99),
        };
        tallies.this_tick.reset();
        let orders = self.orders(stock.and_then(|s| s.units_sold));
        Tick {
            t_ms,
            requests: self.requests.load(Ordering::Relaxed),
            answers: tallies.by_status.clone(),
            by_defense: tallies.by_defense.clone(),
            orders,
            stock: stock.map(|s| s.initial - i64::try_from(orders).unwrap_or(i64::MAX)),
            stock_row: stock.map(|s| s.row),
            gate: stock.and_then(|s| s.gate),
            latency_ms,
        }
    }

    /// Orders so far: the units the probe counted (the last count when this
    /// tick's probe could not, so the series never goes back), or, with a
    /// probe that cannot count, the new orders this client saw.
    fn orders(&self, units_now: Option<i64>) -> u64 {
        if let Some(units) = units_now {
            self.units_counted.fetch_max(units, Ordering::Relaxed);
        }
        match u64::try_from(self.units_counted.load(Ordering::Relaxed)) {
            Ok(units) => units,
            Err(_never_counted) => self.created.load(Ordering::Relaxed),
        }
    }

    pub fn finish(&self) -> Snapshot {
        self.progress.finish();
        let tallies = self.tallies.lock();
        Snapshot {
            latencies: tallies.latencies.clone(),
            by_reply: tallies.by_reply.clone(),
            by_defense: tallies.by_defense.clone(),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            elapsed: self.elapsed(),
        }
    }
}

/// What the recorder saw, at the end.
pub struct Snapshot {
    pub latencies: Histogram<u64>,
    pub by_reply: BTreeMap<String, u64>,
    pub by_defense: BTreeMap<String, u64>,
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

/// A logged-in load-test user.
#[derive(Debug, Clone)]
pub struct User {
    pub token: String,
}

pub struct LoadClient {
    http: reqwest::Client,
    targets: Vec<String>,
    next_target: AtomicUsize,
    admin_token: Option<String>,
    pub recorder: Recorder,
    pub budget: Budget,
}

/// The bounds of a run: a deadline and a request budget.
pub struct Budget {
    deadline: Mutex<Instant>,
    duration: Duration,
    max_requests: Option<u64>,
    sent: AtomicU64,
    started: AtomicBool,
}

impl Budget {
    /// Takes one request from the budget; false when time or requests are spent.
    pub fn take(&self) -> bool {
        if Instant::now() >= *self.deadline.lock() {
            return false;
        }
        let sent = self.sent.fetch_add(1, Ordering::Relaxed);
        self.max_requests.is_none_or(|max| sent < max)
    }

    /// The clock of the budget starts; once per run (the parts of a mixed run share it).
    pub fn start(&self) {
        if !self.started.swap(true, Ordering::AcqRel) {
            *self.deadline.lock() = Instant::now() + self.duration;
        }
    }

    /// The run's time is spent.
    pub fn expired(&self) -> bool {
        Instant::now() >= *self.deadline.lock()
    }
}

/// With the admin token, the load test passes the server's rate limits as the
/// lab does (`Flashguard-Lab`): it is the operator measuring, not a client.
/// Without it, the limits apply and their 429s show in the report.
fn past_the_rate_limits(
    admin_token: Option<&str>,
) -> Result<reqwest::header::HeaderMap, LoadTestError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = admin_token {
        let value = reqwest::header::HeaderValue::from_str(token).map_err(|_| {
            LoadTestError::Setup("the admin token is not a valid header value".into())
        })?;
        headers.insert(crate::limits::LAB_HEADER, value);
    }
    Ok(headers)
}

impl LoadClient {
    pub fn new(config: &Config) -> Result<Self, LoadTestError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(config.concurrency.max(1))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .default_headers(past_the_rate_limits(config.admin_token.as_deref())?)
            .build()?;
        let expected = match config.scenario {
            Scenario::Ping | Scenario::Replay | Scenario::Spread => config.requests,
            _ => None,
        };
        Ok(Self {
            http,
            targets: config
                .targets
                .iter()
                .map(|target| target.trim_end_matches('/').to_string())
                .collect(),
            next_target: AtomicUsize::new(0),
            admin_token: config.admin_token.clone(),
            recorder: Recorder::new(config.progress.clone(), expected),
            budget: Budget {
                deadline: Mutex::new(Instant::now() + config.duration),
                duration: config.duration,
                max_requests: config.requests,
                sent: AtomicU64::new(0),
                started: AtomicBool::new(false),
            },
        })
    }

    /// The next target, round robin (several instances behind one test).
    fn url(&self, path: &str) -> String {
        let index = self.next_target.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        format!("{}{path}", self.targets[index])
    }

    pub(super) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(super) fn first_url(&self, path: &str) -> String {
        format!("{}{path}", self.targets[0])
    }

    /// Sends one measured request; `None` on a transport error or timeout.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Option<Answer> {
        let started = Instant::now();
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_string)
                };
                let defense = header("Flashguard-Defense");
                let replayed = header("Idempotent-Replayed").as_deref() == Some("true");
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                let answer = Answer {
                    status,
                    body,
                    defense,
                    replayed,
                };
                self.recorder.record(started.elapsed(), &answer);
                Some(answer)
            }
            Err(error) => {
                self.recorder.record_error(&error);
                None
            }
        }
    }

    pub fn order_request(
        &self,
        user: &User,
        key: &str,
        product_id: i64,
        timeout: Option<Duration>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(self.url("/api/orders"))
            .bearer_auth(&user.token)
            .header("Idempotency-Key", key)
            .json(&json!({ "product_id": product_id, "quantity": 1 }));
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        request
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    pub fn payment_token_request(&self, user: &User, order_no: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(&format!("/api/orders/{order_no}/payment-token")))
            .bearer_auth(&user.token)
    }

    pub fn pay_request(
        &self,
        user: &User,
        order_no: &str,
        key: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(&format!("/api/orders/{order_no}/pay")))
            .bearer_auth(&user.token)
            .header("Idempotency-Key", key)
            .header("Payment-Token", token)
    }

    pub fn order_status_request(&self, user: &User, order_no: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.url(&format!("/api/orders/{order_no}")))
            .bearer_auth(&user.token)
    }

    /// Setup, not measured: logs `count` users in, `concurrency` at a time.
    pub async fn login_users(
        &self,
        prefix: &str,
        count: usize,
        concurrency: usize,
    ) -> Result<Vec<User>, LoadTestError> {
        use futures_util::StreamExt;
        let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
        let logins = futures_util::stream::iter(names.into_iter().map(|name| async move {
            let response = self
                .http
                .post(self.url("/api/login"))
                .json(&json!({ "username": name }))
                .send()
                .await?
                .error_for_status()?;
            let body: Value = response.json().await?;
            Ok::<_, reqwest::Error>(User {
                token: body["token"].as_str().unwrap_or_default().to_string(),
            })
        }))
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
        logins
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| LoadTestError::Setup(format!("login: {error}")))
    }

    fn admin(&self, scenario: &'static str) -> Result<&str, LoadTestError> {
        self.admin_token
            .as_deref()
            .ok_or(LoadTestError::NeedsAdmin(scenario))
    }

    /// Starts a clean sale with `products`; returns their ids.
    pub async fn reset(
        &self,
        products: Value,
        scenario: &'static str,
    ) -> Result<Vec<i64>, LoadTestError> {
        let token = self.admin(scenario)?;
        let response = self
            .http
            .post(self.first_url("/api/admin/reset"))
            .bearer_auth(token)
            .json(&json!({ "products": products }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(LoadTestError::Setup(format!(
                "reset answered {status}: {body}"
            )));
        }
        Ok(body["products"]
            .as_array()
            .map(|products| products.iter().filter_map(|p| p["id"].as_i64()).collect())
            .unwrap_or_default())
    }

    pub async fn set_psp(
        &self,
        behaviour: Value,
        scenario: &'static str,
    ) -> Result<(), LoadTestError> {
        let token = self.admin(scenario)?;
        for target in &self.targets {
            let response = self
                .http
                .put(format!("{target}/api/admin/psp"))
                .bearer_auth(token)
                .json(&behaviour)
                .send()
                .await?;
            if !response.status().is_success() {
                return Err(LoadTestError::Setup(format!(
                    "PUT /api/admin/psp answered {}",
                    response.status()
                )));
            }
        }
        Ok(())
    }

    /// The audit of the first target (they share their stores).
    /// The audit after the load: fresh with the admin token (the public one
    /// may be a second old).
    pub async fn audit(&self) -> Value {
        let mut request = self.http.get(self.first_url("/api/audit"));
        if let Some(token) = &self.admin_token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(error) => json!({ "ok": false, "error": error.to_string() }),
        }
    }
}
