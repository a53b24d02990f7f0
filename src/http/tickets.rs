//! `/s3credentials/tickets`: a signed-in user makes, lists and deletes tickets (the ticket
//! itself is `auth::ticket`, the registry `tickets`). A ticket cannot make or see tickets.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::auth::{AuthMethod, AuthenticatedUser};
use crate::error::ApiError;
use crate::http::credentials::scope_of;
use crate::http::state::AppState;
use crate::telemetry::capped;
use crate::tickets::{Refusal, Spec};
use crate::vend::narrow::{self, Target};
use crate::vend::policy;

/// The largest body a ticket request may have.
const MAX_BODY: usize = 16 * 1024;
/// The longest label.
const MAX_LABEL: usize = 100;

/// What `POST /s3credentials/tickets` takes (JSON; the page's form posts the same fields
/// form-encoded, `target` repeated or `targets` one per line).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// What the ticket may read (`s3://bucket/prefix`, at most 20); none: whatever you may.
    #[schema(max_items = 20)]
    pub targets: Option<Vec<String>>,
    /// The lifetime of the credentials it gets, in seconds (from 900, rounded up to a
    /// multiple of 900); none: each archive's.
    #[schema(minimum = 900, maximum = 43200)]
    pub duration_seconds: Option<u32>,
    /// How long the ticket itself lives, in seconds (from 900 to the deployment's maximum).
    #[schema(minimum = 900, maximum = 604800)]
    pub expires_in: Option<u64>,
    /// A name for you to recognise it by in lists (at most 100 characters).
    #[schema(max_length = 100)]
    pub label: Option<String>,
    /// The page form's CSRF token (browser sessions only).
    pub csrf: Option<String>,
}

/// What a new ticket is answered with (the ticket is shown this once).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Minted {
    pub id: String,
    /// Send as `Authorization: Bearer <ticket>`; keep it like a password.
    pub ticket: String,
    /// RFC 3339.
    pub expires_at: String,
    pub targets: Vec<String>,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u32>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TicketList {
    pub tickets: Vec<crate::tickets::Listed>,
    /// Live tickets one user may hold.
    pub max_per_user: u32,
}

fn enabled(state: &AppState) -> Result<(), ApiError> {
    if state.settings.tickets.enabled {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "tickets are turned off in this deployment",
        ))
    }
}

/// Tickets are managed by their user, never by a ticket.
fn not_by_ticket(user: &AuthenticatedUser) -> Result<(), ApiError> {
    if user.method == AuthMethod::Ticket {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "ticket_not_allowed",
            "a ticket cannot make, list or delete tickets: sign in, or use a token from your identity provider",
        ));
    }
    Ok(())
}

/// A browser session's change must come from this service's own pages: the `Origin` is
/// ours (browsers send it on every POST and DELETE).
fn same_origin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    if super::auth::origin_is_ours(req, state) == Some(true) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_site_request",
        "with a browser session, tickets are made and deleted from this service's own pages",
    ))
}

/// The request body, as JSON or as the page's form.
fn parse(req: &HttpRequest, body: &[u8]) -> Result<MintRequest, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("the body is over {MAX_BODY} bytes"),
        ));
    }
    let kind = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match kind.as_str() {
        "application/x-www-form-urlencoded" => from_form(body),
        "application/json" | "" if body.iter().all(u8::is_ascii_whitespace) => {
            Ok(MintRequest::default())
        }
        "application/json" | "" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(
                "invalid_request",
                format!(
                    "the body is not a ticket request (line {}, column {}): see /openapi.json",
                    e.line(),
                    e.column()
                ),
            )
        }),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "send JSON (application/json) or a form (application/x-www-form-urlencoded)",
        )),
    }
}

