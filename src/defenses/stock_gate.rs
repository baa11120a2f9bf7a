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
//! row; `flows/orders/front_door.rs`). Otherwise, after the key's in-flight mark is set
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
//! **Buckets** (`GATE_BUCKETS` = N > 1, 库存分桶): the counter is split into N
//! counters in N hash slots — on a Redis Cluster, N masters share the hot
//! product's load. A buyer starts at the bucket of its user id and tries the
//! others in turn; "sold out" only when every bucket is short. The price: a
//! request for more units than any one bucket holds is refused although the
//! buckets together hold them (少卖: the reconciliation spreads the free units
//! evenly, which does not put them in one bucket). docs/scaling.md, step 4.
//! When the key store does not answer, the gate steps aside (orders go to the
//! database, guarded by `version_lock`) and the reconciliation repairs it later.
//!
//! **Switched off**, requests go straight to the database: still correct (the
//! version lock), but every loser costs database work. Shown by
//! `tests/api/stock_gate.rs`: `losers_are_answered_at_the_gate_and_winners_buy_exactly_the_stock`
//! (on) and `with_the_gate_off_the_flash_sale_is_still_correct` (off).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::causes::Causes;
use crate::deadline::IfCutOff;
use crate::domain::IdempotencyKey;
use crate::store::key_layout;
use crate::store::kv::{claim_member_of, claim_units};
use crate::store::{
    Claim, Db, Door, DoorAnswer, GateKeys, KeyStore, KvError, Reconcile, StoreError, millis,
    now_ms, orders, products,
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
    /// `GATE_BUCKETS`: how many counters each product's stock is split into.
    buckets: u32,
    /// The instances alive at the last heartbeat, to notice one that lapses.
    alive_at_last_beat: parking_lot::Mutex<Vec<String>>,
    /// This instance's claims still placing their order (shared with the
    /// give-back of a request cut off).
    placing_here: Arc<PlacingHere>,
}

/// This instance's claims still placing their order, per product, and the
/// signal that a product's count reached zero (losers waiting on it ask again).
#[derive(Debug, Default)]
struct PlacingHere {
    counts: parking_lot::Mutex<std::collections::HashMap<i64, u32>>,
    all_placed: tokio::sync::Notify,
}

impl PlacingHere {
    fn started(&self, product_id: i64) {
        *self.counts.lock().entry(product_id).or_default() += 1;
    }

    fn ended(&self, product_id: i64) {
        let mut counts = self.counts.lock();
        let Some(count) = counts.get_mut(&product_id) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(&product_id);
            self.all_placed.notify_waiters();
        }
    }
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
    pub buckets: u32,
}

/// A unit (or units) taken at the gate for one request.
#[derive(Debug)]
pub struct GatePass {
    product_id: i64,
    bucket: u32,
    claim_key: String,
    member: String,
    quantity: i64,
    /// Settles or gives back the claim if the request is cut off before it
    /// finishes (shared with a group-commit batch's ticket: then after the
    /// batch ends).
    cut_off: Option<Arc<IfCutOff>>,
}

impl GatePass {
    /// The clean-up owed if this pass's request is cut off, for whoever else
    /// holds on to its work (a group-commit batch).
    pub fn cut_off(&self) -> Option<Arc<IfCutOff>> {
        self.cut_off.clone()
    }

    fn keys<'a>(&'a self, product: &'a BucketKeys) -> GateKeys<'a> {
        GateKeys {
            counter: &product.counter,
            pending: &product.pending,
            placing: &product.placing,
            claim: &self.claim_key,
            member: &self.member,
        }
    }
}

/// The gate's keys of one bucket of a product (one hash tag: `{p<id>}` for
/// the only bucket, `{p<id>.<b>…}` for bucket b of several; `key_layout`).
#[derive(Debug)]
struct BucketKeys {
    tag: String,
    counter: String,
    pending: String,
    placing: String,
}

impl BucketKeys {
    fn of(product_id: i64, bucket: u32, buckets: u32) -> Self {
        let tag = key_layout::gate_tag(product_id, bucket, buckets);
        Self {
            counter: key_layout::gate_stock_of(&tag),
            pending: key_layout::gate_pending_of(&tag),
            placing: key_layout::gate_placing_of(&tag),
            tag,
        }
    }

