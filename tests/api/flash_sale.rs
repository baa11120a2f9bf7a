//! The flash sale: many users race for few units.

use std::sync::Arc;

use crate::helpers::{concurrently, spawn_app};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_users_on_twenty_units_buy_exactly_twenty() {
    let app = Arc::new(spawn_app().await);
    let product = app.reset_with_one_product(20).await;
    let mut users = Vec::new();
    for i in 0..200 {
        users.push(app.login(&format!("buyer{i}")).await);
    }
    let users = Arc::new(users);

    let replies = concurrently(200, |i| {
        let (app, users) = (app.clone(), users.clone());
        async move {
            app.post_order_retrying(&users[i], &format!("buy-{i}"), product, 1)
                .await
        }
    })
    .await;

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
