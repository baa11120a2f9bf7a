//! Defense `idempotency_key` (幂等键 / 防重表) — the server remembers every
//! request by its key.
//!
//! **Without it** a retry after a timeout, a double click or a client's automatic
//! retry runs the business again: two orders for one intent.
//!
//! **How it prevents that** (docs/design.md §2.2 and §4; Stripe's design, and
//! the IETF Idempotency-Key draft where it is concrete):
//! 1. The first request with a key claims it with one atomic insert of the key
//!    row (`INSERT … ON CONFLICT DO NOTHING`: exactly one request wins, whatever
//!    the concurrency). An order claims it inside its own transaction, with the
//!    order, the stock and the stored response (one commit), after an in-flight
//!    mark in the key store (`SET NX` for the lease) has told any concurrent
//!    duplicate 409 at once; a payment, which calls the provider in between,
//!    commits the row `in_progress` with a *lease* first.
//! 2. Its outcome (201 created, 409 sold out) is stored with the key, status and
//!    body byte for byte, and kept for the retention period.
//! 3. A repeat gets the stored response with `Idempotent-Replayed: true`; a repeat
//!    while the first still runs gets 409 `request_in_progress` + `Retry-After`;
//!    the same key with another request body gets 422 `idempotency_key_reused`.
//! 4. Validation errors and server failures store nothing, so the client's retry
//!    can still succeed. A payment that died mid-way leaves a lease that expires;
//!    the next retry takes it over, and the state check and the unique index on
//!    the active payment make sure it finds the first charge, not a second one.
//!
//! The database table is the source of truth; the key store (Redis) only caches
//! completed responses as a fast path, so the defense holds when Redis is slow,
//! empty or evicts. Before the key store, each instance keeps the completed
//! answers it has seen in its own memory (`src/answer_cache.rs`, docs/design.md §2.5).
//!
//! Shown by `tests/api/defenses.rs`: `the_idempotency_key_alone_stops_concurrent_duplicates`
//! (on) and `without_idempotency_key_and_unique_index_duplicates_appear` (off);
//! the contract by `tests/api/idempotency.rs`.

use std::sync::Arc;

use actix_web::http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::answer_cache::{Answer, AnswerCache};
use crate::causes::Causes;
use crate::configuration::IdempotencySettings;
use crate::deadline::IfCutOff;
use crate::domain::IdempotencyKey;
use crate::metrics;
use crate::store::idempotency_keys::{self, Completion, KeyId, KeyRow, NewKey};
use crate::store::{Db, KeyStore, StoreError, Tx, commit, key_layout, millis, now_ms, rollback};
use crate::switches::{Defense, SwitchBoard};
use crate::trace;

/// How often `admit` re-reads a row that changed under it before giving up.
const ADMIT_ATTEMPTS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("this Idempotency-Key was already used with a different request")]
    Reused,
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    InProgress,
    #[error("the answer stored with this key is unreadable: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The defense, built once at start-up.
#[derive(Debug)]
pub struct IdempotencyKeys {
    db: Db,
    kv: Arc<dyn KeyStore>,
    /// Completed answers in this instance's memory, before the key store.
    local: AnswerCache<StoredResponse>,
    switches: Arc<SwitchBoard>,
    settings: IdempotencySettings,
}

/// What the client sent, reduced to what the key protects.
#[derive(Debug, Clone)]
pub struct KeyedRequest<'a> {
    pub user_id: i64,
    pub key: &'a IdempotencyKey,
    /// SHA-256 of method, path and canonical JSON body.
    pub fingerprint: String,
}

impl KeyedRequest<'_> {
    fn id(&self) -> KeyId<'_> {
        KeyId {
            user_id: self.user_id,
            key: self.key.as_str(),
        }
    }
}

/// Fingerprint of a request: the same intent always gives the same value,
/// whatever the order of the JSON fields or the whitespace.
pub fn fingerprint(method: &str, path: &str, body: &serde_json::Value) -> String {
    // serde_json's map is ordered by key, so re-serialising is canonical.
    let canonical_body = body.to_string();
    let digest = Sha256::new()
        .chain_update(method)
        .chain_update(" ")
        .chain_update(path)
        .chain_update("\n")
        .chain_update(canonical_body)
        .finalize();
    hex::encode(digest)
}

/// A response as stored with its key and replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    #[serde(with = "status_code")]
    pub status: StatusCode,
    pub content_type: String,
    pub body: String,
}

