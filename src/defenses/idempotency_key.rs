//! Defense `idempotency_key` — the server remembers every request by its key.
//!
//! **Without it** a retry after a timeout, a double click or a client's automatic
//! retry runs the business again: two orders for one intent.
//!
//! **How it prevents that** (IETF Idempotency-Key draft, as Stripe does it):
//! 1. The first request with a key inserts a row `in_progress` with a *lease*
//!    (`INSERT … ON CONFLICT DO NOTHING`: exactly one request wins, whatever the
//!    concurrency) and runs the business.
//! 2. Its outcome (201 created, 409 sold out) is stored with the key, status and
//!    body byte for byte, and kept for the retention period.
//! 3. A repeat gets the stored response with `Idempotent-Replayed: true`; a repeat
//!    while the first still runs gets 409 `request_in_progress` + `Retry-After`;
//!    the same key with another request body gets 422 `idempotency_key_reused`.
//! 4. Validation errors and server failures store nothing (the key is released),
//!    so the client's retry can still succeed. A request that died mid-way leaves
//!    a lease that expires; the next retry takes it over, and the `unique_index`
//!    defense makes sure an order it had already committed is found, not doubled.
//!
//! The database table is the source of truth; Redis only caches completed
//! responses as a fast path, so the defense holds when Redis is slow or empty.
//!
//! Shown by `tests/api/idempotency.rs` and, switched off, `tests/api/defenses.rs`.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Defense;
use crate::domain::IdempotencyKey;
use crate::error::{ApiError, DEFENSE_HEADER_LOWER, PROBLEM_CONTENT_TYPE, problem_body};
use crate::metrics;
use crate::startup::AppState;
use crate::store::{Db, now_ms};

const COMPLETED: &str = "completed";
/// How often `admit` re-reads a row that changed under it before giving up.
const ADMIT_ATTEMPTS: usize = 4;

/// What the client sent, reduced to what the key protects.
#[derive(Debug, Clone)]
pub struct KeyedRequest<'a> {
    pub user_id: i64,
    pub key: &'a IdempotencyKey,
    /// SHA-256 of method, path and canonical JSON body.
    pub fingerprint: String,
}

/// Fingerprint of a request: the same intent always gives the same value,
/// whatever the order of the JSON fields or the whitespace.
pub fn fingerprint(method: &str, path: &str, body: &serde_json::Value) -> String {
    // serde_json's map is ordered by key, so re-serialising is canonical.
    let canonical_body = body.to_string();
    let digest = Sha256::digest(format!("{method} {path}\n{canonical_body}"));
    hex::encode(digest)
}

/// A response as stored with its key and replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// The answer of the business step, before it is stored and sent.
#[derive(Debug, Clone)]
pub struct Reply {
    pub stored: StoredResponse,
    /// The defense that produced this answer, if one did (e.g. `unique_index`).
    pub defense: Option<Defense>,
}

impl Reply {
    pub fn json(status: StatusCode, body: String, defense: Option<Defense>) -> Self {
        Self {
            stored: StoredResponse {
                status: status.as_u16(),
                content_type: "application/json".to_string(),
                body,
            },
            defense,
        }
    }

    /// A business outcome that is an error (409 sold out) as a storable reply.
    pub fn problem(error: &ApiError) -> Self {
        use actix_web::ResponseError;
        Self {
            stored: StoredResponse {
                status: error.status_code().as_u16(),
                content_type: PROBLEM_CONTENT_TYPE.to_string(),
                body: problem_body(&error.problem()),
            },
            defense: error.defense(),
        }
    }

    pub fn into_response(self) -> HttpResponse {
        let mut response = self.stored.to_response();
        if let Some(defense) = self.defense {
            response.headers_mut().insert(
                HeaderName::from_static(DEFENSE_HEADER_LOWER),
                HeaderValue::from_static(defense.id()),
            );
        }
        response
    }
}

impl StoredResponse {
    fn to_response(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        HttpResponse::build(status)
            .insert_header((CONTENT_TYPE, self.content_type.as_str()))
            .body(self.body.clone())
    }

