//! The relational database: Postgres or MySQL (InnoDB) on the real stack, a
//! SQLite file embedded.
//!
//! Queries are written once where the engines agree (`$1` placeholders, which
//! `dialect::sql` turns into MySQL's `?`; BIGINT epoch-millisecond timestamps)
//! and side by side where they do not (`ON CONFLICT` vs `ON DUPLICATE KEY`,
//! `RETURNING`), and run through `sqlx::Any` (docs/mysql.md). Transactions that
//! write start with a write statement so that SQLite takes its write lock up
//! front (waiting on its busy timeout) instead of failing when a read
//! transaction tries to upgrade.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor, Transaction};

use super::error::{QueryContext, StoreError};

/// A database transaction on either backend.
pub type Tx = Transaction<'static, Any>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    /// MySQL or MariaDB, InnoDB, at its default REPEATABLE READ.
    Mysql,
    Sqlite,
}

impl Backend {
    /// Its name in the API (`postgres`, `mysql`, `sqlite`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Sqlite => "sqlite",
        }
    }

    /// The engine of a URL scheme (`postgres`, `mysql`, `sqlite`…).
    pub fn of_scheme(scheme: &str) -> Self {
        match scheme {
            "postgres" | "postgresql" => Self::Postgres,
            "mysql" | "mariadb" => Self::Mysql,
            _ => Self::Sqlite,
        }
    }

    /// The engine of a connection, by its driver's name (`PostgreSQL`, `MySQL`, `SQLite`).
    pub fn of_driver_name(name: &str) -> Self {
        match name {
            "PostgreSQL" => Self::Postgres,
            "MySQL" => Self::Mysql,
            _ => Self::Sqlite,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("DATABASE_URL must start with postgres://, mysql:// or sqlite://, got {0:?}")]
    UnsupportedUrl(String),
    #[error("cannot create the directory for the SQLite file {path}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "another flashguard is already using {path}: stop it, or start this one on another file with DATABASE_URL=sqlite://other.db?mode=rwc"
    )]
    InUse { path: String },
    #[error("cannot lock the SQLite file {path}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    #[error("cannot apply migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// The database's bound on one statement (`DB_STATEMENT_TIMEOUT_MS`).
    statement_timeout: Option<Duration>,
    /// The embedded default's exclusive lock on its file: one instance per file
    /// (its in-process key store cannot be shared). Released when the last
    /// clone of the pool is dropped, or the process ends.
    _file_lock: Option<Arc<std::fs::File>>,
}

