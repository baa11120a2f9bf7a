//! Defense `stock_gate` (Redis 库存预扣: stock pre-deduction) — a counter in the
//! key store in front of the hot stock row.
//!
//! **Without it** every buyer of a flash sale queues on the one stock row in the
//! database: thousands of losers spend a connection and a version-checked update
//! to learn "sold out", and the winners wait behind them. And a naive cache gate
//! has a classic bug: a repeat click decrements the cached stock again, so units
//! are "sold" in the cache that nobody ever buys.
//!
//! **How it prevents that**: a sold-out product is answered from the cached stock
//! at the front door, before any database work (not even the idempotency key's
//! row; `flows/front_door.rs`). Otherwise, after the key's in-flight mark is set
//! (and before the order's transaction, which claims the key row), one Lua
//! script (or the in-process equivalent), atomic:
//! first it refuses a repeat of the same (user, idempotency key) *before touching
//! stock*; then it decrements the cached stock only if enough is left and records
//! the claim. Sold out is answered from the key store (409 `sold_out`,
//! `Flashguard-Defense: stock_gate`); only winners reach the database, where
//! `version_lock` stays the last line of defense. A winner whose database step
//! fails gives its unit back (the claim is deleted and the stock incremented in
//! one script, so it is given back once).
//!
//! The gate is loaded from the database on reset, at start (only where absent, so
//! a restart does not disturb other instances), and when switched back on; closed
//! orders return their units to it. It heals itself: each claim is also a member
//! of the product's set of pending claims, and every few seconds each instance
//! sets, in one script, `counter = database stock − live claims without an
//! order` (docs/reliability.md), so a claim whose request died gives its unit
//! back after one lease. The audit compares each counter with that same value.
//! When the key store does not answer, the gate steps aside (orders go to the
//! database, guarded by `version_lock`) and the reconciliation repairs it later.
//!
//! **Switched off**, requests go straight to the database: still correct (the
//! version lock), but every loser costs database work. Shown by
//! `tests/api/stock_gate.rs`: `losers_are_answered_at_the_gate_and_winners_buy_exactly_the_stock`
//! (on) and `with_the_gate_off_the_flash_sale_is_still_correct` (off).

use std::sync::Arc;
use std::time::Duration;

use crate::domain::IdempotencyKey;
use crate::store::key_layout;
use crate::store::kv::{claim_member, claim_units};
use crate::store::{
    Claim, Db, GateKeys, KeyStore, KvError, StoreError, millis, now_ms, orders, products,
};
use crate::switches::{Defense, SwitchBoard};
use crate::trace;

/// How long a cached stock counter lives when loaded lazily (effectively forever).
const COUNTER_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("sold out: the stock gate has no units left")]
    SoldOut,
    #[error(transparent)]
    KeyStore(#[from] KvError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The defense, built once at start-up. Only it knows its key format.
#[derive(Debug)]
pub struct StockGate {
    db: Db,
    kv: Arc<dyn KeyStore>,
    switches: Arc<SwitchBoard>,
    /// A claim lives as long as a key's lease: the request holding it finishes
    /// (or gives it back) within that time, or is dead and its retry may claim again.
    claim_ttl: Duration,
}

/// A unit (or units) taken at the gate for one request.
#[derive(Debug)]
pub struct GatePass {
    product_id: i64,
    claim_key: String,
    member: String,
    quantity: i64,
}

impl GatePass {
    fn keys<'a>(&'a self, counter: &'a str, pending: &'a str) -> GateKeys<'a> {
        GateKeys {
            counter,
            pending,
            claim: &self.claim_key,
            member: &self.member,
        }
    }
}

/// What the gate decided.
#[derive(Debug)]
pub enum Decision {
    /// Go on to the database; with a pass when the gate took stock.
    Pass(Option<GatePass>),
    /// This (user, key) already took stock: answer with its order, do not take more.
    Repeat,
}

