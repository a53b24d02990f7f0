//! What every handler reads: the settings and the clients and caches built at startup.

use std::sync::Arc;

use crate::auth::bearer::BearerVerifier;
use crate::auth::discovery::Discovery;
use crate::auth::session::CookieCodec;
use crate::clock::Clock;
use crate::config::Settings;

/// Shared, read-only state handed to every handler.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    pub discovery: Arc<Discovery>,
    pub idp_http: reqwest::Client,
    pub cookies: CookieCodec,
    pub bearer: BearerVerifier,
    /// Every archive, each with its scoper and vendor, and the router from bucket to archive.
    pub archives: Arc<crate::archive::Archives>,
    /// Fleet mode's Redis layer, shared with the vendor's credential cache.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    pub templates: minijinja::Environment<'static>,
    /// Object links signed in the last minute, reused (`vend::presign::Links`).
    pub links: crate::vend::presign::Links,
    /// `/openapi.json`, rendered once for this deployment.
    pub openapi: Box<str>,
    pub login: crate::auth::login::Login,
    pub consumed_logins: crate::auth::login::ConsumedLogins,
    pub idp_limiter: Arc<crate::limits::IdpLimiter>,
    pub revocations: Arc<crate::revoke::Revocations>,
    /// Every ticket made, and which were deleted.
    pub tickets: Arc<crate::tickets::Tickets>,
    /// Where callers are (their address, and their region with AWS's ranges).
    pub network: Arc<crate::network::Network>,
}
