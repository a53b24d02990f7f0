//! Browser (and `.netrc` script) login: the authorization-code flow with PKCE, `state` and
//! `nonce`. The login state travels in a short-lived encrypted cookie, so any replica can
//! finish a login another one started.

use std::sync::Arc;

use actix_web::cookie::Cookie;
use actix_web::http::StatusCode;
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse,
};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::claims;
use super::discovery::Discovery;
use super::discovery::Provider;
use super::redirect::safe_return_path;
use super::session::CookieCodec;
use super::session::{LoginState, SessionData, LOGIN_STATE_TTL_SECONDS, MAX_RETURN_TO};
use crate::clock::Clock;
use crate::config::Settings;
use crate::error::ApiError;

/// Where users land after logging in when nothing else was asked for.
pub const DEFAULT_RETURN_PATH: &str = "/s3credentials";

/// What the IdP (or a user) sends to the callback path.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// Only on an explicit `GET /login?return_to=/path`, which starts a login.
    pub return_to: Option<String>,
}

/// What a request to the callback path asks for.
pub enum CallbackRequest<'a> {
    /// No `code`, `state` or `error`: start a login that returns to this local path.
    Start { return_to: String },
    /// The IdP's answer for the login state `state` names.
    Finish { state: &'a str },
}

impl CallbackParams {
    /// Start or finish; a `return_to` that is not a short local path, or an answer without
    /// `state`, is refused.
    pub fn request(&self) -> Result<CallbackRequest<'_>, ApiError> {
        if self.code.is_none() && self.state.is_none() && self.error.is_none() {
            let return_to = match self.return_to.as_deref() {
                None => DEFAULT_RETURN_PATH.to_owned(),
                Some(candidate) if candidate.len() > MAX_RETURN_TO => {
                    return Err(ApiError::bad_request(
                        "invalid_request",
                        format!("`return_to` is longer than {MAX_RETURN_TO} characters"),
                    ))
                }
                Some(candidate) => safe_return_path(candidate).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_request",
                        "`return_to` must be a path on this site",
                    )
                })?,
            };
            return Ok(CallbackRequest::Start { return_to });
        }
        match self.state.as_deref() {
            Some(state) => Ok(CallbackRequest::Finish { state }),
            None => Err(idp_error(self).unwrap_or_else(|| {
                ApiError::bad_request(
                    "invalid_request",
                    "the callback needs both `code` and `state`",
                )
            })),
        }
    }
}

/// The browser login: starting it (the IdP URL and the login-state cookie) and finishing it
/// at the callback (code exchange, ID token, userinfo). Identity only, no HTTP state: the
/// handlers in `http` decide what to answer.
pub struct Login {
    settings: Arc<Settings>,
    discovery: Arc<Discovery>,
    idp_http: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl Login {
    pub fn new(
        settings: Arc<Settings>,
        discovery: Arc<Discovery>,
        idp_http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            settings,
            discovery,
            idp_http,
            clock,
        }
    }

    /// `<public_url><callback_path>`: what the IdP redirects back to.
    pub fn redirect_uri(&self) -> String {
        self.absolute(&self.settings.oidc.callback_path)
    }

