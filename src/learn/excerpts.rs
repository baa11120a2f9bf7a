//! The real code a lesson shows, cut out of this build's sources. Rust and
//! JavaScript are marked with comments (`// [lesson name]` … `// [/lesson]`);
//! migrations (append-only, so never re-edited) are cut by statement.

/// A source file of this build, embedded at compile time.
struct Source {
    path: &'static str,
    text: &'static str,
}

macro_rules! sources {
    ($($path:literal),* $(,)?) => {
        &[$(Source { path: $path, text: include_str!(concat!("../../", $path)) }),*]
    };
}

const SOURCES: &[Source] = sources!(
    "src/defenses/idempotency_key.rs",
    "src/defenses/unique_index.rs",
    "src/defenses/version_lock.rs",
    "src/defenses/stock_gate.rs",
    "src/defenses/payment_token.rs",
    "src/defenses/order_lock.rs",
    "src/defenses/state_check.rs",
    "src/defenses/callback_dedup.rs",
    "src/defenses/message_dedup.rs",
    "src/flows/orders/alone.rs",
    "src/flows/orders/front_door.rs",
    "src/flows/payments.rs",
    "src/flows/rewards.rs",
    "src/flows/notifications.rs",
    "src/flows/reconciliation.rs",
    "src/psp/alipay.rs",
    "src/psp/wechatpay.rs",
    "src/routes/notifications.rs",
    "src/store/idempotency_keys.rs",
    "src/store/products.rs",
    "src/store/orders.rs",
    "src/store/rewards.rs",
    "src/store/redis_kv.rs",
    "src/store/redis_bus.rs",
    "src/store/amqp_bus.rs",
    "src/store/lab.rs",
    "src/lab/innodb.rs",
    "src/domain/status.rs",
    "static/app.js",
    "migrations/postgres/20261126000001_foundation.sql",
    "migrations/postgres/20261126000002_payments.sql",
    "migrations/mysql/20261126000001_foundation.sql",
);

/// Where an excerpt comes from and how it is cut out.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    /// The lines between `[lesson <name>]` and `[/lesson]`.
    Marked(&'static str),
    /// The SQL statement that starts with this text, up to its `;`.
    Statement(&'static str),
}

/// The excerpt `cut` of the file `path`, dedented; `None` if the file is not
/// embedded or the marker is missing.
pub fn excerpt(path: &str, cut: Cut) -> Option<String> {
    let text = SOURCES.iter().find(|source| source.path == path)?.text;
    let lines: Vec<&str> = match cut {
        Cut::Marked(name) => marked(text, name)?,
        Cut::Statement(start) => statement(text, start)?,
    };
    Some(dedent(&lines))
}

fn marked<'a>(text: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let start = format!("[lesson {name}]");
    let mut lines = text.lines().skip_while(|line| !line.contains(&start));
    lines.next()?;
    let body: Vec<&str> = lines
        .take_while(|line| !line.contains("[/lesson]"))
        .collect();
    (!body.is_empty()).then_some(body)
}

fn statement<'a>(text: &'a str, start: &str) -> Option<Vec<&'a str>> {
    let mut lines = text.lines().skip_while(|line| !line.starts_with(start));
    let mut body = Vec::new();
    for line in lines.by_ref() {
        body.push(line);
        if line.trim_end().ends_with(';') {
            return Some(body);
        }
    }
    None
}

fn dedent(lines: &[&str]) -> String {
    let indent = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|line| line.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_lines_are_cut_out_and_dedented() {
        let text = "a\n    // [lesson x]\n    fn f() {\n        1\n    }\n    // [/lesson]\nb";
        assert_eq!(
            marked(text, "x").map(|l| dedent(&l)),
            Some("fn f() {\n    1\n}".into())
        );
        assert_eq!(marked(text, "y"), None);
    }

    #[test]
    fn statements_run_to_their_semicolon() {
        let text = "CREATE TABLE t (\n  a INT\n);\nCREATE INDEX i ON t (a)\n  WHERE a > 0;\n";
        assert_eq!(
            statement(text, "CREATE INDEX i").map(|l| l.join("\n")),
            Some("CREATE INDEX i ON t (a)\n  WHERE a > 0;".into())
        );
    }
}
