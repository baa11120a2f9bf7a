//! The HTTP baseline of docs/benchmarks.md: the smallest actix-web handler, on the
//! same runtime settings as flashguard. `cargo run --release --example hello -- 127.0.0.1:8096`

use actix_web::{App, HttpResponse, HttpServer, get};

#[get("/")]
async fn hello() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"hello":"world"}"#)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8096".into());
    println!("hello baseline on http://{address}/");
    HttpServer::new(|| App::new().service(hello))
        .bind(address)?
        .run()
        .await
}
