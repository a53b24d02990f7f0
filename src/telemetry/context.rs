//! The request being served: its id and the context its log lines and errors read.
//!
//! Every request gets an id (the client's `x-request-id` when it is sane, a fresh UUID
//! otherwise). It is echoed in the response header, named by every log line of that request,
//! and made available to error bodies, all through a task-local: the JSON format reads the
//! request from there (no tracing span per request); the pretty format also gets a span.
//! `http::layer` sets it for each request.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use tokio::task::futures::TaskLocalFuture;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request being served on this task: its id for error bodies, what JSON log lines
/// name as their span, and its `Accept` header for error rendering.
#[derive(Debug)]
pub struct RequestContext {
    /// Sane (see [`sane_request_id`]) or a UUID: visible ASCII, so also a header value.
    id: HeaderValue,
    method: actix_web::http::Method,
    path: Path,
    accept: Option<HeaderValue>,
    help: &'static HelpUrls,
}

/// Where each error code points users (`[help] urls`), for error bodies. Made once at
/// startup and kept for the process (a reference costs a request nothing to carry).
pub type HelpUrls = std::collections::HashMap<String, url::Url, foldhash::fast::RandomState>;

/// For an error body in the request being served on this task: whether the client asked for
/// HTML (when `ask` says to read its `Accept`), and the help URL for error `code` if one is
/// configured (false and none outside a request).
pub fn error_view(code: &str, ask: bool) -> (bool, Option<&'static str>) {
    REQUEST
        .try_with(|r| {
            let html = ask && {
                let accept = r.accept.as_ref().and_then(|v| v.to_str().ok());
                crate::negotiate::prefers_html_header(accept.unwrap_or(""))
            };
            (html, r.help.get(code).map(url::Url::as_str))
        })
        .unwrap_or((false, None))
}

/// The request's id as a JSON string (`"…"`, escaped) at the end of `out`; false outside a
/// request.
pub fn write_request_id_json(out: &mut String) -> bool {
    REQUEST
        .try_with(|r| {
            // Sane or a UUID: nothing to escape (see `write_request_span`).
            out.push('"');
            out.push_str(r.id());
            out.push('"');
        })
        .is_ok()
}

/// The request's path, for log lines: copied into the context itself when short (most are),
/// because cloning the request's `Uri` allocates.
#[derive(Debug)]
enum Path {
    Inline { len: u8, bytes: [u8; 62] },
    Long(Box<str>),
}

