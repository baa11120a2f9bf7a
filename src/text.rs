//! Text for people, in the two languages of the project's learners: Chinese and
//! English, each written natively (not translated word by word).

use serde::Serialize;

/// One sentence or title in both languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Text {
    pub zh: &'static str,
    pub en: &'static str,
}

/// Builds a [`Text`]: `text("中文", "English")`.
pub const fn text(zh: &'static str, en: &'static str) -> Text {
    Text { zh, en }
}

/// The language a page is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Zh,
    #[default]
    En,
}

impl Lang {
    /// `zh` or `en` (also the value of `<html lang>`).
    pub fn code(self) -> &'static str {
        match self {
            Self::Zh => "zh",
            Self::En => "en",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "zh" | "zh-cn" | "zh-hans" | "zh-tw" | "zh-hant" => Some(Self::Zh),
            "en" | "en-us" | "en-gb" => Some(Self::En),
            _ => None,
        }
    }

    /// A link to a page of this site in this language: `/learn` →
    /// `/learn?lang=zh`, so the next page is read in the same language
    /// whatever cookie the reader has. Links elsewhere are left alone.
    pub fn link(self, href: &str) -> String {
        if !href.starts_with('/') || href.starts_with("//") || href.starts_with("/static/") {
            return href.to_string();
        }
        let (path, fragment) = match href.split_once('#') {
            Some((path, fragment)) => (path, format!("#{fragment}")),
            None => (href, String::new()),
        };
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{path}{separator}lang={}{fragment}", self.code())
    }

    pub fn pick(self, text: &Text) -> &'static str {
        match self {
            Self::Zh => text.zh,
            Self::En => text.en,
        }
    }
}
