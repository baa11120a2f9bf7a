//! The key table of the `idempotency_key` defense: one row per (user, key), the
//! source of truth for every key (the key store only caches completed answers).

use sqlx::FromRow;

use super::db::Backend;
use super::error::{QueryContext, StoreError};
use super::{Conn, sql};

/// Which request holds a key, and since when.
#[derive(Debug, Clone, Copy)]
pub struct KeyId<'a> {
    pub user_id: i64,
    pub key: &'a str,
}

/// A first request's claim on a key.
#[derive(Debug)]
pub struct NewKey<'a> {
    pub id: KeyId<'a>,
    pub fingerprint: &'a str,
    /// Random per request: only the owner may complete or release the key.
    pub owner: &'a str,
    pub now_ms: i64,
    pub lease_until_ms: i64,
    pub expires_at_ms: i64,
}

/// The row as `admit` reads it.
#[derive(Debug, Clone, FromRow)]
pub struct KeyRow {
    pub fingerprint: String,
    pub state: String,
    pub lease_expires_at: i64,
    pub response_status: Option<i64>,
    pub content_type: Option<String>,
    pub response_body: Option<String>,
    pub expires_at: i64,
}

impl KeyRow {
    /// Past its retention, or in progress under a lease that ran out (its
    /// request died): a new claim may replace it.
    pub fn is_stale(&self, now_ms: i64) -> bool {
        self.expires_at <= now_ms || (self.state == IN_PROGRESS && self.lease_expires_at <= now_ms)
    }
}

/// The answer stored with a completed key.
#[derive(Debug)]
pub struct Completion<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub body: &'a str,
    pub expires_at_ms: i64,
}

/// The `state` column: a request holds the key ([`IN_PROGRESS`]) or its answer
/// is stored ([`COMPLETED`]). Every statement names the states through these.
pub const IN_PROGRESS: &str = "in_progress";
pub const COMPLETED: &str = "completed";

// [lesson idempotency_keys::insert_in_progress]
/// The one statement that decides the race: of all concurrent first requests,
/// exactly one inserts the row. True for the winner. Postgres and SQLite skip
/// the duplicate in the statement (`ON CONFLICT DO NOTHING`: a failed statement
/// would abort a Postgres transaction); MySQL raises error 1062, which rolls
/// back only this statement, and the error is the answer.
pub async fn insert_in_progress(mut conn: impl Conn, new: &NewKey<'_>) -> Result<bool, StoreError> {
    let backend = conn.backend();
    let skip = match backend {
        Backend::Postgres | Backend::Sqlite => "ON CONFLICT (user_id, idem_key) DO NOTHING",
        Backend::Mysql => "",
    };
    let statement = format!(
        "INSERT INTO idempotency_keys
             (user_id, idem_key, fingerprint, state, owner, lease_expires_at, created_at, expires_at)
         VALUES ($1, $2, $3, '{IN_PROGRESS}', $4, $5, $6, $7) {skip}"
    );
    let inserted = sqlx::query(&sql(backend, &statement))
        .bind(new.id.user_id)
        .bind(new.id.key)
        .bind(new.fingerprint)
        .bind(new.owner)
        .bind(new.lease_until_ms)
        .bind(new.now_ms)
        .bind(new.expires_at_ms)
        .execute(conn.executor())
        .await
        .context("idempotency_keys::insert_in_progress");
    match inserted {
        Ok(done) => Ok(done.rows_affected() == 1),
        Err(error) if backend == Backend::Mysql && error.is_unique_violation() => Ok(false),
        Err(error) => Err(error),
    }
}
// [/lesson]