fn from_form(body: &[u8]) -> Result<MintRequest, ApiError> {
    let mut out = MintRequest::default();
    let mut targets = Vec::new();
    // Each field is one item of the list (an empty one, the page's empty box, names none):
    // more fields than a list may hold is refused as JSON's longer list is.
    let mut fields = 0usize;
    for (name, value) in url::form_urlencoded::parse(body) {
        let value = value.trim();
        if matches!(&*name, "target" | "targets") {
            fields += 1;
            if fields > narrow::MAX_TARGETS {
                return Err(ApiError::bad_request(
                    "too_many_targets",
                    format!("at most {} targets in one ticket", narrow::MAX_TARGETS),
                ));
            }
        }
        match &*name {
            "target" if !value.is_empty() => targets.push(value.to_owned()),
            "targets" => targets.extend(value.split_whitespace().map(str::to_owned)),
            // An empty field is a field not filled in; a bad number is refused like JSON's.
            "duration_seconds" if !value.is_empty() => {
                out.duration_seconds = Some(value.parse().unwrap_or(0));
            }
            "expires_in" if !value.is_empty() => {
                out.expires_in = Some(value.parse().unwrap_or(0));
            }
            "label" => out.label = Some(value.to_owned()),
            "csrf" => out.csrf = Some(value.to_owned()),
            // Left empty in the form: not given.
            "target" | "duration_seconds" | "expires_in" => {}
            // Like JSON's: a field this request does not have is a mistake, not ignored.
            other => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!(
                        "the form has a field a ticket request does not: {}",
                        crate::error::quoted(other, 40)
                    ),
                ))
            }
        }
    }
    if !targets.is_empty() {
        out.targets = Some(targets);
    }
    Ok(out)
}

/// The targets, each inside what the user may read in the archive that serves it.
fn checked_targets(
    state: &AppState,
    user: &AuthenticatedUser,
    asked: &[String],
) -> Result<Vec<Target>, ApiError> {
    if asked.len() > narrow::MAX_TARGETS {
        return Err(ApiError::bad_request(
            "too_many_targets",
            format!("at most {} targets in one ticket", narrow::MAX_TARGETS),
        ));
    }
    let targets = asked
        .iter()
        .map(|t| Target::parse(t).map_err(|e| ApiError::bad_request("invalid_target", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let targets = narrow::canonical(targets);
    if targets.is_empty() {
        // The whole of what the user may read: something, somewhere.
        let any = state
            .archives
            .all()
            .iter()
            .any(|a| !policy::allowed_buckets(&a.settings, &user.groups).is_empty());
        if !any {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "access_denied",
                "your groups grant no bucket here, so a ticket could read nothing",
            ));
        }
        return Ok(targets);
    }
    let (by_archive, unknown) = state.archives.split(&targets);
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.iter().map(ToString::to_string).collect();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!("no archive here serves {}", names.join(", ")),
        ));
    }
    for (archive, theirs) in by_archive {
        scope_of(archive, user, &theirs)?;
    }
    Ok(targets)
}

/// `POST /s3credentials/tickets`: a ticket for machines that cannot log in.
pub async fn mint(
    req: HttpRequest,
    user: AuthenticatedUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    enabled(&state)?;
    not_by_ticket(&user)?;
    let ask = parse(&req, &body)?;
    let from_page = ask.csrf.is_some();
    if user.method == AuthMethod::Session {
        same_origin(&req, &state)?;
        let exp = user.expires_at.map_or(0, |t| t.timestamp());
        let ok = ask
            .csrf
            .as_deref()
            .or_else(|| {
                req.headers()
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
            })
            .is_some_and(|t| state.tickets.codec().form_token_ok(&user.user_id, exp, t));
        if !ok {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_site_request",
                "the form has expired or did not come from this service's page: reload the page and try again",
            ));
        }
    }
    let label = ask.label.as_deref().unwrap_or("").trim().to_owned();
    if label.chars().count() > MAX_LABEL || label.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_label",
            format!("the label must be at most {MAX_LABEL} characters, without control characters"),
        ));
    }
    let targets = checked_targets(&state, &user, ask.targets.as_deref().unwrap_or(&[]))?;
    let longest = state
        .archives
        .all()
        .iter()
        .map(|a| a.settings.sts.duration_seconds)
        .max()
        .unwrap_or(3600);
    let duration_seconds = match ask.duration_seconds {
        Some(d) => Some(
            narrow::lifetime(Some(d), longest)
                .map_err(|e| ApiError::bad_request("invalid_duration", e))?,
        ),
        None => None,
    };
    let settings = &state.settings.tickets;
    let lifetime = match ask.expires_in {
        None => settings.default_lifetime,
        Some(s) if (900..=settings.max_lifetime.as_secs()).contains(&s) => {
            std::time::Duration::from_secs(s)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_expires_in",
                format!(
                    "expires_in must be from 900 to {} seconds (this deployment's longest ticket)",
                    settings.max_lifetime.as_secs()
                ),
            ))
        }
    };
    let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
    let (record, secret) = state
        .tickets
        .mint(
            &user.user_id,
            &user.groups,
            user.via.as_deref(),
            Spec {
                label,
                targets,
                duration_seconds,
                lifetime,
            },
        )
        .await
        .map_err(refusal)?;
    tracing::info!(
        target: "stsvend::audit",
        user = %capped(&user.user_id),
        ticket = %record.id,
        label = %capped(&record.label),
        targets = ?record.targets,
        expires_at = %record.expires_at.to_rfc3339(),
        via = user.via.as_deref().unwrap_or(""),
        "ticket made"
    );
    let minted = Minted {
        expires_at: record
            .expires_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        id: record.id,
        ticket: secret,
        targets: record.targets,
        label: record.label,
        duration_seconds: record.duration_seconds,
    };
    let mut res = HttpResponse::Created();
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    // The page's form: the browser shows a page, not JSON.
    if from_page && crate::negotiate::prefers_html(&req) {
        return Ok(res
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"))
            .body(made_page(&minted, &state)));
    }
    Ok(res.json(minted))
}

