//! Build the application from validated settings: clients, background tasks, the listener and
//! the routes. Tests call the same code with port 0.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;

use crate::auth::bearer::BearerVerifier;
use crate::auth::discovery::{self, Discovery};
use crate::auth::session::CookieCodec;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::error::ApiError;
use crate::http::layer::RequestLayer;
use crate::http::{self, state::AppState};
use crate::vend::sts::StsApi;

/// What a valid configuration must also pass, checked by the code that will use it: the TLS
/// files load and match, and AWS accepts the worst-case session scope. `check-config` and
/// `policy` refuse what fails here; `serve` refuses the same with the same messages
/// (`Application::build` checks the files, `Scoper::new` the scope). Returns the scope's notes.
pub fn preflight(settings: &Settings) -> Result<Vec<String>, crate::config::ConfigError> {
    if let Some(tls) = &settings.server.tls {
        crate::tls::check_files(tls)?;
    }
    let mut notes = Vec::new();
    if let Some(file) = ranges_file(settings)? {
        let ranges = file.ranges();
        notes.push(format!(
            "AWS ip ranges: {} networks, made {} (network.aws_ip_ranges_file)",
            ranges.prefixes, ranges.created
        ));
    }
    for (i, archive) in settings.archives.iter().enumerate() {
        let view = settings.for_archive(i);
        let checked = crate::vend::scope::check_settings(&view).map_err(|e| e.in_archive(i))?;
        if settings.archives.len() == 1 {
            notes.extend(checked.into_iter().map(|n| format!("session scope: {n}")));
        } else {
            notes.extend(
                checked
                    .into_iter()
                    .map(|n| format!("archive {:?}: session scope: {n}", archive.name)),
            );
        }
    }
    Ok(notes)
}

/// AWS's ranges (`network.aws_ip_ranges_file`), read; a file that does not read is refused
/// naming the key.
fn ranges_file(
    settings: &Settings,
) -> Result<Option<Arc<crate::network::RangesFile>>, crate::config::ConfigError> {
    settings
        .network
        .aws_ip_ranges_file
        .as_ref()
        .map(|path| {
            crate::network::RangesFile::open(path.clone())
                .map_err(|e| crate::config::ConfigError::key("network.aws_ip_ranges_file", e))
        })
        .transpose()
}