impl Answer for StoredResponse {
    fn bytes(&self) -> usize {
        self.content_type.len() + self.body.len()
    }
}

/// The answer of the business step, before it is stored and sent.
#[derive(Debug, Clone)]
pub struct Reply {
    pub stored: StoredResponse,
    /// The defense that produced this answer, if one did (e.g. `unique_index`).
    pub defense: Option<Defense>,
}

impl Reply {
    /// `value` as a JSON answer.
    pub fn json(
        status: StatusCode,
        value: &impl Serialize,
        defense: Option<Defense>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            stored: StoredResponse {
                status,
                content_type: "application/json".to_string(),
                body: serde_json::to_string(value)?,
            },
            defense,
        })
    }
}

/// What `admit` decided.
#[derive(Debug)]
pub enum Admission {
    /// Run the business; the lease says whose outcome is recorded where.
    Run(Lease),
    /// The key already has an outcome: send it again.
    Replay(StoredResponse),
}

/// The right to run the business for one key.
#[derive(Debug)]
pub enum Lease {
    /// The key row is ours (until the lease expires).
    Held {
        user_id: i64,
        key: String,
        owner: String,
        fingerprint: String,
    },
    /// The defense is switched off: nothing is recorded.
    Unguarded,
}

/// What the key row says about a request that did not insert it.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Past its retention: delete it and try again.
    Expired,
    Reused,
    Replay(StoredResponse),
    InProgress,
    /// The first request's lease ran out (it died or hangs): take the key over.
    TakeOver {
        expired_lease: i64,
    },
}

// [lesson idempotency_key::decide]
/// The rules of the key table, as a pure function of the row and the clock.
fn decide(row: &KeyRow, fingerprint: &str, now: i64) -> Result<Verdict, KeyError> {
    if row.expires_at <= now {
        return Ok(Verdict::Expired);
    }
    if row.fingerprint != fingerprint {
        return Ok(Verdict::Reused);
    }
    if let Some(stored) = completed_response(row)? {
        return Ok(Verdict::Replay(stored));
    }
    if row.lease_expires_at > now {
        return Ok(Verdict::InProgress);
    }
    Ok(Verdict::TakeOver {
        expired_lease: row.lease_expires_at,
    })
}
// [/lesson]

/// The error for a verdict that refuses the request (another body, or the
/// first request still running).
fn refusal(verdict: Verdict) -> KeyError {
    if verdict == Verdict::Reused {
        trace::step("key row: another request body");
        return KeyError::Reused;
    }
    trace::step("key row: the first request still runs");
    metrics::count(metrics::IN_FLIGHT_CONFLICTS);
    KeyError::InProgress
}

fn completed_response(row: &KeyRow) -> Result<Option<StoredResponse>, KeyError> {
    if row.state != idempotency_keys::COMPLETED {
        return Ok(None);
    }
    let (Some(status), Some(content_type), Some(body)) = (
        row.response_status,
        row.content_type.clone(),
        row.response_body.clone(),
    ) else {
        return Err(KeyError::Corrupt(
            "a completed key without its answer".into(),
        ));
    };
    let status = u16::try_from(status)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| KeyError::Corrupt(format!("stored status {status}")))?;
    Ok(Some(StoredResponse {
        status,
        content_type,
        body,
    }))
}

impl IdempotencyKeys {
    pub fn new(
        db: Db,
        kv: Arc<dyn KeyStore>,
        switches: Arc<SwitchBoard>,
        settings: IdempotencySettings,
    ) -> Self {
        Self {
            db,
            kv,
            local: AnswerCache::new(settings.local_cache_mb),
            switches,
            settings,
        }
    }

    fn is_on(&self) -> bool {
        self.switches.is_on(Defense::IdempotencyKey)
    }

    /// Step one of every keyed request: decide whether the business may run
    /// (the cache first, then the key table).
    pub async fn admit(&self, request: &KeyedRequest<'_>) -> Result<Admission, KeyError> {
        match self.cached_answer(request).await? {
            Some(stored) => Ok(Admission::Replay(stored)),
            None => self.admit_in_database(request).await,
        }
    }

    /// Where the front door finds this request's cached answer, when the
    /// defense is on (`flows/orders/front_door.rs`).
    pub fn cache_slot(&self, request: &KeyedRequest<'_>) -> Option<String> {
        self.is_on()
            .then(|| cache_key(request.user_id, request.key.as_str()))
    }

