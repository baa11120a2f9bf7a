//! The channels' cryptography checked against an independent implementation
//! (Python's `cryptography`, over OpenSSL: tests/api/provider_crypto.py), not
//! only against itself: a notification the mock provider really sends — caught
//! on its way by a recording endpoint that stands in for the merchant
//! (`PSP_NOTIFY_BASE_URL`) — verifies (and, for WeChat Pay, decrypts) there;
//! and a notification signed there is accepted by flashguard.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flashguard::psp::keys::ProviderKeys;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::helpers::{TestApp, spawn_app_with, test_key_pairs};

/// One request as the recording endpoint saw it.
#[derive(Debug)]
struct Recorded {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Recorded {
    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// A merchant endpoint that records every notification and answers it as
/// received (`success` for Alipay, 204 for WeChat Pay). Returns its base URL.
async fn recording_merchant() -> (String, mpsc::UnboundedReceiver<Recorded>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                if let Some(recorded) = read_request(&mut stream).await {
                    let answer = if recorded.path.ends_with("/alipay") {
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\nConnection: close\r\n\r\nsuccess"
                    } else {
                        "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
                    };
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = sender.send(recorded);
                }
            });
        }
    });
    (base, receiver)
}

/// Reads one HTTP/1.1 request with a Content-Length body.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Recorded> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = String::from_utf8_lossy(&buffer[head_end..]).to_string();
    Some(Recorded {
        path,
        headers,
        body,
    })
}

/// Runs tests/api/provider_crypto.py; its standard output, or a failure that
/// says why (python3 and its `cryptography` must be there: this test does not
/// pass without them).
fn python(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/provider_crypto.py");
    let output = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs (the independent check needs it and its `cryptography` package)");
    assert!(
        output.status.success(),
        "provider_crypto.py {}: {}",
        args[0],
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, contents).expect("a file for the check");
    path.display().to_string()
}

async fn next(receiver: &mut mpsc::UnboundedReceiver<Recorded>) -> Recorded {
    tokio::time::timeout(Duration::from_secs(10), receiver.recv())
        .await
        .expect("a notification within 10 s")
        .expect("the recorder runs")
}

/// Pays a new order of alice through `channel`; returns (order, payment).
async fn pay(app: &TestApp, channel: &str) -> (String, String) {
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, 1).await;
    let paid = app.pay_channel(&alice, &order_no, channel).await;
    assert_eq!(paid.status, StatusCode::ACCEPTED, "{}", paid.body);
    let payment_no = paid.json()["payment_no"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (order_no, payment_no)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_providers_notifications_verify_with_an_independent_implementation() {
    let (base, mut recorded) = recording_merchant().await;
    let app = spawn_app_with(|settings| settings.providers.notify_base_url = Some(base)).await;
    app.set_psp(json!({ "callbacks": 1, "delay_ms": 0 })).await;
    let [(alipay_public, _), (wechat_public, _)] = test_key_pairs();
    let dir = tempfile::tempdir().expect("a directory");
    let apiv3 = app
        .settings
        .providers
        .wechatpay_apiv3_key
        .expose_secret()
        .to_string();

    let (_, alipay_payment) = pay(&app, "alipay").await;
    let alipay = next(&mut recorded).await;
    let (_, wechat_payment) = pay(&app, "wechatpay").await;
    let wechat = next(&mut recorded).await;

    assert_eq!(alipay.path, "/api/payments/callback/alipay");
    let verified = python(&[
        "verify-alipay",
        &write(dir.path(), "alipay.pem", &alipay_public),
        &write(dir.path(), "alipay.form", &alipay.body),
    ]);
    assert_eq!(verified.trim(), format!("verified {alipay_payment}"));
    assert_eq!(wechat.path, "/api/payments/callback/wechatpay");
    let transaction = python(&[
        "verify-wechatpay",
        &write(dir.path(), "wechat.pem", &wechat_public),
        &apiv3,
        &wechat.header("Wechatpay-Timestamp"),
        &wechat.header("Wechatpay-Nonce"),
        &wechat.header("Wechatpay-Signature"),
        &write(dir.path(), "wechat.json", &wechat.body),
    ]);
    let transaction: Value = serde_json::from_str(&transaction).expect("the decrypted transaction");
    assert_eq!(transaction["out_trade_no"], wechat_payment.as_str());
    assert_eq!(transaction["trade_state"], "SUCCESS");
    eprintln!("Alipay notification, as sent: {}", alipay.body);
    eprintln!("WeChat Pay notification, as sent: {}", wechat.body);
}

async fn amount(app: &TestApp, payment: &str) -> i64 {
    app.count(&format!(
        "SELECT amount_cents FROM payments WHERE payment_no = '{payment}'"
    ))
    .await
}

async fn txn(app: &TestApp, payment: &str) -> String {
    sqlx::query_scalar(&app.sql("SELECT provider_txn_id FROM payments WHERE payment_no = $1"))
        .bind(payment)
        .fetch_one(app.state.db.pool())
        .await
        .expect("the trade number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_signed_by_an_independent_implementation_are_accepted() {
    let app = spawn_app_with(|_| {}).await;
    app.set_psp(json!({ "callbacks": 0 })).await;
    let [(_, alipay_private), (_, wechat_private)] = test_key_pairs();
    let dir = tempfile::tempdir().expect("a directory");
    let keys = ProviderKeys::resolve(&app.settings.providers).expect("keys");
    let (alipay_order, alipay_payment) = pay(&app, "alipay").await;
    let cents = amount(&app, &alipay_payment).await;
    let form = python(&[
        "sign-alipay",
        &write(dir.path(), "alipay.key", &alipay_private),
        &format!("app_id={}", app.settings.providers.alipay_app_id),
        "notify_id=python-1",
        "notify_type=trade_status_sync",
        "charset=utf-8",
        "version=1.0",
        &format!("out_trade_no={alipay_payment}"),
        &format!("trade_no={}", txn(&app, &alipay_payment).await),
        "trade_status=TRADE_SUCCESS",
        &format!("total_amount={}.{:02}", cents / 100, cents % 100),
        "subject=键盘 keyboard & more",
    ]);
    let answer = app.post_alipay(form).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "success")
    );
    assert_eq!(app.order_status(&alipay_order).await, "PAID");

    let (wechat_order, wechat_payment) = pay(&app, "wechatpay").await;
    let transaction = json!({
        "out_trade_no": wechat_payment,
        "transaction_id": txn(&app, &wechat_payment).await,
        "trade_state": "SUCCESS",
        "amount": { "total": amount(&app, &wechat_payment).await, "currency": "CNY" },
    });
    let signed: Value = serde_json::from_str(&python(&[
        "sign-wechatpay",
        &write(dir.path(), "wechat.key", &wechat_private),
        app.settings.providers.wechatpay_apiv3_key.expose_secret(),
        &transaction.to_string(),
    ]))
    .expect("the signed notification");
    let response = app
        .client
        .post(app.url("/api/payments/callback/wechatpay"))
        .header("Content-Type", "application/json")
        .header(
            "Wechatpay-Timestamp",
            signed["timestamp"].as_str().unwrap_or_default(),
        )
        .header(
            "Wechatpay-Nonce",
            signed["nonce"].as_str().unwrap_or_default(),
        )
        .header(
            "Wechatpay-Signature",
            signed["signature"].as_str().unwrap_or_default(),
        )
        .header("Wechatpay-Serial", keys.wechatpay_serial.as_str())
        .body(signed["body"].as_str().unwrap_or_default().to_string())
        .send()
        .await
        .expect("the notification");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.order_status(&wechat_order).await, "PAID");
}
