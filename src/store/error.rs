//! A database failure, named by the query that failed (`orders::insert`), so a
//! log line says which statement broke, not only that "the database" did.

/// A query of `store/` failed.
#[derive(Debug, thiserror::Error)]
#[error("database query {query} failed: {source}")]
pub struct StoreError {
    pub query: &'static str,
    #[source]
    pub source: sqlx::Error,
}

impl StoreError {
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
