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
//! one script, so it is given back once); one whose order commits leaves the
//! product's `placing` set. While that set is not empty, units may still come
//! back, so a loser waits for it (bounded, `placing_wait`); a "sold out" given
//! while units are still held after that is not final: 409 with
//! `Retry-After`, not stored with the key (docs/design.md §2.1).
//!
//! The gate is loaded from the database on reset, at start (only where absent, so
//! a restart does not disturb other instances), and when switched back on; closed
//! orders return their units to it. It heals itself: each claim is also a member
//! of the product's set of pending claims, and every few seconds each instance
//! sets, in one script, `counter = database stock − live claims without an
//! order` (docs/reliability.md), so a claim whose request died gives its unit
//! back after one lease — or, when its whole instance died, as soon as the
//! instance's heartbeat lapses (each claim names its instance; `beat`). The
//! audit compares each counter with that same value.
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
use crate::store::kv::{claim_member_of, claim_units};
use crate::store::{
    Claim, Db, GateKeys, KeyStore, KvError, Reconcile, StoreError, millis, now_ms, orders, products,
};
use crate::switches::{Defense, SwitchBoard};
use crate::trace;

/// How long a cached stock counter lives when loaded lazily (effectively forever).
const COUNTER_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("sold out: the stock gate has no units left")]
    SoldOut,
    #[error("sold out for now: the last units are held by orders still being placed")]
    SoldOutForNow,
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
    /// This instance, as its claims and heartbeats name it.
    instance: String,
    /// `INSTANCE_HEARTBEAT_MS` (`None`: off, only leases end claims).
    heartbeat: Option<Duration>,
    /// The instances alive at the last heartbeat, to notice one that lapses.
    alive_at_last_beat: parking_lot::Mutex<Vec<String>>,
    /// This instance's claims still placing their order, per product, and the
    /// signal that a product's count reached zero (losers waiting on it ask again).
    placing_here: parking_lot::Mutex<std::collections::HashMap<i64, u32>>,
    all_placed_here: tokio::sync::Notify,
}

/// A heartbeat lapses after this many beats without one.
const BEATS_TO_LAPSE: u32 = 3;

/// How the gate is built: its stores and the timings of its claims.
#[derive(Debug)]
pub struct GateSetup {
    pub db: Db,
    pub kv: Arc<dyn KeyStore>,
    pub switches: Arc<SwitchBoard>,
    pub claim_ttl: Duration,
    pub instance: String,
    pub heartbeat: Option<Duration>,
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
    fn keys<'a>(&'a self, product: &'a ProductKeys) -> GateKeys<'a> {
        GateKeys {
            counter: &product.counter,
            pending: &product.pending,
            placing: &product.placing,
            claim: &self.claim_key,
            member: &self.member,
        }
    }
}

/// The gate's keys of one product (one hash tag, `{p<id>}`).
#[derive(Debug)]
struct ProductKeys {
    counter: String,
    pending: String,
    placing: String,
}

impl ProductKeys {
    fn of(product_id: i64) -> Self {
        Self {
            counter: key_layout::gate_stock(product_id),
            pending: key_layout::gate_pending(product_id),
            placing: key_layout::gate_placing(product_id),
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
        Claim::ShortWhilePlacing { .. } => {
            trace::step("gate: not enough left for now (other orders still being placed)");
            Err(GateError::SoldOutForNow)
        }
        Claim::NotLoaded => Ok(Decision::Pass(None)),
    }
}

fn stock_key(product_id: i64) -> String {
    key_layout::gate_stock(product_id)
}

fn claim_key(product_id: i64, user_id: i64, key: &IdempotencyKey) -> String {
    key_layout::gate_claim(product_id, user_id, key.as_str())
}

/// A loser waits while the claims holding the last units keep ending; when
/// none has ended for this long, they are held (a frozen or dead instance),
/// not placing, and the answer is "sold out for now" (not final).
const PLACING_IDLE: Duration = Duration::from_secs(1);

/// The longest a loser waits in any case.
const PLACING_WAIT_MAX: Duration = Duration::from_secs(10);

/// How often a waiting loser asks again (sooner when this instance's own
/// orders of the product are all placed).
const PLACING_POLL: Duration = Duration::from_millis(100);

/// A loser's bounded wait while units are only held (see [`StockGate::placing_wait`]).
#[derive(Debug)]
pub struct PlacingWait<'a> {
    gate: &'a StockGate,
    idle_until: tokio::time::Instant,
    until: tokio::time::Instant,
    last_held: Option<i64>,
}

