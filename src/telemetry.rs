//! Logging and request ids.
//!
//! Every request gets an id (the client's `x-request-id` when it is sane, a fresh UUID
//! otherwise). It is echoed in the response header, put into the request's span so every log
//! line of that request carries it, and made available to error bodies through a task-local.

use std::io::IsTerminal;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// What error rendering needs to know about the request being served on this task.
#[derive(Debug, Clone)]
struct RequestContext {
    id: String,
    prefers_html: bool,
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST.try_with(|r| r.id.clone()).ok()
}

/// Whether the request being served asked for HTML (errors are then rendered as a page).
pub fn current_prefers_html() -> bool {
    REQUEST.try_with(|r| r.prefers_html).unwrap_or(false)
}

/// What is logged unless `RUST_LOG` says otherwise. actix answers malformed requests (bad
/// headers, oversized heads) with 400 itself and would log each at ERROR: a client could
/// fill the error log at will, so those lines are off.
pub const DEFAULT_FILTER: &str =
    "info,aws_config=warn,aws_smithy_runtime=warn,actix_http::h1::dispatcher=off";

/// Install the global subscriber. `RUST_LOG` overrides the default filter. Lines are written
/// by a background thread through a queue of at most `queue_bytes` (formatting stays on the
/// request thread, the write syscalls do not); when the sink cannot keep up, lines are
/// dropped and counted rather than blocking workers. Keep the guard until exit: it flushes
/// what is queued.
pub fn init(format: LogFormat, queue_bytes: usize) -> crate::logqueue::LogQueueGuard {
    let (writer, guard) = crate::logqueue::LogQueue::new(std::io::stdout(), queue_bytes);
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let terminal = std::io::stdout().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_target(false)
        .with_writer(writer);
    // A second init (tests start many apps in one process) is harmless.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    guard
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

pub async fn request_id_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // The path only: query strings can carry authorization codes and state.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %capped(req.path()),
    );
    let started = Instant::now();
    let context = RequestContext {
        id: id.clone(),
        prefers_html: crate::negotiate::prefers_html(req.request()),
    };
    let result = REQUEST
        .scope(context, next.call(req))
        .instrument(span.clone())
        .await;
    let mut res = result?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = res.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        // Successes are at debug: credential responses have their own audit line, and
        // probes would otherwise flood the log. Refusals and failures are always logged.
        if status == 503 {
            // Not ready or a dependency is down: a state worth a warning, not a bug.
            tracing::warn!(status, elapsed_ms, "request refused: service unavailable");
        } else if status >= 500 {
            tracing::error!(status, elapsed_ms, "request failed");
        } else if status >= 400 {
            tracing::info!(status, elapsed_ms, "request refused");
        } else {
            tracing::debug!(status, elapsed_ms, "request served");
        }
    });
    Ok(res)
}
