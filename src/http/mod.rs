//! The web face: everything that knows actix. The state handlers read, the extractors, the
//! route tables of both listeners, the OpenAPI document and the handlers; the logic they
//! call lives in `auth` and `vend`.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod bundle;
pub mod catalog;
pub mod credentials;
pub mod extractor;
pub mod health;
pub mod layer;
pub mod objects;
pub mod openapi;
pub mod readme;
pub mod state;
pub mod tickets;

use actix_web::http::Method;
use actix_web::web;

use crate::error::ApiError;

/// Credentialed CORS for the allow-listed origins only; other origins get no CORS headers.
fn cors(allowed: &[String]) -> actix_cors::Cors {
    let allowed = allowed.to_vec();
    actix_cors::Cors::default()
        .allowed_origin_fn(move |origin, _| {
            origin
                .to_str()
                .is_ok_and(|o| allowed.iter().any(|a| a == o))
        })
        .allowed_methods(["GET"])
        .allowed_headers([
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::ACCEPT,
        ])
        .expose_headers(["x-request-id"])
        .supports_credentials()
        .block_on_origin_mismatch(false)
        .max_age(600)
}

/// actix-cors answers a disallowed origin without `Access-Control-Allow-Origin` but still with
/// other CORS headers; send none at all, so nothing suggests the origin is trusted.
async fn only_full_cors(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    if !headers.contains_key(actix_web::http::header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        let cors: Vec<_> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in cors {
            headers.remove(name);
        }
    }
    Ok(res)
}

/// Every URL of the public listener. `metrics`: `/metrics` is answered here too (when there
/// is no internal listener).
pub fn public_routes(
    cfg: &mut web::ServiceConfig,
    callback_path: &str,
    cors_origins: &[String],
    archives: &crate::archive::Archives,
    metrics: Option<web::Data<prometheus::Registry>>,
) {
    // No origin allowed: no CORS layer at all (browsers then refuse cross-origin reads just
    // the same), and the credential routes do not pay for one on every request.
    let cors_on = !cors_origins.is_empty();
    // A browser app may call these from an allowed origin.
    let shared = |cfg: &mut web::ServiceConfig, path: &str, handler: actix_web::Route| {
        let resource = web::resource(path)
            .route(handler)
            .default_service(web::to(get_only));
        if cors_on {
            cfg.service(
                resource
                    .wrap(cors(cors_origins))
                    .wrap(actix_web::middleware::from_fn(only_full_cors)),
            );
        } else {
            cfg.service(resource);
        }
    };
    shared(
        cfg,
        "/s3credentials",
        on(Method::GET).to(credentials::s3credentials::<false>),
    );
    shared(
        cfg,
        "/s3credentials/scope",
        on(Method::GET).to(credentials::scope),
    );
    // actix tries routes in order: the busiest first. A prefix, not a `{bucket}/{key:.*}`
    // pattern: routing by regex cost a link request a tenth of its instructions. The handler
    // splits the rest of the path itself.
    cfg.service(web::scope("/s3").default_service(web::to(objects::link)));
    shared(
        cfg,
        "/s3credentials/bundle",
        on(Method::GET).to(bundle::bundle),
    );
    shared(
        cfg,
        "/s3credentials/locate",
        on(Method::GET).to(catalog::locate),
    );
    shared(
        cfg,
        "/s3credentials/archives",
        on(Method::GET).to(catalog::archives),
    );
    cfg.service(
        web::resource("/s3credentials/tickets")
            .route(on(Method::GET).to(tickets::list))
            .route(on(Method::POST).to(tickets::mint))
            .default_service(web::to(get_or_post_only)),
    )
    .service(
        web::resource("/s3credentials/tickets/{id}")
            .route(on(Method::DELETE).to(tickets::delete))
            .default_service(web::to(delete_only)),
    );
    // Each archive's own Earthdata-compatible endpoints, under its path.
    for archive in archives.all() {
        cfg.service(
            web::scope(&archive.path)
                .app_data(credentials::Pinned(archive.clone()))
                .configure(|cfg| {
                    shared(
                        cfg,
                        "/s3credentials",
                        on(Method::GET).to(credentials::s3credentials::<true>),
                    );
                    shared(
                        cfg,
                        "/s3credentials/scope",
                        on(Method::GET).to(credentials::scope),
                    );
                    cfg.service(get("/s3credentialsREADME", readme::page));
                }),
        );
    }
    cfg.service(get("/s3credentialsREADME", readme::page))
        .service(get(callback_path, auth::callback))
        .service(
            web::resource("/logout")
                .route(on(Method::POST).to(auth::logout))
                .route(on(Method::GET).to(auth::logout))
                .default_service(web::to(get_or_post_only)),
        )
        .service(get("/whoami", auth::whoami))
        .service(get("/favicon.ico", favicon))
        .service(get("/openapi.json", openapi))
        .service(
            web::resource("/healthz")
                .route(on(Method::GET).to(health::healthz))
                .route(on(Method::HEAD).to(health::healthz))
                .default_service(web::to(get_or_head_only)),
        )
        .service(
            web::resource("/readyz")
                .route(on(Method::GET).to(health::readyz))
                .route(on(Method::HEAD).to(health::readyz))
                .default_service(web::to(get_or_head_only)),
        );
    // Last: actix tries routes in order, and scrapes are few.
    if let Some(registry) = metrics {
        cfg.app_data(registry)
            .route("/metrics", web::get().to(health::metrics));
    }
}

