//! The client's idempotency key: 1–255 visible ASCII characters. 255 is Stripe's
//! limit; the IETF Idempotency-Key draft asks for a Structured-Field string,
//! which the quoted form of such a key is (docs/design.md §4). It is scoped to
//! the user who sends it.

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

pub const MAX_KEY_LENGTH: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("the Idempotency-Key header is missing")]
    Missing,
    #[error("the Idempotency-Key must be 1 to 255 visible ASCII characters")]
    Invalid,
    #[error("the Idempotency-Key header was sent more than once: one request, one key")]
    Repeated,
}

impl IdempotencyKey {
    /// Parses the value of the `Idempotency-Key` header.
    pub fn parse(raw: &str) -> Result<Self, IdempotencyKeyError> {
        let visible_ascii = raw.bytes().all(|byte| byte.is_ascii_graphic());
        if raw.is_empty() || raw.len() > MAX_KEY_LENGTH || !visible_ascii {
            return Err(IdempotencyKeyError::Invalid);
        }
        Ok(Self(raw.to_string()))
    }

    /// Parses the header from raw bytes, telling a missing header from a bad one.
    pub fn from_header(value: Option<&[u8]>) -> Result<Self, IdempotencyKeyError> {
        let bytes = value.ok_or(IdempotencyKeyError::Missing)?;
        let text = std::str::from_utf8(bytes).map_err(|_| IdempotencyKeyError::Invalid)?;
        Self::parse(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_uuid_and_the_longest_key() {
        assert!(IdempotencyKey::parse("6f1c2b1e-4d2a-4f0b-9a52-0c7f2b1d9e11").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("!~").is_ok());
    }

    #[test]
    fn refuses_empty_too_long_and_invisible_keys() {
        assert_eq!(IdempotencyKey::parse(""), Err(IdempotencyKeyError::Invalid));
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)),
            Err(IdempotencyKeyError::Invalid)
        );
        assert_eq!(
            IdempotencyKey::parse("has space"),
            Err(IdempotencyKeyError::Invalid)
        );
        assert_eq!(
            IdempotencyKey::parse("tab\there"),
            Err(IdempotencyKeyError::Invalid)
        );
        assert_eq!(
            IdempotencyKey::parse("幂等号"),
            Err(IdempotencyKeyError::Invalid)
        );
    }

    #[test]
    fn tells_a_missing_header_from_a_bad_one() {
        assert_eq!(
            IdempotencyKey::from_header(None),
            Err(IdempotencyKeyError::Missing)
        );
        assert_eq!(
            IdempotencyKey::from_header(Some(&[0xff, 0xfe])),
            Err(IdempotencyKeyError::Invalid)
        );
        assert!(IdempotencyKey::from_header(Some(b"abc")).is_ok());
    }
}