    /// The stored answer, marked as a replay and as this defense's work.
    pub fn replay(&self) -> HttpResponse {
        let mut response = self.to_response();
        let headers = response.headers_mut();
        headers.insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
        headers.insert(
            HeaderName::from_static(DEFENSE_HEADER_LOWER),
            HeaderValue::from_static(Defense::IdempotencyKey.id()),
        );
        response
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

/// Step one of every keyed request: decide whether the business may run
/// (the cache first, then the key table).
pub async fn admit(state: &AppState, request: &KeyedRequest<'_>) -> Result<Admission, ApiError> {
    match cached_answer(state, request).await? {
        Some(stored) => Ok(Admission::Replay(stored)),
        None => admit_in_database(state, request).await,
    }
}

/// The fast path: the answer of a completed key, from the key store (Redis).
pub async fn cached_answer(
    state: &AppState,
    request: &KeyedRequest<'_>,
) -> Result<Option<StoredResponse>, ApiError> {
    if !state.switches.is_on(Defense::IdempotencyKey) {
        return Ok(None);
    }
    let Some(cached) = cached_response(state, request).await else {
        return Ok(None);
    };
    let Admission::Replay(stored) = cached.into_admission(request)? else {
        return Ok(None);
    };
    metrics::count(metrics::REPLAYS);
    Ok(Some(stored))
}

/// The source of truth: the key row decides which request runs.
#[tracing::instrument(skip_all, fields(user_id = request.user_id, key = request.key.as_str()))]
pub async fn admit_in_database(
    state: &AppState,
    request: &KeyedRequest<'_>,
) -> Result<Admission, ApiError> {
    if !state.switches.is_on(Defense::IdempotencyKey) {
        return Ok(Admission::Run(Lease::Unguarded));
    }
    let settings = &state.settings.idempotency;
    let owner = uuid::Uuid::new_v4().to_string();
    for _ in 0..ADMIT_ATTEMPTS {
        let now = now_ms();
        let lease_until = now + settings.lease.as_millis() as i64;
        if insert_in_progress(
            &state.db,
            request,
            &owner,
            now,
            lease_until,
            settings.retention.as_millis() as i64,
        )
        .await?
        {
            return Ok(Admission::Run(held(request, owner)));
        }
        let Some(row) = find_row(&state.db, request).await? else {
            continue; // removed between our insert and our read: try again
        };
        if row.expires_at <= now {
            delete_expired(&state.db, request, now).await?;
            continue;
        }
        if row.fingerprint != request.fingerprint {
            return Err(ApiError::IdempotencyKeyReused);
        }
        if let Some(stored) = row.completed_response() {
            let key = cache_key(request.user_id, request.key.as_str());
            cache_response(state, &key, &request.fingerprint, &stored).await;
            metrics::count(metrics::REPLAYS);
            return Ok(Admission::Replay(stored));
        }
        if row.lease_expires_at > now {
            metrics::count(metrics::IN_FLIGHT_CONFLICTS);
            return Err(ApiError::RequestInProgress {
                retry_after_secs: 1,
            });
        }
        // The first request's lease ran out (it died or hangs): take the key over.
        if take_over(
            &state.db,
            request,
            &owner,
            row.lease_expires_at,
            lease_until,
        )
        .await?
        {
            tracing::warn!("idempotency key lease expired; taken over by a retry");
            return Ok(Admission::Run(held(request, owner)));
        }
    }
    Err(ApiError::RequestInProgress {
        retry_after_secs: 1,
    })
}

/// Last step of every keyed request: store a business outcome with the key, or
/// release the key when there is nothing to store; then answer.
pub async fn finish(
    state: &AppState,
    lease: Lease,
    outcome: Result<Reply, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let reply = match outcome {
        Ok(reply) => reply,
        Err(error) if error.is_business_outcome() => Reply::problem(&error),
        Err(error) => {
            release(state, &lease).await;
            return Err(error);
        }
    };
    if let Lease::Held {
        user_id,
        key,
        owner,
        fingerprint,
    } = &lease
    {
        let stored = &reply.stored;
        let updated = sqlx::query(
            "UPDATE idempotency_keys
                SET state = 'completed', response_status = $1, content_type = $2,
                    response_body = $3, expires_at = $4
              WHERE user_id = $5 AND idem_key = $6 AND owner = $7",
        )
        .bind(i64::from(stored.status))
        .bind(&stored.content_type)
        .bind(&stored.body)
        .bind(now_ms() + state.settings.idempotency.retention.as_millis() as i64)
        .bind(user_id)
        .bind(key)
        .bind(owner)
        .execute(state.db.pool())
        .await?;
        if updated.rows_affected() == 0 {
            tracing::warn!("idempotency key was taken over before this request finished");
        } else {
            cache_response(state, &cache_key(*user_id, key), fingerprint, stored).await;
        }
    }
    Ok(reply.into_response())
}

/// Answers with an outcome decided before the key table was touched (the stock
/// gate's sold out): it is kept in the key store only, and replayed from there.
/// Losing it costs nothing: no order was made, and a retry is simply asked again.
pub async fn remember(state: &AppState, request: &KeyedRequest<'_>, reply: Reply) -> HttpResponse {
    if state.switches.is_on(Defense::IdempotencyKey) {
        let key = cache_key(request.user_id, request.key.as_str());
        cache_response(state, &key, &request.fingerprint, &reply.stored).await;
    }
    reply.into_response()
}

/// Gives the key back so that a retry runs the business (nothing was stored).
async fn release(state: &AppState, lease: &Lease) {
    let Lease::Held {
        user_id,
        key,
        owner,
        ..
    } = lease
    else {
        return;
    };
    let result = sqlx::query(
        "DELETE FROM idempotency_keys
          WHERE user_id = $1 AND idem_key = $2 AND owner = $3 AND state = 'in_progress'",
    )
    .bind(user_id)
    .bind(key)
    .bind(owner)
    .execute(state.db.pool())
    .await;
    if let Err(error) = result {
        // The lease still expires by itself; a retry then takes the key over.
        tracing::error!(%error, "could not release an idempotency key");
    }
}

fn held(request: &KeyedRequest<'_>, owner: String) -> Lease {
    Lease::Held {
        user_id: request.user_id,
        key: request.key.as_str().to_string(),
        owner,
        fingerprint: request.fingerprint.clone(),
    }
}

/// The one statement that decides the race: of all concurrent first requests,
/// exactly one inserts the row.
async fn insert_in_progress(
    db: &Db,
    request: &KeyedRequest<'_>,
    owner: &str,
    now: i64,
    lease_until: i64,
    retention_ms: i64,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys
             (user_id, idem_key, fingerprint, state, owner, lease_expires_at, created_at, expires_at)
         VALUES ($1, $2, $3, 'in_progress', $4, $5, $6, $7)
         ON CONFLICT (user_id, idem_key) DO NOTHING",
    )
    .bind(request.user_id)
    .bind(request.key.as_str())
    .bind(&request.fingerprint)
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(now + retention_ms)
    .execute(db.pool())
    .await?;
    Ok(inserted.rows_affected() == 1)
}

#[derive(Debug, sqlx::FromRow)]
struct KeyRow {
    fingerprint: String,
    state: String,
    lease_expires_at: i64,
    response_status: Option<i64>,
    content_type: Option<String>,
    response_body: Option<String>,
    expires_at: i64,
}

impl KeyRow {
    fn completed_response(&self) -> Option<StoredResponse> {
        if self.state != COMPLETED {
            return None;
        }
        Some(StoredResponse {
            status: u16::try_from(self.response_status?).ok()?,
            content_type: self.content_type.clone()?,
            body: self.response_body.clone()?,
        })
    }
}

async fn find_row(db: &Db, request: &KeyedRequest<'_>) -> Result<Option<KeyRow>, sqlx::Error> {
    sqlx::query_as::<_, KeyRow>(
        "SELECT fingerprint, state, lease_expires_at, response_status, content_type,
                response_body, expires_at
           FROM idempotency_keys
          WHERE user_id = $1 AND idem_key = $2",
    )
    .bind(request.user_id)
    .bind(request.key.as_str())
    .fetch_optional(db.pool())
    .await
}

/// Conditional takeover: succeeds for one retry only, and only if the lease we
/// saw expired is still the one in the row.
async fn take_over(
    db: &Db,
    request: &KeyedRequest<'_>,
    owner: &str,
    expired_lease: i64,
    lease_until: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE idempotency_keys SET owner = $1, lease_expires_at = $2
          WHERE user_id = $3 AND idem_key = $4 AND state = 'in_progress'
            AND lease_expires_at = $5",
    )
    .bind(owner)
    .bind(lease_until)
    .bind(request.user_id)
    .bind(request.key.as_str())
    .bind(expired_lease)
    .execute(db.pool())
    .await?;
    Ok(updated.rows_affected() == 1)
}