impl PlacingWait<'_> {
    /// Given how many claims still hold units, waits until it is worth asking
    /// again. False when it is not: no claim ended for [`PLACING_IDLE`], or
    /// [`PLACING_WAIT_MAX`] passed (then the answer is "sold out for now").
    pub async fn next(&mut self, held: i64) -> bool {
        let now = tokio::time::Instant::now();
        if self.last_held.is_some_and(|last| held < last) {
            self.idle_until = now + PLACING_IDLE;
        }
        self.last_held = Some(held);
        let until = self.idle_until.min(self.until);
        if now >= until {
            return false;
        }
        let pause = PLACING_POLL.min(until - now);
        tokio::select! {
            () = self.gate.all_placed_here.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
        true
    }
}

impl StockGate {
    pub fn new(setup: GateSetup) -> Self {
        Self {
            db: setup.db,
            kv: setup.kv,
            switches: setup.switches,
            claim_ttl: setup.claim_ttl,
            instance: setup.instance,
            heartbeat: setup.heartbeat,
            alive_at_last_beat: Default::default(),
            placing_here: Default::default(),
            all_placed_here: tokio::sync::Notify::new(),
        }
    }

    // [lesson stock_gate::placing_wait]
    /// A loser who finds the counter empty while units are only held by
    /// orders being placed waits for them, as long as they keep ending (and
    /// [`PLACING_WAIT_MAX`] at most): then its "sold out" is final — stored
    /// and replayed like any other — or a unit came back and it buys. Only
    /// claims that stop ending for [`PLACING_IDLE`] (a frozen or dead
    /// instance) make the answer "sold out for now", not stored
    /// (docs/design.md §2.1).
    pub fn placing_wait(&self) -> PlacingWait<'_> {
        let now = tokio::time::Instant::now();
        PlacingWait {
            gate: self,
            idle_until: now + PLACING_IDLE,
            until: now + PLACING_WAIT_MAX,
            last_held: None,
        }
    }
    // [/lesson]

    fn placing_started(&self, product_id: i64) {
        *self.placing_here.lock().entry(product_id).or_default() += 1;
    }

    fn placing_ended(&self, product_id: i64) {
        let mut placing = self.placing_here.lock();
        let Some(count) = placing.get_mut(&product_id) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            placing.remove(&product_id);
            self.all_placed_here.notify_waiters();
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

    /// The claims still placing their order, which the front door asks about
    /// before it caches a "sold out" as final.
    pub fn placing_slot(&self, product_id: i64) -> Option<String> {
        self.is_on().then(|| key_layout::gate_placing(product_id))
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
            member: claim_member_of(&self.instance, quantity, user_id, key.as_str()),
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
        let product = ProductKeys::of(pass.product_id);
        let (mut loaded, mut wait) = (false, self.placing_wait());
        loop {
            let claim = self
                .kv
                .claim_and_decrement(
                    &pass.keys(&product),
                    pass.quantity,
                    self.claim_ttl,
                    now_ms(),
                )
                .await?;
            match claim {
                Claim::NotLoaded if !loaded => {
                    if !self.load_one(pass.product_id).await? {
                        break; // No such product: the database path answers 404.
                    }
                    loaded = true;
                }
                Claim::NotLoaded => break,
                Claim::ShortWhilePlacing { held } if wait.next(held).await => {}
                Claim::Taken { .. } => {
                    self.placing_started(pass.product_id);
                    return Ok(decision(claim, pass));
                }
                _ => return Ok(decision(claim, pass)),
            }
        }
        Ok(Ok(Decision::Pass(None)))
    }
    // [/lesson]

    /// Gives the units of a pass back (its database step did not create an order).
    async fn give_back(&self, pass: GatePass) {
        let product = ProductKeys::of(pass.product_id);
        let result = self
            .kv
            .release_claim(&pass.keys(&product), pass.quantity)
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "stock gate give-back failed: the gate now holds less than the database");
        }
    }

    /// The end of a pass: settled when its order committed, else given back.
    pub async fn finish(&self, pass: GatePass, created_an_order: bool) {
        let product_id = pass.product_id;
        if created_an_order {
            self.settle(pass).await;
        } else {
            self.give_back(pass).await;
        }
        self.placing_ended(product_id);
    }

    /// The pass's order committed: its claim is no longer "placing", so a
    /// "sold out" given after it is final (its unit will not come back).
    async fn settle(&self, pass: GatePass) {
        let product = ProductKeys::of(pass.product_id);
        if let Err(error) = self.kv.settle_claim(&pass.keys(&product)).await {
            // Harmless: losers are told "sold out for now" until its lease ends.
            tracing::warn!(%error, "stock gate: a committed claim stays 'placing'");
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
        let live = match mode {
            Load::Overwrite => self.live_instances().await,
            Load::OnlyMissing => None,
        };
        for product in products::list(self.db.pool()).await? {
            let (key, stock) = (stock_key(product.id), product.stock.to_string());
            match mode {
                Load::Overwrite => {
                    self.kv.set_forever(&key, &stock).await?;
                    self.reconcile_with(product.id, live.as_deref()).await?;
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
        let live = self.live_instances().await;
        self.reconcile_with(product_id, live.as_deref()).await
    }

    /// [`Self::reconcile`] with the live instances already read (once per pass).
    async fn reconcile_with(
        &self,
        product_id: i64,
        live: Option<&[String]>,
    ) -> Result<Option<i64>, GateError> {
        let (committed, stock) = self.committed_and_stock(product_id).await?;
        let Some(stock) = stock else {
            return Ok(None);
        };
        let product = ProductKeys::of(product_id);
        let job = Reconcile {
            counter: &product.counter,
            pending: &product.pending,
            placing: &product.placing,
            stock,
            committed: &committed,
            live,
            now_ms: now_ms(),
        };
        Ok(self.kv.reconcile_counter(&job).await?)
    }

    /// The instances whose heartbeat is live (`None`: heartbeats off, or the
    /// registry unreadable or incomplete — then only leases end claims). The
    /// registry is trusted only when it lists this instance: a reset, or a
    /// Redis restart or failover, can empty it until everyone beats again.
    async fn live_instances(&self) -> Option<Vec<String>> {
        let lapse = self.heartbeat? * BEATS_TO_LAPSE;
        let since = now_ms().saturating_sub(millis(lapse));
        match self
            .kv
            .live_instances(&key_layout::instances(), since)
            .await
        {
            Ok(live) if live.contains(&self.instance) => Some(live),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, "instance registry unreadable: claims end with their lease");
                None
            }
        }
    }

    // [lesson stock_gate::heartbeat]
    /// This instance's heartbeat (every `INSTANCE_HEARTBEAT_MS`): it records
    /// itself in the registry and reads who else is alive. When an instance
    /// that was alive at the last beat has lapsed (no beat for three periods:
    /// killed, frozen, cut off), its claims die with it: every counter is
    /// reconciled at once, without the claims of the dead instance, instead of
    /// waiting for their lease. Returns the number of counters reconciled.
    pub async fn beat(&self) -> Result<u64, GateError> {
        let Some(period) = self.heartbeat else {
            return Ok(0);
        };
        let now = now_ms();
        let lapsed_before = now.saturating_sub(millis(period * BEATS_TO_LAPSE));
        let registry = key_layout::instances();
        let alive = self
            .kv
            .beat(&registry, &self.instance, now, lapsed_before)
            .await?;
        let lapsed: Vec<String> = {
            let mut last = self.alive_at_last_beat.lock();
            let lapsed = last
                .iter()
                .filter(|instance| !alive.contains(instance))
                .cloned()
                .collect();
            *last = alive;
            lapsed
        };
        if lapsed.is_empty() {
            return Ok(0);
        }
        tracing::warn!(
            ?lapsed,
            "instances lapsed: their stock-gate claims are released"
        );
        self.reconcile_all().await
    }
    // [/lesson]

    /// The periodic reconciliation of every loaded counter (while the gate is on).
    pub async fn reconcile_all(&self) -> Result<u64, GateError> {
        if !self.is_on() {
            return Ok(0);
        }
        let (mut reconciled, live) = (0, self.live_instances().await);
        for product in products::list(self.db.pool()).await? {
            if self
                .reconcile_with(product.id, live.as_deref())
                .await?
                .is_some()
            {
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
        let product = ProductKeys::of(product_id);
        let members = self.kv.pending_members(&product.pending, now_ms()).await?;
        let live = self.live_instances().await;
        let view = Reconcile {
            counter: &product.counter,
            pending: &product.pending,
            placing: &product.placing,
            stock: stock.unwrap_or(0),
            committed: &committed,
            live: live.as_deref(),
            now_ms: now_ms(),
        };
        let in_flight: i64 = members
            .iter()
            .filter(|member| view.holder_is_alive(member) && !view.is_committed(member))
            .map(|member| claim_units(member))
            .sum();
        let expected = view.stock - in_flight;
        Ok(Some((counter, expected.max(0))))
    }
}
