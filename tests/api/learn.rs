//! The learning pages over HTTP: every lesson in both languages with the code it
//! shows, the language chosen by query, cookie and Accept-Language; the lab's
//! per-request trace; and the audit checks that make the damage visible.

use flashguard::switches::Defense;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Reply, check, spawn_app};

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
