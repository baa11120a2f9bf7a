use crate::helpers::{Reply, spawn_app};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_and_readiness_answer() {
    let app = spawn_app().await;

    let live = app.client.get(app.url("/healthz")).send().await.unwrap();
    let ready = Reply::read(app.client.get(app.url("/readyz")).send().await.unwrap()).await;

    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["database"], "ok");
    assert_eq!(ready.json()["key_store"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id_and_unknown_paths_are_problems() {
    let app = spawn_app().await;

    let response = app
        .client
        .get(app.url("/api/nowhere"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-request-id"));
    let reply = Reply::read(response).await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(reply.json()["type"], "/learn/problems/not_found");
    assert_eq!(reply.json()["status"], 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sale_page_and_problem_pages_render() {
    let app = spawn_app().await;

    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("mechanical keyboard"),
        "the seed catalogue is listed"
    );

    let problem = app
        .client
        .get(app.url("/learn/problems/sold_out"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem.status(), StatusCode::OK);
    let unknown = app
        .client
        .get(app.url("/learn/problems/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_duplicates_each_defense_stopped() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    app.post_order(&alice, "m", 1, 1).await;
    let replay = Reply::read(app.post_order(&alice, "m", 1, 1).await).await;
    assert!(replay.replayed);

    let anonymous = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(
        anonymous.status(),
        StatusCode::UNAUTHORIZED,
        "metrics need the admin token"
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();

    assert!(
        text.contains(r#"flashguard_duplicates_stopped_total{defense="idempotency_key"}"#),
        "{text}"
    );
    assert!(text.contains("flashguard_idempotent_replays_total"));
    assert!(text.contains(r#"flashguard_http_request_duration_seconds_bucket{method="POST",route="/api/orders",status="201""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_served_from_the_binary_with_types_and_etags() {
    let app = spawn_app().await;

    let script = Reply::read(
        app.client
            .get(app.url("/static/app.js"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(
        script
            .content_type
            .as_deref()
            .unwrap_or_default()
            .contains("javascript"),
        "{:?}",
        script.content_type
    );
    let style = app
        .client
        .get(app.url("/static/app.css"))
        .send()
        .await
        .unwrap();
    assert!(
        style.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let etag = style.headers()["etag"].to_str().unwrap().to_string();

    let revalidated = app
        .client
        .get(app.url("/static/app.css"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

    let missing = Reply::read(
        app.client
            .get(app.url("/static/nope.js"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code().as_deref(), Some("not_found"));
}
