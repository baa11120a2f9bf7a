//! Bad input, limits and one error format (docs/design.md §4, §7): each test
//! shows the finding it guards against, and where a limit can be switched off,
//! that without it the anomaly comes back.

use std::time::Duration;

use flashguard::routes::ROUTES;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Reply, TestApp, check, spawn_app, spawn_app_with};

const PROBLEM: &str = "application/problem+json";

fn assert_problem(reply: &Reply, status: StatusCode, code: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
    assert_eq!(
        reply.content_type.as_deref(),
        Some(PROBLEM),
        "{what}: {}",
        reply.body
    );
    assert_eq!(
        reply.code().as_deref(),
        Some(code),
        "{what}: {}",
        reply.body
    );
}

async fn reset(app: &TestApp, product: Value) -> Reply {
    let response = app
        .client
        .post(app.url("/api/admin/reset"))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "products": [product] }))
        .send()
        .await
        .expect("reset");
    Reply::read(response).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_values_past_their_bounds_are_refused() {
    let app = spawn_app().await;
    let product = |price: i64, stock: i64, starts: Option<i64>| json!({ "name": "x", "price_cents": price, "stock": stock, "starts_in_secs": starts });
    for (what, body) in [
        ("price near i64::MAX", product(i64::MAX, 1, None)),
        ("price past the bound", product(100_000_001, 1, None)),
        ("price zero", product(0, 1, None)),
        ("negative stock", product(100, -1, None)),
        ("stock past the bound", product(100, 1_000_001, None)),
        ("start at i64::MAX", product(100, 1, Some(i64::MAX))),
        ("start in the past", product(100, 1, Some(-1))),
        (
            "start past 30 days",
            product(100, 1, Some(30 * 24 * 3600 + 1)),
        ),
    ] {
        assert_problem(
            &reset(&app, body).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            what,
        );
    }
    let largest = reset(&app, product(100_000_000, 1_000_000, Some(30 * 24 * 3600))).await;
    assert_eq!(largest.status, StatusCode::OK, "{}", largest.body);
    // The sale of the largest start has not opened.
    let product_id = largest.json()["products"][0]["id"].as_i64().expect("id");
    let alice = app.login("alice").await;
    let early = Reply::read(app.post_order(&alice, "early", product_id, 1).await).await;
    assert_eq!(
        early.code().as_deref(),
        Some("sale_not_started"),
        "{}",
        early.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_finds_an_order_whose_amount_is_not_price_times_quantity() {
    let app = spawn_app().await;
    let product_id = app.reset_with_one_product(10).await;
    let alice = app.login("alice").await;
    let order_no = app.place_order(&alice, product_id).await;
    assert_eq!(check(&app.audit().await, "order_amounts_match")["ok"], true);

    sqlx::query(&app.sql("UPDATE orders SET amount_cents = -2 WHERE order_no = $1"))
        .bind(&order_no)
        .execute(app.state.db.pool())
        .await
        .expect("tamper with the amount");
    let audit = app.audit().await;
    assert_eq!(check(&audit, "order_amounts_match")["ok"], false, "{audit}");
    assert_eq!(audit["ok"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_audit_is_served_from_a_cache_and_the_admin_audit_is_fresh() {
    let cached = spawn_app_with(|settings| {
        settings.audit_public_max_age = Duration::from_secs(3600);
    })
    .await;
    let uncached = spawn_app_with(|settings| settings.audit_public_max_age = Duration::ZERO).await;
    for app in [&cached, &uncached] {
        let product_id = app.reset_with_one_product(10).await;
        let alice = app.login("alice").await;
        let first = app.get_json("/api/audit").await;
        app.place_order(&alice, product_id).await;
        let admin = app.audit().await;
        let second = app.get_json("/api/audit").await;
        assert_ne!(
            admin["checked_at"], first["checked_at"],
            "the admin's is fresh"
        );
        let same = second["checked_at"] == first["checked_at"];
        // With a cache the crowd shares one run; without, each reader pays one.
        assert_eq!(same, std::ptr::eq(app, &cached), "{first} / {second}");
    }
}

/// Logs in `count` times in a row from this machine; the statuses in order.
async fn logins(app: &TestApp, count: usize) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(count);
    for i in 0..count {
        let response = app
            .client
            .post(app.url("/api/login"))
            .json(&json!({ "username": format!("user{i}") }))
            .send()
            .await
            .expect("login");
        replies.push(Reply::read(response).await);
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_past_the_per_ip_rate_are_429_with_retry_after() {
    let limited = spawn_app_with(|settings| settings.limits.login_per_ip = 1).await;
    let replies = logins(&limited, 15).await;
    let refused: Vec<_> = replies
        .iter()
        .filter(|reply| reply.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(
        !refused.is_empty(),
        "a burst of 10 at 1/s: 15 in a row are too many"
    );
    assert_problem(
        refused[0],
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "login",
    );
    assert!(refused[0].retry_after.is_some(), "Retry-After");
    let users = limited.count("SELECT COUNT(*) FROM users").await;
    assert_eq!(
        users as usize,
        15 - refused.len(),
        "a refused login made no user"
    );
    let metrics = metrics_text(&limited).await;
    assert!(
        metrics.contains("flashguard_rate_limited_total{limit=\"login_per_ip\"}"),
        "{metrics}"
    );

    let unlimited = spawn_app_with(|settings| settings.limits.login_per_ip = 0).await;
    let all = logins(&unlimited, 15).await;
    assert!(all.iter().all(|reply| reply.status == StatusCode::OK));
}

async fn metrics_text(app: &TestApp) -> String {
    let response = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("metrics");
    response.text().await.expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_per_user_rate_are_429_and_make_nothing() {
    let app = spawn_app_with(|settings| settings.limits.writes_per_user = 1).await;
    let product_id = app.reset_with_one_product(100).await;
    let alice = app.login("alice").await;
    let mut created = 0_i64;
    let mut refused = 0;
    for i in 0..15 {
        let reply = Reply::read(
            app.post_order(&alice, &format!("k{i}"), product_id, 1)
                .await,
        )
        .await;
        match reply.status {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_problem(
                    &reply,
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "order",
                );
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert!(refused > 0, "15 writes in a row past a burst of 10");
    assert_eq!(app.order_count(product_id).await, created);
    // Another user is not slowed by alice.
    let bob = app.login("bob").await;
    let reply = Reply::read(app.post_order(&bob, "b", product_id, 1).await).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

/// Sends `head` and `body` on a raw connection; returns the whole answer.
/// (A slow client sends less than it declared: the rest never comes.)
async fn raw_exchange(app: &TestApp, head: &str, body: &[u8]) -> String {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    // The server may answer and close before taking all of a big body.
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server answers within its bounds");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_cut_with_408() {
    let app =
        spawn_app_with(|settings| settings.limits.body_timeout = Duration::from_secs(1)).await;
    let head = "POST /api/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                Content-Length: 40\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(&app, head, b"{\"username\"").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(PROBLEM), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");

    let whole = b"{\"username\":\"alice\"}";
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        whole.len()
    );
    let answer = raw_exchange(&app, &head, whole).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_past_the_size_limit_is_a_413_problem() {
    let app = spawn_app().await;
    let big = json!({ "username": "a".repeat(100 * 1024) }).to_string();
    let declared = app
        .client
        .post(app.url("/api/login"))
        .header("Content-Type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("big login");
    let declared = Reply::read(declared).await;
    assert_problem(
        &declared,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "declared",
    );

    // Without Content-Length (chunked), the limit holds while reading.
    let mut chunked = Vec::new();
    for chunk in big.as_bytes().chunks(8 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /api/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(&app, head, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains(PROBLEM) && answer.contains("\"payload_too_large\""),
        "{answer}"
    );
}

/// A concrete path for a route pattern (`{id}` → 1).
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{path:.*}", "app.js")
        .replace("{order_no}", "FG0000")
        .replace("{code}", "sold_out")
        .replace("{id}", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405_with_allow_on_every_route() {
    let app = spawn_app().await;
    for (pattern, allowed) in ROUTES {
        let path = concrete(pattern);
        let response = app
            .client
            .delete(app.url(&path))
            .send()
            .await
            .expect("request");
        let allow = response
            .headers()
            .get("Allow")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let reply = Reply::read(response).await;
        assert_problem(
            &reply,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &path,
        );
        assert_eq!(allow.as_deref(), Some(*allowed), "Allow of {path}");
        for method in allowed.split(", ") {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let response = app
                .client
                .request(method.clone(), app.url(&path))
                .send()
                .await
                .expect("request");
            assert_ne!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is served, as ROUTES says"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_static_files_are_404_problems() {
    let app = spawn_app().await;
    for path in [
        "/nope",
        "/api/nope",
        "/static/nope.js",
        "/static/../Cargo.toml",
    ] {
        let response = app.client.get(app.url(path)).send().await.expect("get");
        let reply = Reply::read(response).await;
        assert_problem(&reply, StatusCode::NOT_FOUND, "not_found", path);
    }
    let known = app
        .client
        .get(app.url("/static/app.js"))
        .send()
        .await
        .expect("get");
    assert_eq!(known.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_idempotency_keys_are_refused_not_silently_picked() {
    let app = spawn_app().await;
    let product_id = app.reset_with_one_product(10).await;
    let alice = app.login("alice").await;
    let body = json!({ "product_id": product_id, "quantity": 1 });
    let response = app
        .client
        .post(app.url("/api/orders"))
        .bearer_auth(&alice.token)
        .header("Idempotency-Key", "first")
        .header("Idempotency-Key", "second")
        .json(&body)
        .send()
        .await
        .expect("order");
    let reply = Reply::read(response).await;
    assert_problem(
        &reply,
        StatusCode::BAD_REQUEST,
        "idempotency_key_invalid",
        "two keys",
    );
    assert_eq!(app.order_count(product_id).await, 0);

    let one = Reply::read(app.post_order(&alice, "first", product_id, 1).await).await;
    assert_eq!(one.status, StatusCode::CREATED, "{}", one.body);
}

/// Found by schemathesis on the real stack: a NUL byte in a signed callback's
/// `payment_no` reached Postgres (which cannot store it in text) and came back
/// as a 500. Ids and names are now checked before any query sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_the_database_cannot_store_is_refused_before_a_query() {
    let app = spawn_app().await;
    let named = reset(
        &app,
        json!({ "name": "nul\u{0}name", "price_cents": 100, "stock": 1 }),
    )
    .await;
    assert_problem(
        &named,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "NUL in a product name",
    );

    for (field, value) in [
        ("payment_no", "PAY\u{0}1"),
        ("event_id", ""),
        ("order_no", &"F".repeat(65)),
        ("provider_txn_id", "tx n"),
    ] {
        let mut event = json!({
            "event_id": "evt-1", "order_no": "FG00000000000000000000000000000000",
            "payment_no": "PAY1", "provider_txn_id": "txn-1",
            "status": "SUCCEEDED", "amount_cents": 100,
        });
        event[field] = json!(value);
        let reply = app.send_callback(&event).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid_request", field);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_describes_itself_for_clients_and_fuzzers() {
    let app = spawn_app().await;
    let description = app.get_json("/api/openapi.json").await;
    assert_eq!(description["openapi"], "3.1.0");
    let create = &description["paths"]["/api/orders"]["post"];
    let headers: Vec<&str> = create["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(headers.contains(&"Idempotency-Key"), "{headers:?}");
    for status in ["201", "400", "401", "409", "422", "429", "503"] {
        assert!(
            create["responses"][status].is_object(),
            "POST /api/orders {status}"
        );
    }
    let problem_codes = &description["components"]["schemas"]["ProblemCode"]["enum"];
    assert!(
        problem_codes
            .as_array()
            .is_some_and(|codes| codes.contains(&json!("sold_out")))
    );

    let page = app
        .client
        .get(app.url("/api/docs"))
        .send()
        .await
        .expect("docs");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("POST /api/orders/{order_no}/pay"),
        "the docs page lists the operations"
    );
}