impl Path {
    fn new(path: &str) -> Self {
        let mut bytes = [0u8; 62];
        match (bytes.get_mut(..path.len()), u8::try_from(path.len())) {
            (Some(slot), Ok(len)) => {
                slot.copy_from_slice(path.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Long(path.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // A copy of a `&str`, whole.
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            Self::Long(path) => path,
        }
    }
}

impl RequestContext {
    fn id(&self) -> &str {
        // Always visible ASCII (see `id`), which UTF-8 checks a word at a time.
        std::str::from_utf8(self.id.as_bytes()).unwrap_or("")
    }
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// Whether requests get a tracing span (the pretty format shows spans; the JSON format
/// reads the request from the task-local instead, which costs far less per request).
pub(super) static REQUEST_SPANS: AtomicBool = AtomicBool::new(false);

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST.try_with(|r| r.id().to_owned()).ok()
}

/// `,"span":{...}` naming the request being served on this task, as tracing-subscriber's
/// JSON format names a `request` span; false when no request is being served.
pub(crate) fn write_request_span(w: &mut String) -> Result<bool, std::fmt::Error> {
    use crate::json::write_escaped;
    REQUEST
        .try_with(|r| {
            // A method is an HTTP token and an id is sane or a UUID: neither has anything
            // JSON escapes (the tests below hold both to it).
            w.push_str(",\"span\":{\"method\":\"");
            w.push_str(r.method.as_str());
            w.push_str("\",\"path\":\"");
            write_escaped(w, &capped(r.path.as_str()))?;
            w.push_str("\",\"request_id\":\"");
            w.push_str(r.id());
            w.push_str("\",\"name\":\"request\"}");
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

/// A new random (v4) UUID, as a header value.
fn fresh_id() -> HeaderValue {
    let uuid = uuid::Uuid::new_v4();
    // Lowercase hex and hyphens: always a valid header value.
    HeaderValue::from_str(
        uuid.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    )
    .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Accept a client-sent id only if it is short and plain, so it cannot forge log lines.
pub fn sane_request_id(value: &HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    let ok = (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then_some(s)
}

impl RequestContext {
    /// The context of a request arriving now: the client's id when it is sane, a fresh UUID
    /// otherwise.
    pub fn begin(req: &ServiceRequest, help: &'static HelpUrls) -> Self {
        let id = req
            .headers()
            .get(&REQUEST_ID_HEADER)
            .filter(|v| sane_request_id(v).is_some())
            .cloned()
            .unwrap_or_else(fresh_id);
        Self {
            id,
            // Copies that share the request's buffers: the request itself cannot be held
            // (actix routes it by mutating its only reference).
            method: req.method().clone(),
            path: Path::new(req.path()),
            accept: req.headers().get(header::ACCEPT).cloned(),
            help,
        }
    }

    /// The span the pretty format shows for the request (none for the JSON format, which
    /// names the request from the context).
    pub fn span(&self) -> tracing::Span {
        if REQUEST_SPANS.load(Ordering::Relaxed) {
            // The path only: query strings can carry authorization codes and state.
            tracing::info_span!(
                "request",
                request_id = %self.id(),
                method = %self.method,
                path = %capped(self.path.as_str()),
            )
        } else {
            tracing::Span::none()
        }
    }

    /// `future`, served with this context set (error bodies and log lines read it).
    pub fn serve<F: Future>(self, future: F) -> TaskLocalFuture<RequestContext, F> {
        REQUEST.scope(self, future)
    }

    /// The id, for the response's header.
    pub fn into_id(self) -> HeaderValue {
        self.id
    }
}

/// Successes are at debug: credential responses have their own audit line, and probes would
/// otherwise flood the log. Refusals and failures are always logged.
pub fn log_outcome(status: u16, elapsed: Duration) {
    let elapsed_ms = || elapsed.as_secs_f64() * 1000.0;
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
        // Refusals are what clients can make us log at will: written straight to the sink
        // where there is one (`line`), through tracing otherwise.
        let callsite = tracing::callsite!(
            name: "request refused",
            kind: tracing::metadata::Kind::EVENT,
            level: tracing::Level::INFO,
            fields: status, elapsed_ms
        );
        if super::line::would_log(callsite) && !super::line::refused(status, elapsed_ms()) {
            tracing::info!(status, elapsed_ms = elapsed_ms(), "request refused");
        }
    } else {
        tracing::debug!(status, elapsed_ms = elapsed_ms(), "request served");
    }
}

/// Runs `f` as if serving a GET of `/` with request id `id` (for tests of what reads it).
#[cfg(test)]
pub(crate) fn in_test_request<R>(id: &str, f: impl FnOnce() -> R) -> R {
    let no_help: &'static HelpUrls = Box::leak(Box::default());
    let context = RequestContext {
        id: HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("-")),
        method: actix_web::http::Method::GET,
        path: Path::new("/"),
        accept: None,
        help: no_help,
    };
    REQUEST.sync_scope(context, f)
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    /// What `write_request_span` writes unescaped never needs escaping: any method actix
    /// accepts (an HTTP token) and any id the layer keeps (sane or a UUID).
    #[test]
    fn methods_and_request_ids_need_no_json_escaping() {
        let method = actix_web::http::Method::from_bytes(b"PURGE").expect("a token");
        assert!(!crate::json::needs_escaping(method.as_str().as_bytes()));
        for b in 0u8..=255 {
            if let Ok(value) = HeaderValue::from_bytes(&[b, b'x']) {
                if let Some(id) = sane_request_id(&value) {
                    assert!(!crate::json::needs_escaping(id.as_bytes()), "{b}");
                }
            }
            if actix_web::http::Method::from_bytes(&[b]).is_ok() {
                assert!(!crate::json::needs_escaping(&[b]), "{b}");
            }
        }
        let uuid = uuid::Uuid::new_v4().hyphenated().to_string();
        assert!(!crate::json::needs_escaping(uuid.as_bytes()));
    }

    /// Paths come back as they went in, short or long, whatever their characters.
    #[test]
    fn paths_are_kept_whole() {
        let long = "/s3/bucket/".to_owned() + &"é".repeat(40);
        for path in [
            "/",
            "/s3credentials",
            &"/a".repeat(31),
            &"/b".repeat(32),
            &long,
            "",
        ] {
            assert_eq!(Path::new(path).as_str(), path);
        }
    }

    /// Fresh ids are distinct version-4 UUIDs.
    #[test]
    fn fresh_ids_are_distinct_v4_uuids() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let id = fresh_id();
            let text = id.to_str().expect("ascii");
            let uuid = uuid::Uuid::parse_str(text).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 4);
            assert_eq!(text, uuid.hyphenated().to_string());
            assert!(seen.insert(text.to_owned()), "{text} twice");
        }
    }
}