    /// Where the front door finds this request's in-flight mark, when the
    /// defense is on: while it is there the key's first request still runs.
    pub fn in_flight_slot(&self, request: &KeyedRequest<'_>) -> Option<String> {
        self.is_on()
            .then(|| in_flight_key(request.user_id, request.key.as_str()))
    }

    /// `stored` as the cache keeps it for this request (fingerprint and answer).
    pub fn cached_form(
        &self,
        request: &KeyedRequest<'_>,
        stored: &StoredResponse,
    ) -> Option<String> {
        cached_json(&request.fingerprint, stored, self.expiry_from_now())
    }

    /// A cached answer the front door found: the replay, `None` when it is
    /// unreadable (the database decides), or 422 for another request body.
    /// A replay is kept in this instance's memory for the next repeat.
    pub fn replay_cached(
        &self,
        request: &KeyedRequest<'_>,
        json: &str,
    ) -> Result<Option<StoredResponse>, KeyError> {
        let Ok(cached) = serde_json::from_str::<CachedResponse>(json) else {
            tracing::warn!("unreadable cached answer; ignored");
            return Ok(None);
        };
        if cached.fingerprint != request.fingerprint {
            return Err(KeyError::Reused);
        }
        trace::step("key cache: hit, replay");
        metrics::count(metrics::REPLAYS);
        // An answer cached before expiries were written with it is not kept.
        if let Some(expires_at_ms) = cached.expires_at_ms {
            let id = request.id();
            let response = Arc::new(cached.response.clone());
            self.local.remember(
                id.user_id,
                id.key,
                &cached.fingerprint,
                response,
                expires_at_ms,
            );
        }
        Ok(Some(cached.response))
    }

    /// The first place a repeat is answered from: this instance's memory
    /// (`src/answer_cache.rs`). `None` when the answer is not there (or the
    /// defense is off); 422 for another request body.
    pub fn local_answer(
        &self,
        request: &KeyedRequest<'_>,
    ) -> Result<Option<StoredResponse>, KeyError> {
        if !self.is_on() {
            return Ok(None);
        }
        let id = request.id();
        let Some(kept) = self.local.get(id.user_id, id.key, now_ms()) else {
            return Ok(None);
        };
        if !kept.answers(&request.fingerprint) {
            return Err(KeyError::Reused);
        }
        trace::step("local answer cache: hit, replay");
        metrics::count(metrics::REPLAYS);
        Ok(Some(StoredResponse::clone(&kept.response)))
    }

    /// A final answer the key store stored for this request in the front
    /// door's own step (a refusal): kept here too.
    pub fn remember_locally(&self, request: &KeyedRequest<'_>, stored: Arc<StoredResponse>) {
        let id = request.id();
        let expires_at_ms = self.expiry_from_now();
        self.local.remember(
            id.user_id,
            id.key,
            &request.fingerprint,
            stored,
            expires_at_ms,
        );
    }

    /// Forgets every answer kept in memory here (a reset of the sale).
    pub fn forget_local_answers(&self) {
        self.local.forget_all();
    }

    /// Applies the switch board's `sale.reset_at` (`flows/shared.rs`).
    pub fn apply_reset(&self, reset_at: i64) -> bool {
        self.local.apply_reset(reset_at)
    }

    /// When an answer stored now is forgotten (epoch ms).
    fn expiry_from_now(&self) -> i64 {
        now_ms().saturating_add(millis(self.settings.retention))
    }

    /// The fast path: the answer of a completed key, from the key store (Redis).
    async fn cached_answer(
        &self,
        request: &KeyedRequest<'_>,
    ) -> Result<Option<StoredResponse>, KeyError> {
        if let Some(stored) = self.local_answer(request)? {
            return Ok(Some(stored));
        }
        let Some(slot) = self.cache_slot(request) else {
            return Ok(None);
        };
        match self.kv.get(&slot).await {
            Ok(Some(json)) => self.replay_cached(request, &json),
            Ok(None) => Ok(None),
            Err(error) => {
                tracing::warn!(error = %Causes(&error), "idempotency cache unavailable; using the database");
                Ok(None)
            }
        }
    }

