//! Thin handlers; the logic they call lives in `auth` and `vend`.

pub mod auth;
pub mod credentials;
pub mod health;

use actix_web::web;

use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig, callback_path: &str) {
    cfg.route(callback_path, web::get().to(auth::callback))
        .route("/logout", web::get().to(auth::logout))
        .route("/whoami", web::get().to(auth::whoami))
        .route("/s3credentials", web::get().to(credentials::s3credentials))
        .route("/favicon.ico", web::get().to(favicon))
        .route("/healthz", web::get().to(health::healthz))
        .route("/healthz", web::head().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/readyz", web::head().to(health::readyz));
}

/// Browsers ask for a favicon on every page; answer without a 404 in their console.
async fn favicon() -> actix_web::HttpResponse {
    actix_web::HttpResponse::NoContent()
        .insert_header(("cache-control", "public, max-age=86400"))
        .finish()
}

/// Unknown paths get the same JSON error shape as everything else.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found())
}
