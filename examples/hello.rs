//! The HTTP baselines of docs/benchmarks.md, on the same runtime settings as
//! flashguard. `cargo run --release --example hello -- 127.0.0.1:8096`
//!
//! - `GET /`: the smallest actix-web handler (the HTTP floor).
//! - `POST /redis`: the same, plus one Redis round trip (a `GET` on a
//!   per-worker multiplexed connection, as flashguard's key store makes it):
//!   the floor of any answer that must ask Redis once, as a replay or a
//!   sold-out answer does. `REDIS_URL` (default `redis://127.0.0.1:6379`).

use actix_web::{App, HttpResponse, HttpServer, get, post, web};
use redis::aio::MultiplexedConnection;
use tokio::sync::OnceCell;

#[get("/")]
async fn hello() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"hello":"world"}"#)
}

/// This worker's connection, opened on first use on the worker's own runtime.
struct WorkerRedis {
    client: redis::Client,
    connection: OnceCell<MultiplexedConnection>,
}

#[post("/redis")]
async fn hello_redis(redis: web::Data<WorkerRedis>) -> HttpResponse {
    let connection = redis
        .connection
        .get_or_try_init(|| redis.client.get_multiplexed_async_connection())
        .await;
    let mut connection = match connection {
        Ok(connection) => connection.clone(),
        Err(error) => return HttpResponse::ServiceUnavailable().body(error.to_string()),
    };
    let value: Result<Option<String>, _> = redis::cmd("GET")
        .arg("hello:baseline")
        .query_async(&mut connection)
        .await;
    match value {
        Ok(_) => HttpResponse::Ok()
            .content_type("application/json")
            .body(r#"{"hello":"redis"}"#),
        Err(error) => HttpResponse::ServiceUnavailable().body(error.to_string()),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8096".into());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(redis_url).map_err(std::io::Error::other)?;
    println!("hello baseline on http://{address}/ (and POST /redis)");
    HttpServer::new(move || {
        let redis = web::Data::new(WorkerRedis {
            client: client.clone(),
            connection: OnceCell::new(),
        });
        App::new()
            .app_data(redis)
            .service(hello)
            .service(hello_redis)
    })
    .bind(address)?
    .run()
    .await
}
