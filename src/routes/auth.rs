use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::auth::login::{self, CallbackParams};
use crate::auth::redirect::safe_return_path;
use crate::auth::AuthenticatedUser;
use crate::error::ApiError;
use crate::startup::AppState;

/// The callback the IdP redirects to (`oidc.callback_path`, `/login` by default). Without a
/// `code` it starts a login, returning to `return_to` (a local path) afterwards.
pub async fn callback(
    req: HttpRequest,
    params: web::Query<CallbackParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    if params.code.is_none() && params.state.is_none() && params.error.is_none() {
        let return_to = match params.return_to.as_deref() {
            None => login::DEFAULT_RETURN_PATH.to_owned(),
            Some(candidate) => safe_return_path(candidate).ok_or_else(|| {
                ApiError::bad_request("invalid_request", "`return_to` must be a path on this site")
            })?,
        };
        let script = !crate::negotiate::is_browser(&req);
        let (location, cookie) = login::start(&state, &return_to, script, now)?;
        return Ok(login::redirect_to_idp(&location, cookie));
    }
    let login_cookie = params
        .state
        .as_deref()
        .and_then(|s| req.cookie(&state.cookies.login_name(s)));
    let (session, return_to) = login::finish(
        &state,
        &params,
        login_cookie.as_ref().map(|c| c.value()),
        now,
    )
    .await?;
    let cookie = state
        .cookies
        .session_cookie(&session, now)
        .ok_or_else(|| ApiError::unavailable("could not create the session"))?;
    tracing::info!(user = %session.sub, groups = ?session.groups, "login");
    // The return path was validated when the login started; check again all the same.
    let return_to =
        safe_return_path(&return_to).unwrap_or_else(|| login::DEFAULT_RETURN_PATH.into());
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, login::absolute(&state, &return_to)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(cookie)
        .cookie(
            state
                .cookies
                .clear_login(params.state.as_deref().unwrap_or_default()),
        )
        .finish())
}

/// Forget the session, then end the IdP session too when the IdP supports it.
pub async fn logout(state: web::Data<AppState>) -> HttpResponse {
    let end_session = state.discovery.provider().and_then(|p| {
        p.metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()
    });
    let mut res = match end_session.and_then(|e| url::Url::parse(&e).ok()) {
        Some(mut url) => {
            url.query_pairs_mut()
                .append_pair("client_id", &state.settings.oidc.client_id);
            let mut res = HttpResponse::Found();
            res.insert_header((header::LOCATION, url.to_string()));
            res
        }
        None => HttpResponse::Ok(),
    };
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(state.cookies.clear_session())
        .json(json!({"status": "logged_out"}))
}

/// Who the caller is, as stsvend sees it.
pub async fn whoami(user: AuthenticatedUser) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "user_id": user.user_id,
            "groups": user.groups,
            "authenticated_by": user.method,
            "expires_at": user.expires_at.map(|t| t.to_rfc3339()),
        }))
}
