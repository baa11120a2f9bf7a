//! A demo login name: 1–64 visible characters (any script), no spaces or control
//! characters: `alice`, `小明`, `load-user_42`, `bob@example.com`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("username must be 1 to 64 visible characters, without spaces")]
pub struct UsernameError;

impl Username {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        let name = raw.trim();
        let allowed = |c: char| !c.is_whitespace() && !c.is_control();
        let length = name.chars().count();
        if length == 0 || length > Self::MAX_CHARS || !name.chars().all(allowed) {
            return Err(UsernameError);
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_in_any_script() {
        assert_eq!(Username::parse(" alice ").unwrap().as_str(), "alice");
        assert!(Username::parse("小明").is_ok());
        assert!(Username::parse("load-user_42.x").is_ok());
        assert!(Username::parse("bob@example.com").is_ok());
    }

    #[test]
    fn refuses_empty_long_and_odd_names() {
        assert!(Username::parse("").is_err());
        assert!(Username::parse(&"a".repeat(65)).is_err());
        assert!(Username::parse("a b").is_err());
        assert!(Username::parse("tab\there").is_err());
        assert!(Username::parse("nul\u{0}").is_err());
    }
}
