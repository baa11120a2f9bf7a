//! The pages in headless Chromium (Debian's chromium + chromium-driver, driven
//! over WebDriver with fantoccini): the browser defenses `button_disable` and
//! `popup_key`, the pay popup, and pages free of errors. Screenshots go to
//! target/screenshots/. They need chromium and chromedriver, so they are
//! `#[ignore]`d with that reason: `cargo test -- --include-ignored` runs them (as
//! .ci/run does), and then a missing chromedriver fails them, saying so.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::helpers::{TestApp, free_port, spawn_app};

struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

fn chromedriver() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()),
    );
    assert!(
        path.exists(),
        "{} is missing: apt-get install chromium chromium-driver",
        path.display()
    );
    path
}

async fn open_browser() -> Browser {
    let driver_path = chromedriver();
    let port = free_port();
    let driver = tokio::process::Command::new(driver_path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().expect("a browser profile directory");
    let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": binary,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        // chromedriver speaks plain HTTP on loopback: no TLS needed.
        let connected = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await;
        if let Ok(client) = connected {
            return Browser {
                client,
                _driver: driver,
                _profile: profile,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not open a Chromium session through chromedriver");
}

impl Browser {
    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigation");
        self.wait_for(
            "the page is ready",
            "return document.body && document.body.dataset.ready === 'true'",
        )
        .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or(Value::Null)
    }

    /// Waits until `script` returns true (the page works asynchronously).
    async fn wait_for(&self, what: &str, script: &str) {
        for _ in 0..400 {
            if self.js(script).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gave up waiting for: {what}");
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("no element {css}"))
            .click()
            .await
            .unwrap_or_else(|error| panic!("click on {css}: {error}"));
    }

    async fn text(&self, css: &str) -> String {
        let element = self.client.find(Locator::Css(css)).await.expect(css);
        element.text().await.unwrap_or_default()
    }

    /// Signs in by clicking a quick-login chip, as a user would.
    async fn sign_in(&self, app: &TestApp, username: &str) {
        self.goto(&app.url("/")).await;
        self.click(&format!("[data-login='{username}']")).await;
        self.wait_for(
            "the page to show the user",
            &format!("return document.body.dataset.ready === 'true' && document.body.dataset.user === '{username}'"),
        )
        .await;
    }

    async fn errors(&self) -> Value {
        self.js("return window.__fgErrors").await
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&directory).expect("screenshot directory");
        std::fs::write(directory.join(name), png).expect("screenshot written");
    }

    /// Two clicks in the same instant, before any answer can arrive: the fastest
    /// double click there is. Returns whether the button was disabled in between.
    async fn double_click(&self, id: &str) -> bool {
        let script = format!(
            "const b = document.getElementById('{id}'); b.click(); const disabled = b.disabled; b.click(); return disabled;"
        );
        self.js(&script).await == Value::Bool(true)
    }

    async fn results(&self, list_id: &str, count: usize) {
        self.wait_for(
            "the answers",
            &format!("return document.querySelectorAll('#{list_id} li').length >= {count}"),
        )
        .await;
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// The keys of the orders of `product`, from the database.
async fn order_keys(app: &TestApp, product: i64) -> Vec<String> {
    sqlx::query_scalar(
        &app.sql("SELECT idempotency_key FROM orders WHERE product_id = $1 ORDER BY id"),
    )
    .bind(product)
    .fetch_all(app.state.db.pool())
    .await
    .expect("order keys")
}

async fn open_buy_popup(browser: &Browser) -> String {
    browser.click(".card[data-product-id='1'] [data-buy]").await;
    browser
        .wait_for(
            "the buy popup",
            "return document.getElementById('buy-dialog').open",
        )
        .await;
    browser.text("#buy-key").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); cargo test -- --include-ignored"]
async fn a_fast_double_click_on_buy_makes_one_order() {
    let browser = open_browser().await;
    let app = spawn_app().await;
    browser.sign_in(&app, "alice").await;
    browser.screenshot("sale-page.png").await;

    let key = open_buy_popup(&browser).await;
    browser.screenshot("buy-popup.png").await;
    let was_disabled = browser.double_click("buy-submit").await;
    browser.results("buy-results", 1).await;
    browser
        .wait_for(
            "the button is enabled again",
            "return !document.getElementById('buy-submit').disabled",
        )
        .await;

    assert!(
        was_disabled,
        "button_disable: the button was disabled between the clicks"
    );
    assert_eq!(
        order_keys(&app, 1).await,
        vec![key.clone()],
        "one order, with the popup's key"
    );
    assert_eq!(
        browser
            .js("return document.querySelectorAll('#buy-results li').length")
            .await,
        json!(1)
    );
    assert!(browser.text("#buy-results").await.contains("Order created"));
    browser.screenshot("buy-popup-answered.png").await;
    assert_eq!(browser.errors().await, json!([]));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); cargo test -- --include-ignored"]
async fn closing_and_reopening_the_popup_is_a_new_purchase() {
    let browser = open_browser().await;
    let app = spawn_app().await;
    browser.sign_in(&app, "alice").await;

    let first_key = open_buy_popup(&browser).await;
    browser.click("#buy-submit").await;
    browser.results("buy-results", 1).await;
    browser.click("#buy-close").await;
    browser
        .wait_for(
            "the popup closes",
            "return !document.getElementById('buy-dialog').open",
        )
        .await;
    let second_key = open_buy_popup(&browser).await;
    browser.click("#buy-submit").await;
    browser.results("buy-results", 1).await;

    assert_ne!(first_key, second_key, "popup_key: a new key per opening");
    assert_eq!(order_keys(&app, 1).await, vec![first_key, second_key]);
    assert_eq!(browser.errors().await, json!([]));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); cargo test -- --include-ignored"]
async fn without_button_disable_the_server_catches_the_double_click_and_the_page_names_it() {
    let browser = open_browser().await;
    let app = spawn_app().await;
    app.set_defenses(json!({ "button_disable": false })).await;
    browser.sign_in(&app, "alice").await;

    let key = open_buy_popup(&browser).await;
    let was_disabled = browser.double_click("buy-submit").await;
    browser.results("buy-results", 2).await;

    assert!(
        !was_disabled,
        "the browser no longer stops the second click"
    );
    assert_eq!(order_keys(&app, 1).await, vec![key], "still one order");
    let defenses = browser
        .js("return Array.from(document.querySelectorAll('#buy-results li')).map(li => li.dataset.defense)")
        .await;
    assert!(
        defenses
            .as_array()
            .is_some_and(|d| d.contains(&json!("idempotency_key"))),
        "one answer came from the idempotency_key defense: {defenses}"
    );
    assert!(
        browser
            .text("#buy-results")
            .await
            .contains("stopped by idempotency_key")
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); cargo test -- --include-ignored"]
async fn without_both_browser_defenses_a_double_click_is_two_intents() {
    let browser = open_browser().await;
    let app = spawn_app().await;
    app.set_defenses(json!({ "button_disable": false, "popup_key": false }))
        .await;
    browser.sign_in(&app, "alice").await;

    open_buy_popup(&browser).await;
    browser.double_click("buy-submit").await;
    browser.results("buy-results", 2).await;

    let keys = order_keys(&app, 1).await;
    assert_eq!(
        keys.len(),
        2,
        "a key per click: the server sees two intents and makes two orders"
    );
    assert_ne!(keys[0], keys[1]);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); cargo test -- --include-ignored"]
async fn a_double_click_on_pay_makes_one_payment_and_the_page_shows_paid() {
    let browser = open_browser().await;
    let app = spawn_app().await;
    browser.sign_in(&app, "alice").await;
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 1).await;

    browser.goto(&app.url(&format!("/orders/{order_no}"))).await;
    browser.click("#pay-open").await;
    browser
        .wait_for(
            "the one-time token",
            "return !document.getElementById('pay-submit').disabled",
        )
        .await;
    // The shopper chooses Alipay: the mock provider notifies in Alipay's format.
    browser.click("input[name='channel'][value='alipay']").await;
    browser.screenshot("pay-popup.png").await;
    let was_disabled = browser.double_click("pay-submit").await;
    browser.results("pay-results", 1).await;
    browser
        .wait_for(
            "PAID on the page",
            "return document.getElementById('order-status').textContent === 'PAID'",
        )
        .await;

    assert!(was_disabled);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM payments WHERE channel = 'alipay' AND status = 'SUCCEEDED'"
        )
        .await,
        1
    );
    assert_eq!(app.order_status(&order_no).await, "PAID");
    browser.goto(&app.url(&format!("/orders/{order_no}"))).await;
    assert_eq!(
        browser
            .js("return document.getElementById('pay-open') === null")
            .await,
        json!(true)
    );
    assert!(browser.text("#pay-area").await.contains("Paid"));
    assert_eq!(browser.errors().await, json!([]));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); cargo test -- --include-ignored"]
async fn every_page_renders_without_errors() {
    let browser = open_browser().await;
    let app = spawn_app().await;
    browser.sign_in(&app, "alice").await;
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 2).await;

    for path in [
        "/".to_string(),
        "/orders".to_string(),
        format!("/orders/{order_no}"),
        "/lab".to_string(),
        "/lab/simulator?lang=zh&preset=oversell".to_string(),
        "/lab/simulator?lang=en".to_string(),
        "/learn/problems/request_in_progress".to_string(),
    ] {
        browser.goto(&app.url(&path)).await;
        assert_eq!(browser.errors().await, json!([]), "errors on {path}");
    }
    browser.goto(&app.url("/orders")).await;
    assert!(
        browser.text("main").await.contains(&order_no),
        "my orders lists the order"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); cargo test -- --include-ignored"]
async fn every_lesson_and_problem_page_renders_in_both_languages_without_errors() {
    let browser = open_browser().await;
    let app = spawn_app().await;
    let mut paths: Vec<String> = [
        "/learn",
        "/learn/interview",
        "/learn/glossary",
        "/learn/problems",
        "/learn/topics/transactions",
        "/learn/topics/undersell",
    ]
    .map(String::from)
    .to_vec();
    paths.extend(
        flashguard::switches::Defense::all().map(|d| format!("/learn/defenses/{}", d.id())),
    );
    paths.extend(flashguard::problems::ProblemCode::all().map(|code| code.type_uri()));
    for lang in ["zh", "en"] {
        for path in &paths {
            browser.goto(&app.url(&format!("{path}?lang={lang}"))).await;
            assert_eq!(
                browser.js("return document.documentElement.lang").await,
                json!(lang),
                "{path}"
            );
            assert_eq!(
                browser.errors().await,
                json!([]),
                "errors on {path} ({lang})"
            );
        }
    }
    browser
        .goto(&app.url("/learn/defenses/idempotency_key?lang=zh"))
        .await;
    browser
        .js("const y = document.querySelector('.diagrams').getBoundingClientRect().top + window.scrollY - 170; window.scrollTo({top: y, behavior: 'instant'});")
        .await;
    browser.screenshot("lesson.png").await;
    browser.goto(&app.url("/learn/interview?lang=zh")).await;
    browser.screenshot("interview-zh.png").await;
    browser.goto(&app.url("/?lang=zh")).await;
    browser.screenshot("sale-zh.png").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); cargo test -- --include-ignored"]
async fn an_experiment_run_from_the_lab_turns_the_audit_red_then_green() {
    let browser = open_browser().await;
    let app = spawn_app().await;
    // The banner's lab link carries the admin token in its fragment.
    browser
        .goto(&app.url(&format!("/lab#token={}", app.admin_token)))
        .await;
    browser
        .wait_for(
            "the switches",
            "return !document.querySelector('[data-defense]').disabled",
        )
        .await;
    let card = "[data-card='idempotency_key'] [data-experiment]";

    browser.click(&format!("{card} [data-run='off']")).await;
    browser
        .wait_for(
            "the anomaly",
            &format!("return !!document.querySelector(\"{card} .run-result .anomaly\")"),
        )
        .await;
    browser
        .wait_for(
            "the audit turns red",
            "return document.getElementById('audit').dataset.ok === 'false'",
        )
        .await;
    browser
        .js("const y = document.querySelector(\"[data-card='idempotency_key']\").getBoundingClientRect().top + window.scrollY - 110; window.scrollTo({top: y, behavior: 'instant'});")
        .await;
    browser.screenshot("experiment-off.png").await;
    browser.js("window.scrollTo(0, 0);").await;

    browser.click(&format!("{card} [data-run='on']")).await;
    browser
        .wait_for(
            "no anomaly",
            &format!("return !!document.querySelector(\"{card} .run-result .clean\")"),
        )
        .await;
    browser
        .wait_for(
            "the audit turns green",
            "return document.getElementById('audit').dataset.ok === 'true'",
        )
        .await;
    assert_eq!(browser.errors().await, json!([]));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); cargo test -- --include-ignored"]
async fn a_sold_out_product_says_so_until_units_return_and_signing_out_works() {
    let browser = open_browser().await;
    let app = spawn_app().await;
    let product = app.reset_with_one_product(1).await;
    browser.sign_in(&app, "alice").await;
    let bob = app.login("bob").await;
    app.place_order(&bob, product).await;
    let button = format!(".card[data-product-id='{product}'] [data-buy]");
    browser
        .wait_for(
            "the last unit's button to say Sold out",
            &format!("const b = document.querySelector(\"{button}\"); return b.disabled && b.textContent.trim() === 'Sold out';"),
        )
        .await;

    // A unit comes back (as when an unpaid order closes).
    sqlx::query(&app.sql("UPDATE products SET stock = 1 WHERE id = $1"))
        .bind(product)
        .execute(app.state.db.pool())
        .await
        .expect("a unit back");
    browser
        .wait_for(
            "the button to say Buy now again",
            &format!("const b = document.querySelector(\"{button}\"); return !b.disabled && b.textContent.trim() === 'Buy now';"),
        )
        .await;

    browser.click("#logout").await;
    browser
        .wait_for(
            "the page to show the sign-in form again",
            "return document.body.dataset.ready === 'true' && document.body.dataset.user === '' && !!document.getElementById('login-form');",
        )
        .await;
    assert_eq!(browser.errors().await, json!([]));
    browser.close().await;
}

/// What the simulator page holds about its runs (`window.fgSimulator`).
async fn simulated_runs(browser: &Browser) -> Value {
    browser
        .js("return window.fgSimulator.runs.map((run) => ({ticks: run.ticks.length, lowest: Math.min(...run.ticks.map((t) => t.stock)), done: run.done && run.done.state, ok: run.done && run.done.audit && run.done.audit.ok}));")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver); cargo test -- --include-ignored"]
async fn the_simulator_draws_a_sale_and_overlays_the_run_with_version_lock_off() {
    let browser = open_browser().await;
    let app = spawn_app().await;
    browser
        .goto(&app.url(&format!("/lab/simulator?lang=en#token={}", app.admin_token)))
        .await;
    // stock_gate off: version_lock alone keeps the count right.
    browser
        .js("document.querySelector(\"[data-sim-defense='stock_gate']\").checked = false; document.getElementById('sim-users').value = 2000; document.getElementById('sim-stock').value = 500;")
        .await;

    browser.click("#sim-start").await;
    browser
        .wait_for(
            "the chart receives points",
            "return !!(window.fgSimulator.charts.stock && window.fgSimulator.charts.stock.data[0].length > 0)",
        )
        .await;
    browser
        .wait_for(
            "the audit turns green",
            "return document.getElementById('sim-audit').dataset.ok === 'true'",
        )
        .await;
    let first = simulated_runs(&browser).await;
    assert_eq!(first[0]["done"], "done");
    assert!(
        first[0]["lowest"].as_i64().is_some_and(|units| units >= 0),
        "{first}"
    );

    browser
        .js("document.getElementById('sim-again-defense').value = 'version_lock';")
        .await;
    browser.click("#sim-again").await;
    browser
        .wait_for(
            "the second run's audit turns red",
            "return window.fgSimulator.runs.length === 2 && !!window.fgSimulator.runs[1].done && document.getElementById('sim-audit').dataset.ok === 'false'",
        )
        .await;
    let both = simulated_runs(&browser).await;
    assert!(
        both[1]["lowest"].as_i64().is_some_and(|units| units < 0),
        "oversold: the stock line goes below zero: {both}"
    );
    // The drawn chart: both runs' lines (3 each), and a point below zero.
    let drawn = browser
        .js("const c = window.fgSimulator.charts.stock; return {series: c.series.length, lowest: Math.min(...c.data.slice(1).flat().filter((v) => v !== null && v !== undefined))};")
        .await;
    assert_eq!(drawn["series"], 7, "x and two runs of three lines: {drawn}");
    assert!(drawn["lowest"].as_f64().is_some_and(|v| v < 0.0), "{drawn}");
    browser
        .js("const y = document.getElementById('sim-summary').getBoundingClientRect().top + window.scrollY - 110; window.scrollTo({top: y, behavior: 'instant'});")
        .await;
    browser.screenshot("simulator.png").await;
    assert_eq!(browser.errors().await, json!([]));
    browser.close().await;
}
