//! OIDC discovery, retried with backoff until the IdP answers, then refreshed periodically so
//! key rotation at the IdP is picked up.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use openidconnect::core::CoreProviderMetadata;
use openidconnect::IssuerUrl;

use crate::config::OidcSettings;

/// How often metadata and keys are re-read after a successful discovery.
const REFRESH_EVERY: Duration = Duration::from_secs(3600);
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// The latest discovered provider metadata (with its JWKS), shared by all workers.
#[derive(Default)]
pub struct Discovery {
    metadata: ArcSwapOption<CoreProviderMetadata>,
    last_error: ArcSwapOption<String>,
}

impl Discovery {
    pub fn metadata(&self) -> Option<Arc<CoreProviderMetadata>> {
        self.metadata.load_full()
    }

    pub fn is_ready(&self) -> bool {
        self.metadata.load().is_some()
    }

    pub fn last_error(&self) -> Option<Arc<String>> {
        self.last_error.load_full()
    }
}

/// The HTTP client used to talk to the IdP. Redirects are refused: following them would let
/// a compromised or misconfigured IdP point stsvend at arbitrary hosts.
pub fn idp_http_client(settings: &OidcSettings) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.http_timeout)
        .connect_timeout(settings.http_timeout)
        .user_agent(concat!("stsvend/", env!("CARGO_PKG_VERSION")))
        .build()
}

async fn discover_once(
    issuer: &str,
    http: &reqwest::Client,
) -> Result<CoreProviderMetadata, String> {
    let issuer = IssuerUrl::new(issuer.to_owned()).map_err(|e| e.to_string())?;
    CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| {
            // The error chain names what failed (connect, status, JSON, issuer mismatch).
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            msg
        })
}

/// Run discovery forever: retry with exponential backoff (capped at
/// `discovery_retry_max`) until it succeeds, then refresh every hour. A failed refresh keeps
/// the previous metadata.
pub async fn run(settings: OidcSettings, http: reqwest::Client, state: Arc<Discovery>) {
    let mut backoff = FIRST_RETRY;
    loop {
        match discover_once(&settings.issuer, &http).await {
            Ok(md) => {
                let keys = md.jwks().keys().len();
                if !state.is_ready() {
                    tracing::info!(issuer = %settings.issuer, keys, "OIDC discovery succeeded");
                }
                state.metadata.store(Some(Arc::new(md)));
                state.last_error.store(None);
                backoff = FIRST_RETRY;
                tokio::time::sleep(REFRESH_EVERY).await;
            }
            Err(error) => {
                tracing::warn!(
                    issuer = %settings.issuer,
                    %error,
                    retry_in_ms = backoff.as_millis() as u64,
                    "OIDC discovery failed"
                );
                state.last_error.store(Some(Arc::new(error)));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(settings.discovery_retry_max);
            }
        }
    }
}
