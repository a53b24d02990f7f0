//! `[server]` (with `[server.tls]`): listeners, limits, logging, TLS.

use std::net::SocketAddr;
use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};
use url::Url;

use super::values::*;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub bind: String,
    pub public_url: Option<String>,
    pub app_name: String,
    pub workers: usize,
    pub metrics: bool,
    pub shutdown_timeout_seconds: u64,
    pub log_format: LogFormat,
    pub log_queue_max_bytes: usize,
    pub trust_x_forwarded_for: bool,
    pub request_head_timeout_seconds: u64,
    pub keep_alive_seconds: u64,
    pub max_connections_per_worker: usize,
    /// A second listener for /metrics, /healthz and /readyz only.
    #[serde(default)]
    pub internal_bind: Option<String>,
    /// Where this deployment offers the helper's wheel (the README page's `pip install`).
    #[serde(default)]
    pub helper_wheel_url: Option<String>,
    #[serde(default)]
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(serialize_with = "resolved_required")]
    pub cert_file: RelativePathBuf,
    #[serde(serialize_with = "resolved_required")]
    pub key_file: RelativePathBuf,
    #[serde(default = "default_tls_reload")]
    pub reload_interval_seconds: u64,
}

fn default_tls_reload() -> u64 {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    pub public_url: Url,
    pub app_name: String,
    pub workers: usize,
    pub metrics: bool,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub log_queue_max_bytes: usize,
    pub trust_x_forwarded_for: bool,
    pub internal_bind: Option<SocketAddr>,
    pub tls: Option<TlsSettings>,
    /// The helper's wheel, for the README page's `pip install`.
    pub helper_wheel_url: Option<Url>,
    /// A client must send a whole request head within this (slowloris defence).
    pub request_head_timeout: Duration,
    /// Idle keep-alive connections are closed after this.
    pub keep_alive: Duration,
    pub max_connections_per_worker: usize,
}

impl ServerSettings {
    /// The path of `public_url` without its trailing `/`: empty when the service is at the
    /// root, `/archive` for `https://host/archive/`. The proxy in front strips it.
    pub fn path_prefix(&self) -> &str {
        self.public_url.path().trim_end_matches('/')
    }
}

/// Native TLS: the PEM files (certificate chain, private key), re-read this often.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    pub reload_interval: Duration,
}

pub(super) fn validate(raw: &RawServer) -> Result<ServerSettings, ConfigError> {
    let bind = raw.bind.parse::<SocketAddr>().map_err(|_| {
        ConfigError::key(
            "server.bind",
            format!("{:?} is not an address like \"127.0.0.1:8080\"", raw.bind),
        )
    })?;
    let public_url = parse_http_url(
        "server.public_url",
        required("server.public_url", &raw.public_url)?,
    )?;
    let app = raw.app_name.trim();
    if app.is_empty()
        || app.len() > 32
        || !app
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        return Err(ConfigError::key(
            "server.app_name",
            format!(
                "{app:?} must be 1-32 characters of letters, digits and +=,.@_- (it ends every STS session name)"
            ),
        ));
    }
    let helper_wheel_url = raw
        .helper_wheel_url
        .as_deref()
        .map(|u| parse_http_url("server.helper_wheel_url", u))
        .transpose()?;
    if let Some(url) = &helper_wheel_url {
        // Users install and run what it serves: not over a link anyone could alter.
        if url.scheme() != "https" && !is_loopback(url) {
            return Err(ConfigError::key(
                "server.helper_wheel_url",
                format!("{url} must use https (plain http is allowed only on loopback)"),
            ));
        }
        // A wheel (`pip install <url>`) or a package index's folder (`pip install
        // --index-url <url> stsvend`): the page's command depends on which.
        if !(url.path().ends_with(".whl") || url.path().ends_with('/')) {
            return Err(ConfigError::key(
                "server.helper_wheel_url",
                format!(
                    "{url} must name a wheel (ending in .whl) or an index folder (ending in /)"
                ),
            ));
        }
    }
    Ok(ServerSettings {
        helper_wheel_url,
        bind,
        public_url,
        app_name: app.to_owned(),
        workers: within("server.workers", raw.workers, 0, 256)?,
        metrics: raw.metrics,
        shutdown_timeout: seconds(
            "server.shutdown_timeout_seconds",
            raw.shutdown_timeout_seconds,
            0,
            3600,
        )?,
        log_format: raw.log_format,
        log_queue_max_bytes: within(
            "server.log_queue_max_bytes",
            raw.log_queue_max_bytes,
            64 * 1024,
            1 << 30,
        )?,
        trust_x_forwarded_for: raw.trust_x_forwarded_for,
        request_head_timeout: seconds(
            "server.request_head_timeout_seconds",
            raw.request_head_timeout_seconds,
            1,
            120,
        )?,
        keep_alive: seconds("server.keep_alive_seconds", raw.keep_alive_seconds, 1, 3600)?,
        internal_bind: match &raw.internal_bind {
            None => None,
            Some(a) => {
                let addr = a.parse::<SocketAddr>().map_err(|_| {
                    ConfigError::key(
                        "server.internal_bind",
                        format!("{a:?} is not an address like \"0.0.0.0:9090\""),
                    )
                })?;
                if addr == bind && addr.port() != 0 {
                    return Err(ConfigError::key(
                        "server.internal_bind",
                        "must differ from server.bind",
                    ));
                }
                Some(addr)
            }
        },
        tls: match &raw.tls {
            None => None,
            Some(t) => {
                let (cert_file, key_file) = (t.cert_file.relative(), t.key_file.relative());
                Some(TlsSettings {
                    cert_file,
                    key_file,
                    reload_interval: seconds(
                        "server.tls.reload_interval_seconds",
                        t.reload_interval_seconds,
                        1,
                        3600,
                    )?,
                })
            }
        },
        max_connections_per_worker: within(
            "server.max_connections_per_worker",
            raw.max_connections_per_worker,
            1,
            1_000_000,
        )?,
    })
}
