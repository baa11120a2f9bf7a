//! The payment channels as their providers call back (docs/payments.md,
//! "Channels"): Alipay's RSA2-signed form answered `success`, WeChat Pay's
//! APIv3 notification (SHA256-RSA headers, AES-256-GCM resource) answered 204;
//! refusals change nothing; a lost notification is found by the query
//! (主动查单); the reconciliation (对账) names what the books disagree on.

use std::sync::Arc;

use flashguard::psp::keys::ProviderKeys;
use flashguard::psp::{Trade, alipay, wechatpay};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, TestUser, check, spawn_app, spawn_app_with};

/// An order of alice paid through `channel` with the provider silent: the
/// payment is PROCESSING and the test plays the provider. Returns the order,
/// the payment and its trade as the provider books it.
async fn silent_payment(app: &TestApp, channel: &str) -> (TestUser, String, Trade) {
    app.set_psp(json!({ "callbacks": 0 })).await;
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 1).await;
    let paid = app.pay_channel(&alice, &order_no, channel).await;
    assert_eq!(paid.status, StatusCode::ACCEPTED, "{}", paid.body);
    let paid = paid.json();
    let trade = Trade {
        payment_no: paid["payment_no"].as_str().unwrap_or_default().to_string(),
        trade_no: paid["provider_txn_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        amount_cents: app
            .count(&format!(
                "SELECT amount_cents FROM payments WHERE payment_no = '{}'",
                paid["payment_no"].as_str().unwrap_or_default()
            ))
            .await,
    };
    (alice, order_no, trade)
}

fn keys(app: &TestApp) -> ProviderKeys {
    ProviderKeys::resolve(&app.settings.providers).expect("the test app's keys")
}

/// A notification of `trade` as Alipay signs it (a fresh notify_id).
fn alipay_notification(app: &TestApp, trade: &Trade, status: &str) -> alipay::Params {
    let mut params = alipay::notification(&app.settings.providers.alipay_app_id, trade, status);
    params.sign(keys(app).alipay.private.as_ref().expect("the mock's key"));
    params
}

impl TestApp {
    pub async fn pay_channel(&self, user: &TestUser, order_no: &str, channel: &str) -> Reply {
        let token = self.payment_token(user, order_no).await;
        let response = self
            .client
            .post(self.url(&format!("/api/orders/{order_no}/pay")))
            .bearer_auth(&user.token)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .header("Payment-Token", token)
            .json(&json!({ "channel": channel }))
            .send()
            .await
            .expect("pay request");
        Reply::read(response).await
    }

    pub async fn post_alipay(&self, form: String) -> Reply {
        let response = self
            .client
            .post(self.url("/api/payments/callback/alipay"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("Alipay notification");
        Reply::read(response).await
    }

    /// Posts a WeChat Pay notification body signed at `timestamp`.
    pub async fn post_wechatpay(&self, body: &str, timestamp: i64, serial: &str) -> Reply {
        let keys = keys(self);
        let key = keys.wechatpay.private.as_ref().expect("key");
        let headers = wechatpay::signed_headers(key, serial, body, timestamp);
        let request = self
            .client
            .post(self.url("/api/payments/callback/wechatpay"))
            .header("Content-Type", "application/json");
        let response = headers
            .into_iter()
            .fold(request, |request, (name, value)| {
                request.header(name, value)
            })
            .body(body.to_string())
            .send()
            .await
            .expect("WeChat Pay notification");
        Reply::read(response).await
    }

    async fn payment_rows(&self, status: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM payments WHERE status = '{status}'"
        ))
        .await
    }
}

async fn text(app: &TestApp, sql: &str) -> String {
    sqlx::query_scalar(sql)
        .fetch_one(app.state.db.pool())
        .await
        .expect("one text")
}

fn now() -> i64 {
    flashguard::psp::signature::now_unix()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alipay_notification_sent_five_times_at_once_pays_once_and_each_is_answered_success() {
    let app = Arc::new(spawn_app().await);
    let (_, order_no, trade) = silent_payment(&app, "alipay").await;
    let form = alipay_notification(&app, &trade, "TRADE_SUCCESS").to_form();

    let replies = futures::future::join_all((0..5).map(|_| app.post_alipay(form.clone()))).await;

    for reply in &replies {
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, "success"),
            "{reply:?}"
        );
    }
    assert_eq!(app.order_status(&order_no).await, "PAID");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payment_events WHERE result = 'applied'")
            .await,
        1
    );
    assert!(
        replies
            .iter()
            .filter(|r| r.defense.as_deref() == Some("callback_dedup"))
            .count()
            >= 1
    );
    assert_eq!(app.audit().await["ok"], true);
}