/// How [`StockGate::load`] treats a counter that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Reset, or the gate switched back on: the database's stock wins.
    Overwrite,
    /// Start-up: leave live counters alone (other instances may be selling).
    OnlyMissing,
}

/// What the claim script's answer means for the request.
fn decision(claim: Claim, pass: GatePass) -> Result<Decision, GateError> {
    match claim {
        Claim::Taken { left } => {
            trace::step(format!("gate: unit taken ({left} left)"));
            Ok(Decision::Pass(Some(pass)))
        }
        Claim::Repeat => {
            trace::step("gate: this key already holds a unit");
            Ok(Decision::Repeat)
        }
        Claim::Short => {
            trace::step("gate: not enough left");
            Err(GateError::SoldOut)
        }
        Claim::NotLoaded => Ok(Decision::Pass(None)),
    }
}

fn stock_key(product_id: i64) -> String {
    key_layout::gate_stock(product_id)
}

fn pending_key(product_id: i64) -> String {
    key_layout::gate_pending(product_id)
}

fn claim_key(product_id: i64, user_id: i64, key: &IdempotencyKey) -> String {
    key_layout::gate_claim(product_id, user_id, key.as_str())
}

impl StockGate {
    pub fn new(
        db: Db,
        kv: Arc<dyn KeyStore>,
        switches: Arc<SwitchBoard>,
        claim_ttl: Duration,
    ) -> Self {
        Self {
            db,
            kv,
            switches,
            claim_ttl,
        }
    }

    pub fn is_on(&self) -> bool {
        self.switches.is_on(Defense::StockGate)
    }

    /// The counter the front door compares a request's quantity with, when
    /// the gate is on (`flows/front_door.rs`: the sold-out fast path).
    pub fn counter_slot(&self, product_id: i64) -> Option<String> {
        self.is_on().then(|| stock_key(product_id))
    }

    // [lesson stock_gate::admit]
    /// The atomic claim: refuses a repeat of (user, key), then takes `quantity`
    /// units if enough are left.
    pub async fn admit(
        &self,
        product_id: i64,
        user_id: i64,
        key: &IdempotencyKey,
        quantity: i64,
    ) -> Result<Decision, GateError> {
        if !self.is_on() {
            trace::step("stock_gate off: straight to the database");
            return Ok(Decision::Pass(None));
        }
        let pass = GatePass {
            product_id,
            claim_key: claim_key(product_id, user_id, key),
            member: claim_member(quantity, user_id, key.as_str()),
            quantity,
        };
        match self.claim(pass).await {
            Ok(decision) => decision,
            Err(GateError::KeyStore(error)) => {
                tracing::warn!(%error, "stock gate unavailable; straight to the database");
                trace::step("gate unavailable: straight to the database");
                Ok(Decision::Pass(None))
            }
            Err(other) => Err(other),
        }
    }

    /// The claim script, loading the counter first if it is absent.
    async fn claim(&self, pass: GatePass) -> Result<Result<Decision, GateError>, GateError> {
        let (counter, pending) = (stock_key(pass.product_id), pending_key(pass.product_id));
        for _ in 0..2 {
            let claim = self
                .kv
                .claim_and_decrement(
                    &pass.keys(&counter, &pending),
                    pass.quantity,
                    self.claim_ttl,
                    now_ms(),
                )
                .await?;
            if claim != Claim::NotLoaded {
                return Ok(decision(claim, pass));
            }
            if !self.load_one(pass.product_id).await? {
                break; // No such product: the database path answers 404.
            }
        }
        Ok(Ok(Decision::Pass(None)))
    }
    // [/lesson]

