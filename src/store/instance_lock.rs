//! One instance per database when the key store is in process (docs/scaling.md).
//!
//! An instance without Redis keeps its stock gate, its key cache and its
//! in-flight marks in its own memory. Two such instances on one Postgres or
//! MySQL each sell from their own gate: tried, the audit turned red (gate 144
//! vs database 0) after a sale over both. So an instance in that mode holds a
//! lock in the database for as long as it runs, and a second one is refused
//! at start with a message that says what to do. (The embedded default does
//! the same with a lock on its SQLite file, `db.rs`.)
//!
//! The lock is the database's own, held on a connection of its own and
//! released when that connection closes — also when the process is killed:
//! - Postgres: an advisory lock (scoped to the database). The in-process
//!   instance takes it exclusively (`pg_try_advisory_lock`), an instance on
//!   Redis takes it shared (`pg_try_advisory_lock_shared`), so either order of
//!   start refuses the mix too.
//! - MySQL/MariaDB: a named lock (`GET_LOCK(name, 0)`), named after the
//!   database (named locks are server-wide). It has no shared mode: only two
//!   in-process instances are told apart; an instance on Redis takes nothing.
//!
//! If the database restarts, the connection and its lock are gone until this
//! instance restarts; the lock is a guard against a mistake, not a lease.

use std::time::Duration;

use sqlx::{AnyConnection, Connection, Row};

use super::db::Backend;

/// The advisory lock's key: "flashgrd" in ASCII.
const ADVISORY_KEY: i64 = 0x666c_6173_6867_7264;

/// How this instance keeps its key store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStoreMode {
    /// In process memory: this instance must be the only one on its database.
    InProcess,
    /// Redis, shared with the other instances.
    Shared,
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceLockError {
    #[error(
        "another flashguard instance already runs on this database without Redis: its stock gate and key cache live in its own memory, and two such instances would sell from two gates. Give every instance the same REDIS_URL (or REDIS_CLUSTER_URLS), or run only one"
    )]
    InProcessTaken,
    #[error(
        "a flashguard instance without Redis already runs on this database, keeping its stock gate in its own memory. Stop it, or give every instance the same REDIS_URL (or REDIS_CLUSTER_URLS)"
    )]
    SharedRefused,
    #[error("cannot take the instance lock in the database")]
    Database(#[from] sqlx::Error),
    #[error("the database did not answer the instance lock within {0:?}")]
    Timeout(Duration),
}

/// The connection that holds the lock, for as long as this value lives.
#[derive(Debug)]
pub struct InstanceLock {
    _connection: AnyConnection,
}

/// Takes the lock this instance's mode needs on `url` (nothing on SQLite, whose
/// file lock already guards it, nor for a shared store on MySQL).
pub async fn hold(
    url: &str,
    backend: Backend,
    mode: KeyStoreMode,
    within: Duration,
) -> Result<Option<InstanceLock>, InstanceLockError> {
    let Some(statement) = lock_statement(backend, mode) else {
        return Ok(None);
    };
    let attempt = async {
        let mut connection = AnyConnection::connect(url).await?;
        let row = sqlx::query(&statement).fetch_one(&mut connection).await?;
        Ok::<_, sqlx::Error>((connection, taken(&row)))
    };
    let (connection, taken) = tokio::time::timeout(within, attempt)
        .await
        .map_err(|_| InstanceLockError::Timeout(within))??;
    match (taken, mode) {
        (true, _) => Ok(Some(InstanceLock {
            _connection: connection,
        })),
        (false, KeyStoreMode::InProcess) => Err(InstanceLockError::InProcessTaken),
        (false, KeyStoreMode::Shared) => Err(InstanceLockError::SharedRefused),
    }
}

/// The statement that tries the lock without waiting; it returns 1 or true
/// when taken.
fn lock_statement(backend: Backend, mode: KeyStoreMode) -> Option<String> {
    match (backend, mode) {
        (Backend::Postgres, KeyStoreMode::InProcess) => {
            Some(format!("SELECT pg_try_advisory_lock({ADVISORY_KEY})"))
        }
        (Backend::Postgres, KeyStoreMode::Shared) => Some(format!(
            "SELECT pg_try_advisory_lock_shared({ADVISORY_KEY})"
        )),
        (Backend::Mysql, KeyStoreMode::InProcess) => {
            Some("SELECT GET_LOCK(CONCAT('flashguard:', SHA1(DATABASE())), 0)".to_string())
        }
        (Backend::Mysql, KeyStoreMode::Shared) | (Backend::Sqlite, _) => None,
    }
}

/// The lock function's answer: a boolean (Postgres) or 1 (MySQL).
fn taken(row: &sqlx::any::AnyRow) -> bool {
    row.try_get::<bool, _>(0)
        .or_else(|_| row.try_get::<i64, _>(0).map(|value| value == 1))
        .or_else(|_| row.try_get::<i32, _>(0).map(|value| value == 1))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_takes_its_lock() {
        let statement = |backend, mode| lock_statement(backend, mode).unwrap_or_default();
        assert_eq!(
            statement(Backend::Postgres, KeyStoreMode::InProcess),
            "SELECT pg_try_advisory_lock(7380381037654143588)"
        );
        assert!(statement(Backend::Postgres, KeyStoreMode::Shared).contains("_shared("));
        assert!(statement(Backend::Mysql, KeyStoreMode::InProcess).contains("GET_LOCK"));
        assert_eq!(
            lock_statement(Backend::Sqlite, KeyStoreMode::InProcess),
            None
        );
        assert_eq!(lock_statement(Backend::Mysql, KeyStoreMode::Shared), None);
    }
}
