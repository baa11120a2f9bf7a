//! The attacks behind the lab's experiments: real HTTP requests to this very
//! server, sent at once where the anomaly is a race, then the damage counted in
//! the database. Every wait is bounded.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use super::context::{Answer, Context};
use super::experiments::Attack;
use super::notices::{self, Paid};
use super::{LabError, Outcome};
use crate::psp::Trade;
use crate::store::lab::{self, Tally};

/// The units of the product each attack buys from.
pub fn stock_for(attack: Attack) -> i64 {
    match attack {
        Attack::Oversell | Attack::LosersToDatabase => 10,
        Attack::HotRow => HOT_ROW_UNITS,
        _ => 100,
    }
}

pub async fn run(context: &Context<'_>, attack: Attack) -> Result<Outcome, LabError> {
    match attack {
        Attack::DoubleSubmit => double_submit(context).await,
        Attack::Oversell => oversell(context).await,
        Attack::LosersToDatabase => losers_to_database(context).await,
        Attack::TokenReplay => token_replay(context).await,
        Attack::TwoTabsPay => two_tabs_pay(context).await,
        Attack::LateFailed => late_failed(context).await,
        Attack::CallbackRedelivery => callback_redelivery(context).await,
        Attack::MessageRedelivery => message_redelivery(context).await,
        Attack::HotRow => hot_row(context).await,
        Attack::CheckThenInsert => super::innodb::check_then_insert_deadlock(context).await,
        Attack::UpdateWithoutIndex => super::innodb::update_without_index(context).await,
    }
}

impl Outcome {
    fn record(&mut self, answer: &Answer) {
        self.requests += 1;
        *self.replies.entry(answer.status.to_string()).or_default() += 1;
    }

    fn record_all<'a>(&mut self, answers: impl IntoIterator<Item = &'a Answer>) {
        for answer in answers {
            self.record(answer);
        }
    }
}

