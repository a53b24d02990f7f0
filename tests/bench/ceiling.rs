//! The ceiling for the hot-path benchmark: the least an actix-web server can do to answer
//! with a JSON body the size of an Earthdata credential response. Never part of stsvend.
//!
//!     bench-ceiling PORT [WORKERS]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(8099);
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    // Same shape and size as a real response: 20-char key id, 40-char secret, and a session
    // token of the length moto issues.
    let body: &'static str = Box::leak(
        format!(
            r#"{{"accessKeyId":"{}","secretAccessKey":"{}","sessionToken":"{}","expiration":"2026-11-23 06:36:14+00:00"}}"#,
            "A".repeat(20),
            "s".repeat(40),
            "t".repeat(356)
        )
        .into_boxed_str(),
    );
    let mut server = HttpServer::new(move || {
        App::new().route(
            "/s3credentials",
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .insert_header(("cache-control", "no-store"))
                    .body(body)
            }),
        )
    });
    if workers > 0 {
        server = server.workers(workers);
    }
    server.bind(("127.0.0.1", port))?.run().await
}
