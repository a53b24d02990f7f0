//! OIDC discovery, retried with backoff until the IdP answers, then refreshed periodically so
//! key rotation at the IdP is picked up. An unknown `kid` triggers an early key refresh, at
//! most once per `KEY_REFRESH_MIN_INTERVAL`, so forged tokens cannot hammer the IdP.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::IssuerUrl;
use serde::{Deserialize, Serialize};

use crate::config::OidcSettings;

/// How often metadata and keys are re-read after a successful discovery.
const REFRESH_EVERY: Duration = Duration::from_secs(3600);
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// The shortest time between two key refreshes caused by unknown `kid`s.
pub const KEY_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Discovery fields beyond the core set that stsvend uses.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraProviderMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
    /// RFC 7662 token introspection (RFC 8414 metadata name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
}

impl openidconnect::AdditionalProviderMetadata for ExtraProviderMetadata {}

pub type ProviderMetadata = openidconnect::ProviderMetadata<
    ExtraProviderMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// What discovery found: the metadata (with the JWKS, for ID tokens) and the same keys in the
/// form the bearer-token verifier uses.
pub struct Provider {
    pub metadata: ProviderMetadata,
    pub keys: jsonwebtoken::jwk::JwkSet,
}

/// The latest discovered provider, shared by all workers.
#[derive(Default)]
pub struct Discovery {
    current: ArcSwapOption<Provider>,
    /// Moves before each new provider is stored: a key found published when this read `n`
    /// is still published while it reads `n` (see [`Discovery::still_publishes`]).
    generation: std::sync::atomic::AtomicU64,
    last_error: ArcSwapOption<String>,
    last_key_refresh: Mutex<Option<Instant>>,
    /// Wakes the discovery loop early when a key refresh failed, so it retries (with
    /// backoff) until the IdP answers again instead of waiting for the hourly refresh.
    wake: tokio::sync::Notify,
}

impl Discovery {
    pub fn provider(&self) -> Option<Arc<Provider>> {
        self.current.load_full()
    }

    /// The IdP's RP-initiated logout endpoint, when its discovery document names a valid one.
    pub fn end_session_endpoint(&self) -> Option<url::Url> {
        self.provider().and_then(|p| {
            p.metadata
                .additional_metadata()
                .end_session_endpoint
                .as_deref()
                .and_then(|e| url::Url::parse(e).ok())
        })
    }

    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    /// What went wrong the last time the IdP was asked (discovery or keys), until the next
    /// success. While discovery has succeeded once, this does not make the service unready:
    /// tokens signed with known keys are still verified.
    pub fn last_error(&self) -> Option<Arc<String>> {
        self.last_error.load_full()
    }

    /// Stores a newly read provider (keys).
    fn store(&self, provider: Provider) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.current.store(Some(Arc::new(provider)));
    }

    /// Where the provider (keys) stands: read it before reading the keys a token is checked
    /// against, and give it to [`Self::still_publishes`] later.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// [`Self::publishes`] for a key that was published when [`Self::generation`] read
    /// `seen`: nothing to look up while no new keys were stored since (every cached token
    /// request asks).
    pub fn still_publishes(&self, kid: Option<&str>, seen: u64) -> bool {
        seen == self.generation() || self.publishes(kid)
    }

    /// Whether the key `kid` (or the only key, without a kid) is still published.
    pub fn publishes(&self, kid: Option<&str>) -> bool {
        self.current
            .load()
            .as_ref()
            .is_some_and(|p| find_key(&p.keys, kid).is_some())
    }

    /// Re-read the JWKS now, unless that happened less than `KEY_REFRESH_MIN_INTERVAL` ago.
    /// Returns whether new keys were loaded.
    pub async fn refresh_keys(&self, http: &reqwest::Client) -> bool {
        {
            let Ok(mut last) = self.last_key_refresh.lock() else {
                return false;
            };
            if last.is_some_and(|t| t.elapsed() < KEY_REFRESH_MIN_INTERVAL) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let Some(current) = self.provider() else {
            return false;
        };
        let url = current.metadata.jwks_uri().url().clone();
        let fetched = async {
            let res = http.get(url).send().await.map_err(|e| e.to_string())?;
            if !res.status().is_success() {
                return Err(format!("JWKS answered {}", res.status()));
            }
            let body = res.bytes().await.map_err(|e| e.to_string())?;
            let core: CoreJsonWebKeySet =
                serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            Ok::<_, String>(core)
        }
        .await;
        match fetched {
            Ok(core) => {
                let keys = verifier_keys(&core);
                tracing::info!(keys = keys.keys.len(), "reloaded the IdP's signing keys");
                self.last_error.store(None);
                let metadata = current.metadata.clone().set_jwks(core);
                self.store(Provider { metadata, keys });
                true
            }
            Err(error) => {
                tracing::warn!(%error, "could not reload the IdP's signing keys");
                self.last_error.store(Some(Arc::new(format!(
                    "reloading the signing keys failed: {error}"
                ))));
                self.wake.notify_one();
                false
            }
        }
    }
}

/// The IdP's keys as `jsonwebtoken` keys; keys it cannot use (encryption keys, unknown key
/// types) are skipped rather than failing the whole set.
/// The published key a token names by `kid`; without a kid, only an unambiguous single key.
pub(crate) fn find_key<'a>(
    keys: &'a jsonwebtoken::jwk::JwkSet,
    kid: Option<&str>,
) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
}

fn verifier_keys(core: &CoreJsonWebKeySet) -> jsonwebtoken::jwk::JwkSet {
    let keys = core
        .keys()
        .iter()
        .filter_map(|k| serde_json::to_value(k).ok())
        .filter(|v| v.get("use").and_then(|u| u.as_str()).unwrap_or("sig") == "sig")
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    jsonwebtoken::jwk::JwkSet { keys }
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

async fn discover_once(issuer: &str, http: &reqwest::Client) -> Result<Provider, String> {
    let issuer = IssuerUrl::new(issuer.to_owned()).map_err(|e| e.to_string())?;
    let metadata = ProviderMetadata::discover_async(issuer, http)
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
        })?;
    let keys = verifier_keys(metadata.jwks());
    Ok(Provider { metadata, keys })
}

/// Run discovery forever: retry with exponential backoff (capped at
/// `discovery_retry_max`) until it succeeds, then refresh every hour. A failed refresh keeps
/// the previous metadata.
pub async fn run(settings: OidcSettings, http: reqwest::Client, state: Arc<Discovery>) {
    let mut backoff = FIRST_RETRY;
    loop {
        match discover_once(&settings.issuer, &http).await {
            Ok(provider) => {
                if !state.is_ready() {
                    tracing::info!(
                        issuer = %settings.issuer,
                        keys = provider.keys.keys.len(),
                        "OIDC discovery succeeded"
                    );
                }
                if state.last_error.load().is_some() {
                    tracing::info!(issuer = %settings.issuer, "the IdP answers again");
                }
                state.store(provider);
                state.last_error.store(None);
                backoff = FIRST_RETRY;
                tokio::select! {
                    () = tokio::time::sleep(REFRESH_EVERY) => {}
                    () = state.wake.notified() => {}
                }
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