    /// Gives the units of a pass back (its database step did not create an order).
    pub async fn give_back(&self, pass: GatePass) {
        let (counter, pending) = (stock_key(pass.product_id), pending_key(pass.product_id));
        let result = self
            .kv
            .release_claim(&pass.keys(&counter, &pending), pass.quantity)
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "stock gate give-back failed: the gate now holds less than the database");
        }
    }

    /// The cached stock of a product, if the gate has loaded it.
    pub async fn counter(&self, product_id: i64) -> Result<Option<i64>, KvError> {
        let cached = self.kv.get(&stock_key(product_id)).await?;
        Ok(cached.and_then(|value| value.parse::<i64>().ok()))
    }

    /// Units that returned to the database's stock (a closed order) return to the gate.
    pub async fn restock(&self, product_id: i64, quantity: i64) -> Result<(), KvError> {
        self.kv
            .add_if_present(&stock_key(product_id), quantity)
            .await
    }

    /// Loads one product's counter from the database if absent; false if no such product.
    async fn load_one(&self, product_id: i64) -> Result<bool, GateError> {
        let Some(product) = products::find(self.db.pool(), product_id).await? else {
            return Ok(false);
        };
        let stock = product.stock.to_string();
        self.kv
            .set_if_absent(&stock_key(product_id), &stock, COUNTER_TTL)
            .await?;
        Ok(true)
    }

    /// Loads the counters of every product from the database's stock (with
    /// `Overwrite`, less the claims in flight).
    pub async fn load(&self, mode: Load) -> Result<(), GateError> {
        for product in products::list(self.db.pool()).await? {
            let (key, stock) = (stock_key(product.id), product.stock.to_string());
            match mode {
                Load::Overwrite => {
                    self.kv.set_forever(&key, &stock).await?;
                    self.reconcile(product.id).await?;
                }
                Load::OnlyMissing => {
                    self.kv.set_if_absent(&key, &stock, COUNTER_TTL).await?;
                }
            }
        }
        Ok(())
    }

    /// The claims of `product_id` that already became orders, then its stock —
    /// in that order, so that a commit in between makes the gate err low, never
    /// high (docs/reliability.md).
    async fn committed_and_stock(
        &self,
        product_id: i64,
    ) -> Result<(Vec<String>, Option<i64>), GateError> {
        let since = now_ms().saturating_sub(2 * millis(self.claim_ttl));
        let snapshot = orders::stock_and_recent_claims(self.db.pool(), product_id, since).await?;
        Ok(match snapshot {
            Some((stock, committed)) => (committed, Some(stock)),
            None => (Vec::new(), None),
        })
    }

    /// Sets one loaded counter to the database's stock minus the live claims
    /// without an order; returns the new value (`None`: not loaded, or no product).
    pub async fn reconcile(&self, product_id: i64) -> Result<Option<i64>, GateError> {
        let (committed, stock) = self.committed_and_stock(product_id).await?;
        let Some(stock) = stock else {
            return Ok(None);
        };
        let (counter, pending) = (stock_key(product_id), pending_key(product_id));
        Ok(self
            .kv
            .reconcile_counter(&counter, &pending, stock, &committed, now_ms())
            .await?)
    }

    /// The periodic reconciliation of every loaded counter (while the gate is on).
    pub async fn reconcile_all(&self) -> Result<u64, GateError> {
        if !self.is_on() {
            return Ok(0);
        }
        let mut reconciled = 0;
        for product in products::list(self.db.pool()).await? {
            if self.reconcile(product.id).await?.is_some() {
                reconciled += 1;
            }
        }
        Ok(reconciled)
    }

    /// What a loaded counter should hold now: the database's stock minus the
    /// live claims without an order (`None` when the counter is not loaded).
    pub async fn expected(&self, product_id: i64) -> Result<Option<(i64, i64)>, GateError> {
        let Some(counter) = self.counter(product_id).await? else {
            return Ok(None);
        };
        let (committed, stock) = self.committed_and_stock(product_id).await?;
        let live = self
            .kv
            .pending_members(&pending_key(product_id), now_ms())
            .await?;
        let in_flight: i64 = live
            .iter()
            .filter(|member| !committed.contains(member))
            .map(|member| claim_units(member))
            .sum();
        let expected = stock.unwrap_or(0) - in_flight;
        Ok(Some((counter, expected.max(0))))
    }
}