    /// A local path made absolute under the public URL (which may carry a path prefix).
    pub fn absolute(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.settings
                .server
                .public_url
                .as_str()
                .trim_end_matches('/'),
            path
        )
    }

    fn oidc_client(
        &self,
        provider: &Provider,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        ApiError,
    > {
        let oidc = &self.settings.oidc;
        let redirect = RedirectUrl::new(self.redirect_uri()).map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the login callback URL is not valid",
            )
        })?;
        Ok(CoreClient::from_provider_metadata(
            provider.metadata.clone(),
            ClientId::new(oidc.client_id.clone()),
            oidc.client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose_secret().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    fn provider(&self) -> Result<Arc<Provider>, ApiError> {
        self.discovery.provider().ok_or_else(|| {
            ApiError::unavailable(
                "the identity provider has not been reached yet; try again shortly",
            )
            .with_header(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static("5"),
            )
        })
    }

    /// Begin a login: the IdP authorization URL to send the user to, and the login-state cookie.
    /// `script` adds Earthdata's `app_type=401`, so the IdP challenges with HTTP Basic.
    pub fn start(
        &self,
        cookies: &CookieCodec,
        return_to: &str,
        script: bool,
        slot_index: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(String, Vec<Cookie<'static>>), ApiError> {
        let provider = self.provider()?;
        let client = self.oidc_client(&provider)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.settings.oidc.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if script {
            request = request.add_extra_param("app_type", "401");
        }
        let (url, csrf, nonce) = request.url();
        let login = LoginState {
            state: csrf.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            return_to: return_to.to_owned(),
            exp: now.timestamp() + LOGIN_STATE_TTL_SECONDS,
        };
        let cookies = cookies
            .login_cookies(&login, slot_index, now)
            .ok_or_else(|| ApiError::unavailable("could not start a login"))?;
        Ok((url.to_string(), cookies))
    }
}

fn invalid_request(description: &str) -> ApiError {
    ApiError::bad_request("invalid_request", description.to_owned())
}

/// Text from the IdP shown to users: printable, short.
fn sanitize(s: &str) -> String {
    crate::error::printable(s, 200)
}

/// The payload of a JWT whose signature has already been verified.
fn verified_payload(jwt: &str) -> Option<Map<String, Value>> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The IdP's error at the callback, if it sent one, as the user sees it.
pub fn idp_error(params: &CallbackParams) -> Option<ApiError> {
    let error = params.error.as_deref()?;
    let error = if error.is_empty() {
        "an error without a code"
    } else {
        error
    };
    let description = params
        .error_description
        .as_deref()
        .map(|d| format!(": {}", sanitize(d)))
        .unwrap_or_default();
    Some(ApiError::bad_request(
        "login_failed",
        format!(
            "the identity provider answered {}{description}",
            sanitize(error)
        ),
    ))
}

/// The error for a callback whose login state is missing, expired or already used.
pub fn no_login_in_progress() -> ApiError {
    invalid_request(
        "no login is in progress in this browser (the login cookie is missing, expired or already used); start again",
    )
}

impl Login {
    /// The callback's state machine, once the login state its `state` named has been looked
    /// up (`found`; the caller clears its cookie on every answer, whatever happens here): an
    /// IdP error spends the state on this replica only (an error callback never reaches the
    /// IdP, so a fleet-wide claim would let anyone write to Redis for free); a missing state is
    /// refused; with a `code`, `admit` (the per-client limit) decides before anything reaches
    /// the IdP; the state is claimed fleet-wide (a replay is refused on every replica), then
    /// the login is finished. Returns the session and the path to return to (validated when
    /// the login started, and again here all the same).
    pub async fn complete(
        &self,
        params: &CallbackParams,
        found: Option<LoginState>,
        consumed: &ConsumedLogins,
        fleet: Option<&Arc<crate::fleet::Fleet>>,
        admit: impl FnOnce() -> Result<(), ApiError>,
        now: DateTime<Utc>,
    ) -> Result<(SessionData, String), ApiError> {
        if let Some(e) = idp_error(params) {
            if let Some(login_state) = &found {
                consumed.consume(&login_state.state);
            }
            return Err(e);
        }
        let login_state = found.ok_or_else(no_login_in_progress)?;
        if params.code.is_some() {
            admit()?;
        }
        if !consumed.consume_everywhere(&login_state.state, fleet).await {
            return Err(no_login_in_progress());
        }
        let (session, return_to) = self.finish(params, login_state, now).await?;
        let return_to = safe_return_path(&return_to).unwrap_or_else(|| DEFAULT_RETURN_PATH.into());
        Ok((session, return_to))
    }

    /// Finish a login at the callback, given the login state its `state` named: exchange the
    /// code (with the PKCE verifier), verify the ID token (signature, `iss`, `aud`, `exp`,
    /// `nonce`), and read the user id and groups (from userinfo when the ID token lacks them).
    async fn finish(
        &self,
        params: &CallbackParams,
        login: LoginState,
        now: DateTime<Utc>,
    ) -> Result<(SessionData, String), ApiError> {
        if let Some(e) = idp_error(params) {
            return Err(e);
        }
        let Some(code) = &params.code else {
            return Err(invalid_request(
                "the callback needs both `code` and `state`",
            ));
        };
        let provider = self.provider()?;
        // RFC 9207: a response from another IdP than the one we sent the user to is refused.
        if let Some(iss) = &params.iss {
            if iss != provider.metadata.issuer().as_str() {
                return Err(invalid_request("the response came from another issuer"));
            }
        }
        let client = self.oidc_client(&provider)?;
        let request = client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .map_err(|_| ApiError::unavailable("the identity provider has no token endpoint"))?
            .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()));
        let tokens = request
            .request_async(&self.idp_http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => ApiError::bad_request(
                    "invalid_grant",
                    format!(
                        "the identity provider refused the authorization code ({}); log in again",
                        r.error()
                    ),
                ),
                other => {
                    tracing::warn!(error = %other, "token exchange with the IdP failed");
                    ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "idp_unavailable",
                        "the identity provider could not be reached to finish the login",
                    )
                }
            })?;
        let id_token = tokens.id_token().ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "invalid_id_token",
                "the identity provider returned no ID token",
            )
        })?;
        let clock = self.clock.clone();
        let verifier = client.id_token_verifier().set_time_fn(move || clock.now());
        let verified = id_token
            .claims(&verifier, &Nonce::new(login.nonce.clone()))
            .map_err(|e| {
                tracing::warn!(error = %e, "ID token rejected");
                ApiError::bad_request(
                    "invalid_id_token",
                    "the ID token did not verify; log in again",
                )
            })?;
        let subject = verified.subject().as_str().to_owned();
        let raw = serde_json::to_value(id_token)
            .ok()
            .and_then(|v| v.as_str().and_then(verified_payload))
            .unwrap_or_default();

        let oidc = &self.settings.oidc;
        let mut user_id = claims::user_id(&raw, &oidc.user_id_claim);
        let mut groups = claims::groups(&raw, &oidc.groups_claim);
        if user_id.is_none() || groups.is_none() {
            if let Some(info) = self
                .userinfo(&provider, tokens.access_token().secret())
                .await?
            {
                if claims::user_id(&info, "sub").as_deref() == Some(subject.as_str()) {
                    user_id = user_id.or_else(|| claims::user_id(&info, &oidc.user_id_claim));
                    groups = groups.or_else(|| claims::groups(&info, &oidc.groups_claim));
                } else {
                    tracing::warn!("userinfo answered for another subject; ignored");
                }
            }
        }
        let user_id = user_id.ok_or_else(|| {
            ApiError::bad_request(
                "invalid_id_token",
                format!(
                    "the identity provider did not say who you are (no `{}` claim)",
                    oidc.user_id_claim
                ),
            )
        })?;
        let groups = claims::relevant_groups(&self.settings, &groups.unwrap_or_default());
        let lifetime =
            TimeDelta::from_std(self.settings.session.lifetime).unwrap_or(TimeDelta::hours(24));
        let session = SessionData {
            sub: user_id.into(),
            groups: groups.into(),
            exp: now
                .checked_add_signed(lifetime)
                .map_or(i64::MAX, |exp| exp.timestamp()),
            auth_time: now.timestamp(),
        };
        Ok((session, login.return_to))
    }

    async fn userinfo(
        &self,
        provider: &Provider,
        access_token: &str,
    ) -> Result<Option<Map<String, Value>>, ApiError> {
        let Some(endpoint) = provider.metadata.userinfo_endpoint() else {
            return Ok(None);
        };
        let unavailable = || {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "idp_unavailable",
                "the identity provider's userinfo endpoint did not answer",
            )
        };
        let res = self
            .idp_http
            .get(endpoint.url().clone())
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|_| unavailable())?;
        if !res.status().is_success() {
            tracing::warn!(status = res.status().as_u16(), "userinfo request failed");
            return Err(unavailable());
        }
        res.json().await.map(Some).map_err(|_| unavailable())
    }
}

