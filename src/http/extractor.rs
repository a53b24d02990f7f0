//! `AuthenticatedUser` as an extractor: bearer token, else session cookie, else a login
//! challenge shaped for the client (redirect for browsers and scripts, 401 JSON for API
//! clients). Handlers that take an `AuthenticatedUser` never see an anonymous request.

use actix_web::cookie::Cookie;
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::{ready, Either, LocalBoxFuture, Ready};

use crate::auth::bearer::TokenError;
use crate::auth::redirect::safe_return_path;
use crate::auth::session::MAX_RETURN_TO;
use crate::auth::ticket::TicketError;
use crate::auth::{claims, login, AuthMethod, AuthenticatedUser};
use crate::error::ApiError;
use crate::http::state::AppState;
use crate::negotiate;
use crate::revoke::Standing;

/// Why a request was not let through, and how to tell the client.
#[derive(Debug)]
pub enum AuthRejection {
    /// Send the user to the IdP, remembering the login state in a cookie.
    Login {
        location: String,
        cookies: Vec<Cookie<'static>>,
    },
    Error(ApiError),
}

impl std::fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Login { .. } => f.write_str("login required"),
            Self::Error(e) => e.fmt(f),
        }
    }
}

impl ResponseError for AuthRejection {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Login { .. } => StatusCode::FOUND,
            Self::Error(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Login { location, cookies } => redirect_to_idp(location, cookies),
            Self::Error(e) => e.error_response(),
        }
    }
}

impl From<ApiError> for AuthRejection {
    fn from(e: ApiError) -> Self {
        Self::Error(e)
    }
}

/// `WWW-Authenticate` for a bad token (RFC 6750 section 3).
fn invalid_token(err: &TokenError) -> ApiError {
    let challenge = format!(
        "Bearer realm=\"stsvend\", error=\"invalid_token\", error_description=\"{}\"",
        err.to_string().replace('"', "'")
    );
    let value = HeaderValue::from_str(&challenge)
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""));
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", err.to_string())
        .with_header(header::WWW_AUTHENTICATE, value)
}

/// The token of an `Authorization: Bearer` header (possibly empty, which is then rejected).
fn bearer_token(req: &HttpRequest) -> Option<&str> {
    bearer_from_header(visible_ascii(req.headers().get(header::AUTHORIZATION)?)?)
}

