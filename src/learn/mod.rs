//! The learning material (docs/design.md §1, docs/teaching.md): a lesson per
//! defense, the topic pages they assume, the index (幂等 defined, two paths,
//! the layers, the order of checks), the glossary (the one term table), the
//! interview page, in Chinese and English. The prose is Markdown under
//! `templates/learn/{zh,en}/`, built into the binary; the code a lesson shows is
//! excerpted from this build's own sources between marker comments, so it can
//! never go stale (a test fails if a marker is missing).

pub mod content;
pub mod curriculum;
pub mod diagrams;
pub mod excerpts;
pub mod glossary;
pub mod lessons;

#[cfg(test)]
mod tests {
    use super::glossary::{INTRODUCED_ON, check_zh};
    use super::{content, curriculum, lessons};
    use crate::lab::experiments::EXPERIMENTS;
    use crate::problems::ProblemCode;
    use crate::switches::Defense;
    use crate::text::{Lang, Text};

    /// Every Chinese sentence of the data tables, named by where it lives.
    fn table_texts() -> Vec<(String, &'static str)> {
        let mut texts: Vec<(String, Text)> = Vec::new();
        for defense in Defense::all() {
            let info = defense.info();
            texts.push((format!("defense {}", defense.id()), info.name));
            texts.push((format!("defense {}", defense.id()), info.summary));
            texts.extend(lesson_texts(defense));
        }
        for code in ProblemCode::all() {
            let spec = code.spec();
            texts.push((format!("problem {}", code.as_str()), spec.title));
            texts.push((format!("problem {}", code.as_str()), spec.explanation));
        }
        for experiment in EXPERIMENTS {
            texts.push((format!("experiment {}", experiment.id), experiment.title));
            texts.push((format!("experiment {}", experiment.id), experiment.anomaly));
            for variant in experiment.variants {
                texts.push((format!("experiment {}", experiment.id), variant.title));
            }
        }
        for topic in curriculum::Topic::all() {
            texts.push((format!("topic {}", topic.id()), topic.title()));
        }
        texts
            .into_iter()
            .map(|(place, text)| (place, text.zh))
            .collect()
    }

    /// A defense's lesson: its excerpts' captions and its diagrams' words.
    fn lesson_texts(defense: Defense) -> Vec<(String, Text)> {
        let mut texts = Vec::new();
        let Some(lesson) = lessons::lesson(defense) else {
            return texts;
        };
        for excerpt in lesson.excerpts {
            texts.push((format!("lesson {}", defense.id()), excerpt.caption));
        }
        let place = format!("diagram {}", defense.id());
        for sequence in [lesson.race, lesson.defended] {
            texts.extend(sequence.actors.iter().map(|a| (place.clone(), *a)));
            texts.extend(sequence.steps.iter().map(|s| (place.clone(), s.label)));
        }
        texts
    }

    #[test]
    fn every_chinese_text_keeps_to_the_term_table() {
        for (place, zh) in table_texts() {
            if let Some(wrong) = check_zh(zh) {
                panic!("{place}: {wrong} in {zh:?}");
            }
        }
        for page in content::PAGES {
            let markdown = content::source(page, Lang::Zh).unwrap_or_default();
            let html = content::to_html(markdown, Lang::Zh);
            let html = if *page == "index" {
                html.replace("幂等号", "幂等键")
            } else {
                html
            };
            if let Some(wrong) = check_zh(&html) {
                panic!("templates/learn/zh/{page}.md: {wrong}");
            }
            assert!(
                !markdown
                    .lines()
                    .any(|line| line.contains('*') && english_in_italics(line)),
                "templates/learn/zh/{page}.md: English in italics does not belong in Chinese prose"
            );
        }
        assert!(INTRODUCED_ON.contains(&"/learn"));
    }

    /// `*word*` around Latin letters only (bold `**…**` is fine).
    fn english_in_italics(line: &str) -> bool {
        line.split("**")
            .flat_map(|part| part.split('*').skip(1).step_by(2))
            .any(|inside| {
                !inside.is_empty() && inside.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
            })
    }

    #[test]
    fn the_scripts_chinese_words_keep_to_the_term_table() {
        let script = include_str!("../../static/app.js");
        let words = script
            .split("const WORDS = {")
            .nth(1)
            .and_then(|rest| rest.split("\n};").next())
            .unwrap_or_default();
        assert!(words.contains("sold_out"), "the dictionary is where it was");
        if let Some(wrong) = check_zh(words) {
            panic!("static/app.js: {wrong}");
        }
        for template in [
            include_str!("../../templates/base.html"),
            include_str!("../../templates/index.html"),
            include_str!("../../templates/lab.html"),
            include_str!("../../templates/order.html"),
            include_str!("../../templates/orders.html"),
            include_str!("../../templates/lesson.html"),
            include_str!("../../templates/problem.html"),
        ] {
            if let Some(wrong) = check_zh(template) {
                panic!("a template: {wrong}");
            }
        }
    }
}
