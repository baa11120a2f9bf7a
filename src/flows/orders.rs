//! Placing an order in the flash sale (docs/design.md §2.1).
//!
//! The stock gate answers repeats and losers from the key store; winners read
//! the stock row, then in one transaction claim the idempotency key row, insert
//! the order (the `unique_index` defense catches a duplicate here, before the
//! hot row is touched), take the stock (`version_lock`) and store the answer
//! with the key: one commit, so a crash leaves all of it or none. A version
//! conflict rolls back and retries with jitter; a sold-out product is a
//! business outcome.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use serde::Deserialize;

use crate::deadline::IfCutOff;
use crate::defenses::idempotency_key::{Entry, InFlight, KeyClaim, KeyedRequest, Reply};
use crate::defenses::stock_gate::{Decision, GatePass};
use crate::defenses::unique_index::{self, OnUniqueViolation};
use crate::defenses::version_lock::Take;
use crate::domain::{IdempotencyKey, Quantity};
use crate::error::ApiError;
use crate::flows::keyed::Answer;
use crate::group_commit::RunBatch;
use crate::metrics;
use crate::order_batch::{ALL_PRODUCTS, Batched, OrderTicket};
use crate::state::AppState;
use crate::store::db::Backend;
use crate::store::orders::{self, NewOrder, Order};
use crate::store::products::{self, StockSnapshot};
use crate::store::{Tx, commit, now_ms, rollback};
use crate::switches::Defense;
use crate::trace;

/// The body of `POST /api/orders`, as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequestBody {
    /// A product of `GET /api/products`.
    #[schema(example = 1)]
    pub product_id: i64,
    /// A flash sale sells 1 to 10 units per order.
    #[schema(minimum = 1, maximum = 10)]
    pub quantity: i64,
}

/// A parsed order request: only valid values.
#[derive(Debug, Clone, Copy)]
pub struct OrderRequest {
    pub product_id: i64,
    pub quantity: Quantity,
}

impl OrderRequest {
    /// Parses the raw body; returns the canonical JSON (for the fingerprint) too.
    pub fn parse(body: &[u8]) -> Result<(Self, serde_json::Value), ApiError> {
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|error| ApiError::MalformedBody(error.to_string()))?;
        let raw: OrderRequestBody = serde_json::from_value(json.clone())
            .map_err(|error| ApiError::MalformedBody(error.to_string()))?;
        let request = Self {
            product_id: raw.product_id,
            quantity: Quantity::parse(raw.quantity)?,
        };
        Ok((request, json))
    }
}

/// Who places the order, and under which key.
#[derive(Debug, Clone, Copy)]
pub struct Buyer<'a> {
    pub keyed: &'a KeyedRequest<'a>,
    pub flight: &'a InFlight,
}

/// Places the order for (user, key) and renders the reply (201 + the order).
#[tracing::instrument(skip_all, fields(user_id = buyer.keyed.user_id, product_id = request.product_id))]
pub async fn place_order(
    shared: &Arc<AppState>,
    buyer: Buyer<'_>,
    request: OrderRequest,
) -> Result<Answer, ApiError> {
    let state: &AppState = shared;
    let (user_id, key) = (buyer.keyed.user_id, buyer.keyed.key);
    let quantity = request.quantity.get();
    // stock_gate: a repeat of this (user, key) or a loser stops here; a winner
    // takes its unit and goes on.
    let pass = match state
        .gate
        .admit(request.product_id, user_id, key, quantity)
        .await?
    {
        Decision::Pass(pass) => pass,
        Decision::Repeat => return repeat_at_gate(state, buyer).await,
    };
    if pass.is_some() {
        state.faults.stall_after_gate().await; // the lab's frozen instance
    }
    let gate_cut_off = pass.as_ref().and_then(GatePass::cut_off);
    let outcome = match place_in_batch(shared, buyer, request, gate_cut_off).await {
        Ok(Some(placed)) => Ok(placed),
        Ok(None) => place_in_database(state, buyer, request).await,
        Err(error) => Err(error),
    };
    let created_an_order = matches!(
        outcome,
        Ok(Placed {
            new_order: true,
            ..
        })
    );
    if let Some(pass) = pass {
        state.gate.finish(pass, created_an_order).await;
    }
    outcome.map(|placed| placed.answer)
}

/// The database's answer, and whether it created an order (else the gate's
/// unit goes back).
struct Placed {
    answer: Answer,
    new_order: bool,
}

