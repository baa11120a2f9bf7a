//! One schema, three dialects: the migration set of the server engine of
//! `DATABASE_URL` (Postgres or MySQL) and SQLite's are applied to fresh
//! databases and their shapes compared — tables, columns (type family, NOT
//! NULL), primary keys, unique constraints, named indexes (unique, columns,
//! partial predicate), foreign keys, and the columns each CHECK constraint
//! reads. A change to one dialect without the others fails here: CI's Postgres
//! run and its MySQL run together cover all three.
//!
//! MySQL has no partial index; its migrations write one as a generated column
//! (`IF(<predicate>, <column>, NULL)`) under a unique index, or, for a plain
//! index, with the partial form it stands for in the index's comment
//! (`partial: (<columns>) WHERE <predicate>`). This reader turns both back into
//! the partial index, so the three are compared as one design.
//!
//! Needs a database server: it runs where `DATABASE_URL` is `postgres://…` or
//! `mysql://…` (CI's real-stack runs) and says so where it is not.

use std::collections::{BTreeMap, BTreeSet};

use flashguard::store::Db;
use sqlx::AnyPool;

use crate::helpers::{create_test_database, database_server};

#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    /// name → (type family, not null)
    columns: BTreeMap<String, (String, bool)>,
    primary_key: Vec<String>,
    uniques: BTreeSet<Vec<String>>,
    /// name → (unique, columns, normalised predicate)
    indexes: BTreeMap<String, (bool, Vec<String>, String)>,
    /// (column, referenced table, referenced column)
    foreign_keys: BTreeSet<(String, String, String)>,
    check_columns: BTreeSet<String>,
}

type Schema = BTreeMap<String, Table>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Postgres on 127.0.0.1:5432 or DATABASE_URL to a server; cargo test -- --include-ignored"]
async fn the_migration_sets_build_the_same_schema() {
    let server_url = database_server("the schema comparison");
    let server = migrated(
        &create_test_database(&server_url, &uuid::Uuid::new_v4().simple().to_string()).await,
    )
    .await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = migrated(&format!(
        "sqlite://{}/schema.db?mode=rwc",
        dir.path().display()
    ))
    .await;
    let (engine, server) = if server_url.starts_with("postgres") {
        ("postgres", postgres_schema(server.pool()).await)
    } else {
        ("mysql", mysql_schema(server.pool()).await)
    };
    let sqlite = sqlite_schema(sqlite.pool()).await;

    assert!(server.len() >= 9, "the schema has its tables: {server:#?}");
    assert_eq!(
        server.keys().collect::<Vec<_>>(),
        sqlite.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    let columns: usize = server.values().map(|table| table.columns.len()).sum();
    let indexes: usize = server.values().map(|table| table.indexes.len()).sum();
    eprintln!(
        "schema compared ({engine} and sqlite): {} tables, {columns} columns, {indexes} named indexes",
        server.len()
    );
    for (name, table) in &server {
        assert_eq!(
            Some(table),
            sqlite.get(name),
            "table {name}: {engine} (left) vs sqlite (right)"
        );
    }
}

async fn migrated(url: &str) -> Db {
    let bounds = flashguard::store::PoolBounds {
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(5),
        statement_timeout: None,
    };
    let db = Db::connect(url, bounds).await.expect("connect");
    db.migrate().await.expect("migrations apply");
    db
}

/// `BIGINT`, `INTEGER`, `BIGSERIAL` → integer; `TEXT`, `VARCHAR` → text;
/// `BOOLEAN` (MySQL's `tinyint(1)`) → boolean.
fn type_family(declared: &str) -> String {
    let declared = declared.to_ascii_lowercase();
    if declared == "tinyint(1)" {
        "boolean".into()
    } else if declared.contains("int") || declared.contains("serial") {
        "integer".into()
    } else if declared.contains("bool") {
        "boolean".into()
    } else if declared.contains("char") || declared.contains("text") {
        "text".into()
    } else {
        declared
    }
}

/// `WHERE (guarded AND (status <> 'FAILED'::text))` and
/// `WHERE guarded = 1 AND status <> 'FAILED'` both become `guardedandstatus<>'failed'`.
fn normalise_predicate(predicate: &str) -> String {
    predicate
        .to_ascii_lowercase()
        .replace("::text", "")
        .replace(['(', ')', ' ', '\n'], "")
        .replace("<>0", "")
        .replace("=1", "")
        .replace("=true", "")
        .replace('`', "")
}

/// The text between the parentheses that follow `marker` (nested ones kept).
fn parenthesised_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let upper = text.to_ascii_uppercase();
    let mut from = 0;
    while let Some(at) = upper[from..].find(marker) {
        let start = from + at + marker.len();
        let Some(open) = text[start..].find('(') else {
            break;
        };
        let open = start + open;
        let mut depth = 0;
        for (i, ch) in text[open..].char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                found.push(&text[open + 1..open + i]);
                break;
            }
        }
        from = open + 1;
    }
    found
}