/// With callback_dedup and state_check off, the same copies apply more than once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_callback_dedup_the_same_alipay_notification_applies_again() {
    let app = Arc::new(spawn_app().await);
    app.set_defenses(json!({ "callback_dedup": false, "state_check": false }))
        .await;
    let (_, _, trade) = silent_payment(&app, "alipay").await;
    let form = alipay_notification(&app, &trade, "TRADE_SUCCESS").to_form();

    for _ in 0..3 {
        let reply = app.post_alipay(form.clone()).await;
        assert_eq!(reply.body, "success");
    }

    let audit = app.audit().await;
    assert_eq!(check(&audit, "events_applied_once")["ok"], false, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_wrongly_signed_or_mismatched_alipay_notification_changes_nothing() {
    let app = spawn_app().await;
    let (_, order_no, trade) = silent_payment(&app, "alipay").await;
    let mut tampered = alipay_notification(&app, &trade, "TRADE_SUCCESS");
    tampered.set("total_amount", "0.01");
    let other_key = flashguard::psp::keys::generate().expect("another key");
    let mut wrong_key = alipay::notification(
        &app.settings.providers.alipay_app_id,
        &trade,
        "TRADE_SUCCESS",
    );
    wrong_key.sign(other_key.private.as_ref().expect("key"));
    let cheap = Trade {
        amount_cents: 1,
        ..trade.clone()
    };
    let unknown = Trade {
        payment_no: "PAY-not-ours".into(),
        ..trade.clone()
    };
    let another_trade = Trade {
        trade_no: if trade.trade_no.ends_with('0') {
            format!("{}1", &trade.trade_no[..trade.trade_no.len() - 1])
        } else {
            format!("{}0", &trade.trade_no[..trade.trade_no.len() - 1])
        },
        ..trade.clone()
    };
    let mut other_app = alipay::notification("2021009999999999", &trade, "TRADE_SUCCESS");
    other_app.sign(keys(&app).alipay.private.as_ref().expect("key"));

    let cases = [
        (tampered.to_form(), "signature_invalid"),
        (wrong_key.to_form(), "signature_invalid"),
        (
            alipay_notification(&app, &cheap, "TRADE_SUCCESS").to_form(),
            "amount_mismatch",
        ),
        (
            alipay_notification(&app, &unknown, "TRADE_SUCCESS").to_form(),
            "payment_unknown",
        ),
        (
            alipay_notification(&app, &another_trade, "TRADE_SUCCESS").to_form(),
            "payment_unknown",
        ),
        (other_app.to_form(), "merchant_mismatch"),
        ("sign=x&sign_type=RSA2".to_string(), "signature_invalid"),
    ];
    for (form, code) in cases {
        let reply = app.post_alipay(form).await;
        assert_ne!(reply.body, "success", "{code}");
        assert!(reply.status.is_client_error(), "{code}: {reply:?}");
        assert_eq!(reply.code().as_deref(), Some(code), "{}", reply.body);
    }
    assert_eq!(app.order_status(&order_no).await, "PENDING_PAYMENT");
    assert_eq!(app.payment_rows("PROCESSING").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_closed_after_the_success_changes_nothing_and_is_answered_success() {
    let app = spawn_app().await;
    let (_, order_no, trade) = silent_payment(&app, "alipay").await;
    let success = app
        .post_alipay(alipay_notification(&app, &trade, "TRADE_SUCCESS").to_form())
        .await;
    let closed = app
        .post_alipay(alipay_notification(&app, &trade, "TRADE_CLOSED").to_form())
        .await;
    let waiting = app
        .post_alipay(alipay_notification(&app, &trade, "WAIT_BUYER_PAY").to_form())
        .await;

    for reply in [&success, &closed, &waiting] {
        assert_eq!(reply.body, "success", "{reply:?}");
    }
    assert_eq!(app.order_status(&order_no).await, "PAID");
    assert_eq!(app.payment_rows("SUCCEEDED").await, 1);
    assert_eq!(app.audit().await["ok"], true);
}

/// A WeChat Pay notification of `trade`, built and encrypted as WeChat Pay does.
fn wechatpay_body(app: &TestApp, trade: &Trade) -> String {
    let transaction = wechatpay::Transaction::succeeded(trade, None);
    wechatpay::notification(&transaction, &keys(app).apiv3_key).expect("a notification")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wechatpay_notification_sent_five_times_at_once_pays_once_and_each_is_answered_204() {
    let app = Arc::new(spawn_app().await);
    let (_, order_no, trade) = silent_payment(&app, "wechatpay").await;
    let body = wechatpay_body(&app, &trade);
    let serial = keys(&app).wechatpay_serial;

    let replies =
        futures::future::join_all((0..5).map(|_| app.post_wechatpay(&body, now(), &serial))).await;

    for reply in &replies {
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
        assert!(reply.body.is_empty());
    }
    assert_eq!(app.order_status(&order_no).await, "PAID");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payment_events WHERE result = 'applied'")
            .await,
        1
    );
    assert_eq!(app.audit().await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_ciphertext_a_stale_timestamp_or_another_serial_is_refused_with_fail() {
    let app = spawn_app().await;
    let (_, order_no, trade) = silent_payment(&app, "wechatpay").await;
    let serial = keys(&app).wechatpay_serial;
    let mut tampered: Value = serde_json::from_str(&wechatpay_body(&app, &trade)).expect("JSON");
    let ciphertext = tampered["resource"]["ciphertext"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let flipped = if ciphertext.starts_with('A') {
        "B"
    } else {
        "A"
    };
    tampered["resource"]["ciphertext"] = json!(format!("{flipped}{}", &ciphertext[1..]));
    let body = wechatpay_body(&app, &trade);

    let cases = [
        (
            app.post_wechatpay(&tampered.to_string(), now(), &serial)
                .await,
            StatusCode::BAD_REQUEST,
        ),
        (
            app.post_wechatpay(&body, now() - 360, &serial).await,
            StatusCode::UNAUTHORIZED,
        ),
        (
            app.post_wechatpay(&body, now(), "ANOTHER-SERIAL").await,
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (reply, status) in &cases {
        assert_eq!(reply.status, *status, "{reply:?}");
        assert_eq!(reply.json()["code"], "FAIL", "{}", reply.body);
        assert!(reply.json()["message"].is_string());
    }
    let unsigned = app
        .client
        .post(app.url("/api/payments/callback/wechatpay"))
        .body(body.clone())
        .send()
        .await
        .expect("unsigned");
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.order_status(&order_no).await, "PENDING_PAYMENT");
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_events").await, 0);
}

/// 主动查单: with every notification lost, the query finds each payment, and a
/// notification that arrives afterwards changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_notifications_are_found_by_the_query_in_every_channel() {
    let app = spawn_app_with(|settings| {
        settings.providers.query_after = std::time::Duration::from_millis(300);
    })
    .await;
    app.set_psp(json!({ "callbacks": 0 })).await;
    let alice = app.login("alice").await;
    let mut orders = Vec::new();
    for channel in ["card", "alipay", "wechatpay"] {
        let order_no = app.place_order(&alice, 1).await;
        let paid = app.pay_channel(&alice, &order_no, channel).await;
        assert_eq!(paid.status, StatusCode::ACCEPTED, "{}", paid.body);
        orders.push(order_no);
    }

    app.wait_until("the queries settle every payment", || async {
        app.count("SELECT COUNT(*) FROM orders WHERE status = 'PAID'")
            .await
            == 3
    })
    .await;
    let trade = Trade {
        payment_no: text(
            &app,
            "SELECT payment_no FROM payments WHERE channel = 'alipay'",
        )
        .await,
        trade_no: text(
            &app,
            "SELECT provider_txn_id FROM payments WHERE channel = 'alipay'",
        )
        .await,
        amount_cents: app
            .count("SELECT amount_cents FROM payments WHERE channel = 'alipay'")
            .await,
    };
    let late = app
        .post_alipay(alipay_notification(&app, &trade, "TRADE_SUCCESS").to_form())
        .await;

    assert_eq!(late.body, "success");
    assert_eq!(app.payment_rows("SUCCEEDED").await, 3);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payment_events WHERE result = 'applied' AND event_id LIKE 'query:%'").await,
        3
    );
    assert_eq!(app.audit().await["ok"], true);
}

/// 主动查单's last resort: a payment the provider never heard of is failed
/// once twice the query window has passed, so that its order can be paid again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_the_provider_never_heard_of_is_failed_after_twice_the_query_window() {
    let app = spawn_app_with(|settings| {
        settings.providers.query_after = std::time::Duration::from_secs(1);
    })
    .await;
    let (_, order_no, trade) = silent_payment(&app, "alipay").await;
    let db = app.state.db.pool();
    assert!(
        flashguard::store::mock_provider::forget(db, &trade.payment_no)
            .await
            .expect("the provider forgets the charge")
    );

    app.wait_until("the query gives the payment up", || async {
        app.payment_rows("FAILED").await == 1
    })
    .await;

    assert_eq!(app.order_status(&order_no).await, "PENDING_PAYMENT");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payment_events WHERE result = 'applied' AND event_id LIKE 'query:%:Failed'").await,
        1
    );
    assert_eq!(app.audit().await["ok"], true);
}

/// Epoch milliseconds of a Beijing wall-clock time.
fn beijing_ms(date: (i32, u32, u32), time: (u32, u32, u32)) -> i64 {
    chrono::NaiveDate::from_ymd_opt(date.0, date.1, date.2)
        .and_then(|day| day.and_hms_opt(time.0, time.1, time.2))
        .and_then(|moment| {
            moment
                .and_local_timezone(flashguard::psp::beijing())
                .single()
        })
        .map(|moment| moment.timestamp_millis())
        .expect("a valid Beijing time")
}

/// Moves a payment and the provider's charge of it to other moments.
async fn move_in_time(app: &TestApp, payment_no: &str, created_at: i64, charged_at: i64) {
    let db = app.state.db.pool();
    let moves = [
        (
            "UPDATE payments SET created_at = $1 WHERE payment_no = $2",
            created_at,
        ),
        (
            "UPDATE mock_provider_charges SET charged_at = $1 WHERE payment_no = $2",
            charged_at,
        ),
    ];
    for (sql, at) in moves {
        sqlx::query(&app.sql(sql))
            .bind(at)
            .bind(payment_no)
            .execute(db)
            .await
            .expect("back in time");
    }
}

/// 对账: a charge the merchant never heard of (掉单), a payment the provider
/// never charged, and an amount that differs are each named; a payment made
/// just before midnight and charged just after it is no difference on either day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciliation_names_a_charge_not_paid_a_payment_not_charged_and_an_amount() {
    // A long query window: the query job does not settle the lost payment first.
    let app = spawn_app_with(|settings| {
        settings.providers.query_after = std::time::Duration::from_secs(3600);
    })
    .await;
    app.set_psp(json!({ "callbacks": 1, "delay_ms": 0 })).await;
    let alice = app.login("alice").await;
    let mut payments = Vec::new();
    for _ in 0..4 {
        let order_no = app.place_order(&alice, 1).await;
        let paid = app.pay_channel(&alice, &order_no, "alipay").await;
        payments.push(
            paid.json()["payment_no"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    app.wait_until("all four paid", || async {
        app.payment_rows("SUCCEEDED").await == 4
    })
    .await;
    let (lost, forged, differs, at_midnight) =
        (&payments[0], &payments[1], &payments[2], &payments[3]);
    let db = app.state.db.pool();
    // The provider forgets a charge: today's audit sees it at once.
    assert!(
        flashguard::store::mock_provider::forget(db, forged)
            .await
            .unwrap()
    );
    let created_at = app
        .count(&format!(
            "SELECT created_at FROM payments WHERE payment_no = '{forged}'"
        ))
        .await;
    let created_on = chrono::DateTime::from_timestamp_millis(created_at)
        .unwrap_or_default()
        .with_timezone(&flashguard::psp::beijing())
        .date_naive();
    let audit = app.audit().await;
    // (Unless Beijing's midnight fell between the payment and the audit.)
    if created_on == flashguard::flows::reconciliation::today() {
        assert_eq!(
            check(&audit, "provider_bill_matches")["ok"],
            false,
            "{audit}"
        );
    }
    // All of it happened on 2026-06-15, at noon, but for one payment made a
    // second before midnight and charged a second after it;
    let noon = beijing_ms((2026, 6, 15), (12, 0, 0));
    for payment_no in [lost, forged, differs] {
        move_in_time(&app, payment_no, noon, noon).await;
    }
    let (before_midnight, after_midnight) = (
        beijing_ms((2026, 6, 15), (23, 59, 59)),
        beijing_ms((2026, 6, 16), (0, 0, 1)),
    );
    move_in_time(&app, at_midnight, before_midnight, after_midnight).await;
    // the notification of one was lost; a third is booked at another amount.
    sqlx::query(&app.sql("UPDATE payments SET status = 'PROCESSING' WHERE payment_no = $1"))
        .bind(lost)
        .execute(db)
        .await
        .unwrap();
    sqlx::query(&app.sql(
        "UPDATE mock_provider_charges SET amount_cents = amount_cents + 1 WHERE payment_no = $1",
    ))
    .bind(differs)
    .execute(db)
    .await
    .unwrap();

    let report = app
        .get_admin_json("/api/admin/reconciliation?date=2026-06-15")
        .await;
    let next_day = app
        .get_admin_json("/api/admin/reconciliation?date=2026-06-16")
        .await;

    let named = |list: &str| -> Vec<String> {
        report[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["payment_no"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(named("charged_not_paid"), vec![lost.clone()], "{report}");
    assert_eq!(named("paid_not_charged"), vec![forged.clone()], "{report}");
    assert_eq!(named("amounts_differ"), vec![differs.clone()], "{report}");
    assert_eq!(
        (&report["ok"], &report["payments"], &report["bill_charges"]),
        (&json!(false), &json!(4), &json!(2)),
        "{report}"
    );
    assert_eq!(
        (&next_day["ok"], &next_day["matched"], &next_day["payments"]),
        (&json!(true), &json!(1), &json!(0)),
        "{next_day}"
    );
    let bad = app
        .client
        .get(app.url("/api/admin/reconciliation?date=2026-13-01"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}