/// The gate saw this (user, key) before: the key row's committed answer (a
/// replay, or 422 for another payload), else its order, else "still in
/// progress".
async fn repeat_at_gate(state: &AppState, buyer: Buyer<'_>) -> Result<Answer, ApiError> {
    if buyer.flight.is_guarded()
        && let Some(stored) = state.keys.committed_answer(buyer.keyed).await?
    {
        return Ok(Answer::Replay(stored));
    }
    let (user_id, key) = (buyer.keyed.user_id, buyer.keyed.key);
    match orders::find_by_key(state.db.pool(), user_id, key.as_str()).await? {
        Some(order) => created(&order, Some(Defense::StockGate)).map(Answer::Unrecorded),
        None => Err(ApiError::RepeatAtGate),
    }
}

// [lesson version_lock::retry]
/// Reads the stock row and places the order under the version lock, with retries.
async fn place_in_database(
    state: &AppState,
    buyer: Buyer<'_>,
    request: OrderRequest,
) -> Result<Placed, ApiError> {
    let lock = &state.version_lock;
    for attempt in 0..=lock.max_retries() {
        if attempt > 0 {
            lock.back_off(attempt - 1).await;
        }
        // Few writers per stock row at once: read and write inside the permit.
        let _writer = lock.enter(request.product_id).await;
        let read = read_stock(state, request).await?;
        trace::step(format!(
            "read stock {} (version {})",
            read.stock, read.version
        ));
        lock.race_window().await;
        let attempted = match try_place(state, buyer, &read, request.quantity.get()).await {
            // The database broke a deadlock by rolling this transaction back
            // (InnoDB: error 1213): nothing of it was kept; run it again.
            Err(ApiError::Database(error)) if error.is_transient_conflict() => {
                trace::step("deadlock: the database rolled the transaction back, retry");
                lock.count_deadlock();
                continue;
            }
            other => other?,
        };
        if let Some(placed) = answer(state, buyer, attempted).await? {
            return Ok(placed);
        }
        trace::step(format!("version conflict, retry {}", attempt + 1));
        lock.count_conflict();
    }
    tracing::warn!("version-lock retry budget exhausted");
    metrics::count(metrics::RETRIES_EXHAUSTED);
    Err(ApiError::BusyRetry)
}
// [/lesson]

/// The answer to an attempt, or `None` after a version conflict (retry).
async fn answer(
    state: &AppState,
    buyer: Buyer<'_>,
    attempted: Attempt,
) -> Result<Option<Placed>, ApiError> {
    let (answer, new_order) = match attempted {
        Attempt::Placed(reply) => (Answer::Recorded(reply), true),
        Attempt::Refused(reply) => (Answer::Recorded(reply), false),
        Attempt::Duplicate => {
            let (user_id, key) = (buyer.keyed.user_id, buyer.keyed.key);
            let reply = existing_order(state, user_id, key).await?;
            (Answer::Unrecorded(reply), false)
        }
        Attempt::AnsweredBefore => match state.keys.answer_of_committed(buyer.keyed).await? {
            Entry::Replay(stored) => (Answer::Replay(stored), false),
            Entry::Run(_) => return Err(ApiError::RequestInProgress),
        },
        Attempt::Conflict => return Ok(None),
    };
    Ok(Some(Placed { answer, new_order }))
}

/// The stock row as read before the write: the product must exist, be on sale
/// and have enough stock.
async fn read_stock(state: &AppState, request: OrderRequest) -> Result<StockSnapshot, ApiError> {
    let read = products::stock_snapshot(state.db.pool(), request.product_id)
        .await?
        .ok_or(ApiError::ProductNotFound(request.product_id))?;
    if read.sale_starts_at.is_some_and(|starts| starts > now_ms()) {
        return Err(ApiError::SaleNotStarted);
    }
    if read.stock < request.quantity.get() {
        return Err(ApiError::SoldOut);
    }
    Ok(read)
}

enum Attempt {
    /// Committed: the order, the stock and the key row with this answer.
    Placed(Reply),
    /// Committed: the key row with this refusal (a batch found too little stock).
    Refused(Reply),
    /// Another request committed this idempotency key first.
    AnsweredBefore,
    /// The unique index refused the insert: this intent already has an order.
    Duplicate,
    /// The stock row changed since we read it.
    Conflict,
}