    /// This bucket's reconciliation to `stock` (its share, plus the units
    /// its live claims held when they were counted).
    fn reconcile<'a>(&'a self, stock: i64, view: &Reconcile<'a>) -> Reconcile<'a> {
        Reconcile {
            counter: &self.counter,
            pending: &self.pending,
            placing: &self.placing,
            stock,
            ..*view
        }
    }
}

/// Bucket `bucket`'s share of `total` units spread evenly over `buckets`
/// (the first `total mod buckets` buckets hold one more).
fn share(total: i64, bucket: u32, buckets: u32) -> i64 {
    let (total, bucket, buckets) = (total.max(0), i64::from(bucket), i64::from(buckets));
    total / buckets + i64::from(bucket < total % buckets)
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

/// Who is buying what, at the gate.
#[derive(Debug)]
struct Buyer<'a> {
    product_id: i64,
    user_id: i64,
    key: &'a IdempotencyKey,
    quantity: i64,
}

/// The refusal when no bucket had enough left: final, or for now while
/// `held` claims still hold units.
fn sold_out(held: i64) -> Result<Decision, GateError> {
    if held == 0 {
        trace::step("gate: not enough left");
        Err(GateError::SoldOut)
    } else {
        trace::step("gate: not enough left for now (other orders still being placed)");
        Err(GateError::SoldOutForNow)
    }
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
            () = self.gate.placing_here.all_placed.notified() => {}
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
            buckets: setup.buckets.max(1),
            alive_at_last_beat: Default::default(),
            placing_here: Default::default(),
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
    /// The wait also ends one poll before the request's deadline
    /// (`crate::deadline`), so that it answers rather than being cut off.
    pub fn placing_wait(&self) -> PlacingWait<'_> {
        let now = tokio::time::Instant::now();
        let mut until = now + PLACING_WAIT_MAX;
        if let Some(deadline) = crate::deadline::until() {
            until = until.min(deadline.checked_sub(PLACING_POLL).unwrap_or(now));
        }
        PlacingWait {
            gate: self,
            idle_until: now + PLACING_IDLE,
            until,
            last_held: None,
        }
    }
    // [/lesson]

    pub fn is_on(&self) -> bool {
        self.switches.is_on(Defense::StockGate)
    }

    /// The keys of one bucket of a product.
    fn bucket(&self, product_id: i64, bucket: u32) -> BucketKeys {
        BucketKeys::of(product_id, bucket, self.buckets)
    }

    /// The keys of every bucket of a product, bucket 0 first.
    fn every_bucket(&self, product_id: i64) -> Vec<BucketKeys> {
        (0..self.buckets)
            .map(|bucket| self.bucket(product_id, bucket))
            .collect()
    }

    /// The buckets in the order a user tries them: its own first (user id
    /// mod N, so its retries start where it did), then the next ones.
    fn buckets_for(&self, user_id: i64) -> impl Iterator<Item = u32> + use<> {
        let buckets = self.buckets;
        let first = u32::try_from(user_id.rem_euclid(i64::from(buckets))).unwrap_or(0);
        (0..buckets).map(move |step| (first + step) % buckets)
    }

    /// Whether the gate is on with its stock in several buckets (then the
    /// front door asks [`Self::short_in_every_bucket`]).
    pub fn is_bucketed(&self) -> bool {
        self.buckets > 1 && self.is_on()
    }

    /// The counter the front door compares a request's quantity with, in its
    /// one script, when the gate is on with one bucket (`flows/orders/front_door.rs`:
    /// the sold-out fast path).
    pub fn counter_slot(&self, product_id: i64) -> Option<String> {
        (self.buckets == 1 && self.is_on()).then(|| key_layout::gate_stock(product_id))
    }

    /// The claims still placing their order, which the front door asks about
    /// before it caches a "sold out" as final.
    pub fn placing_slot(&self, product_id: i64) -> Option<String> {
        (self.buckets == 1 && self.is_on()).then(|| key_layout::gate_placing(product_id))
    }

    // [lesson stock_gate::buckets]
    /// The front door with several buckets: every bucket is asked at once
    /// (one round trip of wall time; on a cluster, on several masters).
    /// Short only when every bucket is short; "for now" when some bucket's
    /// claims are still placing (their units may come back).
    pub async fn short_in_every_bucket(
        &self,
        product_id: i64,
        need: i64,
    ) -> Result<DoorAnswer, KvError> {
        let now_ms = now_ms();
        let buckets = self.every_bucket(product_id);
        let asks = buckets.iter().map(|bucket| {
            let door = Door {
                cached_key: None,
                counter_key: Some(&bucket.counter),
                placing_key: Some(&bucket.placing),
                in_flight_key: None,
                need,
                refusal: None,
                ttl: Duration::ZERO,
                now_ms,
            };
            async move { self.kv.cached_or_short(&door).await }
        });
        let mut held = 0;
        for answer in futures_util::future::try_join_all(asks).await? {
            match answer {
                DoorAnswer::Short => {}
                DoorAnswer::ShortWhilePlacing { held: more } => held += more,
                _ => return Ok(DoorAnswer::Open),
            }
        }
        Ok(match held {
            0 => DoorAnswer::Short,
            held => DoorAnswer::ShortWhilePlacing { held },
        })
    }
    // [/lesson]

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
        let buyer = Buyer {
            product_id,
            user_id,
            key,
            quantity,
        };
        match self.claim(&buyer).await {
            Ok(decision) => decision,
            Err(GateError::KeyStore(error)) => {
                tracing::warn!(error = %Causes(&error), "stock gate unavailable; straight to the database");
                trace::step("gate unavailable: straight to the database");
                Ok(Decision::Pass(None))
            }
            Err(other) => Err(other),
        }
    }

    /// The claim script, bucket by bucket from the buyer's own, loading the
    /// counters first if they are absent. With one bucket, one script.
    async fn claim(&self, buyer: &Buyer<'_>) -> Result<Result<Decision, GateError>, GateError> {
        let (mut loaded, mut wait) = (false, self.placing_wait());
        'ask: loop {
            let mut held = 0;
            for bucket in self.buckets_for(buyer.user_id) {
                let keys = self.bucket(buyer.product_id, bucket);
                let pass = self.pass(buyer, bucket, &keys);
                match self.claim_in(&pass, &keys).await? {
                    Claim::NotLoaded if loaded => break 'ask,
                    Claim::NotLoaded => {
                        if !self.load_one(buyer.product_id).await? {
                            break 'ask; // No such product: the database path answers 404.
                        }
                        loaded = true;
                        continue 'ask;
                    }
                    Claim::Short => {}
                    Claim::ShortWhilePlacing { held: more } => held += more,
                    Claim::Taken { left } => {
                        trace::step(format!("gate: unit taken ({left} left)"));
                        return Ok(Ok(self.taken(pass, &keys, buyer)));
                    }
                    Claim::Repeat => {
                        trace::step("gate: this key already holds a unit");
                        return Ok(Ok(Decision::Repeat));
                    }
                }
            }
            if held > 0 && wait.next(held).await {
                continue 'ask;
            }
            return Ok(sold_out(held));
        }
        Ok(Ok(Decision::Pass(None)))
    }
    // [/lesson]

    /// A unit taken: the pass is placing its order here, and owes its claim
    /// an end if its request is cut off.
    fn taken(&self, pass: GatePass, keys: &BucketKeys, buyer: &Buyer<'_>) -> Decision {
        self.placing_here.started(buyer.product_id);
        let cut_off = self.end_if_cut_off(&pass, keys, buyer);
        Decision::Pass(Some(GatePass {
            cut_off: Some(Arc::new(cut_off)),
            ..pass
        }))
    }

    /// The pass a buyer would hold in `bucket`.
    fn pass(&self, buyer: &Buyer<'_>, bucket: u32, keys: &BucketKeys) -> GatePass {
        let key = buyer.key.as_str();
        GatePass {
            product_id: buyer.product_id,
            bucket,
            claim_key: key_layout::gate_claim_of(&keys.tag, buyer.user_id, key),
            member: claim_member_of(&self.instance, buyer.quantity, buyer.user_id, key),
            quantity: buyer.quantity,
            cut_off: None,
        }
    }

    /// The end owed to a claim whose request is cut off before
    /// [`Self::finish`] (its deadline, or its client gone); without it the
    /// units stay held, and the key's retry is refused as a repeat, until the
    /// claim's lease ends. It runs once the request's work is over (a batch
    /// holds on to it): settled if the order committed, else given back.
    fn end_if_cut_off(&self, pass: &GatePass, keys: &BucketKeys, buyer: &Buyer<'_>) -> IfCutOff {
        let (db, kv, placing_here) = (self.db.clone(), self.kv.clone(), self.placing_here.clone());
        let (product_id, quantity, user_id) = (pass.product_id, pass.quantity, buyer.user_id);
        let key = buyer.key.as_str().to_string();
        let owned = [
            keys.counter.clone(),
            keys.pending.clone(),
            keys.placing.clone(),
            pass.claim_key.clone(),
            pass.member.clone(),
        ];
        IfCutOff::new(async move {
            let [counter, pending, placing, claim, member] = &owned;
            let keys = GateKeys {
                counter,
                pending,
                placing,
                claim,
                member,
            };
            let ordered = orders::find_by_key(db.pool(), user_id, &key).await;
            let ended = match ordered {
                Ok(Some(_)) => kv.settle_claim(&keys).await,
                Ok(None) => kv.release_claim(&keys, quantity).await.map(|_| ()),
                Err(_) => Ok(()), // Unknown: the claim's lease ends it.
            };
            if let Err(error) = ended {
                tracing::warn!(error = %Causes(&error), "a cut-off request's claim waits for its lease");
            }
            placing_here.ended(product_id);
        })
    }

    /// One bucket's claim script.
    async fn claim_in(&self, pass: &GatePass, bucket: &BucketKeys) -> Result<Claim, KvError> {
        self.kv
            .claim_and_decrement(&pass.keys(bucket), pass.quantity, self.claim_ttl, now_ms())
            .await
    }

    /// Gives the units of a pass back (its database step did not create an order).
    async fn give_back(&self, pass: GatePass) {
        let bucket = self.bucket(pass.product_id, pass.bucket);
        let result = self
            .kv
            .release_claim(&pass.keys(&bucket), pass.quantity)
            .await;
        if let Err(error) = result {
            tracing::error!(error = %Causes(&error), "stock gate give-back failed: the gate now holds less than the database");
        }
    }

    /// The end of a pass: settled when its order committed, else given back.
    pub async fn finish(&self, pass: GatePass, created_an_order: bool) {
        if let Some(cut_off) = &pass.cut_off {
            cut_off.disarm();
        }
        let product_id = pass.product_id;
        if created_an_order {
            self.settle(pass).await;
        } else {
            self.give_back(pass).await;
        }
        self.placing_here.ended(product_id);
    }

    /// The pass's order committed: its claim is no longer "placing", so a
    /// "sold out" given after it is final (its unit will not come back).
    async fn settle(&self, pass: GatePass) {
        let bucket = self.bucket(pass.product_id, pass.bucket);
        if let Err(error) = self.kv.settle_claim(&pass.keys(&bucket)).await {
            // Harmless: losers are told "sold out for now" until its lease ends.
            tracing::warn!(error = %Causes(&error), "stock gate: a committed claim stays 'placing'");
        }
    }

    /// The cached stock of a product (the sum of its buckets), if the gate
    /// has loaded it.
    pub async fn counter(&self, product_id: i64) -> Result<Option<i64>, KvError> {
        let mut total = None;
        for bucket in self.every_bucket(product_id) {
            let cached = self.kv.get(&bucket.counter).await?;
            if let Some(value) = cached.and_then(|value| value.parse::<i64>().ok()) {
                *total.get_or_insert(0) += value;
            }
        }
        Ok(total)
    }

    /// Units that returned to the database's stock (a closed order) return to
    /// the gate (to a bucket at random; the reconciliation evens them out).
    pub async fn restock(&self, product_id: i64, quantity: i64) -> Result<(), KvError> {
        let bucket = rand::rng().random_range(0..self.buckets);
        let counter = self.bucket(product_id, bucket).counter;
        self.kv.add_if_present(&counter, quantity).await
    }

    /// Loads one product's counters from the database if absent; false if no such product.
    async fn load_one(&self, product_id: i64) -> Result<bool, GateError> {
        let Some(product) = products::find(self.db.pool(), product_id).await? else {
            return Ok(false);
        };
        self.fill(product_id, product.stock, Load::OnlyMissing)
            .await?;
        Ok(true)
    }

    /// Sets a product's buckets to their shares of `stock` (only the absent
    /// ones with [`Load::OnlyMissing`]).
    async fn fill(&self, product_id: i64, stock: i64, mode: Load) -> Result<(), KvError> {
        for (index, bucket) in (0..).zip(self.every_bucket(product_id)) {
            let units = share(stock, index, self.buckets).to_string();
            match mode {
                Load::Overwrite => self.kv.set_forever(&bucket.counter, &units).await?,
                Load::OnlyMissing => {
                    self.kv
                        .set_if_absent(&bucket.counter, &units, COUNTER_TTL)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Loads the counters of every product from the database's stock (with
    /// `Overwrite`, less the claims in flight).
    pub async fn load(&self, mode: Load) -> Result<(), GateError> {
        let live = match mode {
            Load::Overwrite => self.live_instances().await,
            Load::OnlyMissing => None,
        };
        for product in products::list(self.db.pool()).await? {
            self.fill(product.id, product.stock, mode).await?;
            if mode == Load::Overwrite {
                self.reconcile_with(product.id, live.as_deref()).await?;
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

    // [lesson stock_gate::reconcile]
    /// [`Self::reconcile`] with the live instances already read (once per
    /// pass). Over the buckets: the units not held by live claims are spread
    /// evenly, and each bucket's script subtracts its own live claims from
    /// its share plus what they held when counted — so a claim made in
    /// between still counts, and drained buckets are refilled from the others.
    async fn reconcile_with(
        &self,
        product_id: i64,
        live: Option<&[String]>,
    ) -> Result<Option<i64>, GateError> {
        let (committed, stock) = self.committed_and_stock(product_id).await?;
        let Some(stock) = stock else {
            return Ok(None);
        };
        let view = Reconcile {
            counter: "",
            pending: "",
            placing: "",
            stock,
            committed: &committed,
            live,
            now_ms: now_ms(),
        };
        let buckets = self.every_bucket(product_id);
        // One bucket's script subtracts its live claims from the whole stock
        // itself: counting them first is only needed to share out the rest.
        let mut held = vec![0; buckets.len()];
        if self.buckets > 1 {
            for (held, bucket) in held.iter_mut().zip(&buckets) {
                *held = self.held_in(bucket, &view).await?;
            }
        }
        let free = stock - held.iter().sum::<i64>();
        let mut total = None;
        for ((index, bucket), held) in (0..).zip(&buckets).zip(held) {
            let job = bucket.reconcile(share(free, index, self.buckets) + held, &view);
            if let Some(value) = self.kv.reconcile_counter(&job).await? {
                *total.get_or_insert(0) += value;
            }
        }
        Ok(total)
    }
    // [/lesson]

    /// The units held by a bucket's live claims without an order.
    async fn held_in(&self, bucket: &BucketKeys, view: &Reconcile<'_>) -> Result<i64, KvError> {
        let members = self
            .kv
            .pending_members(&bucket.pending, view.now_ms)
            .await?;
        Ok(members
            .iter()
            .filter(|member| view.holder_is_alive(member) && !view.is_committed(member))
            .map(|member| claim_units(member))
            .sum())
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
                tracing::warn!(error = %Causes(&error), "instance registry unreadable: claims end with their lease");
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
        let live = self.live_instances().await;
        let view = Reconcile {
            counter: "",
            pending: "",
            placing: "",
            stock: stock.unwrap_or(0),
            committed: &committed,
            live: live.as_deref(),
            now_ms: now_ms(),
        };
        let mut in_flight = 0;
        for bucket in self.every_bucket(product_id) {
            in_flight += self.held_in(&bucket, &view).await?;
        }
        Ok(Some((counter, (view.stock - in_flight).max(0))))
    }
}