impl Context<'_> {
    /// Logs in lab user `n` of this experiment; returns its bearer token.
    async fn login(&self, n: usize) -> Result<String, LabError> {
        let username = format!("{}-{n}", self.prefix);
        let answer = self
            .send(
                self.http
                    .post(self.url("/api/login"))
                    .json(&json!({ "username": username })),
            )
            .await?;
        string_field(&answer, "token")
    }

    async fn logins(&self, count: usize) -> Result<Vec<String>, LabError> {
        let mut tokens = Vec::with_capacity(count);
        for n in 0..count {
            tokens.push(self.login(n).await?);
        }
        Ok(tokens)
    }

    async fn order(&self, user: &str, key: &str) -> Result<Answer, LabError> {
        let body = json!({ "product_id": self.product_id, "quantity": 1 });
        let request = self
            .http
            .post(self.url("/api/orders"))
            .bearer_auth(user)
            .header("Idempotency-Key", key)
            .json(&body);
        self.send(request).await
    }

    /// Places an order that must succeed; returns its number.
    async fn placed_order(&self, user: &str) -> Result<String, LabError> {
        let answer = self.order(user, &new_key()).await?;
        string_field(&answer, "order_no")
    }

    async fn payment_token(&self, user: &str, order_no: &str) -> Result<String, LabError> {
        let path = format!("/api/orders/{order_no}/payment-token");
        let answer = self
            .send(self.http.post(self.url(&path)).bearer_auth(user))
            .await?;
        string_field(&answer, "token")
    }

    /// Pays through the attack's channel.
    async fn pay(&self, user: &str, order_no: &str, token: &str) -> Result<Answer, LabError> {
        let path = format!("/api/orders/{order_no}/pay");
        let request = self
            .http
            .post(self.url(&path))
            .bearer_auth(user)
            .header("Idempotency-Key", new_key())
            .header("Payment-Token", token)
            .json(&json!({ "channel": self.channel }));
        self.send(request).await
    }

    async fn tally(&self) -> Result<Tally, LabError> {
        Ok(lab::tally(self.state.db.pool(), self.product_id).await?)
    }

    /// Waits (at most `limit`) until `done` holds for the product's tally.
    async fn settle(
        &self,
        limit: Duration,
        done: impl Fn(&Tally) -> bool,
    ) -> Result<Tally, LabError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let tally = self.tally().await?;
            if done(&tally) || tokio::time::Instant::now() >= deadline {
                return Ok(tally);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn string_field(answer: &Answer, field: &str) -> Result<String, LabError> {
    answer.body[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| {
            LabError::Step(format!(
                "HTTP {} without {field}: {}",
                answer.status, answer.body
            ))
        })
}

/// 20 identical requests at once (one user, one key): how many orders?
async fn double_submit(context: &Context<'_>) -> Result<Outcome, LabError> {
    let user = context.login(0).await?;
    let key = new_key();
    let answers = join_all((0..20).map(|_| context.order(&user, &key))).await;
    let mut outcome = Outcome::default();
    outcome.record_all(answers.iter().flatten());
    outcome.anomalies = (context.tally().await?.orders - 1).max(0);
    Ok(outcome)
}

/// Buyers with their own keys, all at once; returns their answers.
async fn rush(context: &Context<'_>, buyers: usize) -> Result<Vec<Answer>, LabError> {
    let users = context.logins(buyers).await?;
    race(context, &users).await
}

/// Signed-in `users`, each with a key of their own, order at once.
async fn race(context: &Context<'_>, users: &[String]) -> Result<Vec<Answer>, LabError> {
    let keys: Vec<String> = users.iter().map(|_| new_key()).collect();
    let answers = join_all(
        users
            .iter()
            .zip(&keys)
            .map(|(user, key)| context.order(user, key)),
    )
    .await;
    answers.into_iter().collect()
}

/// 30 buyers for 10 units: units sold that the stock never gave.
async fn oversell(context: &Context<'_>) -> Result<Outcome, LabError> {
    let answers = rush(context, 30).await?;
    let mut outcome = Outcome::default();
    outcome.record_all(&answers);
    let stock = crate::store::products::find(context.state.db.pool(), context.product_id)
        .await?
        .map_or(0, |product| product.stock);
    let units = context.tally().await?.units;
    // Each unit sold should have left the stock; the difference are lost updates.
    outcome.anomalies = (units - (context.initial_stock - stock)).max(0);
    Ok(outcome)
}

/// The units and the buyers of `hot_row`.
const HOT_ROW_UNITS: i64 = 50;
const HOT_ROW_BUYERS: usize = 100;

/// 100 buyers at once on 50 units of one row, the stock taken the way the
/// variant says: how many retries did it cost, how long, and was anything
/// left unsold?
async fn hot_row(context: &Context<'_>) -> Result<Outcome, LabError> {
    let lock = &context.state.version_lock;
    let users = context.logins(HOT_ROW_BUYERS).await?;
    let (conflicts_before, deadlocks_before) = (lock.conflicts(), lock.deadlocks());
    let started = std::time::Instant::now();
    let answers = race(context, &users).await?;
    let sale_ms = started.elapsed().as_millis();
    let retries = lock.conflicts().saturating_sub(conflicts_before);
    let deadlocks = lock.deadlocks().saturating_sub(deadlocks_before);
    let mut outcome = Outcome::default();
    outcome.record_all(&answers);
    let stock = crate::store::products::find(context.state.db.pool(), context.product_id)
        .await?
        .map_or(0, |product| product.stock);
    let busy = answers.iter().filter(|answer| answer.status == 503).count();
    let as_count = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
    outcome.anomalies = as_count(u128::from(retries));
    outcome.counts = [
        ("retries", outcome.anomalies),
        ("units_sold", context.tally().await?.units),
        ("stock_left", stock),
        ("busy_retry", as_count(busy as u128)),
        ("deadlocks", as_count(u128::from(deadlocks))),
        ("sale_ms", as_count(sale_ms)),
    ]
    .into_iter()
    .collect();
    Ok(outcome)
}

/// 60 buyers for 10 units: sold-out answers that came from the database.
async fn losers_to_database(context: &Context<'_>) -> Result<Outcome, LabError> {
    let answers = rush(context, 60).await?;
    let mut outcome = Outcome::default();
    outcome.record_all(&answers);
    let reached_database = answers
        .iter()
        .filter(|answer| answer.status == 409 && answer.defense.as_deref() != Some("stock_gate"))
        .count();
    outcome.anomalies = i64::try_from(reached_database).unwrap_or(i64::MAX);
    Ok(outcome)
}

/// Pays once, then replays the used token with a new key.
async fn token_replay(context: &Context<'_>) -> Result<Outcome, LabError> {
    quick_provider(context);
    let user = context.login(0).await?;
    let order_no = context.placed_order(&user).await?;
    let token = context.payment_token(&user, &order_no).await?;
    let first = context.pay(&user, &order_no, &token).await?;
    let replay = context.pay(&user, &order_no, &token).await?;
    let mut outcome = Outcome::default();
    outcome.record_all([&first, &replay]);
    let tally = context
        .settle(Duration::from_secs(5), |t| t.charged == t.payments)
        .await?;
    outcome.anomalies = (tally.charged - 1).max(0);
    Ok(outcome)
}

/// Ten tabs pay one order at once, each with its own token and key.
async fn two_tabs_pay(context: &Context<'_>) -> Result<Outcome, LabError> {
    quick_provider(context);
    let user = context.login(0).await?;
    let order_no = context.placed_order(&user).await?;
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(context.payment_token(&user, &order_no).await?);
    }
    let answers = join_all(
        tokens
            .iter()
            .map(|token| context.pay(&user, &order_no, token)),
    )
    .await;
    let mut outcome = Outcome::default();
    outcome.record_all(answers.iter().flatten());
    let tally = context
        .settle(Duration::from_secs(5), |t| t.charged == t.payments)
        .await?;
    outcome.anomalies = (tally.payments - 1).max(0);
    Ok(outcome)
}

