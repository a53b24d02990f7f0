//! Build the application from validated settings: clients, background tasks, the listener and
//! the routes. Tests call the same code with port 0.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;

use crate::auth::bearer::BearerVerifier;
use crate::auth::discovery::{self, Discovery};
use crate::auth::session::CookieCodec;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::error::ApiError;
use crate::routes;
use crate::telemetry::request_id_middleware;

/// Shared, read-only state handed to every handler.
pub struct AppState {
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub discovery: Arc<Discovery>,
    pub idp_http: reqwest::Client,
    pub cookies: CookieCodec,
    pub bearer: BearerVerifier,
    pub sts: Option<aws_sdk_sts::Client>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client for the IdP: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("invalid session key: {0}")]
    CookieKey(String),
    #[error("cannot start the HTTP server: {0}")]
    Server(std::io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Bind `server.bind` and build everything.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let addr = settings.server.bind;
        let listener =
            TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })?;
        Self::build_with_listener(settings, listener).await
    }

    /// Build on a listener the caller bound (tests bind port 0 first so that
    /// `server.public_url` can name the real port).
    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> Result<Self, StartupError> {
        Self::build_with(settings, listener, Arc::new(SystemClock)).await
    }

    /// Build with an injected clock (tests move time forward with a `ManualClock`).
    pub async fn build_with(
        settings: Settings,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let addr = settings.server.bind;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?
            .port();

        let idp_http = discovery::idp_http_client(&settings.oidc)?;
        let discovery = Arc::new(Discovery::default());
        let discovery_task = tokio::spawn(discovery::run(
            settings.oidc.clone(),
            idp_http.clone(),
            discovery.clone(),
        ));
        let cookies = CookieCodec::new(&settings.session, &settings.oidc.callback_path)
            .map_err(StartupError::CookieKey)?;
        let bearer =
            BearerVerifier::new(settings.oidc.clone(), settings.cache.max_entries.max(1000));
        let sts = crate::vend::sts::build_client(&settings.sts).await;

        let workers = settings.server.workers;
        let shutdown = settings.server.shutdown_timeout.as_secs();
        let callback_path = settings.oidc.callback_path.clone();
        let state = web::Data::new(AppState {
            settings,
            clock,
            discovery,
            idp_http,
            cookies,
            bearer,
            sts: Some(sts),
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(request_id_middleware))
                .app_data(state.clone())
                .app_data(web::QueryConfig::default().error_handler(|err, _| {
                    ApiError::bad_request("invalid_request", err.to_string()).into()
                }))
                .configure(|cfg| routes::configure(cfg, &callback_path))
                .default_service(web::to(routes::not_found))
        })
        .shutdown_timeout(shutdown);
        if workers > 0 {
            server = server.workers(workers);
        }
        let server = server.listen(listener).map_err(StartupError::Server)?.run();
        Ok(Self {
            port,
            server,
            background: vec![discovery_task],
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serve until SIGTERM/SIGINT (in-flight requests get `shutdown_timeout_seconds`).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for task in self.background {
            task.abort();
        }
        result
    }
}