/// The order row to insert, priced from the stock row that was read.
fn new_order<'a>(
    state: &AppState,
    user_id: i64,
    key: &'a IdempotencyKey,
    read: &StockSnapshot,
    quantity: i64,
) -> Result<NewOrder<'a>, ApiError> {
    let amount_cents = read
        .price_cents
        .checked_mul(quantity)
        .ok_or_else(|| ApiError::InvalidRequest("the order's amount is too large".into()))?;
    Ok(NewOrder {
        user_id,
        product_id: read.id,
        quantity,
        amount_cents,
        idempotency_key: key.as_str(),
        guarded: unique_index::guards_insert(&state.switches),
    })
}

// [lesson unique_index::try_place]
/// One transaction, one commit: claim the key row, insert the order, take the
/// stock, store the answer with the key. On MySQL the stock comes before the
/// order: InnoDB checks the order's foreign key with a *shared* lock on the
/// product row, and two orders holding that lock would each wait for the
/// other to let go before the stock update's exclusive lock: a deadlock for
/// every pair of buyers. Taking the exclusive lock first makes them queue.
async fn try_place(
    state: &AppState,
    buyer: Buyer<'_>,
    read: &StockSnapshot,
    quantity: i64,
) -> Result<Attempt, ApiError> {
    let (user_id, key) = (buyer.keyed.user_id, buyer.keyed.key);
    let new_order = new_order(state, user_id, key, read, quantity)?;
    let stock_first = state.db.backend() == Backend::Mysql;
    let mut tx = state.db.begin().await?;
    if state.keys.claim_in(&mut tx, buyer.flight).await? == KeyClaim::Lost {
        rollback(tx).await?;
        return Ok(Attempt::AnsweredBefore);
    }
    if stock_first && let Some(stop) = take_stock(state, &mut tx, read, quantity).await? {
        rollback(tx).await?;
        return stop.answer();
    }
    let inserted = match orders::insert(&mut *tx, &new_order).await {
        // A reset removed the product while this order waited for it.
        Err(error) if error.is_foreign_key_violation() => {
            return Err(ApiError::ProductNotFound(read.id));
        }
        other => other.map(Some).on_unique_violation(|| None)?,
    };
    let Some(order) = inserted else {
        trace::step("unique index: duplicate refused, rolled back");
        rollback(tx).await?;
        return Ok(Attempt::Duplicate);
    };
    trace::step("order inserted");
    if !stock_first && let Some(stop) = take_stock(state, &mut tx, read, quantity).await? {
        rollback(tx).await?;
        return stop.answer();
    }
    record_and_commit(state, tx, buyer, &order).await
}

/// Why an order's transaction stops before its commit.
enum Stop {
    /// The stock row changed since it was read: retry.
    Conflict,
    /// The conditional decrement matched no row.
    SoldOut,
}

impl Stop {
    fn answer(self) -> Result<Attempt, ApiError> {
        match self {
            Self::Conflict => Ok(Attempt::Conflict),
            Self::SoldOut => Err(ApiError::SoldOut),
        }
    }
}

/// The version-checked stock update, in the order's transaction.
async fn take_stock(
    state: &AppState,
    tx: &mut Tx,
    read: &StockSnapshot,
    quantity: i64,
) -> Result<Option<Stop>, ApiError> {
    match state.version_lock.take_stock(tx, read, quantity).await? {
        Take::Taken => {
            trace::step("stock taken");
            Ok(None)
        }
        Take::VersionConflict => Ok(Some(Stop::Conflict)),
        Take::Short => {
            trace::step("conditional decrement: 0 rows, sold out");
            Ok(Some(Stop::SoldOut))
        }
    }
}

/// The rest of the same transaction: the answer stored with the key, the one commit.
async fn record_and_commit(
    state: &AppState,
    mut tx: Tx,
    buyer: Buyer<'_>,
    order: &Order,
) -> Result<Attempt, ApiError> {
    let reply = created(order, None)?;
    state
        .keys
        .complete_in(&mut tx, buyer.flight, &reply.stored)
        .await?;
    commit(tx).await?;
    trace::step("commit (one commit: key, order, stock, answer)");
    Ok(Attempt::Placed(reply))
}
// [/lesson]

