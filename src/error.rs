//! The one JSON error shape every 4xx/5xx response uses:
//! `{"error": "<code>", "error_description": "<human text>", "request_id": "<id>"}`, and
//! `"help_url"` when the operator points that code at a page (`[help] urls`).

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::telemetry::{current_request_id, error_view, write_request_id_json};

#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    /// Most descriptions are the code's own text: borrowed, not copied.
    description: std::borrow::Cow<'static, str>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Headers known when the code was written (no allocation to carry them).
    static_headers: &'static [(HeaderName, &'static str)],
    /// Known to be for a client that asked for JSON alone (its `Accept` need not be read
    /// again).
    json_client: bool,
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
    pub fn new(
        status: StatusCode,
        code: &'static str,
        description: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Self {
        debug_assert!(
            crate::common::ERROR_CODES.contains(&code),
            "error code {code} is not in common::ERROR_CODES"
        );
        Self {
            status,
            code,
            description: description.into(),
            headers: Vec::new(),
            static_headers: &[],
            json_client: false,
        }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such resource; see /s3credentialsREADME",
        )
    }

    pub fn bad_request(
        code: &'static str,
        description: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }

    /// 5xx: the description reaches the client, so it must never carry internals.
    pub fn unavailable(description: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            description,
        )
    }

    /// For a client already known to want JSON alone (`negotiate::wants_json_only`).
    pub fn answered_in_json(mut self) -> Self {
        self.json_client = true;
        self
    }

    /// These headers too, all known when the code was written.
    pub fn with_static_headers(mut self, headers: &'static [(HeaderName, &'static str)]) -> Self {
        self.static_headers = headers;
        self
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
        let (html, help_url) = error_view(self.code, !self.json_client);
        let mut res = if html {
            let page = error_page(self, current_request_id().as_deref(), help_url);
            let mut res = HttpResponse::with_body(self.status, page);
            res.headers_mut().append(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            res
        } else {
            let mut res = HttpResponse::with_body(self.status, self.json_body(help_url));
            res.headers_mut().append(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        };
        // A new response: its header map is empty (appending skips looking for old values).
        let headers = res.headers_mut();
        headers.append(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in self.static_headers {
            headers.append(name.clone(), HeaderValue::from_static(value));
        }
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        res.map_into_boxed_body()
    }
}

impl ApiError {
    /// The body serde_json would write for [`ErrorBody`], written by hand: an error is
    /// answered on every refused request, and serde's string escaping costs several times
    /// what the rest of the body does.
    fn json_body(&self, help_url: Option<&str>) -> String {
        use crate::json::write_escaped;
        // The fixed text, a request id and the variable parts: one allocation.
        let mut out = String::with_capacity(
            192 + self.code.len() + self.description.len() + help_url.map_or(0, str::len),
        );
        // Writing into a String cannot fail.
        // Codes are the code's own (`common::ERROR_CODES`): nothing to escape.
        out.push_str("{\"error\":\"");
        out.push_str(self.code);
        out.push_str("\",\"error_description\":\"");
        let _ = write_escaped(&mut out, &self.description);
        out.push_str("\",\"request_id\":");
        if !write_request_id_json(&mut out) {
            out.push_str("null");
        }
        if let Some(url) = help_url {
            out.push_str(",\"help_url\":\"");
            let _ = write_escaped(&mut out, url);
            out.push('"');
        }
        out.push('}');
        out
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_need_no_json_escaping() {
        for code in crate::common::ERROR_CODES {
            assert!(!crate::json::needs_escaping(code.as_bytes()), "{code}");
        }
    }

    /// The body written by hand is byte for byte what serde_json writes for `ErrorBody`, with
    /// and without a request and a help URL, whatever the description holds.
    #[test]
    fn the_json_body_is_what_serde_json_writes() {
        let odd = "quote \" backslash \\ newline \n tab \t bell \u{7} é 🚀 \u{2028} </script>";
        for description in ["no such resource", odd, ""] {
            for help in [None, Some("https://help.example.org/errors?code=a&b=\"c\"")] {
                for id in [None, Some("8d2c7a3e-5a0b-4a4e-9c55-0b9e4b0f8a11")] {
                    let err =
                        ApiError::new(StatusCode::UNAUTHORIZED, "login_required", description);
                    let ours = match id {
                        Some(id) => {
                            crate::telemetry::context::in_test_request(id, || err.json_body(help))
                        }
                        None => err.json_body(help),
                    };
                    let theirs = serde_json::to_string(&ErrorBody {
                        error: "login_required",
                        error_description: description,
                        request_id: id.map(str::to_owned),
                        help_url: help.map(str::to_owned),
                    })
                    .unwrap();
                    assert_eq!(ours, theirs);
                }
            }
        }
    }
}
