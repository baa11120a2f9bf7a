//! A demo login name: 1–64 visible characters (any script), NFC-normalised, with
//! no spaces, control characters, or the invisible ones that make look-alike
//! names (zero-width, bidi and other format characters): `alice`, `小明`,
//! `load-user_42`, `bob@example.com`.

use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "username must be 1 to 64 visible characters, without spaces or invisible (zero-width, bidi) characters"
)]
pub struct UsernameError;

impl Username {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        let name: String = raw.trim().nfc().collect();
        let allowed = |c: char| !c.is_whitespace() && !c.is_control() && !is_invisible(c);
        let length = name.chars().count();
        if length == 0 || length > Self::MAX_CHARS || !name.chars().all(allowed) {
            return Err(UsernameError);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Unicode format characters (category Cf: zero-width, bidi controls, joiners,
/// tags) and the fillers that render as nothing.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}' | '\u{0600}'..='\u{0605}'
        | '\u{06DD}' | '\u{070F}' | '\u{08E2}' | '\u{110BD}' | '\u{110CD}')
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

    #[test]
    fn refuses_invisible_characters_and_normalises_to_nfc() {
        for name in [
            "ali\u{200B}ce",
            "\u{202E}ecila",
            "a\u{2066}b",
            "x\u{FEFF}",
            "y\u{00AD}z",
        ] {
            assert!(Username::parse(name).is_err(), "{name:?}");
        }
        // "é" written as e + combining acute is the same user as the precomposed one.
        let decomposed = Username::parse("jose\u{0301}").unwrap();
        assert_eq!(decomposed.as_str(), "jos\u{00E9}");
    }
}