// [lesson group_commit::batch]
/// Group commit (docs/design.md §2.3): with the version lock on, a winner joins
/// its product's batch, and one transaction places the whole batch. `None`:
/// this order goes the one-order way (batching off, the version lock off so
/// the lab can show the lost update, the lab's conditional decrement chosen,
/// or a batch that could not run).
async fn place_in_batch(
    shared: &Arc<AppState>,
    buyer: Buyer<'_>,
    request: OrderRequest,
    gate_cut_off: Option<Arc<IfCutOff>>,
) -> Result<Option<Placed>, ApiError> {
    let state: &AppState = shared;
    if !state.version_lock.batches() {
        return Ok(None);
    }
    let ticket = OrderTicket {
        product_id: request.product_id,
        user_id: buyer.keyed.user_id,
        key: buyer.keyed.key.clone(),
        quantity: request.quantity.get(),
        flight: buyer.flight.clone(),
        gate_cut_off,
    };
    let run = batch_runner(shared.clone());
    let batched = state.order_batches.submit(ALL_PRODUCTS, ticket, run).await;
    if let Some(Batched::DatabaseUnavailable) = batched {
        trace::step("group commit: the database did not answer the batch");
        return Err(ApiError::BatchFoundDatabaseUnavailable);
    }
    match batched.and_then(told) {
        Some(attempt) => answer(state, buyer, attempt).await,
        None => Ok(None),
    }
}

/// What the batch did for this request, told in its trace (the batch ran in
/// its leader's task); `None`: the one-order way.
fn told(batched: Batched) -> Option<Attempt> {
    let (step, attempt) = match batched {
        Batched::Placed(reply) => (
            "group commit: key claimed, order inserted, answer stored with the key; \
             the batch's units taken by one version-checked update, one commit",
            Attempt::Placed(reply),
        ),
        Batched::Refused(reply) => (
            "group commit: key claimed, too little stock left, answer stored with the key",
            Attempt::Refused(reply),
        ),
        Batched::Duplicate => (
            "group commit: unique index: duplicate skipped, the others committed",
            Attempt::Duplicate,
        ),
        Batched::AnsweredBefore => (
            "group commit: key committed by another request meanwhile",
            Attempt::AnsweredBefore,
        ),
        Batched::OnItsOwn | Batched::DatabaseUnavailable => return None,
    };
    trace::step(step);
    Some(attempt)
}

fn batch_runner(shared: Arc<AppState>) -> RunBatch<OrderTicket, Batched> {
    Arc::new(move |tickets| {
        let shared = shared.clone();
        Box::pin(async move { run_batch(&shared, tickets).await })
    })
}

/// One batch, under the version lock: a conflict (another instance wrote the
/// row) rolls the whole batch back and runs it again.
async fn run_batch(state: &AppState, tickets: Vec<OrderTicket>) -> Vec<Batched> {
    metrics::observe_batch(tickets.len());
    let lock = &state.version_lock;
    for attempt in 0..=lock.max_retries() {
        if attempt > 0 {
            lock.back_off(attempt - 1).await;
        }
        match try_batch(state, &tickets).await {
            Ok(Some(results)) => return results,
            Ok(None) => lock.count_conflict(),
            Err(error) if error.dependency() == Some("database") => {
                tracing::warn!(%error, "an order batch found the database unavailable");
                return tickets
                    .iter()
                    .map(|_| Batched::DatabaseUnavailable)
                    .collect();
            }
            Err(error) => {
                tracing::warn!(%error, "an order batch failed; its orders go one by one");
                break;
            }
        }
    }
    tickets.iter().map(|_| Batched::OnItsOwn).collect()
}

/// The stock of each product in the batch as read at the start of its transaction,
/// and what is left of it as the batch hands units out.
struct Stocks {
    read: HashMap<i64, StockSnapshot>,
    left: HashMap<i64, i64>,
}

