//! The HTTP baselines of docs/benchmarks.md, on the same runtime settings as
//! flashguard. `cargo run --release --example hello -- 127.0.0.1:8096`
//!
//! - `GET /`: the smallest actix-web handler (the HTTP floor).
//! - `POST /redis`: the same, plus one Redis round trip (a `GET` on a
//!   per-worker multiplexed connection, as flashguard's key store makes it):
//!   the floor of any answer that must read Redis once.
//!   `REDIS_URL` (default `redis://127.0.0.1:6379`).
//! - `POST /redis/store`: the same round trip storing an answer under a new
//!   key (`SET … NX GET PX`, Redis ≥ 7.0): the floor of a sold-out answer to
//!   a new key.

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

/// This worker's connection, opened on first use; a failure is the answer.
async fn connection(redis: &WorkerRedis) -> Result<MultiplexedConnection, HttpResponse> {
    redis
        .connection
        .get_or_try_init(|| redis.client.get_multiplexed_async_connection())
        .await
        .cloned()
        .map_err(|error| HttpResponse::ServiceUnavailable().body(error.to_string()))
}

#[post("/redis")]
async fn hello_redis(redis: web::Data<WorkerRedis>) -> HttpResponse {
    let mut connection = match connection(&redis).await {
        Ok(connection) => connection,
        Err(answer) => return answer,
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

/// What a stored refusal weighs in Redis: the cached answer of a sold-out
/// key (fingerprint, status, content type, problem body) is about this long.
const STORED_ANSWER_BYTES: usize = 400;

/// `POST /redis/store`: one Redis round trip that **stores** an answer under
/// the request's `Idempotency-Key` unless one is there (`SET … NX GET PX`):
/// the floor of a sold-out answer to a new key, which the HTTP contract
/// stores with the key (docs/design.md §2.5).
#[post("/redis/store")]
async fn hello_store(
    redis: web::Data<WorkerRedis>,
    request: actix_web::HttpRequest,
) -> HttpResponse {
    let key = request
        .headers()
        .get("Idempotency-Key")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("none");
    let mut connection = match connection(&redis).await {
        Ok(connection) => connection,
        Err(answer) => return answer,
    };
    let before: Result<Option<String>, _> = redis::cmd("SET")
        .arg(format!("hello:store:{key}"))
        .arg("x".repeat(STORED_ANSWER_BYTES))
        .arg("NX")
        .arg("GET")
        .arg("PX")
        .arg(600_000)
        .query_async(&mut connection)
        .await;
    match before {
        Ok(_) => HttpResponse::Conflict()
            .content_type("application/problem+json")
            .body(r#"{"hello":"stored"}"#),
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
            .service(hello_store)
    })
    .bind(address)?
    .run()
    .await
}