fn column_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|column| column.trim().trim_matches('"').to_string())
        .collect()
}

/// The table's columns named in `expression`.
fn columns_in(expression: &str, table: &Table) -> BTreeSet<String> {
    expression
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| table.columns.contains_key(*word))
        .map(str::to_string)
        .collect()
}

async fn rows<T>(pool: &AnyPool, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    sqlx::query_as::<_, T>(sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

async fn postgres_schema(pool: &AnyPool) -> Schema {
    let mut schema = Schema::new();
    let columns: Vec<(String, String, String, String)> = rows(
        pool,
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text
           FROM information_schema.columns
          WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .await;
    for (table, column, data_type, nullable) in columns {
        let entry = schema.entry(table).or_default();
        entry
            .columns
            .insert(column, (type_family(&data_type), nullable == "NO"));
    }
    let constraints: Vec<(String, String, String, String)> = rows(
        pool,
        "SELECT conrelid::regclass::text, conname::text, contype::text, pg_get_constraintdef(oid)
           FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
    )
    .await;
    let mut constraint_names = BTreeSet::new();
    for (table, name, kind, definition) in constraints {
        let Some(entry) = schema.get_mut(&table) else {
            continue;
        };
        constraint_names.insert(name);
        let inside = parenthesised_after(&definition, "")
            .first()
            .copied()
            .unwrap_or_default();
        match kind.as_str() {
            "p" => entry.primary_key = column_list(inside),
            "u" => {
                entry.uniques.insert(column_list(inside));
            }
            "f" => {
                let target = definition.split("REFERENCES ").nth(1).unwrap_or_default();
                let (ref_table, rest) = target.split_once('(').unwrap_or_default();
                entry.foreign_keys.insert((
                    inside.to_string(),
                    ref_table.trim().to_string(),
                    rest.trim_end_matches(')').to_string(),
                ));
            }
            "c" => {
                let columns = columns_in(&definition, entry);
                entry.check_columns.extend(columns);
            }
            _ => {}
        }
    }
    let indexes: Vec<(String, String, String)> = rows(
        pool,
        "SELECT tablename::text, indexname::text, indexdef FROM pg_indexes
          WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'",
    )
    .await;
    for (table, name, definition) in indexes {
        if constraint_names.contains(&name) {
            continue;
        }
        let unique = definition.starts_with("CREATE UNIQUE");
        let columns = parenthesised_after(&definition, "USING BTREE")
            .first()
            .copied()
            .unwrap_or_default();
        let predicate = definition.split(" WHERE ").nth(1).unwrap_or_default();
        if let Some(entry) = schema.get_mut(&table) {
            entry.indexes.insert(
                name,
                (unique, column_list(columns), normalise_predicate(predicate)),
            );
        }
    }
    schema
}

async fn sqlite_schema(pool: &AnyPool) -> Schema {
    let mut schema = Schema::new();
    let tables: Vec<(String, String)> = rows(
        pool,
        "SELECT name, sql FROM sqlite_master
          WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .await;
    for (table, create_sql) in tables {
        let mut entry = Table::default();
        let columns: Vec<(String, String, i64, i64)> = rows(
            pool,
            &format!(
                "SELECT name, type, \"notnull\", pk FROM pragma_table_info('{table}') ORDER BY pk"
            ),
        )
        .await;
        for (column, declared, not_null, pk) in columns {
            // A SQLite primary key column is NOT NULL in effect (rowid alias).
            entry.columns.insert(
                column.clone(),
                (type_family(&declared), not_null == 1 || pk > 0),
            );
            if pk > 0 {
                entry.primary_key.push(column);
            }
        }
        for check in parenthesised_after(&create_sql, "CHECK") {
            let columns = columns_in(check, &entry);
            entry.check_columns.extend(columns);
        }
        let foreign_keys: Vec<(String, String, String)> = rows(
            pool,
            &format!("SELECT \"from\", \"table\", \"to\" FROM pragma_foreign_key_list('{table}')"),
        )
        .await;
        entry.foreign_keys.extend(foreign_keys);
        sqlite_indexes(pool, &table, &mut entry).await;
        schema.insert(table, entry);
    }
    schema
}

async fn sqlite_indexes(pool: &AnyPool, table: &str, entry: &mut Table) {
    let indexes: Vec<(String, i64, String)> = rows(
        pool,
        &format!("SELECT name, \"unique\", origin FROM pragma_index_list('{table}')"),
    )
    .await;
    for (name, unique, origin) in indexes {
        let columns: Vec<(String,)> = rows(
            pool,
            &format!("SELECT name FROM pragma_index_info('{name}') ORDER BY seqno"),
        )
        .await;
        let columns: Vec<String> = columns.into_iter().map(|(column,)| column).collect();
        match origin.as_str() {
            "u" => {
                entry.uniques.insert(columns);
            }
            "c" => {
                let sql: Vec<(String,)> = rows(
                    pool,
                    &format!(
                        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = '{name}'"
                    ),
                )
                .await;
                let sql = sql.into_iter().next().map(|(sql,)| sql).unwrap_or_default();
                let predicate = sql.split(" WHERE ").nth(1).unwrap_or_default();
                entry
                    .indexes
                    .insert(name, (unique == 1, columns, normalise_predicate(predicate)));
            }
            _ => {} // "pk": the primary key, compared above
        }
    }
}

/// MySQL's `information_schema`, read the way the other two are.
async fn mysql_schema(pool: &AnyPool) -> Schema {
    let mut schema = Schema::new();
    let generated = mysql_columns(pool, &mut schema).await;
    let keys: Vec<(String, String, String, String)> = rows(
        pool,
        "SELECT TABLE_NAME, INDEX_NAME, CAST(NON_UNIQUE AS CHAR(1)), COLUMN_NAME
           FROM information_schema.STATISTICS
          WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME <> '_sqlx_migrations'
          ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
    )
    .await;
    let comments: BTreeMap<(String, String), String> = rows::<(String, String, String)>(
        pool,
        "SELECT DISTINCT TABLE_NAME, INDEX_NAME, INDEX_COMMENT FROM information_schema.STATISTICS
          WHERE TABLE_SCHEMA = DATABASE() AND INDEX_COMMENT LIKE 'partial:%'",
    )
    .await
    .into_iter()
    .map(|(table, index, comment)| ((table, index), comment))
    .collect();
    let mut indexes: BTreeMap<(String, String), (bool, Vec<String>)> = BTreeMap::new();
    for (table, index, non_unique, column) in keys {
        let entry = indexes.entry((table, index)).or_default();
        entry.0 = non_unique == "0";
        entry.1.push(column);
    }
    for ((table, index), (unique, columns)) in indexes {
        let Some(entry) = schema.get_mut(&table) else {
            continue;
        };
        let named = index.ends_with("_idx") || index.ends_with("_uniq");
        let partial = comments.get(&(table.clone(), index.clone()));
        match (index.as_str(), named) {
            ("PRIMARY", _) => entry.primary_key = columns,
            (_, false) => {
                entry.uniques.insert(columns);
            }
            (_, true) => {
                let shape = as_partial(&table, columns, partial, &generated);
                entry.indexes.insert(index, (unique, shape.0, shape.1));
            }
        }
    }
    mysql_constraints(pool, &mut schema).await;
    schema
}

/// A MySQL index as the partial index it stands for: a generated column
/// `IF(<predicate>, <column>, NULL)` becomes `<column> … WHERE <predicate>`; a
/// `partial:` comment gives its columns and predicate.
fn as_partial(
    table: &str,
    columns: Vec<String>,
    comment: Option<&String>,
    generated: &BTreeMap<(String, String), String>,
) -> (Vec<String>, String) {
    if let Some(comment) = comment {
        let text = comment.trim_start_matches("partial:").trim();
        let (inside, predicate) = text.split_once(" WHERE ").unwrap_or((text, ""));
        let inside = inside.trim().trim_start_matches('(').trim_end_matches(')');
        return (column_list(inside), normalise_predicate(predicate));
    }
    let mut predicate = String::new();
    let columns = columns
        .into_iter()
        .map(
            |column| match generated.get(&(table.to_string(), column.clone())) {
                Some(expression) => {
                    // if(<predicate>,<column>,NULL)
                    let inner = expression
                        .trim()
                        .trim_start_matches("if(")
                        .trim_end_matches(')');
                    let parts: Vec<&str> = inner.rsplitn(3, ',').collect();
                    predicate = normalise_predicate(parts.get(2).copied().unwrap_or_default());
                    parts.get(1).copied().unwrap_or_default().replace('`', "")
                }
                None => column,
            },
        )
        .collect();
    (columns, predicate)
}

/// The columns (generated ones left out and returned: (table, column) →
/// expression), with their type family and NOT NULL.
async fn mysql_columns(pool: &AnyPool, schema: &mut Schema) -> BTreeMap<(String, String), String> {
    let columns: Vec<(String, String, String, String, String, String)> = rows(
        pool,
        "SELECT TABLE_NAME, COLUMN_NAME, CAST(COLUMN_TYPE AS CHAR(255)), IS_NULLABLE, EXTRA,
                CAST(COALESCE(GENERATION_EXPRESSION, '') AS CHAR(1000))
           FROM information_schema.COLUMNS
          WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME <> '_sqlx_migrations'",
    )
    .await;
    let mut generated = BTreeMap::new();
    for (table, column, column_type, nullable, extra, expression) in columns {
        if extra.to_ascii_uppercase().contains("GENERATED") {
            generated.insert((table, column), expression.to_ascii_lowercase());
            continue;
        }
        schema
            .entry(table)
            .or_default()
            .columns
            .insert(column, (type_family(&column_type), nullable == "NO"));
    }
    generated
}

/// Foreign keys and the columns each CHECK reads.
async fn mysql_constraints(pool: &AnyPool, schema: &mut Schema) {
    let foreign_keys: Vec<(String, String, String, String)> = rows(
        pool,
        "SELECT TABLE_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME
           FROM information_schema.KEY_COLUMN_USAGE
          WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL",
    )
    .await;
    for (table, column, referenced_table, referenced_column) in foreign_keys {
        if let Some(entry) = schema.get_mut(&table) {
            entry
                .foreign_keys
                .insert((column, referenced_table, referenced_column));
        }
    }
    let checks: Vec<(String, String)> = rows(
        pool,
        "SELECT tc.TABLE_NAME, CAST(cc.CHECK_CLAUSE AS CHAR(1000))
           FROM information_schema.TABLE_CONSTRAINTS tc
           JOIN information_schema.CHECK_CONSTRAINTS cc
             ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
          WHERE tc.TABLE_SCHEMA = DATABASE() AND tc.CONSTRAINT_TYPE = 'CHECK'",
    )
    .await;
    for (table, clause) in checks {
        if let Some(entry) = schema.get_mut(&table) {
            let columns = columns_in(&clause.replace('`', ""), entry);
            entry.check_columns.extend(columns);
        }
    }
}