    // [lesson idempotency_key::admit]
    /// The source of truth: the key row decides which request runs.
    #[tracing::instrument(skip_all, fields(user_id = request.user_id, key = request.key.as_str()))]
    async fn admit_in_database(&self, request: &KeyedRequest<'_>) -> Result<Admission, KeyError> {
        if !self.is_on() {
            trace::step("idempotency_key off: nothing recorded");
            return Ok(Admission::Run(Lease::Unguarded));
        }
        let owner = uuid::Uuid::new_v4().to_string();
        for _ in 0..ADMIT_ATTEMPTS {
            let now = now_ms();
            if self.claim(request, &owner, now).await? {
                trace::step("key claimed");
                return Ok(Admission::Run(held(request, owner)));
            }
            let Some(row) = idempotency_keys::find(self.db.pool(), request.id()).await? else {
                continue; // removed between our insert and our read: try again
            };
            match decide(&row, &request.fingerprint, now)? {
                Verdict::Expired => {
                    idempotency_keys::delete_if_expired(self.db.pool(), request.id(), now).await?
                }
                Verdict::Replay(stored) => {
                    let stored = self
                        .replay_from_database(request, stored, row.expires_at)
                        .await;
                    return Ok(Admission::Replay(stored));
                }
                Verdict::TakeOver { expired_lease } => {
                    if self.take_over(request, &owner, expired_lease, now).await? {
                        return Ok(Admission::Run(held(request, owner)));
                    }
                }
                refused => return Err(refusal(refused)),
            }
        }
        Err(KeyError::InProgress)
    }
    // [/lesson]

    /// Inserts the key row in progress; true when this request won it.
    async fn claim(
        &self,
        request: &KeyedRequest<'_>,
        owner: &str,
        now: i64,
    ) -> Result<bool, KeyError> {
        let new = NewKey {
            id: request.id(),
            fingerprint: &request.fingerprint,
            owner,
            now_ms: now,
            lease_until_ms: now.saturating_add(millis(self.settings.lease)),
            expires_at_ms: now.saturating_add(millis(self.settings.retention)),
        };
        Ok(idempotency_keys::insert_in_progress(self.db.pool(), &new).await?)
    }

    async fn take_over(
        &self,
        request: &KeyedRequest<'_>,
        owner: &str,
        expired_lease: i64,
        now: i64,
    ) -> Result<bool, KeyError> {
        let lease_until = now.saturating_add(millis(self.settings.lease));
        let taken = idempotency_keys::take_over(
            self.db.pool(),
            request.id(),
            owner,
            expired_lease,
            lease_until,
        )
        .await?;
        if taken {
            trace::step("lease expired: key taken over");
            tracing::warn!("idempotency key lease expired; taken over by a retry");
        }
        Ok(taken)
    }

    /// A completed row's answer, cached again for the next repeat until the
    /// row itself expires (`expires_at_ms`).
    async fn replay_from_database(
        &self,
        request: &KeyedRequest<'_>,
        stored: StoredResponse,
        expires_at_ms: i64,
    ) -> StoredResponse {
        let id = request.id();
        self.cache_response(
            id.user_id,
            id.key,
            &request.fingerprint,
            &stored,
            expires_at_ms,
        )
        .await;
        trace::step("key row: completed, replay");
        metrics::count(metrics::REPLAYS);
        stored
    }

    /// Stores the outcome with the key (when the lease is ours) and caches it.
    pub async fn complete(&self, lease: &Lease, stored: &StoredResponse) -> Result<(), KeyError> {
        let Lease::Held {
            user_id,
            key,
            owner,
            fingerprint,
        } = lease
        else {
            return Ok(());
        };
        let id = KeyId {
            user_id: *user_id,
            key,
        };
        let completion = Completion {
            status: stored.status.as_u16(),
            content_type: &stored.content_type,
            body: &stored.body,
            expires_at_ms: self.expiry_from_now(),
        };
        if idempotency_keys::complete(self.db.pool(), id, owner, &completion).await? {
            trace::step("answer stored with the key");
            let expires_at_ms = completion.expires_at_ms;
            self.cache_response(*user_id, key, fingerprint, stored, expires_at_ms)
                .await;
        } else {
            tracing::warn!("idempotency key was taken over before this request finished");
        }
        Ok(())
    }

    /// Gives the key back so that a retry runs the business (nothing was stored).
    pub async fn release(&self, lease: &Lease) {
        let Lease::Held {
            user_id,
            key,
            owner,
            ..
        } = lease
        else {
            return;
        };
        let id = KeyId {
            user_id: *user_id,
            key,
        };
        trace::step("key released: nothing stored, a retry runs again");
        if let Err(error) = idempotency_keys::release(self.db.pool(), id, owner).await {
            // The lease still expires by itself; a retry then takes the key over.
            tracing::error!(error = %Causes(&error), "could not release an idempotency key");
        }
    }

