//! The request being served: its id and context.
//!
//! Every request gets an id (the client's `x-request-id` when it is sane, a fresh UUID
//! otherwise). It is echoed in the response header, named by every log line of that request,
//! and made available to error bodies, all through a task-local: the JSON format reads the
//! request from there (no tracing span per request); the pretty format also gets a span.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request being served on this task: its id for error bodies, what JSON log lines
/// name as their span, and its `Accept` header for error rendering.
#[derive(Debug)]
struct RequestContext {
    id: String,
    method: actix_web::http::Method,
    uri: actix_web::http::Uri,
    accept: Option<HeaderValue>,
    help: &'static HelpUrls,
}

/// Where each error code points users (`[help] urls`), for error bodies. Made once at
/// startup and kept for the process (a reference costs a request nothing to carry).
pub type HelpUrls = std::collections::BTreeMap<String, url::Url>;

/// The help URL for error `code` in the request being served on this task, if configured.
pub fn current_help_url(code: &str) -> Option<String> {
    REQUEST
        .try_with(|r| r.help.get(code).map(|u| u.as_str().to_owned()))
        .ok()
        .flatten()
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// Whether requests get a tracing span (the pretty format shows spans; the JSON format
/// reads the request from the task-local instead, which costs far less per request).
pub(super) static REQUEST_SPANS: AtomicBool = AtomicBool::new(false);

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST.try_with(|r| r.id.clone()).ok()
}

/// Whether the request being served asked for HTML (errors are then rendered as a page).
pub fn current_prefers_html() -> bool {
    REQUEST
        .try_with(|r| {
            let accept = r.accept.as_ref().and_then(|v| v.to_str().ok());
            crate::negotiate::prefers_html_header(accept.unwrap_or(""))
        })
        .unwrap_or(false)
}

/// `,"span":{...}` naming the request being served on this task, as tracing-subscriber's
/// JSON format names a `request` span; false when no request is being served.
pub(crate) fn write_request_span(w: &mut dyn std::fmt::Write) -> Result<bool, std::fmt::Error> {
    use crate::json::write_escaped;
    REQUEST
        .try_with(|r| {
            w.write_str(",\"span\":{\"method\":\"")?;
            write_escaped(w, r.method.as_str())?;
            w.write_str("\",\"path\":\"")?;
            write_escaped(w, &capped(r.uri.path()))?;
            w.write_str("\",\"request_id\":\"")?;
            write_escaped(w, &r.id)?;
            w.write_str("\",\"name\":\"request\"}")?;
            Ok(true)
        })
        .unwrap_or(Ok(false))
}

/// The longest client-controlled text (path, user id, X-Forwarded-For, User-Agent) a log
/// line carries: a client must not decide how large our log lines are.
pub const MAX_LOGGED_FIELD: usize = 256;

/// `s` cut to `MAX_LOGGED_FIELD` bytes (on a character boundary), marked when cut.
pub fn capped(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= MAX_LOGGED_FIELD {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = MAX_LOGGED_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…[{} bytes]", &s[..end], s.len()))
}

/// Accept a client-sent id only if it is short and plain, so it cannot forge log lines.
pub fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| s.to_owned())
}

/// The middleware every request passes, for a deployment with these help URLs.
pub async fn request_id_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
    help: &'static HelpUrls,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(sane_request_id)
        .unwrap_or_else(|| {
            uuid::Uuid::new_v4()
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .to_owned()
        });
    let header = HeaderValue::from_str(&id).ok();
    let https = req.app_config().secure();
    let context = RequestContext {
        id,
        method: req.method().clone(),
        uri: req.uri().clone(),
        accept: req.headers().get(header::ACCEPT).cloned(),
        help,
    };
    // The pretty format shows spans; the JSON format names the request from `context`.
    let span = REQUEST_SPANS.load(Ordering::Relaxed).then(|| {
        // The path only: query strings can carry authorization codes and state.
        tracing::info_span!(
            "request",
            request_id = %context.id,
            method = %req.method(),
            path = %capped(req.path()),
        )
    });
    let serve = REQUEST.scope(context, async move {
        let started = Instant::now();
        let result = next.call(req).await;
        if let Ok(res) = &result {
            log_outcome(res.status().as_u16(), started);
        }
        result
    });
    let mut res = match span {
        Some(span) => serve.instrument(span).await,
        None => serve.await,
    }?;
    let headers = res.headers_mut();
    if let Some(value) = header {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    // Every response: a JSON error or a credential must never be sniffed into HTML.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Only when stsvend itself serves https (behind a TLS-terminating proxy, the proxy
    // decides): a year, this host only.
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    Ok(res)
}

/// Successes are at debug: credential responses have their own audit line, and probes would
/// otherwise flood the log. Refusals and failures are always logged.
fn log_outcome(status: u16, started: Instant) {
    let elapsed_ms = || started.elapsed().as_secs_f64() * 1000.0;
    if status == 503 {
        // Not ready or a dependency is down: a state worth a warning, not a bug.
        tracing::warn!(
            status,
            elapsed_ms = elapsed_ms(),
            "request refused: service unavailable"
        );
    } else if status >= 500 {
        tracing::error!(status, elapsed_ms = elapsed_ms(), "request failed");
    } else if status >= 400 {
        tracing::info!(status, elapsed_ms = elapsed_ms(), "request refused");
    } else {
        tracing::debug!(status, elapsed_ms = elapsed_ms(), "request served");
    }
}
