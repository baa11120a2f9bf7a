//! Group commit of orders (组提交; docs/design.md §2.3): the winners of the
//! same moment, on any products, are placed by one transaction.
//!
//! A winner's [`OrderTicket`] joins the one queue ([`OrderBatches`], the
//! meeting point of `src/group_commit.rs`); the queue's leader runs
//! [`run_batch`]: the stock rows read, every key row claimed by one INSERT,
//! the stock left deciding ticket by ticket who gets an order and who is
//! refused, every order inserted by one INSERT, every answer stored by one
//! UPDATE, the units of every product taken by one version-checked UPDATE,
//! one COMMIT. Each ticket is handed its own [`Batched`] result.

use std::collections::HashMap;
use std::sync::Arc;

use crate::causes::Causes;
use crate::deadline::IfCutOff;
use crate::defenses::idempotency_key::{InFlight, KeyClaim};
use crate::domain::IdempotencyKey;
use crate::error::ApiError;
use crate::group_commit::{GroupCommit, RunBatch};
use crate::metrics;
use crate::state::AppState;
use crate::store::orders::{self, NewOrder, Order};
use crate::store::products::{self, StockSnapshot};
use crate::store::{Tx, commit, now_ms, rollback};
use crate::trace;

use super::order::{Buyer, OrderRequest, Outcome, created, new_order};

/// The queue of the group commit: one queue shared by all products, so that
/// orders on many products share a commit too. Built at start-up with [`runner`] and
/// registered as its own `web::Data`.
pub type OrderBatches = GroupCommit<OrderTicket, Batched>;

/// One buyer who passed the front door and the gate, waiting for a batch.
#[derive(Debug)]
pub struct OrderTicket {
    pub product_id: i64,
    pub user_id: i64,
    pub key: IdempotencyKey,
    pub quantity: i64,
    pub flight: InFlight,
    /// Kept until the batch ends, so that a request cut off meanwhile has its
    /// gate claim settled or given back only then (`StockGate`).
    pub gate_cut_off: Option<Arc<IfCutOff>>,
}

/// What the batch did for one ticket.
#[derive(Debug)]
pub enum Batched {
    /// The batch's transaction ended; this is what it did for the ticket.
    Done(Outcome),
    /// The batch could not run (product gone, sale not open, a database error,
    /// retries exhausted): this request takes the one-order path, which
    /// answers it precisely.
    NotBatched,
    /// The batch failed because the database did not answer (no connection,
    /// a statement timed out): the one-order path would only wait for it
    /// again, so this request is answered 503 at once.
    DatabaseUnavailable,
}

/// How the queue runs a batch: [`run_batch`] on the app's state.
pub fn runner(shared: Arc<AppState>) -> RunBatch<OrderTicket, Batched> {
    Arc::new(move |tickets| {
        let shared = shared.clone();
        Box::pin(async move { run_batch(&shared, tickets).await })
    })
}

/// With the version lock on, a winner joins the batch of its moment and waits
/// for its result. `None`: this order goes the one-order way (batching off,
/// the version lock off so the lab can show the lost update, the lab's
/// conditional decrement chosen, or a batch that could not run).
/// `Err(BatchFoundDatabaseUnavailable)`: the database did not answer the
/// batch, and the one-order way would only wait for it again.
pub(super) async fn place(
    state: &AppState,
    batches: &OrderBatches,
    buyer: Buyer<'_>,
    request: OrderRequest,
    gate_cut_off: Option<Arc<IfCutOff>>,
) -> Result<Option<Outcome>, ApiError> {
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
    match batches.submit(ticket).await {
        Some(Batched::Done(outcome)) => {
            trace::step(batch_step(&outcome));
            Ok(Some(outcome))
        }
        Some(Batched::DatabaseUnavailable) => {
            trace::step("group commit: the database did not answer the batch");
            Err(ApiError::BatchFoundDatabaseUnavailable)
        }
        Some(Batched::NotBatched) | None => Ok(None),
    }
}

/// The request's trace step for what its batch did (the batch ran in its
/// leader's task, whose steps no request records).
fn batch_step(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Placed(_) => {
            "group commit: key claimed, order inserted, answer stored with the key; \
             the batch's units taken by one version-checked update, one commit"
        }
        Outcome::Refused(_) => {
            "group commit: key claimed, too little stock left, answer stored with the key"
        }
        Outcome::Duplicate => "group commit: unique index: duplicate skipped, the others committed",
        Outcome::KeyTakenBefore => "group commit: key committed by another request meanwhile",
    }
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
                tracing::warn!(error = %Causes(&error), "an order batch found the database unavailable");
                return tickets
                    .iter()
                    .map(|_| Batched::DatabaseUnavailable)
                    .collect();
            }
            Err(error) => {
                tracing::warn!(error = %Causes(&error), "an order batch failed; its orders go one by one");
                break;
            }
        }
    }
    tickets.iter().map(|_| Batched::NotBatched).collect()
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
        Ok(Self::nothing_handed_out(read))
    }

    /// Every product's units as read, none handed out yet.
    fn nothing_handed_out(read: HashMap<i64, StockSnapshot>) -> Self {
        let left = read.values().map(|read| (read.id, read.stock)).collect();
        Self { read, left }
    }

    /// The same reads, with every unit handed back (the batch placed again).
    fn handed_back(&self) -> Self {
        Self::nothing_handed_out(self.read.clone())
    }

    fn is_on_sale(&self, product_id: i64) -> bool {
        self.read.contains_key(&product_id)
    }

    /// A ticket's product: its row as read, and the units still left of it.
    fn read_and_left(&mut self, product_id: i64) -> Result<(&StockSnapshot, &mut i64), ApiError> {
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
        .filter(|ticket| stocks.is_on_sale(ticket.product_id))
        .collect();
    if joined.is_empty() {
        rollback(tx).await?;
        return Ok(Some(tickets.iter().map(|_| Batched::NotBatched).collect()));
    }
    let outcomes = match place_batch_at_once(state, &mut tx, &mut stocks, &joined).await? {
        Some(outcomes) => outcomes,
        None => {
            rollback(tx).await?;
            tx = state.db.begin().await?;
            stocks = stocks.handed_back();
            place_batch_one_by_one(state, &mut tx, &mut stocks, &joined).await?
        }
    };
    if !products::take_stock_if_versions(&mut *tx, &stocks.taken()).await? {
        rollback(tx).await?;
        return Ok(None);
    }
    commit(tx).await?;
    Ok(Some(results_in_ticket_order(tickets, &stocks, outcomes)))
}

