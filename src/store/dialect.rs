//! Three dialects through one driver (docs/mysql.md): `sqlx::Any` passes SQL
//! to the engine as written, and Postgres wants `$1` where MySQL wants `?`.
//! Statements are written once with `$1 … $n` — numbered in the order they
//! appear, each used once — and [`sql`] gives MySQL its `?`s, and its name for
//! a 64-bit integer in a cast (`AS BIGINT)` → `AS SIGNED)`); those are the only
//! two rewrites. Everything else that differs is written out per engine, side
//! by side, in the store function. A store function runs on a [`Conn`], which
//! says which engine it is and lends the executor once per statement.

use std::borrow::Cow;

use sqlx::{Any, AnyConnection, AnyPool, Executor};

use super::db::Backend;

/// Where a statement runs: the pool (each statement on any connection) or one
/// connection (a transaction's: `&mut **tx`).
pub trait Conn: Send {
    /// The engine behind it.
    fn backend(&self) -> Backend;
    /// The executor for one statement.
    fn executor(&mut self) -> impl Executor<'_, Database = Any>;
}

impl Conn for &AnyPool {
    fn backend(&self) -> Backend {
        Backend::of_scheme(self.connect_options().database_url.scheme())
    }

    fn executor(&mut self) -> impl Executor<'_, Database = Any> {
        *self
    }
}

impl Conn for &mut AnyConnection {
    fn backend(&self) -> Backend {
        Backend::of_driver_name(self.backend_name())
    }

    fn executor(&mut self) -> impl Executor<'_, Database = Any> {
        &mut **self
    }
}

/// `text` as `backend` reads it: unchanged for Postgres and SQLite; for MySQL
/// each `$n` outside quotes becomes `?`, and `AS BIGINT)` becomes `AS SIGNED)`
/// (a sum is cast back to a 64-bit integer because Postgres returns NUMERIC and
/// MySQL DECIMAL for `SUM(bigint)`, which the Any driver cannot decode).
pub fn sql(backend: Backend, text: &str) -> Cow<'_, str> {
    match backend {
        Backend::Postgres | Backend::Sqlite => Cow::Borrowed(text),
        Backend::Mysql => Cow::Owned(question_marks(text).replace("AS BIGINT)", "AS SIGNED)")),
    }
}

/// Replaces `$1 … $n` (outside single-quoted literals) with `?`. The numbers
/// must run 1, 2, 3… in the order they appear, since `?` binds by position;
/// a statement that breaks the rule is a bug that the MySQL test run finds
/// (and a debug build reports here).
fn question_marks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut quoted, mut expected) = (false, 1usize);
    while let Some(ch) = chars.next() {
        if ch == '\'' {
            quoted = !quoted;
        }
        if ch != '$' || quoted || !chars.peek().is_some_and(char::is_ascii_digit) {
            out.push(ch);
            continue;
        }
        let mut number = 0usize;
        while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
            number = number * 10 + digit as usize;
            chars.next();
        }
        debug_assert_eq!(number, expected, "placeholders out of order in: {text}");
        expected = number + 1;
        out.push('?');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_gets_question_marks_and_the_others_the_text() {
        let text = "UPDATE t SET a = $1, b = '$2' WHERE id = $2 AND n >= $3";
        assert_eq!(
            sql(Backend::Mysql, text),
            "UPDATE t SET a = ?, b = '$2' WHERE id = ? AND n >= ?"
        );
        assert_eq!(sql(Backend::Postgres, text), text);
        assert_eq!(sql(Backend::Sqlite, text), text);
        assert_eq!(
            sql(Backend::Mysql, "SELECT CAST(SUM(n) AS BIGINT) FROM t"),
            "SELECT CAST(SUM(n) AS SIGNED) FROM t"
        );
        let many = super::super::values_rows(4, 3);
        assert_eq!(sql(Backend::Mysql, &many).matches('?').count(), 12);
    }

    /// Every statement written out in `store/` numbers its `$n` 1, 2, 3… in
    /// the order they appear (statements assembled from pieces are checked by
    /// the debug assertion when they run).
    #[test]
    fn every_statement_numbers_its_placeholders_in_order() {
        let sources = [
            ("audit.rs", include_str!("audit.rs")),
            ("idempotency_keys.rs", include_str!("idempotency_keys.rs")),
            ("lab.rs", include_str!("lab.rs")),
            ("mock_provider.rs", include_str!("mock_provider.rs")),
            ("orders.rs", include_str!("orders.rs")),
            ("outbox.rs", include_str!("outbox.rs")),
            ("payment_events.rs", include_str!("payment_events.rs")),
            ("payments.rs", include_str!("payments.rs")),
            ("products.rs", include_str!("products.rs")),
            ("revoked_tokens.rs", include_str!("revoked_tokens.rs")),
            ("rewards.rs", include_str!("rewards.rs")),
            ("switch_board.rs", include_str!("switch_board.rs")),
            ("users.rs", include_str!("users.rs")),
        ];
        let mut checked = 0;
        for (file, source) in sources {
            for literal in source.split('"').skip(1).step_by(2) {
                let numbers: Vec<usize> = literal
                    .split('$')
                    .skip(1)
                    .filter_map(|rest| {
                        let digits: String =
                            rest.chars().take_while(char::is_ascii_digit).collect();
                        digits.parse().ok()
                    })
                    .collect();
                if numbers.is_empty() {
                    continue;
                }
                checked += 1;
                let expected: Vec<usize> = (numbers[0]..numbers[0] + numbers.len()).collect();
                assert_eq!(numbers, expected, "{file}: {literal}");
            }
        }
        assert!(checked > 40, "the statements were found ({checked})");
    }

    #[test]
    #[should_panic(expected = "out of order")]
    #[cfg(debug_assertions)]
    fn a_placeholder_used_twice_is_reported() {
        let _ = question_marks("VALUES ($1, $2, $2)");
    }
}
