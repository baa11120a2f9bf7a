//! The sale catalogue: reads, and the reset that starts a clean sale.

use serde::{Deserialize, Serialize};
use sqlx::{FromRow, Row};

use super::db::Backend;
use super::error::{QueryContext, StoreError};
use super::{Conn, Db, Tx, now_ms, sql};

use crate::causes::Causes;

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub price_cents: i64,
    pub stock: i64,
    pub initial_stock: i64,
    /// Unix epoch milliseconds; `None` when the sale is open.
    pub sale_starts_at: Option<i64>,
}

/// What one read of the stock row saw: the input of the version check.
#[derive(Debug, Clone, Copy, FromRow)]
pub struct StockSnapshot {
    pub id: i64,
    pub stock: i64,
    pub version: i64,
    pub price_cents: i64,
    pub sale_starts_at: Option<i64>,
}

/// A product to create on reset (the bounds are [`NewProduct::check`]'s).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(minimum = 1, maximum = 100_000_000)]
    pub price_cents: i64,
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub stock: i64,
    /// The sale opens this many seconds after the reset (absent: open now).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub starts_in_secs: Option<i64>,
}

/// Bounds of the catalogue (docs/design.md §4): money and time stay far from
/// any overflow, and a reset cannot create a sale that never ends.
pub const MAX_PRODUCTS: usize = 100;
pub const MAX_NAME_CHARS: usize = 100;
/// ¥1,000,000.00
pub const MAX_PRICE_CENTS: i64 = 100_000_000;
pub const MAX_STOCK: i64 = 1_000_000;
/// 30 days.
pub const MAX_STARTS_IN_SECS: i64 = 30 * 24 * 3600;

impl NewProduct {
    /// Says which field is out of its range, if one is.
    pub fn check(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(format!(
                "product name must be 1 to {MAX_NAME_CHARS} characters"
            ));
        }
        if name.chars().any(char::is_control) {
            // A NUL byte would reach Postgres, which cannot store it in text.
            return Err("product name must not hold control characters".into());
        }
        if !(1..=MAX_PRICE_CENTS).contains(&self.price_cents) {
            return Err(format!("price_cents must be 1 to {MAX_PRICE_CENTS}"));
        }
        if !(0..=MAX_STOCK).contains(&self.stock) {
            return Err(format!("stock must be 0 to {MAX_STOCK}"));
        }
        if self
            .starts_in_secs
            .is_some_and(|secs| !(0..=MAX_STARTS_IN_SECS).contains(&secs))
        {
            return Err(format!("starts_in_secs must be 0 to {MAX_STARTS_IN_SECS}"));
        }
        Ok(())
    }
}

/// The catalogue a fresh database (and a reset without a body) starts with.
pub fn seed_catalogue() -> Vec<NewProduct> {
    let product = |name: &str, price_cents, stock| NewProduct {
        name: name.to_string(),
        price_cents,
        stock,
        starts_in_secs: None,
    };
    vec![
        product("限量秒杀 Flash sale: mechanical keyboard", 19_900, 100),
        product("咖啡豆 Coffee beans, 1 kg", 6_800, 1_000),
        product("笔记本 Paper notebook", 1_500, 1_000),
    ]
}

const PRODUCT_COLUMNS: &str = "id, name, price_cents, stock, initial_stock, sale_starts_at";

pub async fn list(mut conn: impl Conn) -> Result<Vec<Product>, StoreError> {
    sqlx::query_as::<_, Product>(&sql(
        conn.backend(),
        &format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id"),
    ))
    .fetch_all(conn.executor())
    .await
    .context("products::list")
}

pub async fn find(mut conn: impl Conn, id: i64) -> Result<Option<Product>, StoreError> {
    sqlx::query_as::<_, Product>(&sql(
        conn.backend(),
        &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"),
    ))
    .bind(id)
    .fetch_optional(conn.executor())
    .await
    .context("products::find")
}

pub async fn stock_snapshot(
    mut conn: impl Conn,
    id: i64,
) -> Result<Option<StockSnapshot>, StoreError> {
    sqlx::query_as::<_, StockSnapshot>(&sql(
        conn.backend(),
        "SELECT id, stock, version, price_cents, sale_starts_at FROM products WHERE id = $1",
    ))
    .bind(id)
    .fetch_optional(conn.executor())
    .await
    .context("products::stock_snapshot")
}

/// [`stock_snapshot`] of several products in one statement (a batch's).
pub async fn stock_snapshots(
    mut conn: impl Conn,
    ids: &[i64],
) -> Result<Vec<StockSnapshot>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let statement = format!(
        "SELECT id, stock, version, price_cents, sale_starts_at FROM products WHERE id IN ({})",
        super::placeholders(1, ids.len())
    );
    let text = sql(conn.backend(), &statement);
    let mut query = sqlx::query_as::<_, StockSnapshot>(&text);
    for id in ids {
        query = query.bind(*id);
    }
    query
        .fetch_all(conn.executor())
        .await
        .context("products::stock_snapshots")
}