    /// Removes keys past their retention, and in-progress keys whose lease ran
    /// out (their request died; a retry finds a committed order through
    /// `unique_index`). Runs periodically; safe on several instances at once.
    pub async fn sweep_expired(&self) -> Result<u64, StoreError> {
        idempotency_keys::sweep_expired(self.db.pool(), now_ms()).await
    }

    /// Caches a stored answer, here and in the key store, until its key row
    /// expires (`expires_at_ms`).
    async fn cache_response(
        &self,
        user_id: i64,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
        expires_at_ms: i64,
    ) {
        let Some(ttl) = u64::try_from(expires_at_ms.saturating_sub(now_ms()))
            .ok()
            .filter(|left| *left > 0)
            .map(std::time::Duration::from_millis)
        else {
            return; // expired already
        };
        let shared = Arc::new(response.clone());
        self.local
            .remember(user_id, key, fingerprint, shared, expires_at_ms);
        let Some(json) = cached_json(fingerprint, response, expires_at_ms) else {
            return;
        };
        if let Err(error) = self.kv.set(&cache_key(user_id, key), &json, ttl).await {
            tracing::warn!(error = %Causes(&error), "could not cache an idempotent response");
        }
    }
}

// ---------------------------------------------------------------------------
// Orders: the key row in the business's own transaction (one commit).
//
// Placing an order touches only our database, so the key row, the order, the
// stock and the stored answer can commit together: a crash leaves either all
// of them or none, and there is no lease to recover. (Paying calls the
// provider, which no transaction of ours can include; it keeps the lease
// above: Stripe's "atomic phases".) A concurrent duplicate is told 409 at
// once by an in-flight mark in the key store instead of waiting on the row;
// the mark only shapes that answer, the row keeps the business once.
// ---------------------------------------------------------------------------

/// A request's right to run, marked in the key store while it runs.
#[derive(Debug, Clone)]
pub struct InFlight {
    user_id: i64,
    key: String,
    fingerprint: String,
    owner: String,
    /// The mark was set (the key store may be down: then the row alone decides).
    marked: bool,
    /// The defense is on: the key row is written.
    guarded: bool,
    /// Removes the mark if the request is cut off before `cache_and_unmark` (shared
    /// with a group-commit batch's copy: then removed after the batch ends).
    cut_off: Option<Arc<IfCutOff>>,
}

/// What `enter` decided.
#[derive(Debug)]
pub enum Entry {
    Run(InFlight),
    Replay(StoredResponse),
}

/// The key row inside the business transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyClaim {
    /// The row is ours until the transaction ends.
    Won,
    /// Another request committed this key first: roll back and answer as it did.
    Lost,
}

impl InFlight {
    fn id(&self) -> KeyId<'_> {
        KeyId {
            user_id: self.user_id,
            key: &self.key,
        }
    }

    /// The defense was on for this request: its key row is written.
    pub fn is_guarded(&self) -> bool {
        self.guarded
    }
}

impl IdempotencyKeys {
    // [lesson idempotency_key::enter]
    /// Before the business transaction: mark the key in flight, so that a
    /// concurrent duplicate is answered 409 at once (its committed answer, if
    /// there is one by now). The committed row is not read here: the front
    /// door already replayed a cached answer, and for the rare key whose answer
    /// is not cached, the claim in the order's transaction (or the gate's
    /// repeat) finds the row and replays or refuses it — one database read
    /// less for every new order.
    pub async fn enter(&self, request: &KeyedRequest<'_>) -> Result<Entry, KeyError> {
        let mut flight = InFlight {
            user_id: request.user_id,
            key: request.key.as_str().to_string(),
            fingerprint: request.fingerprint.clone(),
            owner: uuid::Uuid::new_v4().to_string(),
            marked: false,
            guarded: self.is_on(),
            cut_off: None,
        };
        if !flight.guarded {
            trace::step("idempotency_key off: nothing recorded");
            return Ok(Entry::Run(flight));
        }
        match self.mark(&flight).await {
            Some(false) => {
                return self
                    .committed_answer_or_in_progress(request)
                    .await
                    .map(Entry::Replay);
            }
            Some(true) => {
                flight.marked = true;
                flight.cut_off = Some(Arc::new(self.unmark_if_cut_off(&flight)));
            }
            None => {}
        }
        Ok(Entry::Run(flight))
    }
    // [/lesson]

