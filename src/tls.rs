//! Native TLS (rustls through actix-web): TLS 1.2 and 1.3 only, HTTP/2 by ALPN, and the
//! certificate re-read whenever its files change, so a Kubernetes secret or cert-manager
//! rotation takes effect without a restart or a dropped connection. A pair that does not load
//! (unreadable, unparsable, or a key that does not match the certificate, as while a rotation
//! has written one file but not yet the other) leaves the current certificate in place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate and key that did not load, naming the file at fault.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TlsError {
    pub path: PathBuf,
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A loaded pair: what rustls serves, and when the leaf certificate expires (Unix seconds).
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub not_after: i64,
}

/// Parse a PEM certificate chain (leaf first) and its private key.
pub fn parse(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<Loaded, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| err(cert_path, format!("not a PEM certificate chain ({e})")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| err(cert_path, "holds no certificate"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| {
        err(
            cert_path,
            format!("the first certificate does not parse ({e})"),
        )
    })?;
    let not_after = parsed.validity().not_after.timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| err(key_path, format!("not a PEM private key ({e})")))?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        err(
            key_path,
            format!("does not load as the key of {} ({e})", cert_path.display()),
        )
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        not_after,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| err(path, format!("cannot read ({e})")))
}

/// Read and parse both files.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<Loaded, TlsError> {
    parse(cert_path, &read(cert_path)?, key_path, &read(key_path)?)
}

/// Load the configured pair once: a missing, unreadable or mismatched pair stops startup (and
/// `check-config`) with one line naming the file's key.
pub fn check_files(tls: &crate::config::TlsSettings) -> Result<(), crate::config::ConfigError> {
    load(&tls.cert_file, &tls.key_file).map_err(|e| {
        let key = if e.path == tls.key_file {
            "server.tls.key_file"
        } else {
            "server.tls.cert_file"
        };
        crate::config::ConfigError::key(key, e)
    })?;
    Ok(())
}

/// The certificate being served, swapped in place when the files change.
pub struct CertReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// The bytes last loaded, to notice a change.
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
    not_after: AtomicI64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
}

impl std::fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertReloader")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl CertReloader {
    /// Load the pair once; startup fails with the error naming the file at fault.
    pub fn new(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert_path)?;
        let key_pem = read(key_path)?;
        let loaded = parse(cert_path, &cert_pem, key_path, &key_pem)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: ArcSwap::new(loaded.key),
            seen: Mutex::new((cert_pem, key_pem)),
            not_after: AtomicI64::new(loaded.not_after),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        })
    }

    /// Unix seconds at which the served certificate expires.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed)
    }

    /// Re-read the files; swap the certificate in when they changed and load. Returns whether
    /// a new certificate is now served.
    pub fn check(&self) -> bool {
        let (Ok(cert_pem), Ok(key_pem)) = (read(&self.cert_path), read(&self.key_path)) else {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(cert = %self.cert_path.display(), "TLS files unreadable; keeping the current certificate");
            return false;
        };
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen.0 == cert_pem && seen.1 == key_pem {
            return false;
        }
        match parse(&self.cert_path, &cert_pem, &self.key_path, &key_pem) {
            Ok(loaded) => {
                self.current.store(loaded.key);
                self.not_after.store(loaded.not_after, Ordering::Relaxed);
                self.reloads.fetch_add(1, Ordering::Relaxed);
                *seen = (cert_pem, key_pem);
                tracing::info!(
                    cert = %self.cert_path.display(),
                    not_after = loaded.not_after,
                    "TLS certificate reloaded"
                );
                true
            }
            Err(e) => {
                // Often a rotation caught between its two writes: try again next time.
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "TLS files changed but do not load; keeping the current certificate");
                false
            }
        }
    }

    /// Check the files every `every` until the task is dropped.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let this = self.clone();
            // File reads and RSA key parsing are blocking work.
            let _ = tokio::task::spawn_blocking(move || this.check()).await;
        }
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls configuration: TLS 1.2 and 1.3 with the provider's safe defaults, no client
/// certificates, the certificate from `reloader`. actix-web adds the ALPN protocols (h2,
/// http/1.1).
pub fn server_config(reloader: Arc<CertReloader>) -> Result<rustls::ServerConfig, TlsError> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| err(&reloader.cert_path, format!("TLS set-up failed ({e})")))?
        .with_no_client_auth()
        .with_cert_resolver(reloader);
    Ok(config)
}
