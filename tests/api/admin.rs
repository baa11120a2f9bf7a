use crate::helpers::{Reply, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_admin_token() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;

    let anonymous = app
        .client
        .get(app.url("/api/admin/defenses"))
        .send()
        .await
        .unwrap();
    let as_user = app
        .client
        .put(app.url("/api/admin/defenses"))
        .bearer_auth(&alice.token)
        .json(&json!({ "unique_index": false }))
        .send()
        .await
        .unwrap();
    let reset = app
        .client
        .post(app.url("/api/admin/reset"))
        .send()
        .await
        .unwrap();

    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        Reply::read(as_user).await.code().as_deref(),
        Some("admin_unauthorized")
    );
    assert_eq!(reset.status(), StatusCode::UNAUTHORIZED);
    let public = app.get_json("/api/defenses").await;
    assert_eq!(public["unique_index"], true, "nothing was switched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defenses_are_read_and_switched() {
    let app = spawn_app().await;
    let get = || async {
        let response = app
            .client
            .get(app.url("/api/admin/defenses"))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap();
        response.json::<serde_json::Value>().await.unwrap()
    };
    let all_on = json!({
        "button_disable": true, "popup_key": true, "callback_dedup": true, "idempotency_key": true, "message_dedup": true, "order_lock": true,
        "payment_token": true, "state_check": true, "stock_gate": true, "unique_index": true,
        "version_lock": true,
    });
    assert_eq!(get().await, all_on);

    app.set_defenses(json!({ "version_lock": false })).await;
    assert_eq!(get().await["version_lock"], false);

    for body in [
        json!({ "no_such_defense": false }),
        json!({ "version_lock": "off" }),
    ] {
        let response = app
            .client
            .put(app.url("/api/admin/defenses"))
            .bearer_auth(&app.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(
        get().await["version_lock"],
        false,
        "a refused change changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_starts_a_clean_sale() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    assert_eq!(
        Reply::read(app.post_order(&alice, "k", 1, 1).await)
            .await
            .status,
        StatusCode::CREATED
    );

    let reset = app
        .client
        .post(app.url("/api/admin/reset"))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "products": [{ "name": "phone", "price_cents": 100, "stock": 20 }] }))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = reset.json().await.unwrap();
    let product = body["products"][0]["id"].as_i64().unwrap();

    assert_eq!(body["products"][0]["stock"], 20);
    let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(orders, 0);
    let again = Reply::read(app.post_order(&alice, "k", product, 1).await).await;
    assert_eq!(again.status, StatusCode::CREATED, "keys were cleared too");
    assert!(!again.replayed);

    let seed = app
        .client
        .post(app.url("/api/admin/reset"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    let seed: serde_json::Value = seed.json().await.unwrap();
    assert_eq!(
        seed["products"].as_array().map(Vec::len),
        Some(3),
        "no body: the seed catalogue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reset_body_is_a_400_and_changes_nothing() {
    let app = spawn_app().await;
    for body in [
        r#"{"products":[{"name":"x","price_cents":-1,"stock":1}]}"#,
        r#"{"products":[]}"#,
        r#"{"products":"many"}"#,
        "{",
    ] {
        let response = app
            .client
            .post(app.url("/api/admin/reset"))
            .bearer_auth(&app.admin_token)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(app.stock(1).await, 100, "the seed catalogue is untouched");
}
