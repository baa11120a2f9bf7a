//! The learning pages over HTTP: every lesson in both languages with the code it
//! shows, every page and every link on it in both languages, the Chinese held
//! to the term table, a missing page in the reader's language, the language
//! chosen by query, cookie and Accept-Language; the lab's per-request trace;
//! and the audit checks that make the damage visible.

use std::collections::{BTreeSet, VecDeque};

use flashguard::learn::glossary::{INTRODUCED_ON, check_zh};
use flashguard::switches::Defense;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Reply, TestApp, check, spawn_app};

async fn page(
    app: &crate::helpers::TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = app.client.get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("page");
    (response.status(), response.text().await.expect("HTML"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lesson_renders_in_both_languages_with_its_code() {
    let app = spawn_app().await;
    for defense in Defense::all() {
        for lang in ["zh", "en"] {
            let path = format!("/learn/defenses/{}?lang={lang}", defense.id());
            let (status, html) = page(&app, &path, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(html.contains(&format!("<html lang=\"{lang}\">")), "{path}");
            assert!(html.contains("<svg"), "{path}: the sequence diagrams");
            assert!(html.contains("<pre><code"), "{path}: the real code");
            assert!(
                html.contains(defense.info().shown_off_by),
                "{path}: the tests"
            );
        }
    }
    let (status, _) = page(&app, "/learn/defenses/nope", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The `href`s of a page that point into this site (not the API, not files).
fn site_links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|href| href.replace("&amp;", "&"))
        .filter(|href| href.starts_with('/') && !href.starts_with("//"))
        .map(|href| href.split('#').next().unwrap_or_default().to_string())
        .collect()
}

/// The text a reader sees: no tags, no code blocks, no scripts.
fn visible_text(html: &str) -> String {
    let mut text = String::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        text.push_str(&rest[..start]);
        rest = &rest[start..];
        let skip_to = ["<pre", "<script"]
            .iter()
            .zip(["</pre>", "</script>"])
            .find(|(open, _)| rest.starts_with(**open))
            .map(|(_, close)| close);
        let end = match skip_to {
            Some(close) => rest.find(close).map(|at| at + close.len()),
            None => rest.find('>').map(|at| at + 1),
        };
        rest = &rest[end.unwrap_or(rest.len())..];
        text.push(' ');
    }
    text.push_str(rest);
    text
}

/// Every page reachable from `/learn` in `lang`, with its HTML: each one and
/// each link on it must answer 200 (`/api/…` links included).
async fn crawl_learn(app: &TestApp, lang: &str) -> Vec<(String, String)> {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([format!("/learn?lang={lang}")]);
    let mut pages = Vec::new();
    while let Some(path) = queue.pop_front() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let (status, html) = page(app, &path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path} (linked in {lang})");
        if !path.starts_with("/learn") {
            continue;
        }
        assert!(
            html.contains(&format!("<html lang=\"{lang}\">")),
            "{path}: a link kept the language"
        );
        queue.extend(site_links(&html).into_iter().filter(|l| !seen.contains(l)));
        pages.push((path, html));
    }
    pages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_learn_page_and_every_link_on_it_answers_in_both_languages() {
    let app = spawn_app().await;
    for lang in ["zh", "en"] {
        let pages = crawl_learn(&app, lang).await;
        let paths: Vec<&str> = pages
            .iter()
            .map(|(path, _)| path.split('?').next().unwrap_or_default())
            .collect();
        for needed in [
            "/learn",
            "/learn/interview",
            "/learn/glossary",
            "/learn/problems",
            "/learn/topics/transactions",
            "/learn/topics/undersell",
            "/learn/problems/sold_out",
            "/learn/problems/busy_retry",
        ] {
            assert!(paths.contains(&needed), "{needed} is linked ({lang})");
        }
        for defense in Defense::all() {
            let lesson = format!("/learn/defenses/{}", defense.id());
            assert!(
                paths.contains(&lesson.as_str()),
                "{lesson} is linked ({lang})"
            );
        }
        for (path, html) in &pages {
            if path.starts_with("/learn/defenses/") {
                assert!(
                    html.contains("/learn/interview?lang="),
                    "{path} leads to the interview"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chinese_pages_keep_to_the_term_table() {
    let app = spawn_app().await;
    let mut pages = crawl_learn(&app, "zh").await;
    for path in [
        "/?lang=zh",
        "/lab?lang=zh",
        "/lab/simulator?lang=zh",
        "/orders?lang=zh",
    ] {
        let (_, html) = page(&app, path, &[]).await;
        pages.push((path.to_string(), html));
    }
    for (path, html) in &pages {
        let mut text = visible_text(html);
        if INTRODUCED_ON.contains(&path.split('?').next().unwrap_or_default()) {
            text = text.replace("幂等号", "幂等键");
        }
        if let Some(wrong) = check_zh(&text) {
            panic!("{path}: {wrong}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_language_shows_its_own_chrome() {
    let app = spawn_app().await;
    for path in ["/", "/lab", "/lab/simulator", "/orders", "/learn"] {
        let (_, zh) = page(&app, &format!("{path}?lang=zh"), &[]).await;
        let (_, en) = page(&app, &format!("{path}?lang=en"), &[]).await;
        let (zh, en) = (visible_text(&zh), visible_text(&en));
        for english in [
            "Not signed in",
            "Sign in",
            "My orders",
            "Buy now",
            "Admin token",
            "Refresh",
            "Skip to content",
        ] {
            assert!(
                !zh.contains(english),
                "{path} in Chinese shows \"{english}\""
            );
        }
        for chinese in [
            "未登录",
            "登录",
            "我的订单",
            "立即抢购",
            "管理员令牌",
            "刷新",
            "跳到正文",
            "学习",
        ] {
            assert!(
                !en.contains(chinese),
                "{path} in English shows \"{chinese}\""
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_page_under_learn_answers_in_the_readers_language() {
    let app = spawn_app().await;
    let browser = [("Accept", "text/html,application/xhtml+xml")];
    for path in [
        "/learn/defenses/nope?lang=zh",
        "/learn/nothing-here?lang=zh",
        "/learn/topics/nope?lang=zh",
    ] {
        let (status, html) = page(&app, path, &browser).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            html.contains("<html lang=\"zh\">") && html.contains("找不到"),
            "{path}: {html}"
        );
    }
    let response = app
        .client
        .get(app.url("/learn/problems/nope?lang=zh"))
        .send()
        .await
        .expect("a problem");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem = Reply::read(response).await.json();
    assert_eq!(problem["code"], "not_found");
    assert_eq!(problem["title"], "找不到", "{problem}");
    let (status, html) = page(&app, "/learn/defenses/nope?lang=en", &browser).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("<html lang=\"en\">") && html.contains("Not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_language_chosen_by_query_is_remembered_in_a_cookie() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/learn/glossary?lang=zh"))
        .send()
        .await
        .expect("the glossary");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(cookie.starts_with("flashguard_lang=zh"), "{cookie}");
    let (_, html) = page(&app, "/learn", &[("Cookie", "flashguard_lang=zh")]).await;
    assert!(html.contains("<html lang=\"zh\">"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_comes_from_the_query_then_the_cookie_then_accept_language() {
    let app = spawn_app().await;
    let chinese = [("Accept-Language", "zh-CN,zh;q=0.9,en;q=0.5")];
    let (_, html) = page(&app, "/learn", &chinese).await;
    assert!(html.contains("<html lang=\"zh\">") && html.contains("幂等"));
    let (_, html) = page(
        &app,
        "/learn",
        &[("Cookie", "flashguard_lang=en"), chinese[0]],
    )
    .await;
    assert!(
        html.contains("<html lang=\"en\">"),
        "the cookie wins over the header"
    );
    let (_, html) = page(&app, "/learn?lang=zh", &[("Cookie", "flashguard_lang=en")]).await;
    assert!(
        html.contains("<html lang=\"zh\">"),
        "the query wins over the cookie"
    );
    let (_, html) = page(&app, "/learn/interview", &[("Accept-Language", "en")]).await;
    assert!(html.contains("RFC 9110"));
    let (_, html) = page(&app, "/learn", &[]).await;
    assert!(html.contains("<html lang=\"en\">"), "English by default");
    let (_, html) = page(&app, "/learn/glossary", &[]).await;
    for term in [
        "幂等性",
        "防重",
        "乐观锁",
        "唯一索引",
        "一次性令牌",
        "一锁二判三更新",
        "超卖",
        "分布式锁",
        "重复消费",
        "状态机",
        "版本号",
        "回调",
    ] {
        assert!(html.contains(term), "the glossary has {term}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tracing_on_an_answer_carries_the_path_it_took() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let untraced = Reply::read(app.post_order(&alice, "t-0", 1, 1).await).await;
    app.admin_put("/api/admin/lab", json!({ "trace": true }))
        .await;

    let response = app.post_order(&alice, "t-1", 1, 1).await;
    let trace = response.headers()["flashguard-trace"]
        .to_str()
        .unwrap()
        .to_string();
    let replay = app.post_order(&alice, "t-1", 1, 1).await;
    let replay_trace = replay.headers()["flashguard-trace"]
        .to_str()
        .unwrap()
        .to_string();

    assert_eq!(untraced.status, StatusCode::CREATED);
    for step in [
        "key claimed",
        "gate: unit taken",
        "order inserted",
        "answer stored with the key",
    ] {
        assert!(trace.contains(step), "{trace}");
    }
    assert!(replay_trace.contains("replay"), "{replay_trace}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_submit_under_two_keys_is_a_warning_that_does_not_fail_the_audit() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    app.place_order(&alice, 1).await;
    app.place_order(&alice, 1).await;

    let audit = app.audit().await;
    let warning = check(&audit, "suspected_double_submit");
    assert_eq!(warning["ok"], false, "{audit}");
    assert_eq!(warning["level"], "warning");
    assert_eq!(audit["ok"], true, "a warning does not fail the audit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_without_its_reward_fails_the_audit_after_the_settle_time() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.rewards.settle = std::time::Duration::ZERO;
    })
    .await;
    app.set_psp(json!({ "callbacks": 1, "delay_ms": 0 })).await;
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 1).await;
    app.pay_fresh(&alice, &order_no).await;
    app.wait_until("the reward", || async {
        app.count("SELECT COUNT(*) FROM rewards").await == 1
    })
    .await;
    assert_eq!(
        check(&app.audit().await, "paid_orders_rewarded_once")["ok"],
        true
    );

    sqlx::query("DELETE FROM rewards")
        .execute(app.state.db.pool())
        .await
        .unwrap();

    let audit = app.audit().await;
    assert_eq!(
        check(&audit, "paid_orders_rewarded_once")["ok"],
        false,
        "{audit}"
    );
    assert_eq!(audit["ok"], false);
}