impl Stocks {
    /// The products whose sale is open; a ticket for any other goes its own way.
    async fn read(tx: &mut Tx, tickets: &[OrderTicket]) -> Result<Self, ApiError> {
        let mut ids: Vec<i64> = tickets.iter().map(|ticket| ticket.product_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let now = now_ms();
        let read: HashMap<i64, StockSnapshot> = products::stock_snapshots(&mut **tx, &ids)
            .await?
            .into_iter()
            .filter(|read| read.sale_starts_at.is_none_or(|starts| starts <= now))
            .map(|read| (read.id, read))
            .collect();
        Ok(Self::as_read(read))
    }

    /// Nothing handed out yet: every product's units as read.
    fn as_read(read: HashMap<i64, StockSnapshot>) -> Self {
        let left = read.values().map(|read| (read.id, read.stock)).collect();
        Self { read, left }
    }

    /// The same reads, with nothing handed out (a batch placed again).
    fn fresh(&self) -> Self {
        Self::as_read(self.read.clone())
    }

    /// A ticket's product: as read, and the units still left of it.
    fn of(&mut self, product_id: i64) -> Result<(&StockSnapshot, &mut i64), ApiError> {
        match (self.read.get(&product_id), self.left.get_mut(&product_id)) {
            (Some(read), Some(left)) => Ok((read, left)),
            _ => Err(ApiError::Internal(
                "a batch ticket without its product".into(),
            )),
        }
    }

    /// The units taken so far, per product that gave any, in the order of the
    /// product ids (so that batches of several instances lock rows in one order).
    fn taken(&self) -> Vec<(&StockSnapshot, i64)> {
        let mut taken: Vec<_> = self
            .read
            .values()
            .map(|read| {
                (
                    read,
                    read.stock - self.left.get(&read.id).copied().unwrap_or(read.stock),
                )
            })
            .filter(|(_, units)| *units > 0)
            .collect();
        taken.sort_unstable_by_key(|(read, _)| read.id);
        taken
    }
}

/// One transaction for the batch, whatever products it holds: the tickets'
/// key rows, orders (or refusals) and stored answers, then the units of every
/// product taken by one version-checked update, then one commit. `None`
/// after a version conflict on any of them (the whole batch runs again).
async fn try_batch(
    state: &AppState,
    tickets: &[OrderTicket],
) -> Result<Option<Vec<Batched>>, ApiError> {
    let mut tx = state.db.begin().await?;
    let mut stocks = Stocks::read(&mut tx, tickets).await?;
    let joined: Vec<&OrderTicket> = tickets
        .iter()
        .filter(|ticket| stocks.read.contains_key(&ticket.product_id))
        .collect();
    if joined.is_empty() {
        rollback(tx).await?;
        return Ok(Some(tickets.iter().map(|_| Batched::OnItsOwn).collect()));
    }
    let results = match place_batch_at_once(state, &mut tx, &mut stocks, &joined).await? {
        Some(results) => results,
        None => {
            rollback(tx).await?;
            tx = state.db.begin().await?;
            stocks = stocks.fresh();
            place_batch_one_by_one(state, &mut tx, &mut stocks, &joined).await?
        }
    };
    if !products::take_stock_if_versions(&mut *tx, &stocks.taken()).await? {
        rollback(tx).await?;
        return Ok(None);
    }
    commit(tx).await?;
    Ok(Some(merge_results(tickets, &stocks, results)))
}

/// Every ticket's result in the order of the tickets: the batch's for those
/// that joined it, the one-order way for the others.
fn merge_results(tickets: &[OrderTicket], stocks: &Stocks, results: Vec<Batched>) -> Vec<Batched> {
    let mut results = results.into_iter();
    tickets
        .iter()
        .map(
            |ticket| match stocks.read.contains_key(&ticket.product_id) {
                true => results.next().unwrap_or(Batched::OnItsOwn),
                false => Batched::OnItsOwn,
            },
        )
        .collect()
}

/// What the batch plans for one ticket once the keys are claimed.
enum Planned {
    AnsweredBefore,
    SoldOut,
    Order,
}

/// The whole batch in three statements, whatever its size: every key row
/// claimed by one INSERT, every order by one INSERT, every answer stored by
/// one UPDATE; the stock left decides in between, ticket by ticket, in the
/// order they came. `None` when the unique index skipped an order (a duplicate
/// the key defense did not stop, e.g. with it switched off): the units were
/// counted with that order, so the batch is placed again one ticket at a time.
async fn place_batch_at_once(
    state: &AppState,
    tx: &mut Tx,
    stocks: &mut Stocks,
    tickets: &[&OrderTicket],
) -> Result<Option<Vec<Batched>>, ApiError> {
    let flights: Vec<&InFlight> = tickets.iter().map(|ticket| &ticket.flight).collect();
    let claims = state.keys.claim_many_in(tx, &flights).await?;
    let (plans, new_orders) = plan_batch(state, stocks, tickets, claims)?;
    let inserted = orders::insert_many_unless_duplicate(&mut **tx, &new_orders).await?;
    if inserted.iter().any(Option::is_none) {
        return Ok(None);
    }
    let results = batch_results(plans, inserted.into_iter().flatten())?;
    let answers: Vec<_> = tickets
        .iter()
        .zip(&results)
        .filter_map(|(ticket, result)| match result {
            Batched::Placed(reply) | Batched::Refused(reply) => {
                Some((&ticket.flight, &reply.stored))
            }
            _ => None,
        })
        .collect();
    state.keys.complete_many_in(tx, &answers).await?;
    Ok(Some(results))
}

/// Ticket by ticket, in the order they came: the stock left decides who gets
/// an order and who is refused; a lost key claim answers with its owner's.
fn plan_batch<'t>(
    state: &AppState,
    stocks: &mut Stocks,
    tickets: &[&'t OrderTicket],
    claims: Vec<KeyClaim>,
) -> Result<(Vec<Planned>, Vec<NewOrder<'t>>), ApiError> {
    let mut plans = Vec::with_capacity(tickets.len());
    let mut new_orders = Vec::new();
    for (ticket, claim) in tickets.iter().zip(claims) {
        let (read, left) = stocks.of(ticket.product_id)?;
        plans.push(if claim == KeyClaim::Lost {
            Planned::AnsweredBefore
        } else if *left < ticket.quantity {
            Planned::SoldOut
        } else {
            *left -= ticket.quantity;
            new_orders.push(new_order(
                state,
                ticket.user_id,
                &ticket.key,
                read,
                ticket.quantity,
            )?);
            Planned::Order
        });
    }
    Ok((plans, new_orders))
}

/// Each ticket's answer: its order, the sold-out refusal, or the key's owner.
fn batch_results(
    plans: Vec<Planned>,
    mut inserted: impl Iterator<Item = Order>,
) -> Result<Vec<Batched>, ApiError> {
    let sold_out = ApiError::SoldOut.to_reply()?;
    plans
        .into_iter()
        .map(|plan| match plan {
            Planned::AnsweredBefore => Ok(Batched::AnsweredBefore),
            Planned::SoldOut => Ok(Batched::Refused(sold_out.clone())),
            Planned::Order => {
                let order = inserted
                    .next()
                    .ok_or_else(|| ApiError::Internal("a batch lost one of its orders".into()))?;
                Ok(Batched::Placed(created(&order, None)?))
            }
        })
        .collect()
}

/// The batch a ticket at a time (after the unique index skipped one): each
/// key row, order and answer by its own statements; units counted exactly.
async fn place_batch_one_by_one(
    state: &AppState,
    tx: &mut Tx,
    stocks: &mut Stocks,
    tickets: &[&OrderTicket],
) -> Result<Vec<Batched>, ApiError> {
    let mut results = Vec::with_capacity(tickets.len());
    for ticket in tickets {
        let (read, left) = stocks.of(ticket.product_id)?;
        results.push(place_one_of_batch(state, tx, read, ticket, left).await?);
    }
    Ok(results)
}

/// One ticket inside the batch's transaction; a duplicate is skipped, not
/// fatal to the others (`ON CONFLICT DO NOTHING`; on MySQL, error 1062 undoes
/// only its statement).
async fn place_one_of_batch(
    state: &AppState,
    tx: &mut Tx,
    read: &StockSnapshot,
    ticket: &OrderTicket,
    left: &mut i64,
) -> Result<Batched, ApiError> {
    if state.keys.claim_in(tx, &ticket.flight).await? == KeyClaim::Lost {
        return Ok(Batched::AnsweredBefore);
    }
    if *left < ticket.quantity {
        let reply = ApiError::SoldOut.to_reply()?;
        state
            .keys
            .complete_in(tx, &ticket.flight, &reply.stored)
            .await?;
        return Ok(Batched::Refused(reply));
    }
    let new_order = new_order(state, ticket.user_id, &ticket.key, read, ticket.quantity)?;
    let Some(order) = orders::insert_unless_duplicate(&mut **tx, &new_order).await? else {
        state.keys.unclaim_in(tx, &ticket.flight).await?;
        return Ok(Batched::Duplicate);
    };
    *left -= ticket.quantity;
    let reply = created(&order, None)?;
    state
        .keys
        .complete_in(tx, &ticket.flight, &reply.stored)
        .await?;
    Ok(Batched::Placed(reply))
}
// [/lesson]

/// The answer for a duplicate caught by the unique index: the order that won.
async fn existing_order(
    state: &AppState,
    user_id: i64,
    key: &IdempotencyKey,
) -> Result<Reply, ApiError> {
    let order = orders::find_guarded_by_key(state.db.pool(), user_id, key.as_str())
        .await?
        .ok_or_else(|| ApiError::Internal("unique violation without a winning order".into()))?;
    created(&order, Some(Defense::UniqueIndex))
}

fn created(order: &Order, defense: Option<Defense>) -> Result<Reply, ApiError> {
    Ok(Reply::json(StatusCode::CREATED, &order.view(), defense)?)
}