/// The page a browser sees after making a ticket with the form: the ticket, once.
fn made_page(m: &Minted, state: &AppState) -> String {
    use crate::error::escape_html as e;
    let endpoint = state.login.absolute("/s3credentials");
    let readme = state.login.absolute("/s3credentialsREADME#tickets");
    let targets = if m.targets.is_empty() {
        "everything you may read".to_owned()
    } else {
        m.targets
            .iter()
            .map(|t| format!("<code>{}</code>", e(t)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Your ticket</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:60em;margin:1em auto;padding:0 1em}}pre{{white-space:pre-wrap;word-break:break-all;background:#f4f4f4;padding:.5em}}</style></head><body><main>\
<h1>Your ticket</h1><p>Copy it now: it is shown this once. Keep it like a password.</p>\
<pre id=\"ticket\">{ticket}</pre>\
<p>Id <code id=\"ticket-id\">{id}</code>{label}, reads {targets}, until {expires}.</p>\
<pre>curl -H \"Authorization: Bearer $(cat job.ticket)\" {endpoint}</pre>\
<p><a href=\"{readme}\">Back to the recipes</a></p></main></body></html>",
        ticket = e(&m.ticket),
        id = e(&m.id),
        label = if m.label.is_empty() { String::new() } else { format!(" (<em>{}</em>)", e(&m.label)) },
        expires = e(&m.expires_at),
        endpoint = e(&endpoint),
        readme = e(&readme),
    )
}

fn refusal(e: Refusal) -> ApiError {
    match e {
        Refusal::TooMany(most) => ApiError::new(
            StatusCode::CONFLICT,
            "too_many_tickets",
            format!("you hold {most} live tickets, the most this service keeps per user: delete one you no longer need (DELETE /s3credentials/tickets/<id>)"),
        ),
        Refusal::Unknown => unknown_ticket(),
        Refusal::Unsealable => ApiError::bad_request(
            "invalid_request",
            "this ticket would be too large: name fewer or shorter targets",
        ),
    }
}

fn unknown_ticket() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_ticket",
        "you have no live ticket with this id (see GET /s3credentials/tickets)",
    )
}

/// `GET /s3credentials/tickets`: the caller's live tickets (never their secrets).
pub async fn list(
    user: AuthenticatedUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    enabled(&state)?;
    not_by_ticket(&user)?;
    let tickets = state.tickets.list(&user.user_id).await;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(TicketList {
            tickets,
            max_per_user: state.settings.tickets.max_per_user,
        }))
}

/// `DELETE /s3credentials/tickets/{id}`: end one of the caller's tickets, on every replica.
pub async fn delete(
    req: HttpRequest,
    user: AuthenticatedUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    enabled(&state)?;
    not_by_ticket(&user)?;
    if user.method == AuthMethod::Session {
        same_origin(&req, &state)?;
    }
    let id = id.into_inner();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(unknown_ticket());
    }
    let fleet = state
        .tickets
        .delete(&user.user_id, &id)
        .await
        .map_err(refusal)?;
    tracing::info!(target: "stsvend::audit", user = %capped(&user.user_id), ticket = %id, fleet, "ticket deleted");
    Ok(HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}
