//! `GET /s3credentialsREADME`: how to use this deployment, rendered from a template with its
//! real endpoint, region and lifetime, and the signed-in user's buckets.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::{context, Environment};

use crate::archive::Archive;
use crate::auth::AuthenticatedUser;
use crate::config::Settings;
use crate::error::ApiError;
use crate::http::extractor::MaybeUser;
use crate::http::state::AppState;
use crate::vend::policy;

const TEMPLATE: &str = include_str!("readme.html");

/// The template environment, built (and the template parsed) once at startup.
pub fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.add_template("readme.html", TEMPLATE)?;
    Ok(env)
}

fn lifetime(seconds: u32) -> String {
    match seconds {
        s if s % 3600 == 0 && s == 3600 => "1 hour".to_owned(),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{} minutes", s / 60),
    }
}

pub async fn page(
    req: actix_web::HttpRequest,
    user: MaybeUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // An archive's own page, or the service's (the default archive's, listing the others).
    let pinned = req
        .app_data::<crate::http::credentials::Pinned>()
        .map(|p| &*p.0);
    let client = match &user.0 {
        Some(u) => u.client,
        None => state.network.proxies.client(&req),
    };
    let html = render(&state, pinned, user.0.as_ref(), client).map_err(|e| {
        tracing::error!(error = %e, "README page did not render");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the page could not be rendered",
        )
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp(&state)))
        .body(html))
}

fn render(
    state: &AppState,
    pinned: Option<&Archive>,
    user: Option<&AuthenticatedUser>,
    client: std::net::IpAddr,
) -> Result<String, minijinja::Error> {
    let archive = pinned.unwrap_or_else(|| state.archives.default_archive());
    let settings = &*archive.settings;
    let out_of_region = state.network.placement(client, &settings.sts.region)
        == crate::network::Placement::OutOfRegion;
    let buckets: Vec<_> = user
        .map(|u| policy::allowed_buckets(settings, &u.groups))
        .unwrap_or_default()
        .into_iter()
        .map(|b| context! { name => b.name.clone(), prefixes => b.prefixes.clone(), requester_pays => b.requester_pays })
        .collect();
    let endpoint = match pinned {
        Some(a) => state.login.absolute(&format!("{}/s3credentials", a.path)),
        None => state.login.absolute("/s3credentials"),
    };
    // The service's page lists every archive (with whether this user may read from it).
    let all = state.archives.all();
    let archives: Vec<_> = if pinned.is_none() && all.len() > 1 {
        all.iter()
            .map(|a| {
                context! {
                    name => &*a.name,
                    title => &*a.title,
                    region => &a.settings.sts.region,
                    endpoint => state.login.absolute(&format!("{}/s3credentials", a.path)),
                    readme => state.login.absolute(&format!("{}/s3credentialsREADME", a.path)),
                    readable => user.is_some_and(|u| !policy::allowed_buckets(&a.settings, &u.groups).is_empty()),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let example = example_bucket(settings);
    let requester_pays = settings
        .buckets
        .iter()
        .any(|b| b.name == example && b.requester_pays);
    let tickets = tickets(state, user);
    let idp_host = url::Url::parse(&settings.oidc.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    state.templates.get_template("readme.html")?.render(context! {
        endpoint => endpoint,
        routed => state.login.absolute("/s3credentials"),
        archives => archives,
        requester_pays => requester_pays,
        out_of_region => out_of_region,
        client => client.to_string(),
        locate => state.login.absolute("/s3credentials/locate"),
        links => state.login.absolute("/s3"),
        helper_wheel_url => settings.server.helper_wheel_url.as_ref().map(url::Url::as_str),
        helper_index => settings.server.helper_wheel_url.as_ref().is_some_and(|u| u.path().ends_with('/')),
        region => settings.sts.region,
        lifetime => lifetime(settings.sts.duration_seconds),
        vpce => !settings.policy.source_vpce.is_empty(),
        network => !settings.policy.source_vpce.is_empty() || !settings.policy.source_vpc.is_empty(),
        user => user.map(|u| u.user_id.clone()),
        buckets => buckets,
        granting => policy::granting_groups(settings),
        login_url => state.login.absolute(&format!("{}?return_to=%2Fs3credentialsREADME", settings.oidc.callback_path)),
        logout_url => state.login.absolute("/logout"),
        idp_host => idp_host,
        example_bucket => example,
        tickets => tickets,
    })
}

/// The page's ticket section: where to post, the form's CSRF token (a browser session only:
/// a token's holder uses the helper), the lifetimes to choose from.
fn tickets(state: &AppState, user: Option<&AuthenticatedUser>) -> Option<minijinja::Value> {
    let settings = &state.settings.tickets;
    if !settings.enabled {
        return None;
    }
    let form_token = user
        .filter(|u| u.method == crate::auth::AuthMethod::Session)
        .map(|u| {
            let exp = u.expires_at.map_or(0, |t| t.timestamp());
            state.tickets.codec().form_token(&u.user_id, exp)
        });
    let longest = settings.max_lifetime.as_secs();
    let default = settings.default_lifetime.as_secs();
    let mut choices: Vec<u64> = [
        3600,
        6 * 3600,
        86400,
        3 * 86400,
        7 * 86400,
        default,
        longest,
    ]
    .into_iter()
    .filter(|s| *s <= longest)
    .collect();
    choices.sort_unstable();
    choices.dedup();
    let lifetimes: Vec<_> = choices
        .into_iter()
        .map(|s| context! { seconds => s, text => span(s), default => s == default })
        .collect();
    Some(context! {
        url => state.login.absolute("/s3credentials/tickets"),
        form_token => form_token,
        lifetimes => lifetimes,
        longest => span(longest),
    })
}

/// A ticket's life in words.
fn span(seconds: u64) -> String {
    match seconds {
        s if s % 86400 == 0 => match s / 86400 {
            1 => "1 day".to_owned(),
            d => format!("{d} days"),
        },
        s if s % 3600 == 0 => match s / 3600 {
            1 => "1 hour".to_owned(),
            h => format!("{h} hours"),
        },
        s => format!("{} minutes", s / 60),
    }
}

/// A bucket for the recipes: one open to everyone, else any in-region one.
fn example_bucket(settings: &Settings) -> String {
    policy::allowed_buckets(settings, &[])
        .first()
        .map(|b| b.name.clone())
        .or_else(|| {
            settings
                .buckets
                .iter()
                .find(|b| b.region == settings.sts.region)
                .map(|b| b.name.clone())
        })
        .unwrap_or_else(|| "your-bucket".to_owned())
}

/// Forms post here only: the sign-out button (sent on to the IdP's logout: browsers hold
/// the redirect to form-action too) and the ticket form.
fn csp(state: &AppState) -> String {
    let idp_origin = state
        .discovery
        .end_session_endpoint()
        .or_else(|| url::Url::parse(&state.settings.oidc.issuer).ok())
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
        .unwrap_or_default();
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'self' {idp_origin}; frame-ancestors 'none'"
    )
}