    /// Sets the in-flight mark: `Some(false)` when another request holds it,
    /// `None` when the key store cannot say (the row then decides alone).
    async fn mark(&self, flight: &InFlight) -> Option<bool> {
        let mark = in_flight_key(flight.user_id, &flight.key);
        match self
            .kv
            .set_if_absent(&mark, &flight.owner, self.settings.lease)
            .await
        {
            Ok(set) => Some(set),
            Err(error) => {
                tracing::warn!(error = %Causes(&error), "in-flight mark unavailable; the key row decides alone");
                None
            }
        }
    }

    /// The mark's removal, owed if the request is cut off before `cache_and_unmark`.
    fn unmark_if_cut_off(&self, flight: &InFlight) -> IfCutOff {
        let (kv, owner) = (self.kv.clone(), flight.owner.clone());
        let mark = in_flight_key(flight.user_id, &flight.key);
        IfCutOff::new(async move {
            let _ = kv.compare_and_delete(&mark, &owner).await;
        })
    }

    async fn unmark(&self, flight: &InFlight) {
        if let Some(cut_off) = &flight.cut_off {
            cut_off.disarm();
        }
        if !flight.marked {
            return;
        }
        let mark = in_flight_key(flight.user_id, &flight.key);
        if let Err(error) = self.kv.compare_and_delete(&mark, &flight.owner).await {
            // It expires with the lease.
            tracing::warn!(error = %Causes(&error), "could not remove an in-flight mark");
        }
    }

    /// The committed row's say, when there is a row that answers: `Ok(None)`
    /// means "run" (no row, or one past its retention or lease, which the
    /// claim replaces).
    pub async fn committed_answer(
        &self,
        request: &KeyedRequest<'_>,
    ) -> Result<Option<StoredResponse>, KeyError> {
        let Some(row) = idempotency_keys::find(self.db.pool(), request.id()).await? else {
            return Ok(None);
        };
        match decide(&row, &request.fingerprint, now_ms())? {
            Verdict::Expired | Verdict::TakeOver { .. } => Ok(None),
            Verdict::Replay(stored) => Ok(Some(
                self.replay_from_database(request, stored, row.expires_at)
                    .await,
            )),
            refused => Err(refusal(refused)),
        }
    }

    /// Another request holds or held this key: its committed answer, or 409.
    pub async fn committed_answer_or_in_progress(
        &self,
        request: &KeyedRequest<'_>,
    ) -> Result<StoredResponse, KeyError> {
        match self.committed_answer(request).await? {
            Some(stored) => Ok(stored),
            None => Err(refusal(Verdict::InProgress)),
        }
    }

    // [lesson idempotency_key::claim_in]
    /// The business transaction's first statement: the key row, in progress.
    /// Of concurrent requests exactly one inserts; a second waits for the
    /// first's commit and then finds the row: `KeyClaim::Lost`. A row found
    /// stale (past its retention, or a lease whose request died) is replaced.
    /// Insert first, look after: deleting a row that is not there first would,
    /// in InnoDB at REPEATABLE READ, lock the gap where it would go, and two
    /// requests holding that gap then deadlock on their inserts.
    pub async fn claim_in(&self, tx: &mut Tx, flight: &InFlight) -> Result<KeyClaim, KeyError> {
        if !flight.guarded {
            return Ok(KeyClaim::Won);
        }
        let now = now_ms();
        let new = self.new_key(flight, now);
        if idempotency_keys::insert_in_progress(&mut **tx, &new).await? {
            trace::step("key claimed (in the order's transaction)");
            return Ok(KeyClaim::Won);
        }
        let found = idempotency_keys::find(&mut **tx, flight.id()).await?;
        if found.is_none_or(|row| row.is_stale(now)) {
            idempotency_keys::delete_stale(&mut **tx, flight.id(), now).await?;
            if idempotency_keys::insert_in_progress(&mut **tx, &new).await? {
                trace::step("stale key replaced (in the order's transaction)");
                return Ok(KeyClaim::Won);
            }
        }
        trace::step("key committed by another request meanwhile");
        Ok(KeyClaim::Lost)
    }
    // [/lesson]

    /// Gives the claim back inside the transaction (its order turned out to
    /// exist already): the transaction commits without an in-progress row, and
    /// the answer is recorded afterwards, on its own.
    pub async fn unclaim_in(&self, tx: &mut Tx, flight: &InFlight) -> Result<(), KeyError> {
        if flight.guarded {
            idempotency_keys::release(&mut **tx, flight.id(), &flight.owner).await?;
        }
        Ok(())
    }

