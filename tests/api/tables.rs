//! The tables that many views read agree with what they describe: every problem
//! code has its page in both languages, and the defense table names test
//! functions that exist and modules whose doc comments cite them.

use flashguard::problems::ProblemCode;
use flashguard::switches::{Defense, Layer};
use reqwest::StatusCode;

use crate::helpers::spawn_app;

fn source(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("{full}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_code_renders_its_page_in_both_languages() {
    let app = spawn_app().await;
    let mut pages = 0;
    for code in ProblemCode::all() {
        let spec = code.spec();
        for (lang, text) in [("en", spec.explanation.en), ("zh", spec.explanation.zh)] {
            let url = app.url(&format!("{}?lang={lang}", code.type_uri()));
            let response = app.client.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{}", code.type_uri());
            let html = response.text().await.unwrap();
            let escaped = askama::filters::escape(text, askama::filters::Html)
                .map(|escaped| escaped.to_string())
                .unwrap_or_default();
            assert!(
                html.contains(&escaped),
                "{} ({lang}): {text}",
                code.as_str()
            );
            pages += 1;
        }
    }
    assert!(pages >= 50, "{pages} problem pages");
}

#[test]
fn every_test_the_defense_table_names_exists() {
    for defense in Defense::all() {
        let info = defense.info();
        for test in [info.shown_off_by, info.shown_on_by] {
            let (file, function) = test.split_once("::").expect("file::function");
            let code = source(&format!("tests/api/{file}.rs"));
            assert!(
                code.contains(&format!("async fn {function}()")),
                "{}: tests/api/{file}.rs has no test {function}",
                defense.id()
            );
        }
    }
}

#[test]
fn every_defense_module_cites_its_on_and_off_tests() {
    for defense in Defense::all() {
        let info = defense.info();
        if info.layer == Layer::Browser {
            continue;
        }
        let code = source(info.module);
        let doc: String = code
            .lines()
            .take_while(|line| line.starts_with("//!"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            doc.contains(&format!("Defense `{}`", defense.id())),
            "{}",
            info.module
        );
        for test in [info.shown_off_by, info.shown_on_by] {
            let function = test.split_once("::").map_or(test, |(_, name)| name);
            let cited = doc.replace("//! ", "").replace("//!", "").replace(' ', "");
            assert!(
                cited.contains(function),
                "{} does not cite {function}",
                info.module
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_board_lists_every_defense_of_the_table() {
    let app = spawn_app().await;
    let switches = app.get_json("/api/defenses").await;
    let ids: Vec<&str> = Defense::all().map(Defense::id).collect();
    assert_eq!(switches.as_object().map(|s| s.len()), Some(ids.len()));
    for id in ids {
        assert_eq!(switches[id], true, "{id} starts on");
    }
}