/// The header's text if it is visible ASCII (and tabs), as `HeaderValue::to_str` decides.
/// A header value cannot hold other control characters or DEL, so that is plain ASCII,
/// which the standard library checks a word at a time (a bearer header is ~1 KB and read on
/// every request).
fn visible_ascii(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    if bytes.is_ascii() {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// The token in an `Authorization` header value, if its scheme is Bearer.
pub fn bearer_from_header(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// [`bearer_from_header`] on a header value's bytes, before they are read as text: the same
/// token (header values hold no whitespace that `trim` and `trim_ascii` tell apart).
pub fn bearer_bytes(value: &[u8]) -> Option<&[u8]> {
    // What clients send: `Bearer <token>`, nothing around it.
    if let Some(token) = value.strip_prefix(b"Bearer ") {
        let plain = |b: Option<&u8>| b.is_some_and(|b| !b.is_ascii_whitespace());
        if plain(token.first()) && plain(token.last()) {
            return Some(token);
        }
    }
    let value = value.trim_ascii();
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(at) => (&value[..at], &value[at + 1..]),
        None => (value, &[][..]),
    };
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii())
}

/// Who is asking, if anyone: a verified bearer token or a valid session cookie. A bad bearer
/// token is an error; no credentials is `None`.
async fn identify(
    req: &HttpRequest,
    state: &AppState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<AuthenticatedUser>, AuthRejection> {
    // An explicit bearer token decides alone: a bad one is a 401, never a login redirect.
    // Other schemes (a .netrc's Basic header reaching us on a shared host) mean "no token".
    let bearer = bearer_token(req);
    if let Some(token) = bearer.filter(|t| t.starts_with(crate::auth::ticket::PREFIX)) {
        return by_ticket(req, state, token, now).map(Some);
    }
    // Cumulus's spelling of a platform's call: `EDL-Client-Id` names the platform,
    // `EDL-Token` carries the user's token issued to it.
    let (bearer, platform) = match bearer {
        Some(token) => (Some(token), None),
        // Only where platforms are configured: other deployments do not look for the headers.
        None if state.settings.platforms.is_empty() => (None, None),
        None => match edl_token(req) {
            Some((client, token)) => (Some(token), Some(edl_platform(state, client)?)),
            None => (None, None),
        },
    };
    if let Some(token) = bearer {
        let permit = || state.idp_limiter.check(state.idp_limiter.client_ip(req));
        return match state
            .bearer
            .verify(token, &state.discovery, &state.idp_http, now, &permit)
            .await
        {
            Ok(v) => {
                if let Some(named) = platform {
                    if v.via.as_deref() != Some(named) {
                        let e = ApiError::new(
                            StatusCode::UNAUTHORIZED,
                            "invalid_token",
                            "the EDL-Token was not issued to the client EDL-Client-Id names",
                        );
                        return Err(e.into());
                    }
                }
                Ok(Some(bearer_user(req, state, &v, now)))
            }
            Err(TokenError::RateLimited(wait)) => Err(crate::limits::too_many(wait).into()),
            Err(e) if e.is_unavailable() => Err(ApiError::unavailable(e.to_string())
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
                .into()),
            Err(e) => {
                tracing::info!(reason = %e, "bearer token rejected");
                Err(invalid_token(&e).into())
            }
        };
    }
    Ok(by_session(req, state, now))
}

/// The user a valid session cookie names, if the request has one.
fn by_session(
    req: &HttpRequest,
    state: &AppState,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<AuthenticatedUser> {
    let cookie = session_cookie(req, state.cookies.session_name())?;
    let max_age = state.settings.oidc.groups_max_age.as_secs();
    let Some(session) = state.cookies.read_session(&cookie, now) else {
        tracing::debug!("session cookie invalid or expired; treated as anonymous");
        return None;
    };
    // Groups older than we may trust: log in again (silent while the IdP session lasts),
    // which reads them afresh.
    let age = now.timestamp().saturating_sub(session.auth_time);
    if u64::try_from(age).map_or(true, |age| age > max_age) {
        tracing::debug!("session groups too old; logging in again");
        return None;
    }
    Some(AuthenticatedUser {
        user_id: session.sub.clone(),
        groups: session.groups.clone(),
        method: AuthMethod::Session,
        expires_at: chrono::DateTime::from_timestamp(session.exp, 0),
        at: now,
        client: state.network.proxies.client(req),
        ticket: None,
        via: None,
    })
}

/// The user a verified token names.
fn bearer_user(
    req: &HttpRequest,
    state: &AppState,
    v: &crate::auth::bearer::VerifiedToken,
    now: chrono::DateTime<chrono::Utc>,
) -> AuthenticatedUser {
    let (user_id, groups) = v.principal.get_or_init(|| {
        let groups = claims::relevant_groups(&state.settings, &v.groups);
        // Groups just read at the IdP: the user's tickets lose any they lost.
        state.tickets.observe(&v.user_id, &groups);
        (v.user_id.as_str().into(), groups.into())
    });
    AuthenticatedUser {
        user_id: user_id.clone(),
        groups: groups.clone(),
        method: AuthMethod::Bearer,
        expires_at: v.expires_at,
        at: now,
        client: state.network.proxies.client(req),
        ticket: None,
        via: v.via.clone(),
    }
}

/// The `EDL-Client-Id` and `EDL-Token` headers, when a request has the token.
fn edl_token(req: &HttpRequest) -> Option<(&str, &str)> {
    static TOKEN: header::HeaderName = header::HeaderName::from_static("edl-token");
    static CLIENT: header::HeaderName = header::HeaderName::from_static("edl-client-id");
    let token = visible_ascii(req.headers().get(&TOKEN)?)?.trim();
    let client = req
        .headers()
        .get(&CLIENT)
        .and_then(visible_ascii)
        .unwrap_or("")
        .trim();
    Some((client, token))
}

/// The configured platform `client_id` names (its name); an unknown one is refused.
fn edl_platform<'s>(state: &'s AppState, client_id: &str) -> Result<&'s str, AuthRejection> {
    state
        .settings
        .platforms
        .iter()
        .find(|p| p.client_id == client_id)
        .map(|p| p.name.as_str())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unknown_platform",
                "EDL-Client-Id does not name a platform this service accepts tokens from",
            )
            .into()
        })
}