/// The mock provider reports each charge once, at once.
fn quick_provider(context: &Context<'_>) {
    let provider = &context.state.psp;
    let mut behaviour = provider.behaviour();
    behaviour.callbacks = 1;
    behaviour.delay_ms = 0;
    behaviour.failed_after_success = false;
    provider.set_behaviour(behaviour);
}

/// An order paid through the attack's channel with the mock provider silent;
/// returns the pay answer and the trade as the provider knows it.
async fn silent_payment(context: &Context<'_>) -> Result<(Answer, Paid), LabError> {
    let provider = &context.state.psp;
    let mut behaviour = provider.behaviour();
    behaviour.callbacks = 0;
    provider.set_behaviour(behaviour);
    let user = context.login(0).await?;
    let order_no = context.placed_order(&user).await?;
    let token = context.payment_token(&user, &order_no).await?;
    let answer = context.pay(&user, &order_no, &token).await?;
    let trade = Trade {
        payment_no: string_field(&answer, "payment_no")?,
        trade_no: string_field(&answer, "provider_txn_id")?,
        amount_cents: 19_900,
    };
    Ok((answer, Paid { order_no, trade }))
}

/// The success, then a failure for the same payment that arrives late (FAILED,
/// or Alipay's TRADE_CLOSED).
async fn late_failed(context: &Context<'_>) -> Result<Outcome, LabError> {
    let (paid, trade) = silent_payment(context).await?;
    let success = notices::notice(context, context.channel, &trade, true)?;
    let failure = notices::notice(context, context.channel, &trade, false)?;
    let answers = [
        notices::deliver(context, &success).await?,
        notices::deliver(context, &failure).await?,
    ];
    let mut outcome = Outcome::default();
    outcome.record_all(std::iter::once(&paid).chain(&answers));
    let tally = context.tally().await?;
    outcome.anomalies = tally.charged - tally.paid;
    Ok(outcome)
}

/// One success notification delivered five times.
async fn callback_redelivery(context: &Context<'_>) -> Result<Outcome, LabError> {
    let (paid, trade) = silent_payment(context).await?;
    let notice = notices::notice(context, context.channel, &trade, true)?;
    let mut outcome = Outcome::default();
    outcome.record(&paid);
    for _ in 0..5 {
        let answer = notices::deliver(context, &notice).await?;
        outcome.record(&answer);
    }
    outcome.anomalies = (context.tally().await?.applied_events - 1).max(0);
    Ok(outcome)
}

/// Three paid orders; the consumer "crashes" after each reward, before its ack.
async fn message_redelivery(context: &Context<'_>) -> Result<Outcome, LabError> {
    quick_provider(context);
    context.state.faults.set_crash_after_effect(3);
    let mut outcome = Outcome::default();
    for n in 0..3 {
        let user = context.login(n).await?;
        let order_no = context.placed_order(&user).await?;
        let token = context.payment_token(&user, &order_no).await?;
        outcome.record(&context.pay(&user, &order_no, &token).await?);
    }
    let faults = &context.state.faults;
    // Every order rewarded, every forced crash spent, every redelivery handled.
    context
        .settle(Duration::from_secs(3), |t| t.paid == 3 && t.rewards >= 3)
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while faults.crash_after_effect() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(context.state.switches.redeliver_after() * 3).await;
    let tally = context.tally().await?;
    outcome.anomalies = (tally.rewards - tally.paid).max(0);
    Ok(outcome)
}
