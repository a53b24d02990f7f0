//! Reading what kind of client is asking. Scripts send `Accept: */*`; only an explicit
//! preference for HTML means a browser, and only an explicit JSON preference without HTML
//! means "answer 401, do not redirect me".

use actix_web::http::header;
use actix_web::HttpRequest;

/// The highest q-values an Accept header gives HTML (`text/html`, `application/xhtml+xml`)
/// and JSON (`application/json`), 0 for either when absent. One pass over the header's bytes:
/// an error answer reads it, and the text is visible ASCII (`to_str`), where `trim` and
/// `trim_ascii` agree.
/// Whether `media` is one of `types`, ignoring ASCII case.
fn names(types: &[&str], media: &[u8]) -> bool {
    types
        .iter()
        .any(|t| t.as_bytes().eq_ignore_ascii_case(media))
}

fn qualities(accept: &str) -> (f32, f32) {
    // One media range without parameters (`*/*`, `application/json`): what scripts send.
    if !accept.bytes().any(|b| b == b',' || b == b';') {
        let media = accept.as_bytes().trim_ascii();
        let flag = |types| f32::from(u8::from(names(types, media)));
        return (flag(HTML), flag(JSON));
    }
    let (mut html, mut json) = (0.0f32, 0.0f32);
    for range in accept.as_bytes().split(|&b| b == b',') {
        let mut parts = range.split(|&b| b == b';');
        let media = parts.next().unwrap_or_default().trim_ascii();
        let is_html = names(HTML, media);
        if !is_html && !names(JSON, media) {
            continue;
        }
        let q = parts
            .filter_map(|p| p.trim_ascii().strip_prefix(b"q="))
            .find_map(|q| {
                std::str::from_utf8(q.trim_ascii())
                    .ok()?
                    .parse::<f32>()
                    .ok()
            })
            .unwrap_or(1.0);
        if is_html {
            html = html.max(q);
        } else {
            json = json.max(q);
        }
    }
    (html, json)
}

fn accept(req: &HttpRequest) -> &str {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

const HTML: &[&str] = &["text/html", "application/xhtml+xml"];
const JSON: &[&str] = &["application/json"];

pub fn prefers_html_header(accept: &str) -> bool {
    let (html, json) = qualities(accept);
    html > 0.0 && html >= json
}

/// The client explicitly wants HTML (a browser navigating).
pub fn prefers_html(req: &HttpRequest) -> bool {
    prefers_html_header(accept(req))
}

/// The client explicitly asked for JSON and not HTML (API clients, SDK credential providers).
pub fn wants_json_only(req: &HttpRequest) -> bool {
    wants_json_only_header(accept(req))
}

pub fn wants_json_only_header(accept: &str) -> bool {
    let (html, json) = qualities(accept);
    json > 0.0 && html == 0.0
}

/// Earthdata's convention: a User-Agent without `Mozilla` is a script, which gets the
/// `app_type=401` hint so the IdP answers with a Basic challenge instead of a form.
pub fn is_browser(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.contains("Mozilla"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_scripts_and_api_clients_are_told_apart() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(prefers_html_header(browser));
        assert!(!prefers_html_header("*/*"));
        assert!(!prefers_html_header("application/json"));
        assert!(!prefers_html_header("application/json, text/html;q=0.5"));
        assert!(!prefers_html_header("text/html;q=0"));
        assert_eq!(qualities("application/json"), (0.0, 1.0));
        assert_eq!(qualities("*/*"), (0.0, 0.0));
        assert_eq!(
            qualities(
                " text/html ; level=1 ; q=0.4,application/json;q=0.7 , application/xhtml+xml;q=0.5"
            ),
            (0.5, 0.7)
        );
        assert_eq!(qualities("application/json;q=x, text/html;q="), (1.0, 1.0));
        assert_eq!(qualities(""), (0.0, 0.0));
        assert_eq!(qualities(" Text/HTML "), (1.0, 0.0));
        assert_eq!(qualities("application/xhtml+xml"), (1.0, 0.0));
        assert_eq!(qualities("application/json;q=0"), (0.0, 0.0));
        assert!(wants_json_only_header("application/json"));
        assert!(!wants_json_only_header("*/*"));
        // Media types are case-insensitive.
        assert!(prefers_html_header("TEXT/HTML"));
        assert!(wants_json_only_header("Application/JSON"));
        assert!(!wants_json_only_header("application/json, Text/Html"));
    }
}