/// What tests and embedders may replace; everything else comes from the settings.
#[derive(Default)]
pub struct Dependencies {
    /// Defaults to the system clock.
    pub clock: Option<Arc<dyn Clock>>,
    /// Defaults to the AWS SDK client built from `[sts]` and the default credential chain.
    pub sts: Option<Arc<dyn StsApi>>,
    /// The service's own AWS credentials, instead of the default chain (tests use moto's).
    pub aws_credentials: Option<aws_sdk_sts::config::Credentials>,
    /// The internal listener, bound by the caller (tests use port 0); by default
    /// `server.internal_bind` is bound when set.
    pub internal_listener: Option<TcpListener>,
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
    #[error("the README page template is invalid: {0}")]
    Template(#[from] minijinja::Error),
    #[error("cannot set up metrics: {0}")]
    Metrics(String),
    #[error("invalid session key: {0}")]
    CookieKey(String),
    #[error("cannot start the HTTP server: {0}")]
    Server(std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

pub struct Application {
    port: u16,
    internal_port: Option<u16>,
    server: Server,
    internal: Option<Server>,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Bind `server.bind` and build everything.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        // Bad TLS files are refused before binding, naming the key; the scope check runs once,
        // when the scoper is built.
        if let Some(tls) = &settings.server.tls {
            crate::tls::check_files(tls)?;
        }
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
        Self::build_with(settings, listener, Dependencies::default()).await
    }

    /// Build with injected dependencies (tests move time with a `ManualClock`).
    pub async fn build_with(
        settings: Settings,
        listener: TcpListener,
        deps: Dependencies,
    ) -> Result<Self, StartupError> {
        let clock = deps.clock.unwrap_or_else(|| Arc::new(SystemClock));
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
        let cookies = CookieCodec::new(
            &settings.session,
            &settings.oidc.callback_path,
            settings.server.path_prefix(),
        )
        .map_err(StartupError::CookieKey)?;
        let idp_limiter = Arc::new(crate::limits::IdpLimiter::new(&settings));
        let ranges = ranges_file(&settings)?;
        let network = Arc::new(crate::network::Network::new(
            crate::limits::proxies(&settings),
            ranges.clone(),
        ));
        let bearer = BearerVerifier::new(
            settings.oidc.clone(),
            settings.platforms.clone(),
            settings.cache.max_entries.max(1000),
        );
        let fleet = settings.cluster.as_ref().map(|cluster| {
            // Redis's TLS (rediss://) builds its rustls config from the process default.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            crate::fleet::Fleet::start(cluster.clone())
        });
        // Each archive's scope is checked once, when its scoper is built.
        let archives = Arc::new(
            crate::archive::Archives::build(
                &settings,
                crate::archive::Clients {
                    sts: deps.sts,
                    aws_credentials: deps.aws_credentials,
                },
                clock.clone(),
                fleet.clone(),
            )
            .await?,
        );
        // Per-client and per-user limiters forget whoever has fully recovered.
        let sweep_task = {
            let limiter = idp_limiter.clone();
            let archives = archives.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
                loop {
                    every.tick().await;
                    limiter.sweep();
                    for archive in archives.all() {
                        archive.vendor.guard().sweep();
                    }
                }
            })
        };
        let tls = match &settings.server.tls {
            Some(t) => Some((
                Arc::new(crate::tls::CertReloader::new(&t.cert_file, &t.key_file)?),
                t.reload_interval,
            )),
            None => None,
        };
        let internal_listener = match (deps.internal_listener, settings.server.internal_bind) {
            (Some(l), _) => Some(l),
            (None, Some(addr)) => Some(
                TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })?,
            ),
            (None, None) => None,
        };
        let metrics = crate::metrics::Metrics::new(
            archives.clone(),
            fleet.clone(),
            discovery.clone(),
            tls.as_ref().map(|(r, _)| r.clone()),
        )
        .map_err(StartupError::Metrics)?;
        let registry = metrics.registry.clone();
        let metrics = metrics.middleware;
        let metrics_on = settings.server.metrics;
        // Without an internal listener, the public one answers `/metrics`.
        let public_registry = metrics_on && internal_listener.is_none();

        let tuning = Tuning {
            // Kept for the process: each request's context carries a reference to it.
            help: Box::leak(Box::new(settings.help_urls.clone().into_iter().collect())),
            workers: settings.server.workers,
            head_timeout: settings.server.request_head_timeout,
            keep_alive: settings.server.keep_alive,
            max_connections: settings.server.max_connections_per_worker,
            shutdown_seconds: settings.server.shutdown_timeout.as_secs(),
        };
        let callback_path = settings.oidc.callback_path.clone();
        let cors_origins = settings.cors.allowed_origins.clone();
        let templates = http::readme::environment()?;
        // Before anything is served: a restart must not lift a revocation.
        let (store, loaded) =
            crate::replicated::Store::open(&settings.revocations.file, crate::revoke::FILE_KIND)
                .map_err(|e| crate::config::ConfigError::key("revocations.file", e))?;
        let revocations = Arc::new(crate::revoke::Revocations::new(
            archives.vendors(),
            fleet.clone(),
            clock.clone(),
            store,
            loaded,
        ));
        revocations.start_sync();
        let (store, loaded) =
            crate::replicated::Store::open(&settings.tickets.file, crate::tickets::FILE_KIND)
                .map_err(|e| crate::config::ConfigError::key("tickets.file", e))?;
        let tickets = Arc::new(crate::tickets::Tickets::new(
            settings.tickets.clone(),
            crate::auth::ticket::TicketCodec::new(&settings.session),
            fleet.clone(),
            clock.clone(),
            store,
            loaded,
        ));
        tickets.start_sync();
        let settings_ranges_reload = settings.network.aws_ip_ranges_reload;
        let settings = Arc::new(settings);
        let login = crate::auth::login::Login::new(
            settings.clone(),
            discovery.clone(),
            idp_http.clone(),
            clock.clone(),
        );
        let openapi = {
            let own: Vec<http::openapi::ArchivePaths<'_>> = settings
                .archives
                .iter()
                .map(|a| http::openapi::ArchivePaths {
                    path: &a.path,
                    max_duration: a.sts.duration_seconds,
                })
                .collect();
            let longest = own.iter().map(|a| a.max_duration).max().unwrap_or(3600);
            http::openapi::document(longest, &own)
        };
        let state = web::Data::new(AppState {
            settings,
            login,
            clock,
            discovery,
            idp_http,
            cookies,
            bearer,
            archives,
            fleet,
            templates,
            openapi: openapi.into(),
            links: Default::default(),
            consumed_logins: Default::default(),
            idp_limiter,
            revocations,
            tickets,
            network,
        });
        let mut background = vec![discovery_task, sweep_task];
        if let Some(file) = ranges {
            background.push(tokio::spawn(file.watch(settings_ranges_reload)));
        }
        let tls = match tls {
            Some((reloader, every)) => {
                let config = crate::tls::server_config(reloader.clone())?;
                background.push(tokio::spawn(reloader.watch(every)));
                Some(config)
            }
            None => None,
        };
        let registry = web::Data::new(registry);
        let public_routes: Routes = {
            let registry = public_registry.then(|| registry.clone());
            let archives = state.archives.clone();
            Arc::new(move |cfg| {
                http::public_routes(
                    cfg,
                    &callback_path,
                    &cors_origins,
                    &archives,
                    registry.clone(),
                )
            })
        };
        let server = serve(
            listener,
            tls,
            tuning,
            state.clone(),
            (metrics.clone(), metrics_on),
            public_routes,
        )?;
        let (internal, internal_port) = match internal_listener {
            Some(listener) => {
                let port = listener
                    .local_addr()
                    .map_err(|source| StartupError::Bind { addr, source })?
                    .port();
                let registry = metrics_on.then(|| registry.clone());
                let routes: Routes =
                    Arc::new(move |cfg| http::internal_routes(cfg, registry.clone()));
                // Probes and metrics only: one worker is plenty.
                let tuning = Tuning {
                    workers: 1,
                    ..tuning
                };
                (
                    Some(serve(
                        listener,
                        None,
                        tuning,
                        state,
                        (metrics, false),
                        routes,
                    )?),
                    Some(port),
                )
            }
            None => (None, None),
        };
        Ok(Self {
            port,
            internal_port,
            server,
            internal,
            background,
        })
    }

    /// The internal listener's port, when there is one.
    pub fn internal_port(&self) -> Option<u16> {
        self.internal_port
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What stops the listeners: `stop(true)` lets requests in flight finish within
    /// `shutdown_timeout_seconds`.
    pub fn stop_handles(&self) -> Vec<actix_web::dev::ServerHandle> {
        std::iter::once(&self.server)
            .chain(self.internal.as_ref())
            .map(Server::handle)
            .collect()
    }

    /// Serve until both listeners are stopped (see `stop_handles`).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = match self.internal {
            Some(internal) => {
                let (public, internal) = futures_util::future::join(self.server, internal).await;
                public.and(internal)
            }
            None => self.server.await,
        };
        for task in self.background {
            task.abort();
        }
        result
    }
}