/// Login states already used at the callback. A login state is good for one callback,
/// successful or not: replaying it (with a made-up code) must not make stsvend call the IdP
/// again. Remembered for the login state's lifetime, per replica here, and in fleet mode also
/// in Redis (`consume_everywhere`), so a replay sent to another replica is refused too.
pub struct ConsumedLogins {
    seen: moka::sync::Cache<[u8; 32], ()>,
}

impl Default for ConsumedLogins {
    fn default() -> Self {
        Self {
            seen: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_live(std::time::Duration::from_secs(
                    LOGIN_STATE_TTL_SECONDS.unsigned_abs(),
                ))
                .build(),
        }
    }
}

impl ConsumedLogins {
    /// True the first time `state` is presented, false ever after.
    pub fn consume(&self, state: &str) -> bool {
        let key: [u8; 32] = Sha256::digest(state.as_bytes()).into();
        self.seen.entry(key).or_insert(()).is_fresh()
    }

    /// `consume` here and, in fleet mode, for the whole fleet (Redis unavailable: here only).
    pub async fn consume_everywhere(
        &self,
        state: &str,
        shared: Option<&std::sync::Arc<crate::fleet::Fleet>>,
    ) -> bool {
        let here = self.consume(state);
        let fleet = match shared {
            Some(shared) => shared
                .claim_once(
                    state,
                    std::time::Duration::from_secs(LOGIN_STATE_TTL_SECONDS.unsigned_abs()),
                )
                .await
                .unwrap_or(true),
            None => true,
        };
        here && fleet
    }
}
