//! The one JSON error shape every 4xx/5xx response uses:
//! `{"error": "<code>", "error_description": "<human text>", "request_id": "<id>"}`, and
//! `"help_url"` when the operator points that code at a page (`[help] urls`).

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::telemetry::{current_help_url, current_prefers_html, current_request_id};

#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    description: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The one error shape of every 4xx/5xx JSON response.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
    request_id: Option<String>,
    /// Where to read about this error and what to do (when the operator configured one).
    #[serde(skip_serializing_if = "Option::is_none")]
    help_url: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        debug_assert!(
            crate::common::ERROR_CODES.contains(&code),
            "error code {code} is not in common::ERROR_CODES"
        );
        Self {
            status,
            code,
            description: description.into(),
            headers: Vec::new(),
        }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such resource; see /s3credentialsREADME",
        )
    }

    pub fn bad_request(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }

    /// 5xx: the description reaches the client, so it must never carry internals.
    pub fn unavailable(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            description,
        )
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Set these cookies on the error response too (e.g. to end a failed login).
    pub fn with_cookies(mut self, cookies: &[actix_web::cookie::Cookie<'_>]) -> Self {
        for c in cookies {
            if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
                self.headers.push((header::SET_COOKIE, v));
            }
        }
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn description(&self) -> &str {
        &self.description
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        for (name, value) in &self.headers {
            res.append_header((name.clone(), value.clone()));
        }
        let request_id = current_request_id();
        let help_url = current_help_url(self.code);
        if current_prefers_html() {
            return res
                .content_type("text/html; charset=utf-8")
                .body(error_page(self, request_id.as_deref(), help_url.as_deref()));
        }
        res.json(ErrorBody {
            error: self.code,
            error_description: &self.description,
            request_id,
            help_url,
        })
    }
}

pub use crate::common::printable;

/// Client input quoted in an error message: at most `max` characters, keeping only those that
/// print as themselves (`"`, `\`, controls and unassigned code points are dropped), so the
/// quote can neither be broken out of nor grow tenfold under escaping.
pub fn quoted(s: &str, max: usize) -> String {
    let kept: String = s
        .chars()
        .filter(|c| c.escape_debug().len() == 1)
        .take(max)
        .collect();
    format!("\"{kept}\"")
}

/// Escape text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn error_page(err: &ApiError, request_id: Option<&str>, help_url: Option<&str>) -> String {
    let help = help_url.map_or(String::new(), |u| {
        format!(
            "<p><a id=\"help\" href=\"{u}\">What to do about it</a></p>",
            u = escape_html(u)
        )
    });
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{status} {code}</title></head><body><h1>{status}: {code}</h1><p>{description}</p>\
{help}<p><small>Request id: <code>{id}</code></small></p></body></html>",
        status = err.status.as_u16(),
        code = escape_html(err.code),
        description = escape_html(&err.description),
        id = escape_html(request_id.unwrap_or("-")),
    )
}
