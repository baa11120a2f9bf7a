//! How an error is printed with everything that caused it.
//!
//! The convention of this crate's errors: a variant's message says what failed at
//! its own layer ("cannot apply migrations") and the error it wraps is its
//! `source()`, never repeated in the message; a variant that only passes an inner
//! error on is `#[error(transparent)]`. So no message contains its cause, and the
//! whole story is the chain of sources, joined here: `cannot apply migrations:
//! migration 7 was previously applied but is missing`.
//!
//! Some libraries' errors do put their source in their own message as well
//! (`sqlx::Error::Io` is "error communicating with database: {io error}" and
//! returns the io error as its source); a cause whose text the line already ends
//! with is therefore not printed twice.

use std::error::Error;
use std::fmt;

/// Displays an error and its sources, separated by ": ".
pub struct Causes<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        for text in lines(self.0) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        f.write_str(&line)
    }
}

/// The error's message, then each cause's that does not repeat the one before.
pub fn lines(error: &(dyn Error + 'static)) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let text = current.to_string();
        let repeated = lines
            .last()
            .is_some_and(|previous| previous.ends_with(&text));
        if !repeated && !text.is_empty() {
            lines.push(text);
        }
        next = current.source();
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot apply migrations")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("error communicating with database: {0}")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn each_cause_is_printed_once() {
        let error = Outer(Inner(std::io::Error::other("connection refused")));
        assert_eq!(
            Causes(&error).to_string(),
            "cannot apply migrations: error communicating with database: connection refused"
        );
        assert_eq!(lines(&error).len(), 2);
    }
}
