//! The scenarios. Setup (reset, logins) is not measured; the clock starts when
//! the load does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use serde_json::json;

use super::client::{Answer, LoadClient, User};
use super::config::{Config, LoadTestError, Scenario};

/// What a scenario adds to the recorder's numbers.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Outcome {
    /// Orders created (201 not replayed) during the load.
    pub orders_created: u64,
    /// For the flash sale: when the last unit sold, in seconds after the start.
    pub sold_out_after_secs: Option<f64>,
    /// The product bought (flash sale), to aim a later run at it with --product.
    pub product_id: Option<i64>,
    /// Notes of the scenario (e.g. what it expected and saw).
    pub notes: Vec<String>,
}

/// How often a client retries an answer that says "try again" (503, 409 in progress, timeout).
const MAX_ATTEMPTS: usize = 20;

pub async fn run(client: &LoadClient, config: &Config) -> Result<Outcome, LoadTestError> {
    match config.scenario {
        Scenario::FlashSale => flash_sale(client, config).await,
        Scenario::DoubleClick => double_click(client, config).await,
        Scenario::RetryStorm => retry_storm(client, config).await,
        Scenario::TokenReplay => token_replay(client, config).await,
        Scenario::CallbackStorm => callback_storm(client, config).await,
        Scenario::Mixed => mixed(client, config).await,
        Scenario::Replay => replay(client, config).await,
        Scenario::Spread => spread(client, config).await,
        Scenario::Ping => ping(client, config).await,
    }
}

fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn retry_later(answer: &Option<Answer>) -> bool {
    match answer {
        None => true,
        Some(answer) => answer.status == 503 || answer.code() == Some("request_in_progress"),
    }
}

/// One purchase as a well-behaved client makes it: one key, retried until final.
async fn buy(
    client: &LoadClient,
    user: &User,
    product_id: i64,
    timeout: Option<Duration>,
) -> Option<Answer> {
    let key = new_key();
    let mut last = None;
    for attempt in 0..MAX_ATTEMPTS {
        if !client.budget.take() {
            break;
        }
        last = client
            .send(client.order_request(user, &key, product_id, timeout))
            .await;
        if !retry_later(&last) {
            break;
        }
        let pause = rand::rng().random_range(5..20) * (attempt as u64 + 1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    last
}

/// Runs `work(i)` for i in 0..count, `concurrency` at a time.
async fn for_each<F, Fut>(count: usize, concurrency: usize, work: F)
where
    F: Fn(usize) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = AtomicUsize::new(0);
    let workers = (0..concurrency.max(1)).map(|_| async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= count {
                return;
            }
            work(i).await;
        }
    });
    futures_util::future::join_all(workers).await;
}

async fn one_product(
    client: &LoadClient,
    config: &Config,
    scenario: &'static str,
) -> Result<i64, LoadTestError> {
    if !config.reset {
        client.recorder.follow(config.product);
        return Ok(config.product);
    }
    let ids = client
        .reset(
            json!([{ "name": "load-test item", "price_cents": 100, "stock": config.stock }]),
            scenario,
        )
        .await?;
    let product = ids
        .first()
        .copied()
        .ok_or_else(|| LoadTestError::Setup("reset returned no product".into()))?;
    client.recorder.follow(product);
    Ok(product)
}

async fn start(client: &LoadClient) {
    client.budget.start();
    client.recorder.restart_clock();
}

/// An answer that made a new order (not a replay of one).
fn created(answer: &Option<Answer>) -> bool {
    answer
        .as_ref()
        .is_some_and(|a| a.status == 201 && !a.replayed && a.defense.is_none())
}

/// The final answer of a purchase says it has an order: the first answer may have
/// been lost to a client timeout, so a replay of the 201 counts too.
fn purchased(answer: &Option<Answer>) -> bool {
    answer.as_ref().is_some_and(|a| a.status == 201)
}