async fn delete_expired(db: &Db, request: &KeyedRequest<'_>, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2 AND expires_at <= $3",
    )
    .bind(request.user_id)
    .bind(request.key.as_str())
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Removes keys past their retention, and in-progress keys whose lease ran out
/// (their request died; a retry finds a committed order through `unique_index`).
/// Runs periodically; safe on several instances at once.
pub async fn sweep_expired(db: &Db) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    let deleted = sqlx::query(
        "DELETE FROM idempotency_keys
          WHERE expires_at <= $1 OR (state = 'in_progress' AND lease_expires_at <= $1)",
    )
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(deleted.rows_affected())
}

/// The Redis fast path: a completed response cached under the key.
#[derive(Debug, Serialize, Deserialize)]
struct CachedResponse {
    fingerprint: String,
    response: StoredResponse,
}

impl CachedResponse {
    fn into_admission(self, request: &KeyedRequest<'_>) -> Result<Admission, ApiError> {
        if self.fingerprint != request.fingerprint {
            return Err(ApiError::IdempotencyKeyReused);
        }
        Ok(Admission::Replay(self.response))
    }
}

fn cache_key(user_id: i64, key: &str) -> String {
    format!("idem:{user_id}:{key}")
}

/// Reads the cache; any failure only means "go to the database".
async fn cached_response(state: &AppState, request: &KeyedRequest<'_>) -> Option<CachedResponse> {
    match state
        .kv
        .get(&cache_key(request.user_id, request.key.as_str()))
        .await
    {
        Ok(Some(json)) => serde_json::from_str(&json).ok(),
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, "idempotency cache unavailable; using the database");
            None
        }
    }
}

async fn cache_response(
    state: &AppState,
    cache_key: &str,
    fingerprint: &str,
    response: &StoredResponse,
) {
    let cached = CachedResponse {
        fingerprint: fingerprint.to_string(),
        response: response.clone(),
    };
    let Ok(json) = serde_json::to_string(&cached) else {
        return;
    };
    let ttl = state.settings.idempotency.retention;
    if let Err(error) = state.kv.set(cache_key, &json, ttl).await {
        tracing::warn!(%error, "could not cache an idempotent response");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_field_order_and_whitespace() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"product_id":1,"quantity":2}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "quantity": 2, "product_id": 1 }"#).unwrap();
        assert_eq!(
            fingerprint("POST", "/api/orders", &a),
            fingerprint("POST", "/api/orders", &b)
        );
    }

    #[test]
    fn fingerprint_tells_bodies_and_paths_apart() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"product_id":1,"quantity":2}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"product_id":1,"quantity":3}"#).unwrap();
        assert_ne!(
            fingerprint("POST", "/api/orders", &a),
            fingerprint("POST", "/api/orders", &b)
        );
        assert_ne!(
            fingerprint("POST", "/api/orders", &a),
            fingerprint("POST", "/api/other", &a)
        );
    }
}
