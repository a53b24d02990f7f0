use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::auth::login::{CallbackParams, CallbackRequest};
use crate::auth::AuthenticatedUser;
use crate::error::ApiError;
use crate::http::state::AppState;

/// The callback the IdP redirects to (`oidc.callback_path`, `/login` by default). Without a
/// `code` it starts a login, returning to `return_to` (a local path) afterwards.
pub async fn callback(
    req: HttpRequest,
    params: web::Query<CallbackParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let index = req
        .cookie(state.cookies.index_name())
        .map(|c| c.value().to_owned());
    let returned_state = match params.request()? {
        CallbackRequest::Start { return_to } => {
            return start_login(&req, &state, &return_to, index.as_deref(), now);
        }
        CallbackRequest::Finish { state } => state,
    };
    let found = state.cookies.find_login(
        returned_state,
        |name| req.cookie(name).map(|c| c.value().to_owned()),
        now,
    );
    // From here on this login is over, whatever happens: its cookie is cleared on every
    // answer, and a replay of its state is refused before anything reaches the IdP.
    let clear = found
        .as_ref()
        .map(|(slot, _)| state.cookies.clear_login(*slot, index.as_deref(), now))
        .unwrap_or_default();
    let (session, return_to) = state
        .login
        .complete(
            &params,
            found.map(|(_, login_state)| login_state),
            &state.consumed_logins,
            state.fleet.as_ref(),
            || state.idp_limiter.check_request(&req),
            now,
        )
        .await
        .map_err(|e| e.with_cookies(&clear))?;
    let cookie = state
        .cookies
        .session_cookie(&session, now)
        .ok_or_else(|| ApiError::unavailable("could not create the session"))?;
    tracing::info!(user = %crate::telemetry::capped(&session.sub), groups = ?session.groups, "login");
    state.tickets.observe(&session.sub, &session.groups);
    let mut res = HttpResponse::Found();
    res.insert_header((header::LOCATION, state.login.absolute(&return_to)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(cookie);
    for c in clear {
        res.cookie(c);
    }
    Ok(res.finish())
}

/// Sends the caller to the IdP, remembering where to come back to.
fn start_login(
    req: &HttpRequest,
    state: &AppState,
    return_to: &str,
    index: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<HttpResponse, ApiError> {
    state.idp_limiter.check_login_start(req)?;
    let script = !crate::negotiate::is_browser(req);
    let (location, cookies) = state
        .login
        .start(&state.cookies, return_to, script, index, now)?;
    Ok(crate::http::extractor::redirect_to_idp(&location, &cookies))
}

/// Forget the session, then end the IdP session too when the IdP supports it. `POST` is the
/// way (a link or an image cannot log anyone out); a `POST` from another site's page is
/// refused. `GET` stays for links and scripts written against earlier versions.
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let post = req.method() == actix_web::http::Method::POST;
    if post {
        refuse_cross_site(&req, &state)?;
    }
    let mut res = match state.discovery.end_session_endpoint() {
        Some(mut url) => {
            url.query_pairs_mut()
                .append_pair("client_id", &state.settings.oidc.client_id);
            // After a POST the browser must GET the IdP's page: 303.
            let mut res = if post {
                HttpResponse::SeeOther()
            } else {
                HttpResponse::Found()
            };
            res.insert_header((header::LOCATION, url.to_string()));
            res
        }
        None => HttpResponse::Ok(),
    };
    // The browser forgets what this login left in its cache too (object links' redirects),
    // so the next person at a shared browser cannot follow them.
    Ok(res
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("clear-site-data", "\"cache\", \"cookies\""))
        .cookie(state.cookies.clear_session())
        .json(json!({"status": "logged_out"})))
}

/// Whether the request's `Origin` is this service's own: None when it sends none (scripts;
/// browsers send one on every POST and DELETE).
pub(crate) fn origin_is_ours(req: &HttpRequest, state: &AppState) -> Option<bool> {
    let origin = req.headers().get(header::ORIGIN)?;
    let ours = state
        .settings
        .server
        .public_url
        .origin()
        .ascii_serialization();
    Some(origin.to_str().is_ok_and(|o| o == ours))
}

/// A logout `POST` must come from this service's own pages (or from no page at all: scripts
/// send no `Origin`).
fn refuse_cross_site(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    if origin_is_ours(req, state) == Some(false) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "cross_site_request",
            "log out from this service's own pages",
        ));
    }
    Ok(())
}

/// What `/whoami` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub user_id: String,
    /// The user's groups that this deployment's bucket rules mention.
    pub groups: Vec<String>,
    #[schema(value_type = String, pattern = "^(session|bearer|ticket)$")]
    pub authenticated_by: crate::auth::AuthMethod,
    /// When the session, token or ticket stops being accepted (RFC 3339).
    pub expires_at: Option<String>,
    /// The ticket the request came with, and what it may read (empty: whatever the user may).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<TicketShown>,
    /// The platform acting for the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TicketShown {
    pub id: String,
    pub targets: Vec<String>,
}

/// Who the caller is, as stsvend sees it.
pub async fn whoami(user: AuthenticatedUser) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(WhoAmI {
            user_id: user.user_id.to_string(),
            groups: user.groups.to_vec(),
            authenticated_by: user.method,
            expires_at: user.expires_at.map(|t| t.to_rfc3339()),
            ticket: user.ticket.as_ref().map(|t| TicketShown {
                id: t.claims.id.clone(),
                targets: t.claims.tgt.clone(),
            }),
            via: user.via.as_deref().map(str::to_owned),
        })
}