/// A request that came with a ticket: who made it, limited to what it was made for.
fn by_ticket(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<AuthenticatedUser, AuthRejection> {
    // Like revocations: a fleet replica that has not yet read which tickets were deleted
    // takes none.
    if !state.tickets.synced() {
        return Err(ApiError::unavailable(
            "this replica has not yet read which tickets were deleted; retry shortly",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
        .into());
    }
    let refused = |e: TicketError| -> AuthRejection {
        tracing::info!(reason = %e, "ticket refused");
        let challenge =
            format!("Bearer realm=\"stsvend\", error=\"invalid_token\", error_description=\"{e}\"");
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string())
            .with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&challenge)
                    .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\"")),
            )
            .into()
    };
    let (opened, narrowed) = state.tickets.authenticate(token, now).map_err(refused)?;
    // What was given out before a revocation ends with it, lifted since or not.
    if state
        .revocations
        .revoked_since(&opened.user, opened.claims.issued_at())
        && state.revocations.standing(&opened.user, now) != Standing::Revoked
    {
        return Err(refused(TicketError::Revoked));
    }
    Ok(AuthenticatedUser {
        user_id: opened.user.clone(),
        groups: narrowed.map_or_else(|| opened.groups.clone(), Into::into),
        method: AuthMethod::Ticket,
        expires_at: Some(opened.claims.expires_at()),
        at: now,
        client: state.network.proxies.client(req),
        via: opened.via.clone(),
        ticket: Some(opened),
    })
}

/// The value of cookie `name`, read straight from the `Cookie` headers. Sealed session
/// values are base64, which needs no decoding; a value with `%` in it goes through actix's
/// own parser, which percent-decodes every cookie of the request (the slower way).
fn session_cookie<'a>(req: &'a HttpRequest, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    for header in req.headers().get_all(header::COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if key.trim() != name {
                continue;
            }
            let value = value.trim();
            // A quoted value (RFC 6265's DQUOTE form) is read without its quotes.
            let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) if value.len() > 1 => inner,
                _ => value,
            };
            if value.contains('%') {
                return req.cookie(name).map(|c| c.value().to_owned().into());
            }
            return Some(value.into());
        }
    }
    None
}

fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, AuthRejection> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "application state is missing",
            )
            .into()
        })
}

/// A user let in, unless their account is revoked (or this replica cannot tell yet).
fn admit(state: &AppState, user: AuthenticatedUser) -> Result<AuthenticatedUser, AuthRejection> {
    match state.revocations.standing(&user.user_id, user.at) {
        Standing::Clear => Ok(user),
        Standing::Unknown => Err(ApiError::unavailable(
            "this replica has not yet read which accounts are revoked; retry shortly",
        )
        .with_header(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from_static("1"),
        )
        .into()),
        Standing::Revoked => {
            tracing::info!(target: "stsvend::audit", user = %crate::telemetry::capped(&user.user_id), "refused: revoked");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "revoked",
                "access for this account has been revoked by the operators of this service",
            )
            .into())
        }
    }
}

/// What can be decided without waiting for anything: a bearer token sent before whose groups
/// may still be trusted (most requests: scripts), a session cookie, or no credentials at all.
/// None: the request goes the whole way ([`authenticate`]).
fn authenticate_now(req: &HttpRequest) -> Option<Result<AuthenticatedUser, AuthRejection>> {
    let state = req.app_data::<web::Data<AppState>>()?;
    let now = state.clock.now();
    if let Some(token) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer_bytes(v.as_bytes()))
    {
        if token.starts_with(crate::auth::ticket::PREFIX.as_bytes()) {
            return None;
        }
        let v = state.bearer.fresh(token, &state.discovery, now)?;
        return Some(admit(state, bearer_user(req, state, &v, now)));
    }
    // Without a bearer token, only a platform's EDL headers would need the IdP.
    if !state.settings.platforms.is_empty() && edl_token(req).is_some() {
        return None;
    }
    Some(match by_session(req, state, now) {
        Some(user) => admit(state, user),
        None => Err(challenge(req, state, now)),
    })
}

async fn authenticate(req: HttpRequest) -> Result<AuthenticatedUser, AuthRejection> {
    let state = app_state(&req)?;
    let now = state.clock.now();
    match identify(&req, &state, now).await? {
        Some(user) => admit(&state, user),
        None => Err(challenge(&req, &state, now)),
    }
}

/// What an anonymous request is told: a 401 for API clients, the way to the IdP for the rest.
fn challenge(
    req: &HttpRequest,
    state: &AppState,
    now: chrono::DateTime<chrono::Utc>,
) -> AuthRejection {
    if negotiate::wants_json_only(req) {
        static CHALLENGE: [(header::HeaderName, &str); 1] =
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"stsvend\"")];
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "login_required",
            "authenticate with `Authorization: Bearer <token>` from your identity provider",
        )
        .with_static_headers(&CHALLENGE)
        .answered_in_json()
        .into();
    }
    match login_redirect(req, state, now) {
        Ok(login) => login,
        Err(e) => e,
    }
}

