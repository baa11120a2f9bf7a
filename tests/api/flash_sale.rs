//! The flash sale: many users race for few units.

use std::sync::Arc;

use crate::helpers::{concurrently, crowd_buys, spawn_app};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_users_on_twenty_units_buy_exactly_twenty() {
    let app = Arc::new(spawn_app().await);
    let product = app.reset_with_one_product(20).await;
    let (_, replies) = crowd_buys(&app, 200, "buyer", product).await;

    let created = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let sold_out = replies
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT && r.code().as_deref() == Some("sold_out"))
        .count();
    assert_eq!(created, 20);
    assert_eq!(sold_out, 180, "every other reply is sold_out");
    assert_eq!(app.order_count(product).await, 20);
    assert_eq!(app.stock(product).await, 0);
    let audit = app.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}

/// The group-commit batch sizes are in `/metrics`.
async fn metrics_show_batch_sizes(app: &crate::helpers::TestApp) -> bool {
    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.contains("flashguard_order_batch_size_bucket{le=\"2\"}")
}

/// Group commit (docs/design.md §2.3): with the gate off every buyer reaches
/// the database, and the winners of each moment share one transaction. The
/// batches still sell exactly the stock, and each buyer gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_sells_exactly_the_stock_and_answers_each_buyer() {
    let app = Arc::new(
        crate::helpers::spawn_app_with(|settings| {
            settings.version_lock.batch_window = std::time::Duration::from_millis(5);
            settings.version_lock.batch_max = 16;
        })
        .await,
    );
    app.set_defenses(serde_json::json!({ "stock_gate": false }))
        .await;
    let product = app.reset_with_one_product(20).await;
    let mut users = Vec::new();
    for i in 0..120 {
        users.push(app.login(&format!("grouped{i}")).await);
    }
    let users = Arc::new(users);

    let replies = concurrently(120, |i| {
        let (app, users) = (app.clone(), users.clone());
        async move {
            app.post_order_retrying(&users[i], &format!("g-{i}"), product, 1)
                .await
        }
    })
    .await;

    let mut order_nos = std::collections::HashSet::new();
    for (i, reply) in replies.iter().enumerate() {
        match reply.status {
            StatusCode::CREATED => {
                let order_no = reply.json()["order_no"]
                    .as_str()
                    .expect("order_no")
                    .to_string();
                let mine = app
                    .client
                    .get(app.url(&format!("/api/orders/{order_no}")))
                    .bearer_auth(&users[i].token)
                    .send()
                    .await
                    .expect("read");
                assert_eq!(mine.status(), StatusCode::OK, "buyer {i} got its own order");
                assert!(order_nos.insert(order_no), "one order per answer");
            }
            StatusCode::CONFLICT => assert_eq!(reply.code().as_deref(), Some("sold_out")),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!(order_nos.len(), 20);
    assert_eq!(app.order_count(product).await, 20);
    assert_eq!(app.stock(product).await, 0);
    let (batches, tickets) = app.order_batches.totals();
    eprintln!("group commit: {tickets} buyers in {batches} batches");
    assert!(
        batches > 0 && tickets > batches,
        "buyers were grouped: {tickets} in {batches}"
    );
    assert!(metrics_show_batch_sizes(&app).await);
    let audit = app.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}

/// A duplicate inside a batch (the idempotency key off, so two requests with
/// one key both reach the database) is caught by the unique index without
/// aborting the other orders of its batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_inside_a_batch_is_skipped_and_the_others_commit() {
    let app = Arc::new(
        crate::helpers::spawn_app_with(|settings| {
            settings.version_lock.batch_window = std::time::Duration::from_millis(5);
            settings.version_lock.batch_max = 64;
        })
        .await,
    );
    app.set_defenses(serde_json::json!({ "idempotency_key": false, "stock_gate": false }))
        .await;
    let product = app.reset_with_one_product(100).await;
    let mut users = Vec::new();
    for i in 0..20 {
        users.push(app.login(&format!("twice{i}")).await);
    }
    let users = Arc::new(users);

    // Each user sends its request twice at once, with one key.
    let replies = concurrently(40, |i| {
        let (app, users) = (app.clone(), users.clone());
        async move {
            app.post_order_retrying(&users[i / 2], &format!("d-{}", i / 2), product, 1)
                .await
        }
    })
    .await;

    for pair in replies.chunks(2) {
        assert_eq!(pair[0].status, StatusCode::CREATED, "{}", pair[0].body);
        assert_eq!(pair[1].status, StatusCode::CREATED, "{}", pair[1].body);
        assert_eq!(
            pair[0].json()["order_no"],
            pair[1].json()["order_no"],
            "both copies answered with the one order"
        );
    }
    assert_eq!(app.order_count(product).await, 20);
    assert_eq!(app.stock(product).await, 80);
    let audit = app.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}

/// One batch holds orders on several products (docs/design.md §2.3): each
/// product's units are taken by the batch's one version-checked update, and
/// each product still sells exactly its stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_across_products_sells_each_exactly_its_stock() {
    let app = Arc::new(
        crate::helpers::spawn_app_with(|settings| {
            settings.version_lock.batch_window = std::time::Duration::from_millis(5);
            settings.version_lock.batch_max = 64;
        })
        .await,
    );
    app.set_defenses(serde_json::json!({ "stock_gate": false }))
        .await;
    let products: Vec<serde_json::Value> = (0..4)
        .map(|i| serde_json::json!({ "name": format!("shelf {i}"), "price_cents": 100 + i, "stock": 5 }))
        .collect();
    let reset = app
        .client
        .post(app.url("/api/admin/reset"))
        .bearer_auth(&app.admin_token)
        .json(&serde_json::json!({ "products": products }))
        .send()
        .await
        .expect("reset");
    let reset: serde_json::Value = reset.json().await.expect("reset body");
    let ids: Arc<Vec<i64>> = Arc::new(
        reset["products"]
            .as_array()
            .expect("products")
            .iter()
            .map(|product| product["id"].as_i64().expect("id"))
            .collect(),
    );
    let mut users = Vec::new();
    for i in 0..80 {
        users.push(app.login(&format!("shelf{i}")).await);
    }
    let users = Arc::new(users);

    let replies = concurrently(80, |i| {
        let (app, users, ids) = (app.clone(), users.clone(), ids.clone());
        async move {
            app.post_order_retrying(&users[i], &format!("s-{i}"), ids[i % 4], 1)
                .await
        }
    })
    .await;

    let created = replies
        .iter()
        .filter(|reply| reply.status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 20, "5 units on each of 4 products");
    for reply in &replies {
        if reply.status != StatusCode::CREATED {
            assert_eq!(reply.code().as_deref(), Some("sold_out"), "{}", reply.body);
        }
    }
    for id in ids.iter() {
        assert_eq!(app.order_count(*id).await, 5, "product {id}");
        assert_eq!(app.stock(*id).await, 0, "product {id}");
    }
    let (batches, tickets) = app.order_batches.totals();
    assert!(
        tickets > batches,
        "buyers of several products shared batches: {tickets} in {batches}"
    );
    let audit = app.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}
