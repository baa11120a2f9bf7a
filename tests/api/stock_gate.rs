//! The stock gate: losers and repeats answered from the key store, winners on to
//! the database; consistent with the database afterwards.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::{
    Reply, TestApp, answered_by, check, concurrently, created_and_sold_out_at_gate, crowd_buys,
    spawn_app,
};
use flashguard::store::{Claim, GateKeys, Reconcile};
use reqwest::StatusCode;
use serde_json::json;

async fn gate_stock(app: &TestApp, product: i64) -> Option<i64> {
    app.state.gate.counter(product).await.expect("key store")
}

/// 200 buyers on 20 units; returns the product and the replies.
async fn flash_sale(app: &Arc<TestApp>) -> (i64, Vec<Reply>) {
    let product = app.reset_with_one_product(20).await;
    let (_, replies) = crowd_buys(app, 200, "gate", product).await;
    (product, replies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losers_are_answered_at_the_gate_and_winners_buy_exactly_the_stock() {
    let app = Arc::new(spawn_app().await);

    let (product, replies) = flash_sale(&app).await;

    let (created, at_gate) = created_and_sold_out_at_gate(&replies);
    assert_eq!(created, 20, "{:?}", answered_by(&replies));
    assert_eq!(
        at_gate,
        180,
        "every loser was answered by the gate, without the database: {:?}",
        answered_by(&replies)
    );
    assert_eq!(app.order_count(product).await, 20);
    assert_eq!(gate_stock(&app, product).await, Some(0));
    let audit = app.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_gate_off_the_flash_sale_is_still_correct() {
    let app = Arc::new(spawn_app().await);
    app.set_defenses(json!({ "stock_gate": false })).await;

    let (product, replies) = flash_sale(&app).await;

    assert_eq!(
        replies
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .count(),
        20
    );
    assert!(
        replies
            .iter()
            .all(|r| r.defense.as_deref() != Some("stock_gate"))
    );
    assert_eq!(app.order_count(product).await, 20);
    assert_eq!(app.stock(product).await, 0);
    let audit = app.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_click_does_not_drain_the_gate() {
    let app = Arc::new(spawn_app().await);
    let product = app.reset_with_one_product(50).await;
    // Only the gate and the unique index stand: the key table is off.
    app.set_defenses(json!({ "idempotency_key": false })).await;
    let alice = app.login("alice").await;

    let replies = concurrently(20, |_| {
        let (app, alice) = (app.clone(), alice.clone());
        async move {
            app.post_order_retrying(&alice, "one-click", product, 1)
                .await
        }
    })
    .await;

    assert_eq!(app.order_count(product).await, 1);
    assert_eq!(
        gate_stock(&app, product).await,
        Some(49),
        "one unit taken, not twenty"
    );
    let repeats = replies
        .iter()
        .filter(|r| r.defense.as_deref() == Some("stock_gate"))
        .count();
    assert_eq!(repeats, 19, "every repeat was stopped at the gate");
    assert_eq!(app.audit().await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_database_step_gives_the_unit_back() {
    let app = spawn_app().await;
    let reset = app
        .client
        .post(app.url("/api/admin/reset"))
        .bearer_auth(&app.admin_token)
        .json(&json!({ "products": [{ "name": "later", "price_cents": 100, "stock": 3, "starts_in_secs": 3600 }] }))
        .send()
        .await
        .unwrap();
    let product = reset.json::<serde_json::Value>().await.unwrap()["products"][0]["id"]
        .as_i64()
        .unwrap();
    let alice = app.login("alice").await;

    let reply = Reply::read(app.post_order(&alice, "early", product, 2).await).await;

    assert_eq!(reply.code().as_deref(), Some("sale_not_started"));
    assert_eq!(
        gate_stock(&app, product).await,
        Some(3),
        "the gate got its units back"
    );
    let retry = Reply::read(app.post_order(&alice, "early", product, 2).await).await;
    assert_eq!(
        retry.code().as_deref(),
        Some("sale_not_started"),
        "and the claim is gone too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_orders_return_their_units_to_the_gate() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.payments.payment_window = Duration::ZERO
    })
    .await;
    let alice = app.login("alice").await;
    app.place_order(&alice, 1).await;
    assert_eq!(gate_stock(&app, 1).await, Some(99));

    flashguard::flows::closing::close_expired_orders(&app.state)
        .await
        .unwrap();

    assert_eq!(gate_stock(&app, 1).await, Some(100));
    assert_eq!(
        check(&app.audit().await, "stock_gate_matches_database")["ok"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_the_gate_back_on_reloads_it_from_the_database() {
    let app = spawn_app().await;
    app.set_defenses(json!({ "stock_gate": false })).await;
    let alice = app.login("alice").await;
    app.place_order(&alice, 1).await;
    assert_eq!(gate_stock(&app, 1).await, Some(100), "bypassed while off");

    app.set_defenses(json!({ "stock_gate": true })).await;

    assert_eq!(gate_stock(&app, 1).await, Some(99));
    assert_eq!(app.audit().await["ok"], true);
}

fn gate(claim: &'static str) -> GateKeys<'static> {
    GateKeys {
        counter: "{t}:stock",
        pending: "{t}:pending",
        placing: "{t}:placing",
        claim,
        member: claim,
    }
}

/// The gate's atomic steps themselves (the Lua scripts on Redis, the mutex in
/// process): claim, give back, reconcile. The keys share one hash tag, `{t}`,
/// as the gate's own keys share `{p<id>}`: a Redis Cluster refuses a script
/// whose keys span two slots (CROSSSLOT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_script_refuses_repeats_never_goes_below_zero_and_gives_back_once() {
    let app = spawn_app().await;
    let kv = &app.state.kv;
    let ttl = Duration::from_secs(60);
    kv.set_forever("{t}:stock", "2").await.unwrap();
    let claim = |name, by| async move {
        kv.claim_and_decrement(&gate(name), by, ttl, 0)
            .await
            .unwrap()
    };

    assert_eq!(claim("{t}:a", 1).await, Claim::Taken { left: 1 });
    assert_eq!(claim("{t}:a", 1).await, Claim::Repeat);
    kv.settle_claim(&gate("{t}:a")).await.unwrap();
    assert_eq!(claim("{t}:b", 2).await, Claim::Short, "a's order committed");
    assert_eq!(claim("{t}:c", 1).await, Claim::Taken { left: 0 });
    assert_eq!(
        claim("{t}:d", 1).await,
        Claim::ShortWhilePlacing { held: 1 },
        "c's order is still being placed: its unit may come back"
    );
    let missing = GateKeys {
        counter: "{t}:none",
        ..gate("{t}:e")
    };
    assert_eq!(
        kv.claim_and_decrement(&missing, 1, ttl, 0).await.unwrap(),
        Claim::NotLoaded
    );
    assert!(kv.release_claim(&gate("{t}:c"), 1).await.unwrap());
    assert!(
        !kv.release_claim(&gate("{t}:c"), 1).await.unwrap(),
        "given back once"
    );
    assert_eq!(kv.get("{t}:stock").await.unwrap().as_deref(), Some("1"));

    // "{t}:a" is the one live claim; with its order committed nothing is pending.
    let live = kv.pending_members("{t}:pending", 0).await.unwrap();
    assert_eq!(live, ["{t}:a"]);
    let job = |committed, now_ms| Reconcile {
        counter: "{t}:stock",
        pending: "{t}:pending",
        placing: "{t}:placing",
        stock: 5,
        committed,
        live: None,
        now_ms,
    };
    let reconciled = kv.reconcile_counter(&job(&[], 0)).await.unwrap();
    assert_eq!(reconciled, Some(4), "stock 5 minus one claim in flight");
    let committed = vec!["{t}:a".to_string()];
    let reconciled = kv.reconcile_counter(&job(&committed, 0)).await.unwrap();
    assert_eq!(reconciled, Some(5));
    let expired = kv.reconcile_counter(&job(&[], 120_000)).await.unwrap();
    assert_eq!(
        expired,
        Some(5),
        "an expired claim without an order counts no more"
    );
    let none = Reconcile {
        counter: "{t}:none",
        ..job(&[], 0)
    };
    assert_eq!(kv.reconcile_counter(&none).await.unwrap(), None);
}

/// A claim names the instance that holds it; when that instance's heartbeat
/// lapses, the reconciliation releases the claim at once (its lease is long).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claims_of_an_instance_whose_heartbeat_lapsed_are_released() {
    let app = spawn_app().await;
    let kv = &app.state.kv;
    let long = Duration::from_secs(600);
    kv.set_forever("{t}:stock", "3").await.unwrap();
    for member in ["1|1:a@alive", "1|2:b@dead", "1|3:c@dead"] {
        let claim = format!("{{t}}:claim:{member}");
        let keys = GateKeys {
            claim: &claim,
            member,
            ..gate("")
        };
        let taken = kv.claim_and_decrement(&keys, 1, long, 0).await.unwrap();
        assert!(matches!(taken, Claim::Taken { .. }), "{member}: {taken:?}");
    }
    assert_eq!(
        kv.beat("{t}:beats", "alive", 10_000, 7_000).await.unwrap(),
        ["alive"]
    );
    let live = kv.live_instances("{t}:beats", 7_000).await.unwrap();
    assert_eq!(live, ["alive"]);
    let job = |live| Reconcile {
        counter: "{t}:stock",
        pending: "{t}:pending",
        placing: "{t}:placing",
        stock: 3,
        committed: &[],
        live,
        now_ms: 10_000,
    };
    let unknown = kv.reconcile_counter(&job(None)).await.unwrap();
    assert_eq!(unknown, Some(0), "liveness unknown: only leases end claims");
    let released = kv.reconcile_counter(&job(Some(&live))).await.unwrap();
    assert_eq!(released, Some(2), "the dead instance's two units are back");
    assert_eq!(
        kv.pending_members("{t}:pending", 10_000).await.unwrap(),
        ["1|1:a@alive"]
    );
}
