//! The Markdown prose of the lessons, the index and the interview page, in both
//! languages, rendered to HTML (pulldown-cmark). Each file is a list of sections
//! headed `## <name>`.

use pulldown_cmark::{Options, Parser, html};

use crate::text::Lang;

/// The Markdown of `page` (a defense id, `index` or `interview`) in `lang`.
pub fn source(page: &str, lang: Lang) -> Option<&'static str> {
    macro_rules! pages {
        ($($page:literal),* $(,)?) => {
            match (page, lang) {
                $(
                    ($page, Lang::En) => Some(include_str!(concat!("../../templates/learn/en/", $page, ".md"))),
                    ($page, Lang::Zh) => Some(include_str!(concat!("../../templates/learn/zh/", $page, ".md"))),
                )*
                _ => None,
            }
        };
    }
    pages!(
        "index",
        "interview",
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
    )
}

/// One `## name` section of a page, rendered to HTML ("" when absent).
pub fn section(page: &str, lang: Lang, name: &str) -> String {
    source(page, lang)
        .and_then(|markdown| sections(markdown).find(|(title, _)| *title == name))
        .map(|(_, body)| to_html(body))
        .unwrap_or_default()
}

/// Every `## title` section of a page with its HTML (the interview page's questions).
pub fn all_sections(page: &str, lang: Lang) -> Vec<(String, String)> {
    source(page, lang)
        .map(|markdown| {
            sections(markdown)
                .map(|(title, body)| (inline_html(title), to_html(body)))
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
pub fn to_html(markdown: &str) -> String {
    let mut out = String::new();
    html::push_html(&mut out, Parser::new_ext(markdown, Options::ENABLE_TABLES));
    out
}

/// A one-line Markdown title as inline HTML (no surrounding paragraph).
fn inline_html(title: &str) -> String {
    let html = to_html(title);
    html.trim()
        .trim_start_matches("<p>")
        .trim_end_matches("</p>")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switches::Defense;

    #[test]
    fn every_defense_has_a_lesson_with_its_sections_in_both_languages() {
        for defense in Defense::all() {
            for lang in [Lang::Zh, Lang::En] {
                for name in ["story", "place", "pitfalls", "interview"] {
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
    fn sections_split_on_second_level_headings() {
        let found: Vec<_> = sections("## a\nx\n## b\ny *z*\n").collect();
        assert_eq!(found, [("a", "x"), ("b", "y *z*\n")]);
        assert!(to_html("y *z*").contains("<em>z</em>"));
    }
}