/// Many first claims in one statement (group commit, docs/design.md §2.3):
/// the owners that won; a key already present is left as it is (the caller
/// looks at those one by one). By owner, because the owner is unique per
/// request where (user, key) is not: a batch may hold a key twice.
pub async fn insert_in_progress_many(
    mut conn: impl Conn,
    news: &[NewKey<'_>],
) -> Result<Vec<String>, StoreError> {
    if news.is_empty() {
        return Ok(Vec::new());
    }
    let backend = conn.backend();
    let text = sql(backend, &claims_statement(backend, news.len())).into_owned();
    let mut query = sqlx::query_scalar::<_, String>(&text);
    for new in news {
        query = query
            .bind(new.id.user_id)
            .bind(new.id.key)
            .bind(new.fingerprint)
            .bind(IN_PROGRESS)
            .bind(new.owner)
            .bind(new.lease_until_ms)
            .bind(new.now_ms)
            .bind(new.expires_at_ms);
    }
    let returned = query
        .fetch_all(conn.executor())
        .await
        .context("idempotency_keys::insert_in_progress_many")?;
    match backend {
        Backend::Mysql => owners_holding(conn, news).await,
        Backend::Postgres | Backend::Sqlite => Ok(returned),
    }
}

/// The INSERT of `rows` first claims, a duplicate skipped.
fn claims_statement(backend: Backend, rows: usize) -> String {
    let insert = "INSERT INTO idempotency_keys
             (user_id, idem_key, fingerprint, state, owner, lease_expires_at, created_at, expires_at)
         VALUES";
    let rows = super::values_rows(rows, 8);
    match backend {
        Backend::Postgres | Backend::Sqlite => {
            format!("{insert} {rows} ON CONFLICT (user_id, idem_key) DO NOTHING RETURNING owner")
        }
        // A no-op update skips the duplicate (only a duplicate: not INSERT IGNORE).
        Backend::Mysql => format!("{insert} {rows} ON DUPLICATE KEY UPDATE user_id = user_id"),
    }
}

/// Which of these claims hold their key now (MySQL's stand-in for `RETURNING owner`).
async fn owners_holding(
    mut conn: impl Conn,
    news: &[NewKey<'_>],
) -> Result<Vec<String>, StoreError> {
    let keys: Vec<String> = (0..news.len())
        .map(|at| format!("(user_id = ${} AND idem_key = ${})", 2 * at + 1, 2 * at + 2))
        .collect();
    let statement = format!(
        "SELECT owner FROM idempotency_keys WHERE {}",
        keys.join(" OR ")
    );
    let text = sql(conn.backend(), &statement);
    let mut query = sqlx::query_scalar::<_, String>(&text);
    for new in news {
        query = query.bind(new.id.user_id).bind(new.id.key);
    }
    let holding = query
        .fetch_all(conn.executor())
        .await
        .context("idempotency_keys::insert_in_progress_many")?;
    Ok(news
        .iter()
        .filter(|new| holding.iter().any(|owner| owner == new.owner))
        .map(|new| new.owner.to_string())
        .collect())
}

/// Many answers stored in one statement (group commit): how many keys took
/// theirs (each only if its owner still holds it).
pub async fn complete_many(
    mut conn: impl Conn,
    answers: &[(KeyId<'_>, &str, Completion<'_>)],
) -> Result<u64, StoreError> {
    if answers.is_empty() {
        return Ok(0);
    }
    let backend = conn.backend();
    let statement = answers_statement(backend, answers.len());
    let text = sql(backend, &statement);
    let mut query = sqlx::query(&text);
    for (id, owner, completion) in answers {
        query = query
            .bind(id.user_id)
            .bind(id.key)
            .bind(*owner)
            .bind(i64::from(completion.status))
            .bind(completion.content_type)
            .bind(completion.body)
            .bind(completion.expires_at_ms);
    }
    let updated = query
        .execute(conn.executor())
        .await
        .context("idempotency_keys::complete_many")?;
    Ok(updated.rows_affected())
}

/// The UPDATE that stores `rows` answers, each where its owner holds the key.
fn answers_statement(backend: Backend, rows: usize) -> String {
    const COLUMNS: [&str; 7] = [
        "user_id",
        "idem_key",
        "owner",
        "response_status",
        "content_type",
        "response_body",
        "expires_at",
    ];
    match backend {
        Backend::Postgres | Backend::Sqlite => format!(
            "WITH answers ({}) AS (VALUES {})
             UPDATE idempotency_keys
                SET state = '{COMPLETED}', response_status = answers.response_status,
                    content_type = answers.content_type, response_body = answers.response_body,
                    expires_at = answers.expires_at
               FROM answers
              WHERE idempotency_keys.user_id = answers.user_id
                AND idempotency_keys.idem_key = answers.idem_key
                AND idempotency_keys.owner = answers.owner",
            COLUMNS.join(", "),
            super::values_rows(rows, COLUMNS.len())
        ),
        // MySQL has no UPDATE … FROM: a multi-table UPDATE joins the answers.
        Backend::Mysql => format!(
            "UPDATE idempotency_keys JOIN ({}) AS answers
                 ON idempotency_keys.user_id = answers.user_id
                AND idempotency_keys.idem_key = answers.idem_key
                AND idempotency_keys.owner = answers.owner
                SET idempotency_keys.state = '{COMPLETED}',
                    idempotency_keys.response_status = answers.response_status,
                    idempotency_keys.content_type = answers.content_type,
                    idempotency_keys.response_body = answers.response_body,
                    idempotency_keys.expires_at = answers.expires_at",
            super::select_rows(rows, &COLUMNS)
        ),
    }
}

pub async fn find(mut conn: impl Conn, id: KeyId<'_>) -> Result<Option<KeyRow>, StoreError> {
    sqlx::query_as::<_, KeyRow>(&sql(
        conn.backend(),
        "SELECT fingerprint, state, lease_expires_at, response_status, content_type,
                response_body, expires_at
           FROM idempotency_keys
          WHERE user_id = $1 AND idem_key = $2",
    ))
    .bind(id.user_id)
    .bind(id.key)
    .fetch_optional(conn.executor())
    .await
    .context("idempotency_keys::find")
}

/// Conditional takeover of an expired lease: succeeds for one retry only, and
/// only if the lease seen expired is still the one in the row.
pub async fn take_over(
    mut conn: impl Conn,
    id: KeyId<'_>,
    owner: &str,
    expired_lease_ms: i64,
    lease_until_ms: i64,
) -> Result<bool, StoreError> {
    let statement = format!(
        "UPDATE idempotency_keys SET owner = $1, lease_expires_at = $2
          WHERE user_id = $3 AND idem_key = $4 AND state = '{IN_PROGRESS}'
            AND lease_expires_at = $5"
    );
    let updated = sqlx::query(&sql(conn.backend(), &statement))
        .bind(owner)
        .bind(lease_until_ms)
        .bind(id.user_id)
        .bind(id.key)
        .bind(expired_lease_ms)
        .execute(conn.executor())
        .await
        .context("idempotency_keys::take_over")?;
    Ok(updated.rows_affected() == 1)
}

/// Stores the answer with the key, if `owner` still holds it. False when the key
/// was taken over meanwhile.
pub async fn complete(
    mut conn: impl Conn,
    id: KeyId<'_>,
    owner: &str,
    completion: &Completion<'_>,
) -> Result<bool, StoreError> {
    let statement = format!(
        "UPDATE idempotency_keys
            SET state = '{COMPLETED}', response_status = $1, content_type = $2,
                response_body = $3, expires_at = $4
          WHERE user_id = $5 AND idem_key = $6 AND owner = $7"
    );
    let updated = sqlx::query(&sql(conn.backend(), &statement))
        .bind(i64::from(completion.status))
        .bind(completion.content_type)
        .bind(completion.body)
        .bind(completion.expires_at_ms)
        .bind(id.user_id)
        .bind(id.key)
        .bind(owner)
        .execute(conn.executor())
        .await
        .context("idempotency_keys::complete")?;
    Ok(updated.rows_affected() == 1)
}

/// Gives an in-progress key back (nothing was stored), if `owner` still holds it.
pub async fn release(mut conn: impl Conn, id: KeyId<'_>, owner: &str) -> Result<(), StoreError> {
    let statement = format!(
        "DELETE FROM idempotency_keys
          WHERE user_id = $1 AND idem_key = $2 AND owner = $3 AND state = '{IN_PROGRESS}'"
    );
    sqlx::query(&sql(conn.backend(), &statement))
        .bind(id.user_id)
        .bind(id.key)
        .bind(owner)
        .execute(conn.executor())
        .await
        .context("idempotency_keys::release")?;
    Ok(())
}

/// Deletes the key if its retention ran out.
pub async fn delete_if_expired(
    mut conn: impl Conn,
    id: KeyId<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        "DELETE FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2 AND expires_at <= $3",
    ))
    .bind(id.user_id)
    .bind(id.key)
    .bind(now_ms)
    .execute(conn.executor())
    .await
    .context("idempotency_keys::delete_if_expired")?;
    Ok(())
}

