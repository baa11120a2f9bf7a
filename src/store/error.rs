//! A database failure, named by the query that failed (`orders::insert`), so a
//! log line says which statement broke, not only that "the database" did.

/// A query of `store/` failed.
#[derive(Debug, thiserror::Error)]
#[error("database query {query} failed")]
pub struct StoreError {
    pub query: &'static str,
    #[source]
    pub source: sqlx::Error,
}

impl StoreError {
    /// The database could not be reached (no connection in time, a broken
    /// connection, a server shutting down): a 503, not a 500.
    pub fn is_unavailable(&self) -> bool {
        match &self.source {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(error) => {
                is_statement_timeout(error.as_ref())
                    || error.code().is_some_and(|code| {
                        // 08…: the connection; 57P0…: the server shutting down.
                        code.starts_with("08")
                            || ["57P01", "57P02", "57P03"].contains(&code.as_ref())
                    })
            }
            _ => false,
        }
    }

    /// The row refers to a row that is gone (a foreign key), e.g. a product
    /// removed by a reset while an order for it was being placed.
    pub fn is_foreign_key_violation(&self) -> bool {
        matches!(&self.source, sqlx::Error::Database(error) if error.is_foreign_key_violation())
    }

    /// Two transactions waited on each other and the database gave up on this
    /// one (a Postgres deadlock or serialization failure, an InnoDB deadlock —
    /// error 1213, SQLSTATE 40001 — or MariaDB's "record has changed since last
    /// read" under `innodb_snapshot_isolation`, a SQLite busy lock): nothing of
    /// it was kept, and running it again may well succeed.
    pub fn is_transient_conflict(&self) -> bool {
        const CODES: [&str; 6] = ["40P01", "40001", "55P03", "5", "6", "517"];
        let sqlx::Error::Database(error) = &self.source else {
            return false;
        };
        // MariaDB's innodb_snapshot_isolation: "record has changed since last read" (1020).
        if let Some(mysql) = error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            && mysql.number() == 1020
        {
            return true;
        }
        error
            .code()
            .is_some_and(|code| CODES.contains(&code.as_ref()))
    }

    /// A row lock was not granted in time (InnoDB's error 1205, after
    /// `innodb_lock_wait_timeout`; Postgres' 55P03 after `lock_timeout`).
    pub fn is_lock_wait_timeout(&self) -> bool {
        let sqlx::Error::Database(error) = &self.source else {
            return false;
        };
        if let Some(mysql) = error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
            return mysql.number() == 1205;
        }
        error.code().is_some_and(|code| code == "55P03")
    }

    /// The database refused a row that a unique index already holds.
    pub fn is_unique_violation(&self) -> bool {
        matches!(&self.source, sqlx::Error::Database(error) if error.is_unique_violation())
    }
}

/// `.context("orders::insert")?` on any sqlx result.
pub trait QueryContext<T> {
    fn context(self, query: &'static str) -> Result<T, StoreError>;
}

impl<T> QueryContext<T> for Result<T, sqlx::Error> {
    fn context(self, query: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError { query, source })
    }
}

/// The database's statement timeout ended the statement
/// (`DB_STATEMENT_TIMEOUT_MS`): Postgres 57014, MariaDB 1969 (SQLSTATE 70100),
/// MySQL 3024 (SQLSTATE HY000, so told apart by its number).
fn is_statement_timeout(error: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(mysql) = error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return [1969, 3024].contains(&mysql.number());
    }
    error.code().is_some_and(|code| code == "57014")
}