/// The way to the IdP, remembering where the user was going.
fn login_redirect(
    req: &HttpRequest,
    state: &AppState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<AuthRejection, AuthRejection> {
    let here = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    // A return path longer than a login may remember falls back to the path alone, then to
    // the default: the login itself must still work.
    let return_to = [here.as_str(), req.path()]
        .into_iter()
        .filter(|p| p.len() <= MAX_RETURN_TO)
        .find_map(safe_return_path)
        .unwrap_or_else(|| login::DEFAULT_RETURN_PATH.into());
    state.idp_limiter.check_login_start(req)?;
    let index = req
        .cookie(state.cookies.index_name())
        .map(|c| c.value().to_owned());
    let (location, cookies) = state.login.start(
        &state.cookies,
        &return_to,
        !negotiate::is_browser(req),
        index.as_deref(),
        now,
    )?;
    Ok(AuthRejection::Login { location, cookies })
}

/// The response that sends a user to the IdP with the login-state cookies set.
pub fn redirect_to_idp(location: &str, cookies: &[Cookie<'static>]) -> actix_web::HttpResponse {
    let mut res = actix_web::HttpResponse::Found();
    res.insert_header((actix_web::http::header::LOCATION, location))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"));
    for c in cookies {
        res.cookie(c.clone());
    }
    res.finish()
}

/// The caller if they are signed in (or sent a valid token), without asking anyone to log in.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<AuthenticatedUser>);

impl FromRequest for MaybeUser {
    type Error = AuthRejection;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = app_state(&req)?;
            // A revoked user is nobody here: the page must not show what they could read. Nor
            // is anyone while this replica does not yet know who is revoked.
            let user = identify(&req, &state, state.clock.now())
                .await?
                .filter(|u| state.revocations.standing(&u.user_id, u.at) == Standing::Clear);
            Ok(MaybeUser(user))
        })
    }
}

impl FromRequest for AuthenticatedUser {
    type Error = AuthRejection;
    type Future = Either<
        Ready<Result<Self, Self::Error>>,
        LocalBoxFuture<'static, Result<Self, Self::Error>>,
    >;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Most requests are answered at once, with nothing boxed.
        match authenticate_now(req) {
            Some(now) => Either::Left(ready(now)),
            None => Either::Right(Box::pin(authenticate(req.clone()))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    /// Reading the session cookie straight from the headers finds what actix's cookie parser
    /// finds, whatever else the browser sends.
    #[test]
    fn the_session_cookie_is_read_as_actix_reads_it() {
        let cases: &[&[&str]] = &[
            &["s=abc+/=="],
            &["a=1; s=abc; b=2"],
            &["a=1;s=abc"],
            &["  s = abc  ; s=second"],
            &["a=1", "s=from-the-second-header"],
            &["s=\"quoted\""],
            &["s=\""],
            &["s=\"\""],
            &["s="],
            &["noequals; s=x"],
            &["s=a%2Bb"],
            &["sx=1; xs=2"],
            &["other=1"],
            &[],
        ];
        for headers in cases {
            let mut req = TestRequest::default();
            for h in *headers {
                req = req.append_header((header::COOKIE, *h));
            }
            let req = req.to_http_request();
            let ours = session_cookie(&req, "s").map(|c| c.into_owned());
            let actix = req.cookie("s").map(|c| c.value().to_owned());
            assert_eq!(ours, actix, "{headers:?}");
        }
    }

    #[test]
    fn header_text_is_read_like_to_str_whatever_the_bytes() {
        for b in 0..=255u8 {
            let Ok(v) = HeaderValue::from_bytes(&[b'a', b, b'z']) else {
                continue;
            };
            assert_eq!(visible_ascii(&v), v.to_str().ok(), "byte {b:#x}");
        }
    }

    #[test]
    fn bearer_headers_are_read_like_to_str() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer  tok ",
            "Basic dXNlcg==",
            "Bearer",
            "Bearer\ttok",
        ] {
            let v = HeaderValue::from_str(value).unwrap();
            assert_eq!(visible_ascii(&v), v.to_str().ok(), "{value}");
        }
        let obs = HeaderValue::from_bytes(b"Bearer caf\xc3\xa9").unwrap();
        // The bytes read the same token as the text, for any header value.
        for value in [
            "Bearer abc.def.ghi",
            "Bearer \ttok",
            "Bearer tok\t",
            "Bearer x",
            "bearer  tok ",
            "BEARER\ttok",
            " Bearer tok\t",
            "Basic dXNlcg==",
            "Bearer",
            "Bearer ",
            "Bearertok",
            "Bearer a b",
            "",
        ] {
            let v = HeaderValue::from_str(value).unwrap();
            assert_eq!(
                bearer_bytes(v.as_bytes()),
                bearer_from_header(v.to_str().unwrap()).map(str::as_bytes),
                "{value:?}"
            );
        }
        assert_eq!(visible_ascii(&obs), None);
        assert!(obs.to_str().is_err());
    }
}
