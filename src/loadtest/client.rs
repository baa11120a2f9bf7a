//! HTTP calls of the load test, each measured into the recorder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::config::{Config, LoadTestError, Progress, Scenario};

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
    latencies: Mutex<Histogram<u64>>,
    by_reply: Mutex<BTreeMap<String, u64>>,
    by_defense: Mutex<BTreeMap<String, u64>>,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    started: Mutex<Instant>,
    /// Milliseconds since start of the last 201 seen (the flash sale's sell-out time).
    pub last_created_ms: AtomicU64,
    progress: Arc<dyn Progress>,
}

impl Recorder {
    fn new(progress: Arc<dyn Progress>, expected: Option<u64>) -> Self {
        progress.start(expected);
        Self {
            latencies: Mutex::new(
                Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            ),
            by_reply: Mutex::new(BTreeMap::new()),
            by_defense: Mutex::new(BTreeMap::new()),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            started: Mutex::new(Instant::now()),
            last_created_ms: AtomicU64::new(0),
            progress,
        }
    }

    fn record(&self, latency: Duration, answer: &Answer) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.progress.advance();
        let micros = (latency.as_micros() as u64).clamp(1, 120_000_000);
        self.latencies.lock().saturating_record(micros);
        let reply = match answer.code() {
            Some(code) => format!("{} {code}", answer.status),
            None if answer.replayed => format!("{} replayed", answer.status),
            None => answer.status.to_string(),
        };
        *self.by_reply.lock().entry(reply).or_default() += 1;
        if let Some(defense) = &answer.defense {
            *self.by_defense.lock().entry(defense.clone()).or_default() += 1;
        }
        if answer.status == 201 && !answer.replayed {
            let at = self.elapsed().as_millis() as u64;
            self.last_created_ms.fetch_max(at, Ordering::Relaxed);
        }
    }

    fn record_error(&self, error: &reqwest::Error) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.progress.advance();
        let kind = if error.is_timeout() {
            "timeout"
        } else {
            "transport error"
        };
        *self.by_reply.lock().entry(kind.to_string()).or_default() += 1;
    }

    /// The load starts now (setup is not measured).
    pub fn restart_clock(&self) {
        *self.started.lock() = Instant::now();
        self.last_created_ms.store(0, Ordering::Relaxed);
        self.progress.restart();
    }

    pub fn elapsed(&self) -> Duration {
        self.started.lock().elapsed()
    }

    /// Seconds from the start to the last order created.
    pub fn finish_peek_last_created(&self) -> f64 {
        self.last_created_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    pub fn finish(&self) -> Snapshot {
        self.progress.finish();
        Snapshot {
            latencies: self.latencies.lock().clone(),
            by_reply: self.by_reply.lock().clone(),
            by_defense: self.by_defense.lock().clone(),
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

    pub fn start(&self) {
        *self.deadline.lock() = Instant::now() + self.duration;
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
            },
        })
    }

    /// The next target, round robin (several instances behind one test).
    fn url(&self, path: &str) -> String {
        let index = self.next_target.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        format!("{}{path}", self.targets[index])
    }

    fn first_url(&self, path: &str) -> String {
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
