//! The public number of an order: `FG` followed by 32 hex digits of a UUIDv7, so
//! numbers sort by creation time and cannot be guessed.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderNo(String);

impl OrderNo {
    pub fn generate() -> Self {
        Self(format!("FG{}", uuid::Uuid::now_v7().simple()))
    }

    /// Parses an order number from a path; anything else is simply "no such order".
    pub fn parse(raw: &str) -> Option<Self> {
        let digits = raw.strip_prefix("FG")?;
        let well_formed = digits.len() == 32 && digits.bytes().all(|b| b.is_ascii_hexdigit());
        well_formed.then(|| Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_numbers_parse_and_differ() {
        let a = OrderNo::generate();
        let b = OrderNo::generate();
        assert_ne!(a, b);
        assert_eq!(OrderNo::parse(a.as_str()), Some(a));
    }

    #[test]
    fn refuses_other_shapes() {
        assert_eq!(OrderNo::parse("FG123"), None);
        assert_eq!(OrderNo::parse("XX0123456789abcdef0123456789abcdef"), None);
        assert_eq!(OrderNo::parse("' OR 1=1 --"), None);
    }
}