/// Every ticket's result in the order of the tickets: the batch's outcome for
/// those that joined it, the one-order way for the others.
fn results_in_ticket_order(
    tickets: &[OrderTicket],
    stocks: &Stocks,
    outcomes: Vec<Outcome>,
) -> Vec<Batched> {
    let mut outcomes = outcomes.into_iter();
    tickets
        .iter()
        .map(|ticket| match stocks.is_on_sale(ticket.product_id) {
            true => outcomes.next().map_or(Batched::NotBatched, Batched::Done),
            false => Batched::NotBatched,
        })
        .collect()
}

/// What the batch plans for one ticket once the keys are claimed.
enum Planned {
    KeyTakenBefore,
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
) -> Result<Option<Vec<Outcome>>, ApiError> {
    let flights: Vec<&InFlight> = tickets.iter().map(|ticket| &ticket.flight).collect();
    let claims = state.keys.claim_many_in(tx, &flights).await?;
    let (plans, new_orders) = plan_batch(state, stocks, tickets, claims)?;
    let inserted = orders::insert_many_unless_duplicate(&mut **tx, &new_orders).await?;
    if inserted.iter().any(Option::is_none) {
        return Ok(None);
    }
    let outcomes = planned_outcomes(plans, inserted.into_iter().flatten())?;
    let answers: Vec<_> = tickets
        .iter()
        .zip(&outcomes)
        .filter_map(|(ticket, outcome)| match outcome {
            Outcome::Placed(reply) | Outcome::Refused(reply) => {
                Some((&ticket.flight, &reply.stored))
            }
            _ => None,
        })
        .collect();
    state.keys.complete_many_in(tx, &answers).await?;
    Ok(Some(outcomes))
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
        let (read, left) = stocks.read_and_left(ticket.product_id)?;
        plans.push(if claim == KeyClaim::Lost {
            Planned::KeyTakenBefore
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

/// Each ticket's outcome: its order, the sold-out refusal, or the key's owner.
fn planned_outcomes(
    plans: Vec<Planned>,
    mut inserted: impl Iterator<Item = Order>,
) -> Result<Vec<Outcome>, ApiError> {
    let sold_out = ApiError::SoldOut.to_reply()?;
    plans
        .into_iter()
        .map(|plan| match plan {
            Planned::KeyTakenBefore => Ok(Outcome::KeyTakenBefore),
            Planned::SoldOut => Ok(Outcome::Refused(sold_out.clone())),
            Planned::Order => {
                let order = inserted
                    .next()
                    .ok_or_else(|| ApiError::Internal("a batch lost one of its orders".into()))?;
                Ok(Outcome::Placed(created(&order, None)?))
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
) -> Result<Vec<Outcome>, ApiError> {
    let mut outcomes = Vec::with_capacity(tickets.len());
    for ticket in tickets {
        let (read, left) = stocks.read_and_left(ticket.product_id)?;
        outcomes.push(place_one_of_batch(state, tx, read, ticket, left).await?);
    }
    Ok(outcomes)
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
) -> Result<Outcome, ApiError> {
    if state.keys.claim_in(tx, &ticket.flight).await? == KeyClaim::Lost {
        return Ok(Outcome::KeyTakenBefore);
    }
    if *left < ticket.quantity {
        let reply = ApiError::SoldOut.to_reply()?;
        state
            .keys
            .complete_in(tx, &ticket.flight, &reply.stored)
            .await?;
        return Ok(Outcome::Refused(reply));
    }
    let new_order = new_order(state, ticket.user_id, &ticket.key, read, ticket.quantity)?;
    let Some(order) = orders::insert_unless_duplicate(&mut **tx, &new_order).await? else {
        state.keys.unclaim_in(tx, &ticket.flight).await?;
        return Ok(Outcome::Duplicate);
    };
    *left -= ticket.quantity;
    let reply = created(&order, None)?;
    state
        .keys
        .complete_in(tx, &ticket.flight, &reply.stored)
        .await?;
    Ok(Outcome::Placed(reply))
}