/// Every URL of the internal listener: probes, the admin API and (with `metrics`)
/// `/metrics`, for Kubernetes, operators and Prometheus; never exposed through the Service
/// or Ingress.
pub fn internal_routes(
    cfg: &mut web::ServiceConfig,
    metrics: Option<web::Data<prometheus::Registry>>,
) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/healthz", web::head().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz_internal))
        .route("/readyz", web::head().to(health::readyz_internal))
        .route("/admin/revocations", web::get().to(admin::list))
        .route("/admin/revocations", web::post().to(admin::revoke))
        .route("/admin/revocations", web::delete().to(admin::lift));
    if let Some(registry) = metrics {
        cfg.app_data(registry)
            .route("/metrics", web::get().to(health::metrics));
    }
}

/// A resource that answers GET, and 405 with `Allow: GET` to every other method.
fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(on(Method::GET).to(handler))
        .default_service(web::to(get_only))
}

/// A route for one method. actix's own method guards also note each method tried in the
/// request's extensions, for a 405 it would write itself (an allocation and a map insert on
/// every request); the resources here answer 405 themselves and never read the note.
fn on(method: Method) -> actix_web::Route {
    web::route().guard(actix_web::guard::fn_guard(move |ctx| {
        ctx.head().method == method
    }))
}

pub(crate) fn method_not_allowed(allow: &'static str) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this resource answers {allow} only"),
    )
    .with_header(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    )
}

async fn get_only() -> Result<actix_web::HttpResponse, ApiError> {
    Err(method_not_allowed("GET"))
}

async fn get_or_post_only() -> Result<actix_web::HttpResponse, ApiError> {
    Err(method_not_allowed("GET, POST"))
}

async fn delete_only() -> Result<actix_web::HttpResponse, ApiError> {
    Err(method_not_allowed("DELETE"))
}

async fn get_or_head_only() -> Result<actix_web::HttpResponse, ApiError> {
    Err(method_not_allowed("GET, HEAD"))
}

/// Browsers ask for a favicon on every page; answer without a 404 in their console.
async fn favicon() -> actix_web::HttpResponse {
    actix_web::HttpResponse::NoContent()
        .insert_header(("cache-control", "public, max-age=86400"))
        .finish()
}

/// The API description, rendered once.
async fn openapi(state: web::Data<state::AppState>) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("cache-control", "no-cache"))
        .body(state.openapi.to_string())
}

/// Unknown paths get the same JSON error shape as everything else.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found())
}