    /// The same transaction's last statement before the commit: the answer.
    pub async fn complete_in(
        &self,
        tx: &mut Tx,
        flight: &InFlight,
        stored: &StoredResponse,
    ) -> Result<(), KeyError> {
        if !flight.guarded {
            return Ok(());
        }
        let completion = Completion {
            status: stored.status.as_u16(),
            content_type: &stored.content_type,
            body: &stored.body,
            expires_at_ms: now_ms().saturating_add(millis(self.settings.retention)),
        };
        idempotency_keys::complete(&mut **tx, flight.id(), &flight.owner, &completion).await?;
        trace::step("answer stored with the key (same transaction)");
        Ok(())
    }

    /// [`claim_in`](Self::claim_in) for a whole batch (group commit): one
    /// statement claims every new key; a key that was already there (stale,
    /// committed meanwhile, or twice in the batch) is then claimed the
    /// one-by-one way, which decides it exactly.
    pub async fn claim_many_in(
        &self,
        tx: &mut Tx,
        flights: &[&InFlight],
    ) -> Result<Vec<KeyClaim>, KeyError> {
        let now = now_ms();
        let news: Vec<NewKey<'_>> = flights
            .iter()
            .filter(|flight| flight.guarded)
            .map(|flight| self.new_key(flight, now))
            .collect();
        let won = idempotency_keys::insert_in_progress_many(&mut **tx, &news).await?;
        let mut claims = Vec::with_capacity(flights.len());
        for flight in flights {
            let claim = if !flight.guarded || won.contains(&flight.owner) {
                KeyClaim::Won
            } else {
                self.claim_in(tx, flight).await?
            };
            claims.push(claim);
        }
        trace::step("keys claimed for the whole batch (one statement)");
        Ok(claims)
    }

    fn new_key<'a>(&self, flight: &'a InFlight, now: i64) -> NewKey<'a> {
        NewKey {
            id: flight.id(),
            fingerprint: &flight.fingerprint,
            owner: &flight.owner,
            now_ms: now,
            lease_until_ms: now.saturating_add(millis(self.settings.lease)),
            expires_at_ms: now.saturating_add(millis(self.settings.retention)),
        }
    }

    /// [`complete_in`](Self::complete_in) for a whole batch: one statement.
    pub async fn complete_many_in(
        &self,
        tx: &mut Tx,
        answers: &[(&InFlight, &StoredResponse)],
    ) -> Result<(), KeyError> {
        let expires_at_ms = now_ms().saturating_add(millis(self.settings.retention));
        let rows: Vec<_> = answers
            .iter()
            .filter(|(flight, _)| flight.guarded)
            .map(|(flight, stored)| {
                let completion = Completion {
                    status: stored.status.as_u16(),
                    content_type: &stored.content_type,
                    body: &stored.body,
                    expires_at_ms,
                };
                (flight.id(), flight.owner.as_str(), completion)
            })
            .collect();
        idempotency_keys::complete_many(&mut **tx, &rows).await?;
        trace::step("answers stored with their keys (one statement for the batch)");
        Ok(())
    }

    /// An outcome decided outside an order transaction (sold out on reading
    /// the stock, a duplicate the unique index caught): its key row and answer
    /// in a transaction of their own. `None`: ours is recorded, send it;
    /// `Some`: another request committed this key first, replay its answer.
    pub async fn record_in_own_transaction(
        &self,
        request: &KeyedRequest<'_>,
        flight: &InFlight,
        stored: &StoredResponse,
    ) -> Result<Option<StoredResponse>, KeyError> {
        if !flight.guarded {
            return Ok(None);
        }
        let mut tx = self.db.begin().await?;
        if self.claim_in(&mut tx, flight).await? == KeyClaim::Lost {
            rollback(tx).await?;
            return self
                .committed_answer_or_in_progress(request)
                .await
                .map(Some);
        }
        self.complete_in(&mut tx, flight, stored).await?;
        commit(tx).await?;
        Ok(None)
    }

    /// After the commit (or a failure that stored nothing): the answer goes
    /// to the cache, the mark is removed.
    pub async fn cache_and_unmark(&self, flight: &InFlight, answer: Option<&StoredResponse>) {
        if let Some(stored) = answer
            && flight.guarded
        {
            let expires_at_ms = self.expiry_from_now();
            self.cache_response(
                flight.user_id,
                &flight.key,
                &flight.fingerprint,
                stored,
                expires_at_ms,
            )
            .await;
        }
        self.unmark(flight).await;
    }
}