impl Db {
    pub async fn connect(url: &str, bounds: PoolBounds) -> Result<Self, DbSetupError> {
        install_default_drivers();
        let backend = backend_of(url)?;
        let file_lock = if backend == Backend::Sqlite {
            create_sqlite_directory(url)?;
            lock_sqlite_file(&sqlite_path(url))?
        } else {
            None
        };
        let statement_timeout = bounds.statement_timeout;
        let pool = AnyPoolOptions::new()
            .max_connections(bounds.max_connections)
            .acquire_timeout(bounds.acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(prepare_session(conn, backend, statement_timeout))
            })
            .connect(url)
            .await
            .map_err(DbSetupError::Connect)?;
        Ok(Self {
            pool,
            backend,
            statement_timeout,
            _file_lock: file_lock,
        })
    }

    /// Applies the migrations of this backend (append-only, embedded in the binary).
    pub async fn migrate(&self) -> Result<(), DbSetupError> {
        match self.backend {
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
            Backend::Mysql => sqlx::migrate!("./migrations/mysql").run(&self.pool).await?,
            Backend::Sqlite => {
                sqlx::migrate!("./migrations/sqlite")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection of its own, outside the pool (the lab's InnoDB experiments
    /// set session variables on it and close it afterwards).
    pub async fn dedicated_connection(&self) -> Result<sqlx::AnyConnection, StoreError> {
        use sqlx::ConnectOptions;
        let mut conn = self
            .pool
            .connect_options()
            .connect()
            .await
            .context("db::dedicated_connection")?;
        prepare_session(&mut conn, self.backend, self.statement_timeout)
            .await
            .context("db::dedicated_connection")?;
        Ok(conn)
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        self.pool.begin().await.context("db::begin")
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .context("db::ping")
    }
}

/// How the pool is bounded: its size and its waits.
#[derive(Debug, Clone, Copy)]
pub struct PoolBounds {
    pub max_connections: u32,
    /// How long a request waits for a connection (`DB_ACQUIRE_TIMEOUT_MS`).
    pub acquire_timeout: Duration,
    /// The database's bound on one statement (`None`: the server's default).
    pub statement_timeout: Option<Duration>,
}

/// What every new connection is told before its first query.
async fn prepare_session(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    statement_timeout: Option<Duration>,
) -> Result<(), sqlx::Error> {
    if let Some(bound) = statement_timeout {
        bound_statements(conn, backend, bound).await?;
    }
    match backend {
        // The tables' collation for this session too, so that a bound string
        // compares byte for byte with a column (never as an illegal mix of
        // collations).
        Backend::Mysql => {
            conn.execute("SET NAMES utf8mb4 COLLATE utf8mb4_bin")
                .await?;
        }
        // The busy timeout first, so that even the pragmas below queue behind a
        // writer instead of failing; WAL lets readers run beside the one writer.
        Backend::Sqlite => {
            conn.execute("PRAGMA busy_timeout = 30000").await?;
            conn.execute("PRAGMA journal_mode = WAL").await?;
            conn.execute("PRAGMA synchronous = NORMAL").await?;
            conn.execute("PRAGMA foreign_keys = ON").await?;
        }
        Backend::Postgres => {}
    }
    Ok(())
}

/// The database's own bound on every statement of this session, so that a
/// statement whose request was cut off (the request deadline, a client gone)
/// stops holding its locks: Postgres `statement_timeout` (every statement,
/// lock waits included); MariaDB `max_statement_time` (seconds; every
/// statement but those inside stored procedures); MySQL, which has neither,
/// `max_execution_time` (read-only SELECTs only). SQLite has none (its
/// writers wait at most their busy timeout).
async fn bound_statements(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    bound: Duration,
) -> Result<(), sqlx::Error> {
    let ms = bound.as_millis();
    match backend {
        Backend::Postgres => {
            conn.execute(format!("SET statement_timeout = {ms}").as_str())
                .await?;
        }
        Backend::Mysql => {
            let mariadb = format!("SET SESSION max_statement_time = {}", bound.as_secs_f64());
            if conn.execute(mariadb.as_str()).await.is_err() {
                conn.execute(format!("SET SESSION max_execution_time = {ms}").as_str())
                    .await?;
            }
        }
        Backend::Sqlite => {}
    }
    Ok(())
}

fn backend_of(url: &str) -> Result<Backend, DbSetupError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Ok(Backend::Mysql)
    } else if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else {
        Err(DbSetupError::UnsupportedUrl(url.to_string()))
    }
}

/// The file path of a `sqlite:` URL (empty or `:memory:` for an in-memory one).
fn sqlite_path(url: &str) -> String {
    url.trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Takes the exclusive lock of `<path>.lock`, or says who holds it.
fn lock_sqlite_file(path: &str) -> Result<Option<Arc<std::fs::File>>, DbSetupError> {
    if path.is_empty() || path.starts_with(":memory:") {
        return Ok(None);
    }
    let lock_error = |source| DbSetupError::Lock {
        path: path.to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{path}.lock"))
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Arc::new(file))),
        Err(std::fs::TryLockError::WouldBlock) => Err(DbSetupError::InUse {
            path: path.to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(lock_error(source)),
    }
}

fn create_sqlite_directory(url: &str) -> Result<(), DbSetupError> {
    let path = sqlite_path(url);
    let Some(parent) = std::path::Path::new(&path).parent() else {
        return Ok(());
    };
    if parent.as_os_str().is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(parent).map_err(|source| DbSetupError::CreateDir {
        path: path.to_string(),
        source,
    })
}

/// Commits `tx`.
pub async fn commit(tx: Tx) -> Result<(), StoreError> {
    tx.commit().await.context("db::commit")
}

/// Rolls `tx` back.
pub async fn rollback(tx: Tx) -> Result<(), StoreError> {
    tx.rollback().await.context("db::rollback")
}

/// A duration as whole milliseconds, for epoch-millisecond arithmetic.
pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Wall-clock time in Unix epoch milliseconds: the one clock of every stored timestamp.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// `($1, $2, …), ($n+1, …)`: the VALUES rows of one multi-row statement
/// (group commit writes a whole batch with one statement per table).
pub fn values_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| format!("({})", placeholders(row * columns + 1, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `SELECT $1 AS a, $2 AS b UNION ALL SELECT $3, $4 …`: the rows of a batch as
/// a derived table, for MySQL, which has no `UPDATE … FROM (VALUES …)` (and
/// whose row constructors MariaDB spells differently).
pub fn select_rows(rows: usize, columns: &[&str]) -> String {
    (0..rows)
        .map(|row| {
            let first = row * columns.len() + 1;
            let values: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(at, name)| match row {
                    0 => format!("${} AS {name}", first + at),
                    _ => format!("${}", first + at),
                })
                .collect();
            format!("SELECT {}", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// `$first, $first+1, …`: `count` numbered placeholders, comma-separated.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|at| format!("${at}"))
        .collect::<Vec<_>>()
        .join(", ")
}
