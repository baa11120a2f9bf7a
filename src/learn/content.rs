//! The Markdown prose of the lessons, the topics, the index and the interview
//! page, in both languages, rendered to HTML (pulldown-cmark). Each file is a
//! list of sections headed `## <name>`.
//!
//! Rendering keeps the reader in their language and on the map: a link to
//! another page of the site carries `?lang=`, and an inline code span that
//! names a problem code (`sold_out`, `409 sold_out`) or a defense
//! (`stock_gate`) links to its page.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};

use crate::problems::ProblemCode;
use crate::switches::Defense;
use crate::text::Lang;

/// The pages of prose, each built into the binary in both languages: the
/// list of their names and the function that finds one.
macro_rules! pages {
    ($($page:literal),* $(,)?) => {
        /// Every page of prose, by name: a defense id, a topic id, `index` or `interview`.
        pub const PAGES: &[&str] = &[$($page),*];

        /// The Markdown of `page` in `lang`.
        pub fn source(page: &str, lang: Lang) -> Option<&'static str> {
            match (page, lang) {
                $(
                    ($page, Lang::En) => Some(include_str!(concat!("../../templates/learn/en/", $page, ".md"))),
                    ($page, Lang::Zh) => Some(include_str!(concat!("../../templates/learn/zh/", $page, ".md"))),
                )*
                _ => None,
            }
        }
    };
}

pages!(
    "index",
    "interview",
    "transactions",
    "undersell",
    "cluster",
    "button_disable",
    "popup_key",
    "idempotency_key",
    "stock_gate",
    "unique_index",
    "version_lock",
    "payment_token",
    "order_lock",
    "state_check",
    "callback_dedup",
    "message_dedup",
);

/// The sections every lesson has.
pub const LESSON_SECTIONS: [&str; 5] = ["story", "place", "pitfalls", "off", "interview"];

/// One `## name` section of a page, rendered to HTML ("" when absent).
pub fn section(page: &str, lang: Lang, name: &str) -> String {
    source(page, lang)
        .and_then(|markdown| sections(markdown).find(|(title, _)| *title == name))
        .map(|(_, body)| to_html(body, lang))
        .unwrap_or_default()
}

/// Every `## title` section of a page with its HTML (the interview page's questions).
pub fn all_sections(page: &str, lang: Lang) -> Vec<(String, String)> {
    source(page, lang)
        .map(|markdown| {
            sections(markdown)
                .map(|(title, body)| (inline_html(title, lang), to_html(body, lang)))
                .collect()
        })
        .unwrap_or_default()
}

fn sections(markdown: &str) -> impl Iterator<Item = (&str, &str)> {
    markdown.split("\n## ").filter_map(|chunk| {
        let chunk = chunk.strip_prefix("## ").unwrap_or(chunk);
        let (title, body) = chunk.split_once('\n')?;
        Some((title.trim(), body))
    })
}

/// Markdown to HTML. The content is ours (built into the binary), not the user's.
pub fn to_html(markdown: &str, lang: Lang) -> String {
    let events = Parser::new_ext(markdown, Options::ENABLE_TABLES).map(|event| match event {
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: CowStr::from(lang.link(&dest_url)),
            title,
            id,
        }),
        Event::Code(code) => match page_of_code(&code) {
            Some(path) => Event::InlineHtml(CowStr::from(format!(
                "<a href=\"{}\"><code>{}</code></a>",
                lang.link(&path),
                escape(&code)
            ))),
            None => Event::Code(code),
        },
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    out
}

/// The page an inline code span names: a problem code (alone or after its
/// HTTP status, as in `409 sold_out`) or a defense id.
fn page_of_code(code: &str) -> Option<String> {
    let last = code.split_whitespace().last()?;
    let leading_status = code
        .split_whitespace()
        .rev()
        .skip(1)
        .all(|word| word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit()));
    if !leading_status {
        return None;
    }
    if let Some(problem) = ProblemCode::from_code(last) {
        return Some(problem.type_uri());
    }
    let defense = Defense::from_id(code)?;
    Some(format!("/learn/defenses/{}", defense.id()))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A one-line Markdown title as inline HTML (no surrounding paragraph).
fn inline_html(title: &str, lang: Lang) -> String {
    let html = to_html(title, lang);
    html.trim()
        .trim_start_matches("<p>")
        .trim_end_matches("</p>")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defense_has_a_lesson_with_its_sections_in_both_languages() {
        for defense in Defense::all() {
            for lang in [Lang::Zh, Lang::En] {
                for name in &LESSON_SECTIONS {
                    assert!(
                        section(defense.id(), lang, name).len() > 40,
                        "{} {lang:?} has no section {name}",
                        defense.id()
                    );
                }
            }
        }
    }

    #[test]
    fn every_page_exists_in_both_languages() {
        for page in PAGES {
            for lang in [Lang::Zh, Lang::En] {
                assert!(source(page, lang).is_some(), "{page} {lang:?}");
            }
        }
    }

    #[test]
    fn sections_split_on_second_level_headings() {
        let found: Vec<_> = sections("## a\nx\n## b\ny *z*\n").collect();
        assert_eq!(found, [("a", "x"), ("b", "y *z*\n")]);
        assert!(to_html("y *z*", Lang::En).contains("<em>z</em>"));
    }

    #[test]
    fn links_keep_the_language_and_codes_link_to_their_pages() {
        let html = to_html(
            "[g](/learn/glossary) [h](/learn#order) [x](https://example.com) `409 sold_out` \
             `stock_gate` `sold out` `SELECT 1`",
            Lang::Zh,
        );
        assert!(html.contains("href=\"/learn/glossary?lang=zh\""), "{html}");
        assert!(html.contains("href=\"/learn?lang=zh#order\""), "{html}");
        assert!(html.contains("href=\"https://example.com\""), "{html}");
        assert!(
            html.contains(
                "<a href=\"/learn/problems/sold_out?lang=zh\"><code>409 sold_out</code></a>"
            ),
            "{html}"
        );
        assert!(
            html.contains("href=\"/learn/defenses/stock_gate?lang=zh\""),
            "{html}"
        );
        assert!(html.contains("<code>sold out</code>") && html.contains("<code>SELECT 1</code>"));
    }
}