fn in_flight_key(user_id: i64, key: &str) -> String {
    key_layout::idempotency_in_flight(user_id, key)
}

fn held(request: &KeyedRequest<'_>, owner: String) -> Lease {
    Lease::Held {
        user_id: request.user_id,
        key: request.key.as_str().to_string(),
        owner,
        fingerprint: request.fingerprint.clone(),
    }
}

/// The key-store fast path: a completed response cached under the key, as
/// it is read back.
#[derive(Debug, Deserialize)]
struct CachedResponse {
    fingerprint: String,
    response: StoredResponse,
    /// When the key store forgets it (epoch ms), for the local answer cache;
    /// absent in answers cached before it was written.
    #[serde(default)]
    expires_at_ms: Option<i64>,
}

/// [`CachedResponse`] as it is written, borrowing what it holds.
#[derive(Serialize)]
struct CachedResponseRef<'a> {
    fingerprint: &'a str,
    response: &'a StoredResponse,
    expires_at_ms: i64,
}

/// An answer as the cache keeps it: with the fingerprint of its request.
fn cached_json(fingerprint: &str, response: &StoredResponse, expires_at_ms: i64) -> Option<String> {
    let cached = CachedResponseRef {
        fingerprint,
        response,
        expires_at_ms,
    };
    serde_json::to_string(&cached)
        .inspect_err(|error| tracing::error!(error = %Causes(error), "could not serialise an answer for the cache"))
        .ok()
}

fn cache_key(user_id: i64, key: &str) -> String {
    key_layout::idempotency_cache(user_id, key)
}

/// A status code as its number in the cache's JSON.
mod status_code {
    use actix_web::http::StatusCode;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(status: &StatusCode, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(status.as_u16())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<StatusCode, D::Error> {
        let code = u16::deserialize(deserializer)?;
        StatusCode::from_u16(code).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).expect("test JSON")
    }

    #[test]
    fn fingerprint_ignores_field_order_and_whitespace() {
        let a = json(r#"{"product_id":1,"quantity":2}"#);
        let b = json(r#"{ "quantity": 2, "product_id": 1 }"#);
        assert_eq!(
            fingerprint("POST", "/api/orders", &a),
            fingerprint("POST", "/api/orders", &b)
        );
    }

    #[test]
    fn fingerprint_tells_bodies_and_paths_apart() {
        let a = json(r#"{"product_id":1,"quantity":2}"#);
        let b = json(r#"{"product_id":1,"quantity":3}"#);
        assert_ne!(
            fingerprint("POST", "/api/orders", &a),
            fingerprint("POST", "/api/orders", &b)
        );
        assert_ne!(
            fingerprint("POST", "/api/orders", &a),
            fingerprint("POST", "/api/other", &a)
        );
    }

    fn row(state: &str, lease_expires_at: i64, status: Option<i64>) -> KeyRow {
        KeyRow {
            fingerprint: "fp".into(),
            state: state.into(),
            lease_expires_at,
            response_status: status,
            content_type: status.map(|_| "application/json".into()),
            response_body: status.map(|_| "{}".into()),
            expires_at: 1_000,
        }
    }

    #[test]
    fn the_key_row_decides_every_repeat() {
        let running = row("in_progress", 500, None);
        assert_eq!(decide(&running, "fp", 100).ok(), Some(Verdict::InProgress));
        assert_eq!(
            decide(&running, "fp", 600).ok(),
            Some(Verdict::TakeOver { expired_lease: 500 })
        );
        assert_eq!(decide(&running, "other", 100).ok(), Some(Verdict::Reused));
        assert_eq!(decide(&running, "fp", 1_000).ok(), Some(Verdict::Expired));
        let done = row("completed", 500, Some(201));
        assert!(matches!(
            decide(&done, "fp", 100),
            Ok(Verdict::Replay(StoredResponse {
                status: StatusCode::CREATED,
                ..
            }))
        ));
    }

    #[test]
    fn a_stored_status_that_is_no_http_status_is_an_error_not_a_200() {
        let corrupt = row("completed", 500, Some(1_234));
        assert!(matches!(
            decide(&corrupt, "fp", 100),
            Err(KeyError::Corrupt(_))
        ));
    }
}