/// Every user makes one purchase (retried until final), `concurrency` at a time;
/// returns how many ended with an order.
async fn each_buys_once(
    client: &LoadClient,
    config: &Config,
    users: &[User],
    product: i64,
    timeout: Option<Duration>,
) -> u64 {
    let purchases = AtomicUsize::new(0);
    for_each(users.len(), config.concurrency, |i| {
        let purchases = &purchases;
        async move {
            if purchased(&buy(client, &users[i], product, timeout).await) {
                purchases.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    purchases.load(Ordering::Relaxed) as u64
}

async fn flash_sale(client: &LoadClient, config: &Config) -> Result<Outcome, LoadTestError> {
    let product = one_product(client, config, "flash-sale").await?;
    let users = client
        .login_users("flash", config.users, config.concurrency)
        .await?;
    start(client).await;
    let orders = each_buys_once(client, config, &users, product, None).await;
    Ok(Outcome {
        orders_created: orders,
        sold_out_after_secs: Some(client.recorder.finish_peek_last_created()),
        product_id: Some(product),
        notes: vec![format!(
            "{} users raced for {} units; {orders} orders",
            config.users, config.stock
        )],
    })
}

async fn double_click(client: &LoadClient, config: &Config) -> Result<Outcome, LoadTestError> {
    let product = one_product(client, config, "double-click").await?;
    let users = client
        .login_users("click", config.users, config.concurrency)
        .await?;
    let copies = config.duplicates.max(2);
    start(client).await;
    let created_count = AtomicUsize::new(0);
    let groups = (config.concurrency / copies).max(1);
    for_each(users.len(), groups, |i| {
        let (users, created_count) = (&users, &created_count);
        async move {
            let key = new_key();
            let clicks = (0..copies).map(|_| async {
                if !client.budget.take() {
                    return None;
                }
                client
                    .send(client.order_request(&users[i], &key, product, None))
                    .await
            });
            let answers = futures_util::future::join_all(clicks).await;
            let made = answers.iter().filter(|a| created(a)).count();
            created_count.fetch_add(made, Ordering::Relaxed);
        }
    })
    .await;
    let orders = created_count.load(Ordering::Relaxed) as u64;
    Ok(Outcome {
        orders_created: orders,
        notes: vec![format!(
            "{} users clicked {copies} times each; {orders} orders created",
            users.len()
        )],
        ..Outcome::default()
    })
}

async fn retry_storm(client: &LoadClient, config: &Config) -> Result<Outcome, LoadTestError> {
    let product = one_product(client, config, "retry-storm").await?;
    let users = client
        .login_users("retry", config.users, config.concurrency)
        .await?;
    start(client).await;
    // Clients that give up early and retry the same key.
    let timeout = Some(config.client_timeout);
    let orders = each_buys_once(client, config, &users, product, timeout).await;
    Ok(Outcome {
        orders_created: orders,
        notes: vec![format!(
            "client timeout {} ms, retried with the same key",
            config.client_timeout.as_millis()
        )],
        ..Outcome::default()
    })
}

/// Places and pays one order; returns (order number, the used token).
async fn pay_one(client: &LoadClient, user: &User, product: i64) -> Option<(String, String)> {
    let order = buy(client, user, product, None).await?;
    let order_no = order.body["order_no"].as_str()?.to_string();
    let token_answer = client
        .send(client.payment_token_request(user, &order_no))
        .await?;
    let token = token_answer.body["token"].as_str()?.to_string();
    client
        .send(client.pay_request(user, &order_no, &new_key(), &token))
        .await?;
    Some((order_no, token))
}

/// One result slot per user, filled by concurrent workers.
struct Slots<T>(Vec<Mutex<Option<T>>>);

impl<T> Slots<T> {
    fn new(count: usize) -> Self {
        Self((0..count).map(|_| Mutex::new(None)).collect())
    }

    fn put(&self, i: usize, value: T) {
        *self.0[i].lock() = Some(value);
    }

    fn into_values(self) -> Vec<Option<T>> {
        self.0.into_iter().map(Mutex::into_inner).collect()
    }
}

/// Every user places and pays one order, `concurrency` at a time; returns
/// (order number, used token) per user.
async fn pay_all(
    client: &LoadClient,
    users: &[User],
    product: i64,
    concurrency: usize,
) -> Vec<Option<(String, String)>> {
    let slots = Slots::new(users.len());
    for_each(users.len(), concurrency, |i| {
        let slots = &slots;
        async move {
            if let Some(paid) = pay_one(client, &users[i], product).await {
                slots.put(i, paid);
            }
        }
    })
    .await;
    slots.into_values()
}

/// Replays a used token with a new key, then presents it for another user;
/// returns how many of the two were refused.
async fn replay_token(
    client: &LoadClient,
    users: &[User],
    i: usize,
    paid: &(String, String),
) -> usize {
    let (order_no, token) = paid;
    let replay = client
        .send(client.pay_request(&users[i], order_no, &new_key(), token))
        .await;
    let foreign_user = &users[(i + 1) % users.len()];
    let foreign = client
        .send(client.pay_request(foreign_user, order_no, &new_key(), token))
        .await;
    [replay, foreign]
        .into_iter()
        .flatten()
        .filter(|answer| answer.status == 403 || answer.status == 404)
        .count()
}

async fn token_replay(client: &LoadClient, config: &Config) -> Result<Outcome, LoadTestError> {
    let product = one_product(client, config, "token-replay").await?;
    let users = client
        .login_users("token", config.users, config.concurrency)
        .await?;
    start(client).await;
    let paid = pay_all(client, &users, product, config.concurrency).await;
    let refused = AtomicUsize::new(0);
    for_each(users.len(), config.concurrency, |i| {
        let (users, paid, refused) = (&users, &paid, &refused);
        async move {
            if let Some(paid) = &paid[i] {
                let count = replay_token(client, users, i, paid).await;
                refused.fetch_add(count, Ordering::Relaxed);
            }
        }
    })
    .await;
    let payments = paid.iter().flatten().count();
    Ok(Outcome {
        orders_created: payments as u64,
        notes: vec![format!(
            "{payments} orders paid; {} replayed or foreign pay requests refused",
            refused.load(Ordering::Relaxed)
        )],
        ..Outcome::default()
    })
}

/// Waits (bounded: 60 rounds of 0.5 s, and the run's time) until every paid
/// order reads PAID; returns how many did not.
async fn wait_until_paid(
    client: &LoadClient,
    users: &[User],
    orders: &[Option<(String, String)>],
) -> usize {
    let mut unpaid = 0;
    for round in 0..60 {
        if round > 0 && client.budget.expired() {
            break;
        }
        unpaid = 0;
        for (user, (order_no, _)) in users
            .iter()
            .zip(orders)
            .filter_map(|(u, o)| Some((u, o.as_ref()?)))
        {
            let answer = client
                .send(client.order_status_request(user, order_no))
                .await;
            if answer.is_none_or(|a| a.body["status"] != "PAID") {
                unpaid += 1;
            }
        }
        if unpaid == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    unpaid
}

async fn callback_storm(client: &LoadClient, config: &Config) -> Result<Outcome, LoadTestError> {
    let product = one_product(client, config, "callback-storm").await?;
    let copies = config.duplicates.clamp(1, 20);
    let storm = json!({ "callbacks": copies, "delay_ms": 0, "concurrent": true, "failed_after_success": true });
    client.set_psp(storm, "callback-storm").await?;
    let users = client
        .login_users("storm", config.users, config.concurrency)
        .await?;
    start(client).await;
    let orders = pay_all(client, &users, product, config.concurrency).await;
    let unpaid = wait_until_paid(client, &users, &orders).await;
    Ok(Outcome {
        orders_created: orders.iter().flatten().count() as u64,
        notes: vec![format!(
            "provider: {copies} copies per success plus a late FAILED; {unpaid} orders not PAID when the wait ended"
        )],
        ..Outcome::default()
    })
}

async fn mixed(client: &LoadClient, config: &Config) -> Result<Outcome, LoadTestError> {
    let product = one_product(client, config, "mixed").await?;
    let share = Config {
        users: (config.users / 5).max(1),
        concurrency: (config.concurrency / 5).max(1),
        reset: false,
        product,
        ..config.clone()
    };
    let parts = futures_util::future::join5(
        flash_sale(client, &share),
        double_click(client, &share),
        retry_storm(client, &share),
        token_replay(client, &share),
        callback_storm(client, &share),
    )
    .await;
    let mut outcome = Outcome::default();
    for part in [parts.0, parts.1, parts.2, parts.3, parts.4] {
        let part = part?;
        outcome.orders_created += part.orders_created;
        outcome.notes.extend(part.notes);
    }
    Ok(outcome)
}

async fn replay(client: &LoadClient, config: &Config) -> Result<Outcome, LoadTestError> {
    let product = one_product(client, config, "replay").await?;
    let users = client.login_users("replayer", 1, 1).await?;
    let user = Arc::new(
        users
            .into_iter()
            .next()
            .ok_or_else(|| LoadTestError::Setup("no user".into()))?,
    );
    let key = new_key();
    client
        .send(client.order_request(&user, &key, product, None))
        .await;
    start(client).await;
    loop_until_spent(client, config, |_| {
        let (user, key) = (user.clone(), key.clone());
        async move {
            client
                .send(client.order_request(&user, &key, product, None))
                .await;
        }
    })
    .await;
    Ok(Outcome {
        notes: vec!["one key, repeated: every answer is the stored 201".into()],
        ..Outcome::default()
    })
}

async fn spread(client: &LoadClient, config: &Config) -> Result<Outcome, LoadTestError> {
    let products: Vec<i64> = if config.reset {
        let catalogue: Vec<_> = (0..100)
            .map(|i| json!({ "name": format!("spread item {i}"), "price_cents": 100, "stock": 1_000_000 }))
            .collect();
        client.reset(json!(catalogue), "spread").await?
    } else {
        vec![1, 2, 3]
    };
    let users = Arc::new(
        client
            .login_users("spread", config.users.clamp(1, 1000), config.concurrency)
            .await?,
    );
    let products = Arc::new(products);
    start(client).await;
    let created_count = Arc::new(AtomicUsize::new(0));
    loop_until_spent(client, config, |i| {
        let (users, products, created_count) =
            (users.clone(), products.clone(), created_count.clone());
        async move {
            let user = &users[i % users.len()];
            let product = products[i % products.len()];
            let answer = client
                .send(client.order_request(user, &new_key(), product, None))
                .await;
            if created(&answer) {
                created_count.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    Ok(Outcome {
        orders_created: created_count.load(Ordering::Relaxed) as u64,
        notes: vec![format!("orders spread over {} products", products.len())],
        ..Outcome::default()
    })
}

async fn ping(client: &LoadClient, config: &Config) -> Result<Outcome, LoadTestError> {
    start(client).await;
    loop_until_spent(client, config, |_| async {
        client.send(client.get(&config.path)).await;
    })
    .await;
    Ok(Outcome {
        notes: vec![format!("GET {}", config.path)],
        ..Outcome::default()
    })
}

/// `concurrency` workers repeating `work(i)` until the budget is spent.
async fn loop_until_spent<F, Fut>(client: &LoadClient, config: &Config, work: F)
where
    F: Fn(usize) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = AtomicUsize::new(0);
    let workers = (0..config.concurrency.max(1)).map(|_| async {
        while client.budget.take() {
            work(next.fetch_add(1, Ordering::Relaxed)).await;
        }
    });
    futures_util::future::join_all(workers).await;
}