// [lesson products::take_stock_if_version]
/// The optimistic lock (乐观锁) of the `version_lock` defense: takes `quantity`
/// only if the row still has the version that was read, and enough stock.
/// Returns false when someone wrote the row in between. Depends on the
/// isolation level and the engine: under READ COMMITTED (PostgreSQL's default,
/// which flashguard uses there) a concurrent writer makes this update wait for
/// the row lock and then match 0 rows; under REPEATABLE READ PostgreSQL would
/// raise a serialization failure instead. InnoDB at its default REPEATABLE
/// READ behaves like the first: an UPDATE is a current read (当前读) of the
/// latest committed row, not of the transaction's snapshot, so it too waits
/// and then matches 0 rows (docs: /learn/topics/transactions).
pub async fn take_stock_if_version(
    mut conn: impl Conn,
    read: &StockSnapshot,
    quantity: i64,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(&sql(
        conn.backend(),
        "UPDATE products SET stock = stock - $1, version = version + 1
          WHERE id = $2 AND version = $3 AND stock >= $4",
    ))
    .bind(quantity)
    .bind(read.id)
    .bind(read.version)
    .bind(quantity)
    .execute(conn.executor())
    .await
    .context("products::take_stock_if_version")?;
    Ok(updated.rows_affected() == 1)
}
// [/lesson]

// [lesson products::take_stock_if_enough]
/// The conditional decrement (条件扣减): takes `quantity` if the row, as it is
/// now, has enough. No earlier read is needed: the update re-checks the current
/// row under its row lock (PostgreSQL's READ COMMITTED re-evaluates the WHERE
/// after waiting for a concurrent writer; in InnoDB an UPDATE is a locking,
/// current read). False means sold out, never "retry". The version is bumped
/// too, so version checks elsewhere still see the change.
pub async fn take_stock_if_enough(
    mut conn: impl Conn,
    product_id: i64,
    quantity: i64,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(&sql(
        conn.backend(),
        "UPDATE products SET stock = stock - $1, version = version + 1
          WHERE id = $2 AND stock >= $3",
    ))
    .bind(quantity)
    .bind(product_id)
    .bind(quantity)
    .execute(conn.executor())
    .await
    .context("products::take_stock_if_enough")?;
    Ok(updated.rows_affected() == 1)
}
// [/lesson]

/// [`take_stock_if_version`] for several products in one statement (group
/// commit): true only if every row still had the version read and enough
/// stock; otherwise the caller rolls back (some rows may have been taken).
pub async fn take_stock_if_versions(
    mut conn: impl Conn,
    takes: &[(&StockSnapshot, i64)],
) -> Result<bool, StoreError> {
    if takes.is_empty() {
        return Ok(true);
    }
    // [lesson products::batch_take]
    let statement = match conn.backend() {
        Backend::Postgres | Backend::Sqlite => format!(
            "WITH takes (id, units, version) AS (VALUES {})
             UPDATE products SET stock = products.stock - takes.units, version = products.version + 1
               FROM takes
              WHERE products.id = takes.id AND products.version = takes.version
                AND products.stock >= takes.units",
            super::values_rows(takes.len(), 3)
        ),
        // MySQL has no UPDATE … FROM: a multi-table UPDATE joins the rows.
        Backend::Mysql => format!(
            "UPDATE products JOIN ({}) AS takes ON products.id = takes.id
                SET products.stock = products.stock - takes.units,
                    products.version = products.version + 1
              WHERE products.version = takes.version AND products.stock >= takes.units",
            super::select_rows(takes.len(), &["id", "units", "version"])
        ),
    };
    // [/lesson]
    let text = sql(conn.backend(), &statement);
    let mut query = sqlx::query(&text);
    for (read, units) in takes {
        query = query.bind(read.id).bind(*units).bind(read.version);
    }
    let updated = query
        .execute(conn.executor())
        .await
        .context("products::take_stock_if_versions")?;
    Ok(updated.rows_affected() == takes.len() as u64)
}

/// The unprotected read-modify-write (the lab's `version_lock` off): whatever
/// was read, minus the quantity, overwrites the row.
pub async fn overwrite_stock(
    mut conn: impl Conn,
    read: &StockSnapshot,
    quantity: i64,
) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        "UPDATE products SET stock = $1, version = version + 1 WHERE id = $2",
    ))
    .bind(read.stock - quantity)
    .bind(read.id)
    .execute(conn.executor())
    .await
    .context("products::overwrite_stock")?;
    Ok(())
}

/// Units of a closed order go back to the stock row.
pub async fn restock(
    mut conn: impl Conn,
    product_id: i64,
    quantity: i64,
) -> Result<(), StoreError> {
    sqlx::query(&sql(
        conn.backend(),
        "UPDATE products SET stock = stock + $1, version = version + 1 WHERE id = $2",
    ))
    .bind(quantity)
    .bind(product_id)
    .execute(conn.executor())
    .await
    .context("products::restock")?;
    Ok(())
}