/// A listener's route table (`http::public_routes`, `http::internal_routes`).
type Routes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// How a listener serves connections (`[server]`).
#[derive(Clone, Copy)]
struct Tuning {
    /// Where each error code points users (`[help] urls`).
    help: &'static crate::telemetry::HelpUrls,
    /// 0: one per core.
    workers: usize,
    head_timeout: std::time::Duration,
    keep_alive: std::time::Duration,
    max_connections: usize,
    shutdown_seconds: u64,
}

/// One listener's server: the request layer (id, outcome line, metrics when `measured`, headers), the shared state, query errors in the JSON error shape, `routes`, and the JSON 404.
fn serve(
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    tuning: Tuning,
    state: web::Data<AppState>,
    (metrics, measured): (crate::metrics::HttpMetrics, bool),
    routes: Routes,
) -> Result<Server, StartupError> {
    let help = tuning.help;
    let mut server = HttpServer::new(move || {
        let routes = routes.clone();
        App::new()
            .wrap(RequestLayer::new(help, measured.then(|| metrics.clone())))
            .app_data(state.clone())
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                ApiError::bad_request("invalid_request", err.to_string()).into()
            }))
            .configure(move |cfg| routes(cfg))
            .default_service(web::to(http::not_found))
    })
    .shutdown_timeout(tuning.shutdown_seconds)
    // The process's signals are handled by whoever runs the application (`stsvend
    // serve` installs its handlers before binding): in-process test apps ignore them.
    .disable_signals()
    .client_request_timeout(tuning.head_timeout)
    .client_disconnect_timeout(std::time::Duration::from_secs(1))
    .keep_alive(actix_web::http::KeepAlive::Timeout(tuning.keep_alive))
    .max_connections(tuning.max_connections);
    if tuning.workers > 0 {
        server = server.workers(tuning.workers);
    }
    Ok(match tls {
        Some(config) => server.listen_rustls_0_23(listener, config),
        None => server.listen(listener),
    }
    .map_err(StartupError::Server)?
    .run())
}