/// Deletes this key's row if it is stale: past its retention, or in progress
/// with a lease that ran out (its request died). The claim then replaces it.
pub async fn delete_stale(
    mut conn: impl Conn,
    id: KeyId<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let statement = format!(
        "DELETE FROM idempotency_keys
          WHERE user_id = $1 AND idem_key = $2
            AND (expires_at <= $3 OR (state = '{IN_PROGRESS}' AND lease_expires_at <= $4))"
    );
    sqlx::query(&sql(conn.backend(), &statement))
        .bind(id.user_id)
        .bind(id.key)
        .bind(now_ms)
        .bind(now_ms)
        .execute(conn.executor())
        .await
        .context("idempotency_keys::delete_stale")?;
    Ok(())
}

/// Removes keys past their retention, and in-progress keys whose lease ran out.
pub async fn sweep_expired(mut conn: impl Conn, now_ms: i64) -> Result<u64, StoreError> {
    let statement = format!(
        "DELETE FROM idempotency_keys
          WHERE expires_at <= $1 OR (state = '{IN_PROGRESS}' AND lease_expires_at <= $2)"
    );
    let deleted = sqlx::query(&sql(conn.backend(), &statement))
        .bind(now_ms)
        .bind(now_ms)
        .execute(conn.executor())
        .await
        .context("idempotency_keys::sweep_expired")?;
    Ok(deleted.rows_affected())
}