pub async fn count(mut conn: impl Conn) -> Result<i64, StoreError> {
    sqlx::query_scalar(&sql(conn.backend(), "SELECT COUNT(*) FROM products"))
        .fetch_one(conn.executor())
        .await
        .context("products::count")
}

/// Inserts `products` in one transaction and returns them with their ids.
pub async fn insert_all(db: &Db, products: &[NewProduct]) -> Result<Vec<Product>, StoreError> {
    let mut tx = db.begin().await?;
    let created = insert_in(&mut tx, products).await?;
    super::db::commit(tx).await?;
    Ok(created)
}

async fn insert_in(tx: &mut Tx, products: &[NewProduct]) -> Result<Vec<Product>, StoreError> {
    let mut created = Vec::with_capacity(products.len());
    for product in products {
        created.push(insert_one(&mut **tx, product).await?);
    }
    Ok(created)
}

const INSERT_PRODUCT: &str = "INSERT INTO products
    (name, price_cents, stock, initial_stock, version, sale_starts_at)
    VALUES ($1, $2, $3, $4, 0, $5)";

/// Inserts one product and reads it back by its new id: `RETURNING id` on
/// Postgres and SQLite; MySQL has no `RETURNING`, and tells the id it generated
/// (`LAST_INSERT_ID()`) with the insert's result instead.
async fn insert_one(mut conn: impl Conn, product: &NewProduct) -> Result<Product, StoreError> {
    let backend = conn.backend();
    let returning = match backend {
        Backend::Postgres | Backend::Sqlite => " RETURNING id",
        Backend::Mysql => "",
    };
    let statement = format!("{INSERT_PRODUCT}{returning}");
    let text = sql(backend, &statement);
    let insert = sqlx::query(&text)
        .bind(&product.name)
        .bind(product.price_cents)
        .bind(product.stock)
        .bind(product.stock)
        .bind(sale_start(product));
    let id = if backend == Backend::Mysql {
        let done = insert.execute(conn.executor()).await;
        done.context("products::insert_all")?.last_insert_id()
    } else {
        let row = insert.fetch_one(conn.executor()).await;
        Some(
            row.context("products::insert_all")?
                .try_get("id")
                .context("products::insert_all")?,
        )
    };
    let missing = || StoreError {
        query: "products::insert_all",
        source: sqlx::Error::RowNotFound,
    };
    find(conn, id.ok_or_else(missing)?)
        .await?
        .ok_or_else(missing)
}

/// When the sale of `product` opens, in epoch milliseconds (now when not delayed).
fn sale_start(product: &NewProduct) -> i64 {
    let delay_ms = product
        .starts_in_secs
        .unwrap_or(0)
        .max(0)
        .saturating_mul(1000);
    now_ms().saturating_add(delay_ms)
}

/// The sale's tables, children first.
const SALE_TABLES: [&str; 10] = [
    "lab_products",
    "mock_provider_charges",
    "payment_events",
    "payments",
    "rewards",
    "processed_messages",
    "outbox",
    "idempotency_keys",
    "orders",
    "products",
];

/// How many times a reset is tried when the database picks it as the victim of
/// a deadlock with a background job (which then retries on its next tick).
const RESET_ATTEMPTS: u32 = 5;

/// Deletes every order, payment, event, message, reward, key and product, then
/// creates `products`: a clean sale, in one transaction. On Postgres the tables
/// are locked first, so an order placed meanwhile waits and then finds its
/// product gone (a clean 404), instead of the reset failing on a foreign key.
/// Locking nine tables can deadlock with a job that holds one of them and
/// wants another (the rewards reconciliation inserts into `outbox` while
/// reading `rewards`); the database then aborts one side and the reset runs again.
pub async fn reset_sale(db: &Db, products: &[NewProduct]) -> Result<Vec<Product>, StoreError> {
    let mut attempt = 1;
    loop {
        match reset_once(db, products).await {
            Err(error) if error.is_transient_conflict() && attempt < RESET_ATTEMPTS => {
                tracing::warn!(error = %Causes(&error), attempt, "reset lost a deadlock; running it again");
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn reset_once(db: &Db, products: &[NewProduct]) -> Result<Vec<Product>, StoreError> {
    let mut tx = db.begin().await?;
    if db.backend() == Backend::Postgres {
        let lock = format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            SALE_TABLES.join(", ")
        );
        sqlx::query(&lock)
            .execute(&mut *tx)
            .await
            .context("products::reset_sale")?;
    }
    for table in SALE_TABLES {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *tx)
            .await
            .context("products::reset_sale")?;
    }
    let created = insert_in(&mut tx, products).await?;
    super::db::commit(tx).await?;
    Ok(created)
}
